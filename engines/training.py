"""Train the learned motion model from scratch on the synthesized corpus; checkpoint I/O.

Data: engines.corpus utterances (flite speech with its own phone timings) become
TrainingExamples (engines.motion_targets), cached in memory. A MotionNormalizer is
fitted on all target motion. Each step draws B random windows: an utterance, a
start frame s, the W target frames [s, s + W) and the K frames before them as the
continuity prefix. Motion is edge-padded with K copies of the first frame, so
windows at the very start of an utterance see a resting prefix. The AudioEncoder
runs over each drawn utterance's whole feature sequence (exactly what streaming
gives for frames <= k) and is trained jointly with the MotionDenoiser.

Controls: the corpus carries no control labels (gaze, head distance, emotion), so
the targets never depend on them. Most rows get neutral controls; a share
(TrainConfig.random_controls) gets random ones, so the network sees the whole
input range and learns that, for this data, they carry no information. Controls
only become meaningful with labelled data (not done). diffusion_loss drops each
condition per row with p_drop, which trains the nulls used by guidance.

Determinism: the seed fixes the corpus text, the initial weights, the windows,
the noise, the timesteps and the dropout masks; the same seed on the same
machine and torch version gives the same losses.

Checkpoint: one safetensors file. Tensors "encoder.*", "denoiser.*",
"normalizer.mean", "normalizer.std" (float32); metadata "format"
("facecast-motion"), "version", "config" (MotionModelConfig as JSON) and "meta"
(JSON: training config, window/prefix, losses).

Default cost (TrainConfig(): 500 utterances, 20000 steps of 32 windows): on a 2-core
CPU, measured at about 12.6 steps/s with a 100-utterance corpus (the audio encoder
runs once per distinct utterance in a batch), so about 27 min of steps plus under
a minute to synthesize the corpus; well within the one-hour target.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import motion_space as ms
from .controls import EMOTIONS
from .corpus import build_corpus, load_corpus
from .diffusion import DDIMScheduler
from .errors import CheckpointError
from .motion_model import (
    AudioEncoder,
    MotionDenoiser,
    MotionModelConfig,
    MotionNormalizer,
    diffusion_loss,
    encode_controls,
)
from .motion_targets import TrainingExample, utterance_targets

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "TrainConfig",
    "TrainReport",
    "load_checkpoint",
    "load_examples",
    "save_checkpoint",
    "train",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "facecast-motion"
CHECKPOINT_VERSION = "1"


# --- checkpoint I/O -----------------------------------------------------------------------


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


# --- training -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """One training run. window (W) and prefix (K) must fit MotionModelConfig's maxima."""

    corpus_size: int = 500  # utterances synthesized when no corpus folder is given
    seed: int = 0
    fps: float = 25.0
    window: int = 8  # W
    prefix: int = 4  # K
    batch_size: int = 32
    steps: int = 20000
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    p_drop: float = 0.1  # per condition, per row
    random_controls: float = 0.2  # share of rows with random (uninformative) controls
    device: str = "cpu"


@dataclass(frozen=True)
class TrainReport:
    """losses: one float per step; seconds: wall time of the steps (not corpus building)."""

    losses: tuple[float, ...]
    steps: int
    seconds: float
    checkpoint: Path


def load_examples(manifest: Path, fps: float, seed: int) -> list[TrainingExample]:
    """Every utterance of a corpus manifest as a TrainingExample (features and motion)."""
    return [
        utterance_targets(item.samples, item.sample_rate, item.phones, fps, seed + i)
        for i, item in enumerate(load_corpus(manifest))
    ]


def train(
    config: TrainConfig,
    out_path: Path,
    corpus_dir: Path | None = None,
    log_every: int = 50,
    progress: Callable[[int, float], None] | None = None,
    model_config: MotionModelConfig | None = None,
) -> TrainReport:
    """Train encoder and denoiser from scratch and save a checkpoint at out_path.

    corpus_dir: a build_corpus folder (or its manifest.jsonl); None synthesizes
    config.corpus_size utterances into a temporary folder. progress(step, mean
    loss of the last log_every steps) is called every log_every steps and at the end.
    """
    model_config = model_config or MotionModelConfig()
    _check_config(config, model_config)
    examples = _examples(config, corpus_dir)
    normalizer = MotionNormalizer.from_data(np.concatenate([e.motion for e in examples]))
    data = _WindowData(examples, normalizer, config)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    encoder = AudioEncoder(model_config.feature_dim, model_config.audio_channels).to(device)
    denoiser = MotionDenoiser(model_config).to(device)
    params = [*encoder.parameters(), *denoiser.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = DDIMScheduler()
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        batch = data.sample(rng, encoder, device)
        loss = diffusion_loss(
            denoiser, scheduler, *batch, generator=generator, p_drop=config.p_drop
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None and (step % max(log_every, 1) == 0 or step == config.steps):
            progress(step, float(np.mean(losses[-max(log_every, 1) :])))
    seconds = time.perf_counter() - start
    meta = {
        "train": dataclasses.asdict(config),
        "window": config.window,
        "prefix": config.prefix,
        "utterances": len(examples),
        "seconds": round(seconds, 2),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
    }
    path = save_checkpoint(
        Path(out_path), encoder.cpu(), denoiser.cpu(), normalizer, model_config, meta
    )
    logger.info("trained %d steps in %.1f s; checkpoint %s", config.steps, seconds, path)
    return TrainReport(tuple(losses), config.steps, seconds, path)


def _check_config(config: TrainConfig, model: MotionModelConfig) -> None:
    if not 1 <= config.window <= model.max_window:
        raise ValueError(f"window must be in [1, {model.max_window}], got {config.window}")
    if not 1 <= config.prefix <= model.max_prefix:
        raise ValueError(f"prefix must be in [1, {model.max_prefix}], got {config.prefix}")
    if config.steps < 1 or config.batch_size < 1 or config.corpus_size < 1:
        raise ValueError("steps, batch_size and corpus_size must be >= 1")


def _examples(config: TrainConfig, corpus_dir: Path | None) -> list[TrainingExample]:
    if corpus_dir is None:
        with tempfile.TemporaryDirectory(prefix="facecast-corpus-") as tmp:
            manifest = build_corpus(Path(tmp), config.corpus_size, config.seed)
            examples = load_examples(manifest, config.fps, config.seed)
    else:
        corpus_dir = Path(corpus_dir)
        manifest = corpus_dir if corpus_dir.is_file() else corpus_dir / "manifest.jsonl"
        if not manifest.is_file():
            raise FileNotFoundError(f"no corpus manifest at {manifest}; build_corpus writes one")
        examples = load_examples(manifest, config.fps, config.seed)
    usable = [e for e in examples if len(e.motion) >= config.window]
    if not usable:
        raise ValueError(f"no utterance has at least {config.window} frames to train on")
    return usable


class _WindowData:
    """Random training windows over cached examples, as diffusion_loss arguments."""

    def __init__(
        self, examples: list[TrainingExample], normalizer: MotionNormalizer, config: TrainConfig
    ) -> None:
        self.config = config
        k = config.prefix
        self.features = [torch.from_numpy(e.features) for e in examples]  # each TxF
        # Normalised motion, edge-padded with K copies of frame 0: (K + T) x D.
        self.motion = [
            torch.from_numpy(
                normalizer.normalize(np.concatenate([e.motion[:1].repeat(k, 0), e.motion]))
            )
            for e in examples
        ]

    def sample(
        self, rng: np.random.Generator, encoder: AudioEncoder, device: torch.device
    ) -> tuple[torch.Tensor, ...]:
        """(x0 (B, W, D), audio (B, W, C), prev (B, K, D), controls (B, E), emotion (B,))."""
        c = self.config
        w, k, b = c.window, c.prefix, c.batch_size
        picks = rng.integers(len(self.features), size=b)
        starts = [int(rng.integers(len(self.features[i]) - w + 1)) for i in picks]
        embedded = {
            int(i): encoder(self.features[i][None].to(device))[0] for i in np.unique(picks)
        }  # each TxC
        audio = torch.stack(
            [embedded[int(i)][s : s + w] for i, s in zip(picks, starts, strict=True)]
        )
        # In padded motion frame s sits at row s + K: prefix rows [s, s + K), window [s + K, ...).
        prev = torch.stack([self.motion[i][s : s + k] for i, s in zip(picks, starts, strict=True)])
        x0 = torch.stack(
            [self.motion[i][s + k : s + k + w] for i, s in zip(picks, starts, strict=True)]
        )
        controls, emotion = _random_controls(rng, b, c.random_controls)
        return x0.to(device), audio, prev.to(device), controls.to(device), emotion.to(device)


def _random_controls(
    rng: np.random.Generator, batch: int, share: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Controls (B, E) and emotion ids (B,): neutral rows, `share` of them random."""
    neutral, neutral_emotion = encode_controls(None)  # 1xE, (1,)
    vector = neutral.numpy().repeat(batch, 0)
    emotion = neutral_emotion.numpy().repeat(batch)
    rows = rng.random(batch) < share
    n = int(rows.sum())
    if n:
        # Layout of encode_controls: gaze_yaw, gaze_pitch, gaze_set, head_distance - 1, strength.
        vector[rows, 0] = rng.uniform(-0.5, 0.5, n)
        vector[rows, 1] = rng.uniform(-0.3, 0.3, n)
        vector[rows, 2] = 1.0
        vector[rows, 3] = rng.uniform(-0.3, 0.4, n)
        vector[rows, 4] = rng.uniform(0.0, 1.0, n)
        emotion[rows] = rng.integers(len(EMOTIONS), size=n)
    return torch.from_numpy(vector), torch.from_numpy(emotion)
