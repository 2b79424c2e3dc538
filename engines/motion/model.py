"""Learned audio-to-motion model: audio encoder, window denoiser, streaming sampler.

Dimension names: B batch, T feature frames, F audio features (87), C audio
embedding channels, W window frames, K previous-window frames, D motion channels
(MOTION_DIM = 39), E control-state channels (controls.CONTROL_DIM = 9), N frames
heard so far in a window (1 <= N <= W).

Streaming: a window of W frames starts at the first frame not yet emitted. Only
N frames have been heard; training masks a random tail of the window's audio
(null audio) so the model learns windows it has only partly heard, and at run
time the unheard tail repeats the last heard frame's audio (see
MotionSampler.sample_window). The sampler emits exactly the N heard frames, so
N sets the latency: the algorithmic floor is the feature extractor's 40 ms
look-ahead + the encoder's one frame + (N - 1) frames.
With N = 1 at 25 fps that is 80 ms; offline rendering uses N = W (the model
sees the whole window's audio, which helps anticipatory coarticulation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..audio.features import FEATURE_NAMES
from . import space as ms
from .controls import CONTROL_DIM, Controls, control_state
from .diffusion import DDIMScheduler

__all__ = [
    "CONTROL_DIM",
    "AudioEncoder",
    "MotionModel",
    "MotionModelConfig",
    "MotionDenoiser",
    "MotionNormalizer",
    "MotionSampler",
    "diffusion_loss",
]


@dataclass(frozen=True)
class MotionModelConfig:
    """Sizes of the default small model: denoiser 0.87 M parameters (3.5 MB float32)."""

    feature_dim: int = len(FEATURE_NAMES)
    motion_dim: int = ms.MOTION_DIM
    audio_channels: int = 64
    max_window: int = 16
    max_prefix: int = 8
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    ff_mult: int = 4


class AudioEncoder(nn.Module):
    """Per-frame audio features (B, T, F) -> embeddings (B, T, C), one frame of look-ahead.

    The first conv is centred (sees frames t-1..t+1); the rest are causal with
    dilations 1, 2, 4, so output t depends on features [t - context_frames, t + 1].
    Streaming: run it on features [k - context_frames, k + lookahead_frames] and
    keep the rows for frames <= k; rows past k saw zero padding instead of audio.
    """

    lookahead_frames = 1

    def __init__(self, feature_dim: int = len(FEATURE_NAMES), channels: int = 64) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(feature_dim)
        self.input = nn.Conv1d(feature_dim, channels, kernel_size=3)
        self.dilations = (1, 2, 4)
        self.blocks = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size=3, dilation=d) for d in self.dilations
        )
        self.act = nn.GELU()
        self.context_frames = 1 + sum(2 * d for d in self.dilations)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: Tensor of shape (B, T, F) -> Tensor of shape (B, T, C)."""
        if features.dim() != 3 or features.shape[-1] != self.norm.normalized_shape[0]:
            raise ValueError(f"features must be (B, T, {self.norm.normalized_shape[0]})")
        x = self.norm(features).transpose(1, 2)  # BxFxT
        x = self.act(self.input(nn.functional.pad(x, (1, 1))))  # BxCxT, centred: 1 ahead
        for d, conv in zip(self.dilations, self.blocks, strict=True):
            x = x + self.act(conv(nn.functional.pad(x, (2 * d, 0))))  # causal: no look-ahead
        return x.transpose(1, 2)  # BxTxC


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t (B,) -> Tensor of shape (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _choose(mask: torch.Tensor | None, null: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """value where mask is False, the learned null where True.

    value: Tensor of shape (B, ...); mask: None, (B,) per row, or (B, W) per frame
    of a value shaped (B, W, ...).
    """
    if mask is None:
        return value
    mask = mask.to(device=value.device, dtype=torch.bool)
    mask = mask.reshape(*mask.shape, *([1] * (value.dim() - mask.dim())))
    return torch.where(mask, null.to(value.dtype).expand_as(value), value)


class MotionDenoiser(nn.Module):
    """Transformer over [K prefix tokens | W noisy motion tokens]; predicts v (B, W, D).

    Conditions: audio embedding and control state per window frame (added to
    its token), the previous window's last K frames (prefix tokens, for
    continuity) and the timestep (added to every token). Each condition has a
    learned null chosen by a boolean mask, for condition dropout and guidance;
    audio can be masked per frame (frames not heard yet).
    """

    def __init__(self, config: MotionModelConfig | None = None) -> None:
        super().__init__()
        cfg = config or MotionModelConfig()
        self.config = cfg
        d = cfg.d_model
        self.motion_in = nn.Linear(cfg.motion_dim, d)
        self.prefix_in = nn.Linear(cfg.motion_dim, d)
        self.audio_in = nn.Linear(cfg.audio_channels, d)
        self.position = nn.Parameter(torch.randn(cfg.max_prefix + cfg.max_window, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.controls_mlp = nn.Sequential(nn.Linear(CONTROL_DIM, d), nn.SiLU(), nn.Linear(d, d))
        self.null_audio = nn.Parameter(torch.randn(cfg.audio_channels) * 0.02)
        self.null_prefix = nn.Parameter(torch.randn(d) * 0.02)
        self.null_controls = nn.Parameter(torch.randn(d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, cfg.num_heads, cfg.ff_mult * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.motion_dim)

    def _check(
        self, sample: torch.Tensor, audio: torch.Tensor, prev: torch.Tensor, controls: torch.Tensor
    ) -> None:
        b, w, dim = sample.shape
        cfg = self.config
        if dim != cfg.motion_dim or not 1 <= w <= cfg.max_window:
            raise ValueError(f"sample must be (B, W<={cfg.max_window}, {cfg.motion_dim})")
        if audio.shape != (b, w, cfg.audio_channels):
            raise ValueError(
                f"audio must be {(b, w, cfg.audio_channels)}, got {tuple(audio.shape)}"
            )
        if prev.dim() != 3 or prev.shape[0] != b or prev.shape[2] != dim:
            raise ValueError(f"prev must be (B, K, {dim}), got {tuple(prev.shape)}")
        if prev.shape[1] > cfg.max_prefix:
            raise ValueError(f"prev has K={prev.shape[1]} frames, at most {cfg.max_prefix}")
        if controls.shape != (b, w, CONTROL_DIM):
            raise ValueError(f"controls must be {(b, w, CONTROL_DIM)}, got {tuple(controls.shape)}")

    def forward(
        self,
        sample: torch.Tensor,
        t: torch.Tensor,
        audio: torch.Tensor,
        prev: torch.Tensor,
        controls: torch.Tensor,
        drop_audio: torch.Tensor | None = None,
        drop_prev: torch.Tensor | None = None,
        drop_controls: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict v for a batch of windows.

        sample: Tensor of shape (B, W, D), noisy motion in normalised units.
        t: Tensor of shape (B,) long. audio: Tensor of shape (B, W, C).
        prev: Tensor of shape (B, K, D), normalised. controls: Tensor of shape
        (B, W, E), the control state per frame (controls.CONTROL_NAMES).
        drop_audio: None, Tensor of shape (B,) or (B, W) bool (per frame: not heard).
        drop_prev, drop_controls: None or Tensor of shape (B,) bool.
        Returns Tensor of shape (B, W, D).
        """
        self._check(sample, audio, prev, controls)
        k, w = prev.shape[1], sample.shape[1]
        audio = _choose(drop_audio, self.null_audio, audio)
        time = self.time_mlp(_timestep_embedding(t, self.config.d_model))  # BxDm
        ctrl = _choose(drop_controls, self.null_controls, self.controls_mlp(controls))  # BxWxDm
        prefix = _choose(drop_prev, self.null_prefix, self.prefix_in(prev))  # BxKxDm
        window = self.motion_in(sample) + self.audio_in(audio) + ctrl  # BxWxDm
        tokens = torch.cat([prefix, window], dim=1) + time[:, None]  # Bx(K+W)xDm
        start = self.config.max_prefix - k  # the prefix always ends just before the window
        tokens = tokens + self.position[start : start + k + w]
        hidden = self.transformer(tokens)[:, k:]  # BxWxDm
        return self.out(self.out_norm(hidden))


class MotionNormalizer:
    """Per-channel affine map between motion units and the network's unit space.

    mean, std: arrays of shape (D,); identity by default. Fit with `from_data`.
    """

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        self.mean = np.zeros(ms.MOTION_DIM, np.float32) if mean is None else np.asarray(mean)
        self.std = np.ones(ms.MOTION_DIM, np.float32) if std is None else np.asarray(std)
        if self.mean.shape != (ms.MOTION_DIM,) or self.std.shape != (ms.MOTION_DIM,):
            raise ValueError(f"mean and std must have shape ({ms.MOTION_DIM},)")

    @classmethod
    def from_data(cls, motion: np.ndarray, min_std: float = 1e-3) -> MotionNormalizer:
        """Fit on motion of shape (N, D); the std floor keeps constant channels finite."""
        flat = np.asarray(motion, np.float32).reshape(-1, ms.MOTION_DIM)
        return cls(flat.mean(0), np.maximum(flat.std(0), min_std).astype(np.float32))

    def normalize(self, motion: np.ndarray) -> np.ndarray:
        """motion (..., D) in motion units -> (..., D) in unit space."""
        return ((motion - self.mean) / self.std).astype(np.float32)

    def denormalize(self, unit: np.ndarray) -> np.ndarray:
        """unit (..., D) -> (..., D) in motion units."""
        return (unit * self.std + self.mean).astype(np.float32)


def diffusion_loss(
    denoiser: Callable[..., torch.Tensor],
    scheduler: DDIMScheduler,
    x0: torch.Tensor,
    audio: torch.Tensor,
    prev: torch.Tensor,
    controls: torch.Tensor,
    generator: torch.Generator | None = None,
    p_drop: float = 0.1,
    p_stream: float = 0.0,
    channel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between predicted and true v at a random timestep per row; a scalar Tensor.

    x0: Tensor of shape (B, W, D), normalised. audio (B, W, C), prev (B, K, D),
    controls (B, W, E). Each condition is dropped with probability p_drop per
    row, independently, so the nulls learn to serve guidance. With probability
    p_stream a row hears only its first N frames (N uniform in 1..W): the rest
    get null audio, as when the sampler streams. channel_weights (D,) > 0 weigh
    each motion channel's squared error, divided by their mean so that the loss
    keeps its scale: weighting a channel up trains it at the others' expense.
    """
    b, w = x0.shape[:2]
    t = torch.randint(0, scheduler.num_train_timesteps, (b,), generator=generator)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    drops = [torch.rand(b, generator=generator) < p_drop for _ in range(3)]
    heard = torch.randint(1, w + 1, (b,), generator=generator)
    heard[torch.rand(b, generator=generator) >= p_stream] = w
    unheard = torch.arange(w)[None] >= heard[:, None]  # BxW
    drop_audio = (unheard | drops[0][:, None]).to(x0.device)
    drop_rest = [d.to(x0.device) for d in drops[1:]]
    t = t.to(x0.device)
    x_t = scheduler.add_noise(x0, noise, t)
    out = denoiser(x_t, t, audio, prev, controls, drop_audio, *drop_rest)
    target = scheduler.training_target(x0, noise, t)
    if channel_weights is None:
        return nn.functional.mse_loss(out, target)
    weights = channel_weights.to(out)
    return ((out - target).square() * weights).mean() / weights.mean()


class MotionSampler:
    """Streaming sampler: one call per window, emitting the frames heard so far.

    Holds the scheduler, the denoiser (any callable with MotionDenoiser's forward
    signature, so its backend can be swapped), guidance scales, a seeded
    generator and the last K emitted frames (continuity). Guidance batches three
    rows in one forward: full condition, audio only (controls null) and
    unconditional (audio and controls null):
    out = uncond + s_audio * (audio_only - uncond) + s_controls * (full - audio_only).
    With s_audio == s_controls == s this is uncond + s * (full - uncond).
    """

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        scheduler: DDIMScheduler | None = None,
        normalizer: MotionNormalizer | None = None,
        window: int = 8,
        prefix: int = 8,
        num_steps: int = 4,
        audio_scale: float | np.ndarray = 2.0,
        controls_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        if window < 1 or prefix < 1:
            raise ValueError("window and prefix must be >= 1 frame")
        self.denoiser = denoiser
        self.scheduler = scheduler or DDIMScheduler()
        self.scheduler.set_timesteps(num_steps)
        self.normalizer = normalizer or MotionNormalizer()
        self.window, self.prefix = window, prefix
        # A scalar, or one scale per motion channel (D,): guidance can sharpen the
        # lips, which audio fixes, without amplifying head motion, which it only suggests.
        self.audio_scale = torch.as_tensor(np.asarray(audio_scale, np.float32))
        self.controls_scale = controls_scale
        self.generator = torch.Generator()
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Start a new stream: forget the history and reseed the noise."""
        self.generator.manual_seed(seed)
        self._history: torch.Tensor | None = None  # 1xKxD, normalised

    def _guided(self, x: torch.Tensor, t: int, cond: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One guided v prediction for x (1, W, D)."""
        audio, prev, controls = cond
        out = self.denoiser(
            x.expand(3, -1, -1),
            torch.full((3,), t, dtype=torch.long),
            audio.expand(3, -1, -1),
            prev.expand(3, -1, -1),
            controls.expand(3, -1, -1),
            torch.tensor([False, False, True]),  # drop_audio
            torch.tensor([self._history is None] * 3),  # drop_prev
            torch.tensor([False, True, True]),  # drop_controls
        )
        full_out, audio_only, uncond = out[0:1], out[1:2], out[2:3]
        guided = uncond + self.audio_scale * (audio_only - uncond)
        return guided + self.controls_scale * (full_out - audio_only)

    @torch.no_grad()
    def sample_window(
        self, audio_embedding: torch.Tensor, controls: np.ndarray | None = None
    ) -> np.ndarray:
        """Motion for the N frames heard: array of shape (N, D), clipped to motion ranges.

        audio_embedding: Tensor of shape (1, N, C), 1 <= N <= W, the encoder's rows
        for the next N frames. controls: control states of shape (N, E) (None:
        neutral controls). The window is padded to W with unheard frames whose
        audio and controls hold the last heard frame's; the N emitted frames
        condition the next call.
        """
        if audio_embedding.dim() != 3 or audio_embedding.shape[0] != 1:
            raise ValueError("audio_embedding must be (1, N, C)")
        n, w = audio_embedding.shape[1], self.window
        if not 1 <= n <= w:
            raise ValueError(f"audio_embedding holds {n} frames; give 1 to {w} (the window)")
        states = _control_states(controls, n)  # NxE
        audio = torch.zeros(1, w, audio_embedding.shape[2])
        audio[:, :n] = audio_embedding.float()
        # Frames not heard yet get the last heard frame's audio: "the sound goes on".
        # Null audio there (as training masks it) works too, but then the sampler
        # plans for speech that may or may not come, and a face streamed one frame
        # at a time in silence sways about twice as fast (bench_motion measures it).
        audio[:, n:] = audio_embedding[:, -1:].float()
        states = torch.cat([states, states[-1:].expand(w - n, -1)])[None]  # 1xWxE
        prev = self._history
        if prev is None:  # first window: the prefix is masked to null, its values unused
            prev = torch.zeros(1, self.prefix, ms.MOTION_DIM)
        cond = (audio, prev, states)
        x = torch.randn((1, w, ms.MOTION_DIM), generator=self.generator)
        for t in self.scheduler.timesteps.tolist():
            x = self.scheduler.step(self._guided(x, t, cond), t, x, self.generator)
        motion = ms.clip_motion(self.normalizer.denormalize(x[0, :n].numpy()))  # NxD
        unit = torch.from_numpy(self.normalizer.normalize(motion))[None]  # 1xNxD
        if self._history is None:  # as in training: the stream starts edge-padded
            self._history = unit[:, :1].expand(-1, self.prefix, -1)
        self._history = torch.cat([self._history, unit], dim=1)[:, -self.prefix :]
        return motion


def _control_states(controls: np.ndarray | None, n: int) -> torch.Tensor:
    """Control states (N, E) as a float32 Tensor; None means neutral controls."""
    if controls is None:
        return torch.from_numpy(control_state(Controls()).astype(np.float32)).expand(n, -1)
    states = torch.as_tensor(np.asarray(controls, np.float32))
    if states.shape != (n, CONTROL_DIM):
        raise ValueError(f"controls must be ({n}, {CONTROL_DIM}), got {tuple(states.shape)}")
    return states


@dataclass(frozen=True)
class MotionModel:
    """A loaded checkpoint, ready to sample: modules in eval mode, the window it was trained on."""

    encoder: AudioEncoder
    denoiser: MotionDenoiser
    normalizer: MotionNormalizer
    config: MotionModelConfig
    meta: dict[str, object]
    path: Path

    @property
    def window(self) -> int:
        return int(self.meta.get("window", 8))  # type: ignore[call-overload]

    @property
    def prefix(self) -> int:
        return int(self.meta.get("prefix", 8))  # type: ignore[call-overload]

    @property
    def fps(self) -> float:
        return float(self.meta.get("fps", 25.0))  # type: ignore[arg-type]
