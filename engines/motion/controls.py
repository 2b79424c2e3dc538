"""Live viewer controls (gaze, head distance, emotion) applied on top of any motion source.

Controls is the value a viewer sets; ControlMixer blends it into MotionWindows
frame by frame. Every control eases through a critically damped spring, so a
slider dragged or flicked never makes the face jump (no step in position and
none in velocity), and the spring state lives in the mixer frame by frame,
so the result does not depend on how the stream is chunked. The learned
sampler takes the same Controls as conditioning.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import InvalidControlsError
from ..types import MotionWindow
from . import space as ms

__all__ = [
    "CONTROL_DIM",
    "CONTROL_NAMES",
    "EMOTIONS",
    "EMOTION_OFFSETS",
    "Controls",
    "ControlMixer",
    "apply_control_state",
    "control_state",
]

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "surprised", "angry")

# Offsets added to the source's expression at strength 1, then clipped. Moderate on
# purpose: speech still has to read on top, and a caricature looks worse than too little.
# jawOpen/mouthClose are only ever added to, so the speech's lip closures survive.
EMOTION_OFFSETS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"mouthSmile": 0.7, "mouthStretch": 0.2, "cheekSquint": 0.6, "eyeSquint": 0.3},
    "sad": {"browInnerUp": 0.75, "browDown": 0.3, "mouthFrown": 0.75, "eyeBlink": 0.15},
    "surprised": {"browInnerUp": 0.8, "browOuterUp": 0.8, "eyeWide": 0.7, "jawOpen": 0.1},
    "angry": {
        "browDown": 1.0,
        "noseSneer": 0.6,
        "eyeSquint": 0.6,
        "mouthPress": 0.6,
        "mouthFrown": 0.25,
    },
}

_GAZE_KEEP = 0.3  # share of the source's own saccades kept under a gaze target: eyes stay alive
_HEAD_FOLLOW = 0.25  # people turn the head a little toward where they look
# Upper lids follow vertical gaze; without it an upward look hides the iris under the lid.
_LID_RAISE, _LID_LOWER = 2.0, 0.6  # eyeWide per radian up, eyeBlink per radian down
_DISTANCE_RANGE = (0.7, 1.4)
_SETTLE = 4.744  # (1 + x) e^-x = 0.05: a critically damped spring is 95% there after ease_s
_SNAP = 1e-6  # below this the spring sits exactly on its target, so neutral stays bit-exact

_YAW, _PITCH = ms.index_of("gazeYaw"), ms.index_of("gazePitch")
_HEAD_YAW, _HEAD_PITCH = ms.index_of("headYaw"), ms.index_of("headPitch")
_SCALE = ms.index_of("headScale")
_WIDE = [ms.index_of("eyeWideLeft"), ms.index_of("eyeWideRight")]
_BLINK = [ms.index_of("eyeBlinkLeft"), ms.index_of("eyeBlinkRight")]


def _number(name: str, value: object, low: float, high: float) -> float:
    """value as a float in [low, high], or ValueError naming the field."""
    # numbers.Real also takes numpy scalars; bool is a Real too but never a slider value.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidControlsError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise InvalidControlsError(f"{name} must be in [{low}, {high}], got {value!r}")
    return number


@dataclass(frozen=True)
class Controls:
    """What the viewer asks for; None gaze means the motion source decides."""

    gaze_yaw: float | None = None  # radians, positive = subject's left, as in motion_space
    gaze_pitch: float | None = None  # radians, positive = up
    head_distance: float = 1.0  # multiplies headScale; > 1 is closer (bigger head)
    emotion: str = "neutral"  # one of EMOTIONS
    emotion_strength: float = 1.0  # 0..1

    def __post_init__(self) -> None:
        # Values arrive from JSON: normalise ints to floats so to_dict round-trips cleanly.
        for name, channel in (("gaze_yaw", "gazeYaw"), ("gaze_pitch", "gazePitch")):
            value = getattr(self, name)
            if value is not None:
                limits = ms.MOTION_RANGES[channel]
                object.__setattr__(self, name, _number(name, value, limits.low, limits.high))
        distance = _number("head_distance", self.head_distance, *_DISTANCE_RANGE)
        object.__setattr__(self, "head_distance", distance)
        strength = _number("emotion_strength", self.emotion_strength, 0.0, 1.0)
        object.__setattr__(self, "emotion_strength", strength)
        if self.emotion not in EMOTIONS:
            raise InvalidControlsError(
                f"emotion must be one of {', '.join(EMOTIONS)}, got {self.emotion!r}"
            )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, object], base: Controls | None = None) -> Controls:
        """Partial update over base (default Controls()); an explicit None gaze clears it."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise InvalidControlsError(
                f"unknown control(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
            )
        merged = {**(base or cls()).to_dict(), **values}
        return cls(**merged)  # type: ignore[arg-type]


# The eased control state, one float per name: what ControlMixer springs, what the
# learned sampler is conditioned on frame by frame, and what training mixes into its
# targets. Gaze weight 0 = the source's own gaze, 1 = the target; emotion weights are
# strengths per emotion (neutral has none), so a switch between emotions eases linearly.
CONTROL_NAMES: tuple[str, ...] = (
    "gazeWeightYaw",
    "gazeWeightPitch",
    "gazeTargetYaw",
    "gazeTargetPitch",
    "headDistance",
    *(f"emotion{name.capitalize()}" for name in EMOTIONS[1:]),
)
CONTROL_DIM = len(CONTROL_NAMES)
_EMOTION_SLICE = slice(5, CONTROL_DIM)


def _offset_matrix() -> np.ndarray:
    """Expression offset per unit of each emotion weight: array of shape (emotions, D)."""
    matrix = np.zeros((len(EMOTIONS) - 1, ms.MOTION_DIM))
    for row, emotion in enumerate(EMOTIONS[1:]):
        for stem, amount in EMOTION_OFFSETS[emotion].items():
            names = [stem] if stem in ms.MOTION_RANGES else [stem + "Left", stem + "Right"]
            for name in names:
                matrix[row, ms.index_of(name)] = amount
    return matrix


_EMOTION_OFFSETS = _offset_matrix()


def control_state(controls: Controls) -> np.ndarray:
    """The state the springs settle at for controls: float64 array of shape (E,)."""
    state = np.zeros(CONTROL_DIM)
    for axis, value in enumerate((controls.gaze_yaw, controls.gaze_pitch)):
        state[axis], state[2 + axis] = (0.0, 0.0) if value is None else (1.0, value)
    state[4] = controls.head_distance
    if controls.emotion != "neutral":
        state[5 + EMOTIONS.index(controls.emotion) - 1] = controls.emotion_strength
    return state


def apply_control_state(values: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Mix per-frame control states (T, E) into motion (T, D); returns (T, D), clipped.

    The one definition of what a control does to motion: the live mixer, the
    training targets of the learned sampler and its evaluation all use it.
    """
    values = np.asarray(values, dtype=np.float64)
    states = np.asarray(states, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != ms.MOTION_DIM:
        raise ValueError(f"values must be (T, {ms.MOTION_DIM}), got {values.shape}")
    if states.shape != (len(values), CONTROL_DIM):
        raise ValueError(f"states must be ({len(values)}, {CONTROL_DIM}), got {states.shape}")
    out = values.copy()  # TxD
    weight = np.clip(states[:, 0:2], 0.0, 1.0)  # Tx2
    target = states[:, 2:4]  # Tx2
    gaze = out[:, [_YAW, _PITCH]]
    out[:, [_YAW, _PITCH]] = gaze + weight * (target + _GAZE_KEEP * gaze - gaze)
    steer = weight * target  # the controlled part of (yaw, pitch), Tx2
    out[:, [_HEAD_YAW, _HEAD_PITCH]] += _HEAD_FOLLOW * steer
    out[:, _WIDE] += _LID_RAISE * np.maximum(steer[:, 1:2], 0.0)
    out[:, _BLINK] += _LID_LOWER * np.maximum(-steer[:, 1:2], 0.0)
    out[:, _SCALE] *= states[:, 4]
    out += states[:, _EMOTION_SLICE] @ _EMOTION_OFFSETS  # zero outside the expression channels
    return ms.clip_motion(out.astype(np.float32))


class ControlMixer:
    """Eases Controls frame by frame, so a slider never makes the face jump.

    One critically damped spring per entry of the control state (CONTROL_NAMES).
    `advance(n)` gives the eased states of the next n frames (what the learned
    sampler is conditioned on); `apply(window)` advances and mixes them into a
    window of source motion (what a source without control inputs gets).
    """

    def __init__(self, fps: float, ease_s: float = 0.3) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if not ease_s >= 0:
            raise ValueError(f"ease_s must be >= 0 (0 switches without easing), got {ease_s}")
        self.fps = float(fps)
        self.ease_s = float(ease_s)
        self._controls = Controls()
        # Eased state per control channel: target, position, velocity (E,) each.
        self._target: np.ndarray
        self._x: np.ndarray
        self._v: np.ndarray
        self.reset()

    @property
    def controls(self) -> Controls:
        return self._controls

    def set(self, controls: Controls) -> None:
        """New target; takes effect from the next frame, eased over about ease_s."""
        target = control_state(controls)
        for axis, name in enumerate(("gaze_yaw", "gaze_pitch")):
            if getattr(controls, name) is None:
                # Cleared: keep the last target and fade only the weight, so the eyes go
                # straight back to the source's gaze instead of sweeping through centre.
                target[2 + axis] = self._target[2 + axis]
            elif abs(self._x[axis]) < _SNAP and abs(self._v[axis]) < _SNAP:
                # Off and faded out: jump to the new target unseen rather than sweep to it.
                self._x[2 + axis], self._v[2 + axis] = target[2 + axis], 0.0
        self._controls, self._target = controls, target

    def reset(self) -> None:
        """Snap to the current controls without easing, e.g. at session start."""
        self._target = control_state(self._controls)
        self._x = self._target.copy()
        self._v = np.zeros_like(self._x)

    def advance(self, num_frames: int) -> np.ndarray:
        """The eased states of the next num_frames frames: float32 array of shape (T, E)."""
        states = np.empty((num_frames, CONTROL_DIM))
        for row in states:
            self._step()
            row[:] = self._x
        return states.astype(np.float32)

    def apply(self, window: MotionWindow) -> MotionWindow:
        """Controls over window.values (array of shape (T, D)); same T, pts and fps, clipped."""
        if not math.isclose(window.fps, self.fps):
            raise ValueError(f"window is at {window.fps} fps, this mixer at {self.fps} fps")
        mixed = apply_control_state(window.values, self.advance(len(window)))
        return MotionWindow(mixed, window.fps, window.pts)

    def _step(self) -> None:
        """Advance every spring by one frame (exact critically damped solution)."""
        if self.ease_s == 0.0:
            self._x, self._v = self._target.copy(), np.zeros_like(self._v)
            return
        w, dt = _SETTLE / self.ease_s, 1.0 / self.fps
        decay = math.exp(-w * dt)
        error = self._x - self._target
        drive = self._v + w * error
        self._x = self._target + (error + drive * dt) * decay
        self._v = (self._v - w * drive * dt) * decay
        settled = (np.abs(self._x - self._target) < _SNAP) & (np.abs(self._v) < _SNAP)
        self._x[settled], self._v[settled] = self._target[settled], 0.0
