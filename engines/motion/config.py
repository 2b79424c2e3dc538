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
    guidance makes closures and openings decisive); nod_audio_scale on
    headPitch and brow_audio_scale on the brow raises (the data engine ties
    nods, the head's pitch level and brow raises to the speech's accents and F0;
    at guidance 1 the seed set most of the pitch path, so two clips on one seed
    shared it at r ~0.4, while at 3 one clip on two seeds agrees at r ~0.8 and
    two clips on one seed are no more alike than on two seeds: bench_prosody;
    more guidance does not buy more nods: at 5 and 8 the share of accents
    followed by one stays at 1.65x and 1.72x chance, against 1.70x at 3, while
    one clip on two seeds agrees at only r 0.19 and 0.51, so the nods the model
    misses are not in its audio-conditioned output to amplify);
    audio_scale on every other channel (which way a phrase turns the head is
    not in the speech, the data engine draws it, so guiding yaw and roll only
    shrinks the turns and makes them jittery); controls_scale on the controls.
    blink_process: lay the baseline's seeded blinks over the learned eyelids
    (the sampler alone blinks at about half a person's rate).
    """

    kind: str = "learned"
    checkpoint: Path | None = None
    heard_frames: int = 1
    num_steps: int = 4
    audio_scale: float = 1.0
    mouth_audio_scale: float = 4.0
    nod_audio_scale: float = 3.0
    brow_audio_scale: float = 2.0
    controls_scale: float = 1.0
    blink_process: bool = True
    features: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        if self.kind not in MOTION_KINDS:
            raise ValueError(f"motion kind must be one of {', '.join(MOTION_KINDS)}")
        if self.heard_frames < 1:
            raise ValueError(f"heard_frames must be >= 1, got {self.heard_frames}")
