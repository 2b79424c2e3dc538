"""Train the learned motion model from scratch on the synthesized corpus; checkpoint I/O.

Data: engines.training.corpus utterances (flite and espeak-ng speech, optionally real
recordings, with phone timings) become TrainingExamples (engines.training.targets),
cached in memory; a few (TrainConfig.validation_share) are held out to report a
validation loss. Each step draws B random windows: an utterance, a start frame
s, the W target frames [s, s + W) and the K frames before them as the
continuity prefix. Motion is edge-padded with K copies of the first frame, so
windows at the very start of an utterance see a resting prefix. The AudioEncoder
runs over each drawn utterance's whole feature sequence (exactly what streaming
gives for frames <= k) and is trained jointly with the MotionDenoiser. A share
of rows (p_stream) hears only the first N frames of its window, as the live
sampler does.

Controls: the corpus motion has no gaze target, head distance or emotion, so the
control labels are synthesized: a share of rows (TrainConfig.random_controls)
gets a random control trajectory over its K + W frames (one set of Controls,
then with some probability a switch to another, eased by the live
ControlMixer's springs), and both its prefix and its target frames become
controls.apply_control_state(motion, states): exactly what the controls do to
any motion source. The model is conditioned on the per-frame states, so it
learns to follow them. The normalizer is fitted on motion drawn the same way,
so controlled values (a 0.4 rad gaze, head distance 1.4) stay in range.
diffusion_loss drops each condition per row with p_drop, which trains the nulls
used by guidance.

Optimizer: AdamW, linear warm-up then cosine decay; the checkpoint holds an
exponential moving average of the weights (EMA), which samples more smoothly
than the last iterate.

Determinism: the seed fixes the corpus text, the initial weights, the windows,
the noise, the timesteps and the dropout masks; the same seed on the same
machine and torch version gives the same losses.

Checkpoint: engines.motion.checkpoint (one safetensors file, EMA weights; its meta
records the training config, window, prefix, fps and the loss curves).

Default cost (TrainConfig(): 600 utterances, 20000 steps of 32 windows): see
README "Training"; about half an hour on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from ..motion import space as ms
from ..motion.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from ..motion.controls import EMOTIONS, ControlMixer, Controls, apply_control_state, control_state
from ..motion.diffusion import DDIMScheduler
from ..motion.model import (
    AudioEncoder,
    MotionDenoiser,
    MotionModelConfig,
    MotionNormalizer,
    diffusion_loss,
)
from .corpus import build_corpus, load_corpus
from .targets import TrainingExample, pad_with_silence, utterance_targets

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


# (x0 (B, W, D), audio (B, W, C), prev (B, K, D), controls (B, W, E)): one training batch.
_Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """One training run. window (W) and prefix (K) must fit MotionModelConfig's maxima."""

    corpus_size: int = 600  # utterances synthesized when no corpus folder is given
    seed: int = 0
    fps: float = 25.0
    window: int = 8  # W
    prefix: int = 8  # K
    batch_size: int = 32
    steps: int = 20000
    lr: float = 1e-3
    min_lr: float = 2e-5  # cosine decay ends here
    warmup_steps: int = 500
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_drop: float = 0.1  # per condition, per row
    p_stream: float = 0.5  # rows that hear only the first N frames of their window
    random_controls: float = 0.5  # share of rows with a synthesized control trajectory
    validation_share: float = 0.03  # utterances held out for the validation loss
    pad_silence_s: tuple[float, float] = (0.2, 2.5)  # background noise around each utterance
    save_every: int = 0  # also write the checkpoint every N steps (0: only at the end)
    # Start from this checkpoint's weights instead of random ones (same model sizes):
    # new targets for some channels train in a fraction of the steps a fresh model needs.
    init_checkpoint: str | None = None
    device: str = "cpu"
    # Loss weight per named motion channel (the rest weigh 1), e.g. (("headPitch", 3.0),):
    # a warm start on new targets for some channels can hold them to the old checkpoint's
    # others (the viseme warm start cost the nods after accents 2.1x -> 1.6x chance).
    # The validation loss stays unweighted, so runs with different weights compare.
    channel_weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for name, weight in self.channel_weights:
            try:
                ms.index_of(name)
            except (
                KeyError
            ) as exc:  # a bad config value, not a missing key: its message lists the names
                raise ValueError(exc.args[0]) from None
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"loss weight of {name} must be a positive number, got {weight}")

    def loss_weights(self) -> torch.Tensor | None:
        """(D,) per-channel loss weights, or None when every channel weighs 1."""
        if not self.channel_weights:
            return None
        weights = torch.ones(ms.MOTION_DIM)
        for name, weight in self.channel_weights:
            weights[ms.index_of(name)] = weight
        return weights


@dataclass(frozen=True)
class TrainReport:
    """losses: one float per step; validation: (step, loss) at each log; seconds: the steps'."""

    losses: tuple[float, ...]
    validation: tuple[tuple[int, float], ...]
    steps: int
    seconds: float
    checkpoint: Path


def load_examples(
    manifest: Path, fps: float, seed: int, pad_range_s: tuple[float, float] | None = None
) -> list[TrainingExample]:
    """Every utterance of a corpus manifest as a TrainingExample (features and motion).

    pad_range_s: add background noise of a random length in this range before
    and after each utterance (see motion_targets.pad_with_silence); None adds none.
    """
    examples = []
    for i, item in enumerate(load_corpus(manifest)):
        samples, phones = item.samples, item.phones
        if pad_range_s is not None:
            rng = np.random.default_rng([seed, i, 7])
            samples, phones = pad_with_silence(samples, item.sample_rate, phones, rng, pad_range_s)
        examples.append(utterance_targets(samples, item.sample_rate, phones, fps, seed + i))
    return examples


def train(
    config: TrainConfig,
    out_path: Path,
    corpus_dir: Path | None = None,
    log_every: int = 50,
    progress: Callable[[int, float, float | None], None] | None = None,
    model_config: MotionModelConfig | None = None,
    recordings: Path | None = None,
) -> TrainReport:
    """Train encoder and denoiser from scratch and save a checkpoint (EMA weights) at out_path.

    corpus_dir: a build_corpus folder (or its manifest.jsonl); None synthesizes
    config.corpus_size utterances (plus the recordings folder, if given) into a
    temporary folder. progress(step, mean training loss of the last log_every
    steps, validation loss or None) is called every log_every steps and at the end.
    """
    model_config = model_config or MotionModelConfig()
    _check_config(config, model_config)
    initial = _initial_weights(config, model_config)  # before the corpus: fail fast
    examples = _examples(config, corpus_dir, recordings)
    held_out = int(round(len(examples) * config.validation_share)) if len(examples) > 4 else 0
    train_set, valid_set = examples[held_out:], examples[:held_out]
    rng = np.random.default_rng(config.seed)
    data = _WindowData(train_set, config)
    normalizer = data.fit_normalizer(np.random.default_rng([config.seed, 1]))
    valid = _WindowData(valid_set, config, normalizer) if valid_set else None
    data.normalizer = normalizer
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    encoder = AudioEncoder(model_config.feature_dim, model_config.audio_channels).to(device)
    denoiser = MotionDenoiser(model_config).to(device)
    if initial is not None:
        encoder.load_state_dict(initial[0])
        denoiser.load_state_dict(initial[1])
    modules = torch.nn.ModuleDict({"encoder": encoder, "denoiser": denoiser})
    ema = torch.optim.swa_utils.AveragedModel(
        modules, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay)
    )
    # The averaged copies keep the types they were given.
    averaged = cast(torch.nn.ModuleDict, ema.module)
    params = list(modules.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config))
    scheduler = DDIMScheduler()
    generator = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    validation: list[tuple[int, float]] = []
    every = max(log_every, 1)
    start = time.perf_counter()

    def save(step: int) -> Path:
        meta = _meta(config, len(train_set), len(valid_set), losses, validation, start, step)
        encoder_avg = cast(AudioEncoder, averaged["encoder"])
        denoiser_avg = cast(MotionDenoiser, averaged["denoiser"])
        return save_checkpoint(
            Path(out_path), encoder_avg, denoiser_avg, normalizer, model_config, meta
        )

    loss_weights = config.loss_weights()
    for step in range(1, config.steps + 1):
        x0, audio, prev, controls = data.sample(rng, encoder, device)
        loss = diffusion_loss(
            denoiser,
            scheduler,
            x0,
            audio,
            prev,
            controls,
            generator,
            config.p_drop,
            config.p_stream,
            loss_weights,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        lr_schedule.step()
        ema.update_parameters(modules)
        losses.append(float(loss.detach()))
        if step % every == 0 or step == config.steps:
            valid_loss = _validation_loss(valid, averaged, scheduler, config, device)
            if valid_loss is not None:
                validation.append((step, valid_loss))
            if progress is not None:
                progress(step, float(np.mean(losses[-every:])), valid_loss)
        if config.save_every and step % config.save_every == 0 and step < config.steps:
            save(step)
    path = save(config.steps)
    seconds = time.perf_counter() - start
    logger.info("trained %d steps in %.1f s; checkpoint %s", config.steps, seconds, path)
    return TrainReport(tuple(losses), tuple(validation), config.steps, seconds, path)


def _lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """Multiplier of config.lr after `step` scheduler steps: warm-up, then cosine to min_lr."""
    floor = config.min_lr / config.lr

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _meta(
    config: TrainConfig,
    train_utterances: int,
    valid_utterances: int,
    losses: list[float],
    validation: list[tuple[int, float]],
    start: float,
    step: int,
) -> dict[str, object]:
    return {
        "train": dataclasses.asdict(config),
        "window": config.window,
        "prefix": config.prefix,
        "fps": config.fps,
        "utterances": train_utterances,
        "validation_utterances": valid_utterances,
        "steps_done": step,
        "seconds": round(time.perf_counter() - start, 2),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "validation": [[s, round(v, 5)] for s, v in validation],
    }


@torch.no_grad()
def _validation_loss(
    valid: _WindowData | None,
    modules: torch.nn.ModuleDict,
    scheduler: DDIMScheduler,
    config: TrainConfig,
    device: torch.device,
    batches: int = 4,
) -> float | None:
    """Mean diffusion loss of the EMA weights on held-out utterances, fixed draws every time."""
    if valid is None:
        return None
    rng = np.random.default_rng([config.seed, 2])
    generator = torch.Generator().manual_seed(config.seed + 2)
    total = 0.0
    for _ in range(batches):
        x0, audio, prev, controls = valid.sample(rng, modules["encoder"], device)
        loss = diffusion_loss(
            modules["denoiser"],
            scheduler,
            x0,
            audio,
            prev,
            controls,
            generator,
            0.0,
            config.p_stream,
        )
        total += float(loss)
    return total / batches


def _initial_weights(
    config: TrainConfig, model_config: MotionModelConfig
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
    """The warm start's (encoder, denoiser) weights, None for a fresh model;
    CheckpointError when the checkpoint is unreadable or of another model size."""
    if not config.init_checkpoint:
        return None
    path = Path(config.init_checkpoint)
    encoder, denoiser, _, old_config, _ = load_checkpoint(path)
    if old_config != model_config:
        raise CheckpointError(
            f"{path} has model config {old_config}, this run trains {model_config}"
        )
    logger.info("warm start from %s", path)
    return encoder.state_dict(), denoiser.state_dict()


def _check_config(config: TrainConfig, model: MotionModelConfig) -> None:
    if not 1 <= config.window <= model.max_window:
        raise ValueError(f"window must be in [1, {model.max_window}], got {config.window}")
    if not 1 <= config.prefix <= model.max_prefix:
        raise ValueError(f"prefix must be in [1, {model.max_prefix}], got {config.prefix}")
    if config.steps < 1 or config.batch_size < 1 or config.corpus_size < 1:
        raise ValueError("steps, batch_size and corpus_size must be >= 1")


def _examples(
    config: TrainConfig, corpus_dir: Path | None, recordings: Path | None
) -> list[TrainingExample]:
    if corpus_dir is None:
        with tempfile.TemporaryDirectory(prefix="facecast-corpus-") as tmp:
            manifest = build_corpus(
                Path(tmp), config.corpus_size, config.seed, recordings=recordings
            )
            examples = load_examples(manifest, config.fps, config.seed, config.pad_silence_s)
    else:
        corpus_dir = Path(corpus_dir)
        manifest = corpus_dir if corpus_dir.is_file() else corpus_dir / "manifest.jsonl"
        if not manifest.is_file():
            raise FileNotFoundError(f"no corpus manifest at {manifest}; build_corpus writes one")
        examples = load_examples(manifest, config.fps, config.seed, config.pad_silence_s)
    usable = [e for e in examples if len(e.motion) >= config.window]
    if not usable:
        raise ValueError(f"no utterance has at least {config.window} frames to train on")
    return usable


class _WindowData:
    """Random training windows over cached examples, as diffusion_loss arguments."""

    def __init__(
        self,
        examples: list[TrainingExample],
        config: TrainConfig,
        normalizer: MotionNormalizer | None = None,
    ) -> None:
        self.config = config
        self.normalizer = normalizer or MotionNormalizer()
        k = config.prefix
        self.features = [torch.from_numpy(e.features) for e in examples]  # each TxF
        # Motion edge-padded with K copies of frame 0: (K + T) x D, motion units.
        self.motion = [np.concatenate([e.motion[:1].repeat(k, 0), e.motion]) for e in examples]

    def _draw(
        self, rng: np.random.Generator, batch: int
    ) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray]:
        """picks (B,), starts, motion (B, K + W, D) with controls mixed in, states (B, W, E)."""
        c = self.config
        w, k = c.window, c.prefix
        picks = rng.integers(len(self.features), size=batch)
        starts = [int(rng.integers(len(self.features[i]) - w + 1)) for i in picks]
        states = _control_trajectories(rng, batch, k + w, c.fps, c.random_controls)
        # In padded motion frame s sits at row s + K: prefix rows [s, s + K), window [s + K, ...).
        motion = np.stack(
            [
                apply_control_state(self.motion[i][s : s + k + w], states[row])
                for row, (i, s) in enumerate(zip(picks, starts, strict=True))
            ]
        )
        return picks, starts, motion, states[:, k:]

    def fit_normalizer(self, rng: np.random.Generator, windows: int = 4096) -> MotionNormalizer:
        """A normalizer fitted on windows drawn as training draws them (controls included)."""
        motion = self._draw(rng, windows)[2]
        return MotionNormalizer.from_data(motion.reshape(-1, ms.MOTION_DIM), min_std=0.01)

    def sample(self, rng: np.random.Generator, encoder: nn.Module, device: torch.device) -> _Batch:
        """(x0 (B, W, D), audio (B, W, C), prev (B, K, D), controls (B, W, E))."""
        c = self.config
        w, k = c.window, c.prefix
        picks, starts, motion, states = self._draw(rng, c.batch_size)
        embedded = {
            int(i): encoder(self.features[i][None].to(device))[0] for i in np.unique(picks)
        }  # each TxC
        audio = torch.stack(
            [embedded[int(i)][s : s + w] for i, s in zip(picks, starts, strict=True)]
        )
        unit = torch.from_numpy(self.normalizer.normalize(motion)).to(device)  # Bx(K+W)xD
        controls = torch.from_numpy(states).to(device)
        return unit[:, k:], audio, unit[:, :k], controls


def _random_controls(rng: np.random.Generator) -> Controls:
    """One random setting of the controls, each control left alone half of the time."""
    yaw = float(rng.uniform(-0.4, 0.4)) if rng.random() < 0.5 else None
    pitch = float(rng.uniform(-0.3, 0.3)) if rng.random() < 0.5 else None
    distance = float(rng.uniform(0.7, 1.4)) if rng.random() < 0.5 else 1.0
    emotion = EMOTIONS[int(rng.integers(len(EMOTIONS)))] if rng.random() < 0.6 else "neutral"
    strength = float(rng.uniform(0.3, 1.0))
    return Controls(yaw, pitch, distance, emotion, strength)


def _control_trajectories(
    rng: np.random.Generator, batch: int, frames: int, fps: float, share: float
) -> np.ndarray:
    """Control states (B, frames, E): neutral rows, `share` of them a random trajectory.

    A random row starts settled at one setting and, half of the time, switches
    to another at a random frame, eased by ControlMixer as at run time.
    """
    neutral = control_state(Controls()).astype(np.float32)
    states = np.repeat(neutral[None, None], batch, axis=0).repeat(frames, axis=1)
    for row in np.flatnonzero(rng.random(batch) < share):
        mixer = ControlMixer(fps)
        mixer.set(_random_controls(rng))
        mixer.reset()
        switch = int(rng.integers(frames)) if rng.random() < 0.5 else frames
        head = mixer.advance(switch)
        mixer.set(_random_controls(rng))
        states[row] = np.concatenate([head, mixer.advance(frames - switch)])
    return states
