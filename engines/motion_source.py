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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import motion_space as ms
from .audio_features import AudioFeatureConfig, AudioFeatureExtractor
from .baseline import BaselineConfig, ProceduralMotionSource
from .controls import ControlMixer, Controls, apply_control_state, control_state
from .types import AudioChunk, AudioFeatures, MotionWindow

if TYPE_CHECKING:  # engines.stages loads torch and the renderer; the baseline needs neither
    from .stages import BackendConfig

__all__ = ["MOTION_KINDS", "MotionConfig", "MotionSource", "BaselineMotion", "open_motion_source"]

MOTION_KINDS: tuple[str, ...] = ("learned", "baseline")


@dataclass(frozen=True)
class MotionConfig:
    """Which motion source drives the face, and its settings.

    kind: "learned" (the diffusion sampler, default) or "baseline" (procedural).
    checkpoint: a `facecast train` checkpoint; None takes the one shipped in
    engines/assets. heard_frames: frames the sampler emits per call, from the
    audio heard so far (1 = least latency; offline rendering uses the whole
    window). num_steps: sampler steps. Classifier-free guidance scales:
    mouth_audio_scale on the mouth channels (speech fixes the lips: strong
    guidance makes closures and openings decisive), audio_scale on every other
    channel (speech only suggests head and brow motion: strong guidance there
    makes it jittery), controls_scale on the controls. blink_process: lay the
    baseline's seeded blinks over the learned eyelids (the sampler alone blinks
    at about half a person's rate).
    """

    kind: str = "learned"
    checkpoint: Path | None = None
    heard_frames: int = 1
    num_steps: int = 4
    audio_scale: float = 1.0
    mouth_audio_scale: float = 4.0
    controls_scale: float = 1.0
    blink_process: bool = True
    features: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        if self.kind not in MOTION_KINDS:
            raise ValueError(f"motion kind must be one of {', '.join(MOTION_KINDS)}")
        if self.heard_frames < 1:
            raise ValueError(f"heard_frames must be >= 1, got {self.heard_frames}")


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
        return _settled(ms.neutral_motion()[None], self.controls)


class BaselineMotion(MotionSource):
    """The procedural baseline over audio features at the output rate; controls mixed after."""

    def __init__(self, config: MotionConfig, fps: float, seed: int = 0) -> None:
        super().__init__(fps)
        self.extractor = AudioFeatureExtractor(config.features, fps)
        self.source = ProceduralMotionSource(config.baseline, fps, seed=seed)

    @property
    def latency_s(self) -> float:
        return self.extractor.latency_s

    def push(self, chunk: AudioChunk) -> MotionWindow:
        return self._motion(self.extractor.push(chunk))

    def flush(self) -> MotionWindow:
        return self._motion(self.extractor.flush())

    def _motion(self, features: AudioFeatures) -> MotionWindow:
        return self.mixer.apply(self.source.step(features))

    def rest_frame(self) -> np.ndarray:
        """The baseline's own first idle frame, controls applied (does not advance it)."""
        idle = ProceduralMotionSource(self.source.config, self.fps, seed=0).idle(1)
        return _settled(idle.values, self.controls)


def _settled(motion: np.ndarray, controls: Controls) -> np.ndarray:
    """One frame (1, D) with controls fully eased in: float32 array of shape (D,)."""
    return apply_control_state(motion, control_state(controls)[None])[0]


def open_motion_source(
    config: MotionConfig, fps: float, seed: int = 0, backend: BackendConfig | None = None
) -> MotionSource:
    """The source config.kind names; the learned one loads its checkpoint once per process
    and runs its networks on backend (default torch-cpu). The baseline has no network."""
    if config.kind == "baseline":
        return BaselineMotion(config, fps, seed)
    from .learned_motion import LearnedMotion  # imports this module: resolved at call time

    return LearnedMotion(config, fps, seed, backend=backend)
