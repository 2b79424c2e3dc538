"""Which motion source drives the face, and its settings (one frozen dataclass)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..audio.features import AudioFeatureConfig
from .baseline import BaselineConfig

__all__ = ["MOTION_KINDS", "MotionConfig"]

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
