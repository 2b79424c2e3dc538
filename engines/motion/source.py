"""Motion sources: 16 kHz speech in, motion frames at the output rate out, controls live.

One interface for the procedural baseline and the learned sampler, so the live
session and the offline renderer do not care which one drives the face:

- push(chunk) takes the next audio and returns the motion frames that audio
  completed (possibly none, possibly several); pts count output frames from 0.
- flush() ends the stream: the frames still held back for look-ahead.
- set_controls / controls: gaze, head distance and emotion, eased frame by frame.
- latency_s: how long after a sound is heard its motion frame is available
  (the algorithmic floor: look-ahead of every stage, not compute time).
- rest_frame(): a motion vector for the face before any audio (lips together).
"""

from __future__ import annotations

import abc

import numpy as np

from ..types import AudioChunk, MotionWindow
from . import space as ms
from .controls import ControlMixer, Controls, apply_control_state, control_state

__all__ = ["MotionSource", "settled"]


class MotionSource(abc.ABC):
    """Speech in, motion out, at `fps` output frames per second; see the module docstring."""

    def __init__(self, fps: float, control_fps: float | None = None) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.mixer = ControlMixer(control_fps or fps)  # eases at the rate frames are made

    @property
    def controls(self) -> Controls:
        return self.mixer.controls

    def set_controls(self, controls: Controls) -> None:
        """New controls, eased in from the next frame."""
        self.mixer.set(controls)

    @property
    @abc.abstractmethod
    def latency_s(self) -> float: ...

    @abc.abstractmethod
    def push(self, chunk: AudioChunk) -> MotionWindow: ...

    @abc.abstractmethod
    def flush(self) -> MotionWindow: ...

    def rest_frame(self) -> np.ndarray:
        """The face at rest with the current controls: float32 array of shape (D,)."""
        return settled(ms.neutral_motion()[None], self.controls)


def settled(motion: np.ndarray, controls: Controls) -> np.ndarray:
    """One frame (1, D) with controls fully eased in: float32 array of shape (D,)."""
    return apply_control_state(motion, control_state(controls)[None])[0]
