"""The motion space: the one contract between motion sources and the renderer.

One float32 vector per video frame, relative to the portrait's own neutral:
pose, then expression coefficients named after ARKit blendshapes, then gaze.
ARKit names let the same stream drive 3D rigs as well as the photo. Every
producer and consumer (baseline, sampler, renderer, training data, export,
data channel) indexes vectors through this module and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "POSE_NAMES",
    "EXPRESSION_NAMES",
    "GAZE_NAMES",
    "MOTION_NAMES",
    "MOTION_DIM",
    "MOUTH_CHANNELS",
    "MotionRange",
    "MOTION_RANGES",
    "index_of",
    "neutral_motion",
    "clip_motion",
    "motion_to_dict",
    "motion_from_dict",
]

# Radians for rotations; tx, ty as a fraction of face width; scale is head
# distance where 1.0 is as in the portrait and larger is closer.
POSE_NAMES: tuple[str, ...] = ("headYaw", "headPitch", "headRoll", "headTx", "headTy", "headScale")

# A subset of the 52 ARKit blendshapes: the ones a talking portrait needs and
# the renderer implements. "Left" is the subject's left (image right), as in ARKit.
EXPRESSION_NAMES: tuple[str, ...] = (
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeWideLeft",
    "eyeWideRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "browInnerUp",
    "browDownLeft",
    "browDownRight",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekSquintLeft",
    "cheekSquintRight",
    "noseSneerLeft",
    "noseSneerRight",
)

# Radians; positive yaw looks to the subject's left, positive pitch looks up.
GAZE_NAMES: tuple[str, ...] = ("gazeYaw", "gazePitch")

MOTION_NAMES: tuple[str, ...] = POSE_NAMES + EXPRESSION_NAMES + GAZE_NAMES
MOTION_DIM: int = len(MOTION_NAMES)

# The channels speech drives directly (what the viseme targets write, what the
# sampler guides hardest by the audio, what is never smoothed), grouped as the
# viseme table groups them: jaw, closure, rounding, spreading, teeth.
MOUTH_CHANNELS: tuple[str, ...] = (
    "jawOpen",
    "mouthClose",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthFunnel",
    "mouthPucker",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
)

_INDEX = {name: i for i, name in enumerate(MOTION_NAMES)}


@dataclass(frozen=True)
class MotionRange:
    low: float
    high: float
    neutral: float


def _ranges() -> dict[str, MotionRange]:
    ranges = {
        "headYaw": MotionRange(-0.6, 0.6, 0.0),
        "headPitch": MotionRange(-0.5, 0.5, 0.0),
        "headRoll": MotionRange(-0.5, 0.5, 0.0),
        "headTx": MotionRange(-0.5, 0.5, 0.0),
        "headTy": MotionRange(-0.5, 0.5, 0.0),
        "headScale": MotionRange(0.6, 1.5, 1.0),
        "gazeYaw": MotionRange(-0.6, 0.6, 0.0),
        "gazePitch": MotionRange(-0.5, 0.5, 0.0),
    }
    for name in EXPRESSION_NAMES:
        ranges[name] = MotionRange(0.0, 1.0, 0.0)
    return ranges


MOTION_RANGES: dict[str, MotionRange] = _ranges()
_LOW = np.array([MOTION_RANGES[n].low for n in MOTION_NAMES], dtype=np.float32)
_HIGH = np.array([MOTION_RANGES[n].high for n in MOTION_NAMES], dtype=np.float32)
_NEUTRAL = np.array([MOTION_RANGES[n].neutral for n in MOTION_NAMES], dtype=np.float32)


def index_of(name: str) -> int:
    """Position of a named channel in the motion vector; KeyError names the valid ones."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(
            f"unknown motion channel {name!r}; valid names: {', '.join(MOTION_NAMES)}"
        ) from None


def neutral_motion(num_frames: int | None = None) -> np.ndarray:
    """The portrait as it is: array of shape (D,) or (T, D), float32."""
    if num_frames is None:
        return _NEUTRAL.copy()
    return np.tile(_NEUTRAL, (num_frames, 1))


def clip_motion(motion: np.ndarray) -> np.ndarray:
    """Clamp every channel into its documented range; shape (..., D) is kept."""
    if motion.shape[-1] != MOTION_DIM:
        raise ValueError(f"motion has {motion.shape[-1]} channels, expected {MOTION_DIM}")
    return np.clip(motion, _LOW, _HIGH).astype(np.float32, copy=False)


def motion_to_dict(motion: np.ndarray) -> dict[str, float]:
    """One frame of shape (D,) as {name: value}, e.g. for a data channel or JSON."""
    if motion.shape != (MOTION_DIM,):
        raise ValueError(f"expected one frame of shape ({MOTION_DIM},), got {motion.shape}")
    return {name: float(v) for name, v in zip(MOTION_NAMES, motion, strict=True)}


def motion_from_dict(values: dict[str, float]) -> np.ndarray:
    """Inverse of motion_to_dict; channels not given stay neutral."""
    motion = neutral_motion()
    for name, value in values.items():
        motion[index_of(name)] = value
    return motion
