"""The data that flows between stages, in order.

AudioChunk -> AudioFeatures -> MotionWindow -> Frame, each stamped with a
presentation time (pts, in units of 1/rate) so every stage can be checked for
monotonic time. Control events travel on a separate, higher-priority path.

Dimension names used in every docstring: T = video frames, S = audio
samples, F = feature size, D = motion dimension (engines.motion.space.MOTION_DIM),
H, W = image height and width, B = batch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "AudioChunk",
    "AudioFeatures",
    "MotionWindow",
    "Frame",
    "ControlKind",
    "ControlEvent",
]


@dataclass(frozen=True)
class AudioChunk:
    """Mono PCM.

    samples: float32 array of shape (S,), in [-1, 1].
    pts: index of the first sample since the stream started, in samples.
    """

    samples: np.ndarray
    sample_rate: int
    pts: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"AudioChunk.samples must be (S,), got shape {self.samples.shape}")
        if self.samples.dtype != np.float32:
            raise ValueError(f"AudioChunk.samples must be float32, got {self.samples.dtype}")

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class AudioFeatures:
    """Per-video-frame audio features.

    values: float32 array of shape (T, F), one row per video frame.
    pts: index of the first row's video frame since the stream started.
    """

    values: np.ndarray
    fps: float
    pts: int
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise ValueError(f"AudioFeatures.values must be (T, F), got shape {self.values.shape}")

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class MotionWindow:
    """Consecutive motion frames.

    values: float32 array of shape (T, D), D == MOTION_DIM, laid out as in engines.motion.space.
    pts: video frame index of the first row.
    """

    values: np.ndarray
    fps: float
    pts: int

    def __post_init__(self) -> None:
        from .motion.space import MOTION_DIM  # here: engines.motion's modules import this one

        if self.values.ndim != 2 or self.values.shape[1] != MOTION_DIM:
            raise ValueError(
                f"MotionWindow.values must be (T, {MOTION_DIM}), got shape {self.values.shape}"
            )

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class Frame:
    """One video frame of a stream.

    rgb: uint8 array of shape (H, W, 3), or None when the caller chose not to draw it
        (too late to show, or nobody watching): its motion was made, its pixels not.
    pts: video frame index since the stream started.
    render_s: seconds the renderer took for it (0 when not drawn).
    """

    rgb: np.ndarray | None
    fps: float
    pts: int
    render_s: float = 0.0

    @property
    def time_s(self) -> float:
        return self.pts / self.fps


class ControlKind(enum.Enum):
    INTERRUPT = "interrupt"  # drop queued speech now, return to idle
    FLUSH = "flush"  # end of utterance: emit what is buffered without waiting for look-ahead
    SET_CONTROLS = "set_controls"  # gaze, head distance, emotion


@dataclass(frozen=True)
class ControlEvent:
    kind: ControlKind
    values: dict[str, float] = field(default_factory=dict)
