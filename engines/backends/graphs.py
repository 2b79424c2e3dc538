"""The neural stages as ONNX graphs: their named inputs and outputs, export, and a disk cache.

Three graphs, named as the backends see them:
- audio_encoder: features (1, T, F) -> embedding (1, T, C), T dynamic;
- motion_denoiser: one guided sampler step's forward, batch B dynamic (3 rows
  per stream: full / audio-only / unconditional guidance);
- face_renderer: motion (B, D) -> frames (B, 3, S, S) in [0, 1], B dynamic. The
  avatar (portrait, mesh bindings, mouth palette) is baked in as constants, so
  there is one graph per portrait, cached by a fingerprint of its tensors.

The cache key of a graph is a fingerprint of everything that shapes it: the
module's tensors, its config, the source of the modules that trace it, torch's
version and the opset. A second session with the same portrait and model finds
the file and skips export.

Why opset 17 and torch's TorchScript-based exporter (dynamo=False): the dynamo
exporter needs onnxscript and onnx >= 1.18, which needs protobuf >= 6;
mediapipe 0.10.21, whose wheel carries the face models, needs protobuf < 5.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from ..motion.controls import CONTROL_DIM
from ..motion.model import MotionModel
from ..motion.space import MOTION_DIM
from ..render.renderer import FaceRenderer
from .base import TensorSpec

__all__ = [
    "DENOISER",
    "ENCODER",
    "OPSET",
    "RENDERER",
    "cached_graph",
    "example_feeds",
    "export_graph",
    "export_motion_model",
    "fingerprint",
    "motion_fingerprint",
    "motion_graphs",
    "motion_specs",
    "renderer_fingerprint",
    "renderer_graph",
    "renderer_specs",
]

logger = logging.getLogger(__name__)

OPSET = 17
ENCODER, DENOISER, RENDERER = "audio_encoder", "motion_denoiser", "face_renderer"
Specs = tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]  # (inputs, outputs)

_ENGINES = Path(__file__).resolve().parents[1]
_RENDERER_SOURCES = (
    "render/renderer.py",
    "render/eyes.py",
    "render/mouth.py",
    "render/warp_ops.py",
    "backends/graphs.py",
)
_MOTION_SOURCES = ("motion/model.py", "backends/graphs.py")


def motion_specs(model: MotionModel) -> dict[str, Specs]:
    """(inputs, outputs) of the motion model's two stages, named as in the ONNX files."""
    c = model.config
    w, k = model.window, model.prefix
    encoder = (
        (TensorSpec("features", (1, None, c.feature_dim), "float32"),),
        (TensorSpec("embedding", (1, None, c.audio_channels), "float32"),),
    )
    denoiser = (
        (
            TensorSpec("sample", (None, w, c.motion_dim), "float32"),
            TensorSpec("timestep", (None,), "int64"),
            TensorSpec("audio", (None, w, c.audio_channels), "float32"),
            TensorSpec("prev", (None, k, c.motion_dim), "float32"),
            TensorSpec("controls", (None, w, CONTROL_DIM), "float32"),
            TensorSpec("drop_audio", (None,), "bool"),
            TensorSpec("drop_prev", (None,), "bool"),
            TensorSpec("drop_controls", (None,), "bool"),
        ),
        (TensorSpec("v", (None, w, c.motion_dim), "float32"),),
    )
    return {ENCODER: encoder, DENOISER: denoiser}


def renderer_specs(renderer: FaceRenderer) -> Specs:
    size = renderer.image_size
    return (
        (TensorSpec("motion", (None, MOTION_DIM), "float32"),),
        (TensorSpec("frames", (None, 3, size, size), "float32"),),
    )


def example_feeds(
    specs: tuple[TensorSpec, ...], seed: int = 0, batch: int = 3, frames: int = 24
) -> dict[str, np.ndarray]:
    """Random feeds for specs; dynamic sizes take `batch` (first axis) or `frames`.

    Motion for the renderer is kept small (|x| < 0.3): a frame of motion is
    relative to the portrait's neutral, and large random poses are not faces.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = tuple(
            d if d is not None else (batch if axis == 0 else frames)
            for axis, d in enumerate(spec.shape)
        )
        if spec.name == "motion":
            motion = rng.uniform(0.0, 0.3, shape).astype(np.float32)
            motion[:, 5] += 1.0  # head scale: 1 is the portrait's own distance
            feeds[spec.name] = motion
        elif spec.dtype == "float32":
            feeds[spec.name] = rng.standard_normal(shape).astype(np.float32)
        elif spec.dtype == "int64":
            feeds[spec.name] = rng.integers(0, 1000, shape).astype(np.int64)
        else:
            feeds[spec.name] = rng.random(shape) < 0.5
    return feeds


def export_graph(module: torch.nn.Module, specs: Specs, path: Path, batch: int = 3) -> Path:
    """Trace module with example feeds for specs into path (opset 17, dynamic None axes)."""
    inputs, outputs = specs
    feeds = example_feeds(inputs, batch=batch)
    dynamic = {
        s.name: {axis: f"{s.name}_{axis}" for axis, d in enumerate(s.shape) if d is None}
        for s in (*inputs, *outputs)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Traced with autograd on, even when the caller runs under inference_mode (the
    # server warms its engines so): under no_grad, eval-mode transformer layers take
    # torch's fused fast path (_transformer_encoder_layer_fwd), which has no ONNX form.
    # The tracer warns about shape checks and window sizes: they hold for every
    # shape the specs allow, so the traced constants are right.
    with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
        args = tuple(torch.from_numpy(feeds[s.name]) for s in inputs)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=[s.name for s in inputs],
            output_names=[s.name for s in outputs],
            dynamic_axes={k: v for k, v in dynamic.items() if v},
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def export_motion_model(model: MotionModel, out_dir: Path) -> dict[str, Path]:
    """Write both motion stages as ONNX files in out_dir; returns their paths by stage name."""
    paths = {stage: _export_motion_stage(model, stage, Path(out_dir) / f"{stage}.onnx")
             for stage in motion_specs(model)}  # fmt: skip
    logger.info("exported %s to %s", ", ".join(paths), out_dir)
    return paths


def _export_motion_stage(model: MotionModel, stage: str, path: Path) -> Path:
    module = model.encoder if stage == ENCODER else model.denoiser
    return export_graph(module, motion_specs(model)[stage], path, 1 if stage == ENCODER else 3)


def fingerprint(module: torch.nn.Module, config: object, sources: Iterable[str]) -> str:
    """Hex digest of a module's tensors, its config's repr, the named engines sources, torch."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr(config).encode())
    for source in sources:
        digest.update((_ENGINES / source).read_bytes())
    digest.update(f"torch {torch.__version__} opset {OPSET}".encode())
    return digest.hexdigest()[:24]


def motion_fingerprint(model: MotionModel) -> str:
    return fingerprint(
        torch.nn.ModuleList([model.encoder, model.denoiser]), model.config, _MOTION_SOURCES
    )


def renderer_fingerprint(renderer: FaceRenderer) -> str:
    return fingerprint(renderer, renderer.config, _RENDERER_SOURCES)


def cached_graph(path: Path, export: Callable[[Path], object]) -> Path:
    """path if it exists, else export(tmp) then an atomic rename: concurrent sessions are safe."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=path.parent)
    os.close(handle)
    try:
        export(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like the avatars
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    logger.info("exported %s", path)
    return path


def motion_graphs(model: MotionModel, cache_dir: Path) -> dict[str, Path]:
    """The motion model's two ONNX files in cache_dir, exported once per model."""
    key = motion_fingerprint(model)
    return {
        stage: cached_graph(
            Path(cache_dir) / f"{stage}-{key}.onnx",
            functools.partial(_export_motion_stage, model, stage),
        )
        for stage in motion_specs(model)
    }


def renderer_graph(renderer: FaceRenderer, cache_dir: Path) -> Path:
    """The renderer's ONNX file for its avatar in cache_dir, exported once per portrait."""
    path = Path(cache_dir) / f"{RENDERER}-{renderer_fingerprint(renderer)}.onnx"
    return cached_graph(path, lambda tmp: export_graph(renderer, renderer_specs(renderer), tmp, 2))
