"""Motion checkpoints: one safetensors file holding the audio encoder, denoiser and normalizer.

Tensors "encoder.*", "denoiser.*", "normalizer.mean", "normalizer.std"
(float32); metadata "format" ("facecast-motion"), "version", "config"
(MotionModelConfig as JSON) and "meta" (JSON: training config, window/prefix,
fps, losses). Loading checks every part and names what does not fit.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError
from . import space as ms
from .model import AudioEncoder, MotionDenoiser, MotionModel, MotionModelConfig, MotionNormalizer

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "load_checkpoint",
    "load_motion_model",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "facecast-motion"
CHECKPOINT_VERSION = "2"  # 2: per-frame control states (controls.CONTROL_NAMES)


def load_motion_model(path: Path) -> MotionModel:
    """load_checkpoint as one MotionModel; CheckpointError says what is wrong.

    Loaded outside inference mode whatever the caller's: weights made under it are
    inference tensors, which the ONNX export (traced with autograd on) cannot use.
    """
    with torch.inference_mode(False):
        encoder, denoiser, normalizer, config, meta = load_checkpoint(path)
    return MotionModel(encoder, denoiser, normalizer, config, meta, Path(path))


def save_checkpoint(
    path: Path,
    encoder: AudioEncoder,
    denoiser: MotionDenoiser,
    normalizer: MotionNormalizer,
    config: MotionModelConfig,
    meta: dict[str, object] | None = None,
) -> Path:
    """Write encoder, denoiser and normalizer to one safetensors file; returns its path.

    meta must be JSON-serialisable; it is stored as is in the file's metadata.
    """
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("encoder", encoder), ("denoiser", denoiser)):
        for name, value in module.state_dict().items():
            tensors[f"{prefix}.{name}"] = value.detach().cpu().float().contiguous().clone()
    tensors["normalizer.mean"] = torch.from_numpy(np.asarray(normalizer.mean, np.float32).copy())
    tensors["normalizer.std"] = torch.from_numpy(np.asarray(normalizer.std, np.float32).copy())
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": json.dumps(dataclasses.asdict(config), sort_keys=True),
        "meta": json.dumps(meta or {}, sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_checkpoint(
    path: Path,
) -> tuple[AudioEncoder, MotionDenoiser, MotionNormalizer, MotionModelConfig, dict[str, object]]:
    """Read a save_checkpoint file: (encoder, denoiser, normalizer, config, meta), eval mode.

    Raises CheckpointError when the file is missing, is not a facecast motion
    checkpoint, or its config or tensor shapes do not fit this build (the
    message names what differs).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no motion checkpoint at {path}; train one with `facecast train`")
    tensors, metadata = _read_safetensors(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a facecast motion checkpoint (metadata format "
            f"{metadata.get('format')!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    if metadata.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is checkpoint version {metadata.get('version')!r}; this build reads "
            f"version {CHECKPOINT_VERSION}: retrain with `facecast train`"
        )
    config = _config_from_json(path, metadata.get("config", "{}"))
    encoder = AudioEncoder(config.feature_dim, config.audio_channels)
    denoiser = MotionDenoiser(config)
    for prefix, module in (("encoder", encoder), ("denoiser", denoiser)):
        state = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        _check_state(path, prefix, module, state)
        module.load_state_dict(state)
        module.eval()
    for name in ("normalizer.mean", "normalizer.std"):
        if name not in tensors or tuple(tensors[name].shape) != (ms.MOTION_DIM,):
            raise CheckpointError(f"{path}: {name} is missing or not of shape ({ms.MOTION_DIM},)")
    normalizer = MotionNormalizer(
        tensors["normalizer.mean"].numpy(), tensors["normalizer.std"].numpy()
    )
    try:
        meta = json.loads(metadata.get("meta", "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: its meta is not valid JSON ({exc})") from exc
    return encoder, denoiser, normalizer, config, meta


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    return tensors, metadata


def _config_from_json(path: Path, text: str) -> MotionModelConfig:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: its config is not valid JSON ({exc})") from exc
    known = {f.name for f in dataclasses.fields(MotionModelConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(
            f"{path}: config fields {unknown} are unknown to this build's MotionModelConfig "
            f"(a newer facecast?); retrain or upgrade"
        )
    config = MotionModelConfig(**values)
    current = MotionModelConfig()
    for name in ("feature_dim", "motion_dim"):
        ours, theirs = getattr(current, name), getattr(config, name)
        if ours != theirs:
            raise CheckpointError(
                f"{path}: incompatible config: {name} is {theirs} in the checkpoint but "
                f"{ours} in this build; retrain with `facecast train`"
            )
    return config


def _check_state(
    path: Path, prefix: str, module: torch.nn.Module, state: dict[str, torch.Tensor]
) -> None:
    """Raise CheckpointError naming missing, unexpected and differently shaped tensors."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problems = [f"missing {prefix}.{k}" for k in sorted(set(expected) - set(state))]
    problems += [f"unexpected {prefix}.{k}" for k in sorted(set(state) - set(expected))]
    problems += [
        f"{prefix}.{k} is {tuple(state[k].shape)}, expected {shape}"
        for k, shape in sorted(expected.items())
        if k in state and tuple(state[k].shape) != shape
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise CheckpointError(f"{path} does not fit its own config: {shown}")
