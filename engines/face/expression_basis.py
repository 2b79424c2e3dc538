"""Expression basis: how each ARKit-named coefficient moves the 478 landmarks of one face.

Each coefficient at 1.0 displaces landmarks by a smooth field defined in a
face-aligned frame (u: towards the subject's left eye, v: down the face,
unit s ~ the inter-ocular distance), so the same definitions fit any portrait
and any head roll. The renderer sums coefficient x basis, then applies pose.

Eye blinks are not here: the renderer closes the lids in output space,
which needs no inverse of a collapsing warp.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..motion.space import EXPRESSION_NAMES
from . import landmarks as fl

__all__ = [
    "FaceFrame",
    "face_frame",
    "build_expression_basis",
    "lips_together",
    "UPPER_LIP_RINGS",
    "LOWER_LIP_RINGS",
]


class FaceFrame:
    """Landmarks expressed in the face-aligned frame, plus named regions."""

    def __init__(self, landmarks: np.ndarray) -> None:
        pts = landmarks[:, :2].astype(np.float64)
        eye_r = pts[list(fl.RIGHT_EYE_UPPER + fl.RIGHT_EYE_LOWER)].mean(0)
        eye_l = pts[list(fl.LEFT_EYE_UPPER + fl.LEFT_EYE_LOWER)].mean(0)
        self.u = (eye_l - eye_r) / np.linalg.norm(eye_l - eye_r)
        self.v = np.array([-self.u[1], self.u[0]])
        self.scale = float(np.linalg.norm(pts[152] - pts[10]) / 2.2)
        mouth = 0.5 * (pts[13] + pts[14])
        rel = (pts - mouth) / self.scale
        self.a = rel @ self.u  # (478,) across the face, 0 at the mouth centre
        self.b = rel @ self.v  # (478,) down the face, 0 on the lip line
        eye_rel = (0.5 * (eye_r + eye_l) - mouth) / self.scale
        self.eye_line = float(eye_rel @ self.v)
        self.mouth_half_width = float(abs((pts[291] - pts[61]) @ self.u) / (2 * self.scale))

    def to_pixels(self, du: np.ndarray, dv: np.ndarray, dz: np.ndarray) -> np.ndarray:
        """Face-frame displacements (each (478,), in units of s) -> (478, 3) pixels."""
        xy = (du[:, None] * self.u + dv[:, None] * self.v) * self.scale
        return np.concatenate([xy, (dz * self.scale)[:, None]], axis=1).astype(np.float32)


def face_frame(landmarks: np.ndarray) -> FaceFrame:
    return FaceFrame(landmarks)


def _smoothstep(lo: float | np.ndarray, hi: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _bump(f: FaceFrame, a0: float, b0: float, ra: float, rb: float) -> np.ndarray:
    """Gaussian weight (478,) around (a0, b0) in face units."""
    return np.exp(-(((f.a - a0) / ra) ** 2) - ((f.b - b0) / rb) ** 2)


def _indices_mask(indices: tuple[int, ...], exclude: tuple[int, ...] = ()) -> np.ndarray:
    mask = np.zeros(fl.NUM_LANDMARKS)
    mask[[i for i in indices if i not in exclude]] = 1.0
    return mask


_CORNERS = (61, 291, 78, 308)
# MediaPipe's lips are four contours plus two rings of points inside each lip
# (the lip's body between its outer and inner contours). A basis that moves a
# lip must move its rings with it: contours moving past still rings fold the
# mesh's lip triangles.
UPPER_LIP_RINGS = (
    76, 184, 74, 73, 72, 11, 302, 303, 304, 408, 306,
    62, 183, 42, 41, 38, 12, 268, 271, 272, 407, 292,
)  # fmt: skip
LOWER_LIP_RINGS = (77, 90, 180, 85, 16, 315, 404, 320, 307, 96, 89, 179, 86, 15, 316, 403, 319, 325)
_UPPER_LIP = _indices_mask(fl.LIPS_INNER_UPPER + fl.LIPS_OUTER_UPPER + UPPER_LIP_RINGS, _CORNERS)
_LOWER_LIP = _indices_mask(fl.LIPS_INNER_LOWER + fl.LIPS_OUTER_LOWER + LOWER_LIP_RINGS, _CORNERS)
_CORNER_MASK = _indices_mask(_CORNERS)
# How far the corners follow the jaw: where the upper and lower lip meet.
_CORNER_FOLLOW = 0.45
# The jaw's drop, in face units at coefficient 1, and the lift of the upper lip's middle.
_JAW_DROP = 0.3
_UPPER_LIFT = 0.02


def _across(f: FaceFrame) -> np.ndarray:
    """(478,) position across the mouth, -1 and +1 at the inner corners, clipped beyond.

    Each side is scaled by its own corner, so a turned head (mouth centre off
    the corners' midpoint) tapers both halves of the opening alike.
    """
    left, right = float(f.a[78]), float(f.a[308])
    scale = np.where(f.a < 0, max(-left, 1e-3), max(right, 1e-3))
    return np.clip(f.a / scale, -1.0, 1.0)


def _past_corners(f: FaceFrame) -> np.ndarray:
    """(478,) distance in face units beyond the outer corner on each side, 0 within."""
    left, right = float(f.a[61]), float(f.a[291])
    return np.maximum(np.maximum(left - f.a, f.a - right), 0.0)


def _contour_b(f: FaceFrame, contour: tuple[int, ...]) -> np.ndarray:
    """(478,) b of a lip contour at each landmark's a (the end values beyond the corners)."""
    a, b = f.a[list(contour)], f.b[list(contour)]
    order = np.argsort(a)
    return np.interp(f.a, a[order], b[order])


def _jaw_open(f: FaceFrame) -> np.ndarray:
    # Each lip moves as one body: all its points (contours and rings) at the same
    # place across the mouth follow the jaw alike, so a lip keeps its thickness.
    # The lower lip follows fully in the middle, the upper lip lifts a little
    # there and follows near the corners; both reach _CORNER_FOLLOW at the
    # corners, so the opening L - U = (1 - r^2)(1 + c r^2 + lift) tapers like a lens.
    r = _across(f)
    c, lift = _CORNER_FOLLOW, _UPPER_LIFT / _JAW_DROP
    lower = 1.0 - (1.0 - c) * r**2
    upper = c * r**4 - lift * (1.0 - r**2)
    # Skin around the lips: the mandible carries everything below the lower lip
    # (fading towards the hinge near the ears); above, the upper lip's motion
    # fades out. Beyond the corners both sides meet on the lip line, and the
    # corners' pull fades with the distance from them.
    past = _past_corners(f)
    lateral = 1.0 - _smoothstep(0.7, 1.6, np.abs(f.a))
    fade = np.exp(-((past / 0.25) ** 2))
    below = f.b - _contour_b(f, fl.LIPS_OUTER_LOWER)
    above = _contour_b(f, fl.LIPS_OUTER_UPPER) - f.b
    chin = lower * fade + (lateral - lower * fade) * _smoothstep(0.0, 0.15, below)
    cheek = upper * fade * (1.0 - _smoothstep(0.0, 0.15, above))
    line = f.b - 0.5 * (_contour_b(f, fl.LIPS_INNER_UPPER) + _contour_b(f, fl.LIPS_INNER_LOWER))
    side = _smoothstep(-0.01 - 0.5 * past, 0.01 + 0.5 * past, line)
    weight = cheek + (chin - cheek) * side
    weight = np.where(_LOWER_LIP > 0, lower, np.where(_UPPER_LIP > 0, upper, weight))
    weight = np.where(_CORNER_MASK > 0, c, weight)
    # The mouth narrows as it opens: the lips contract towards the middle (the
    # corners by 0.04), the skin around following less with distance.
    near = np.exp(-((np.maximum(np.maximum(below, above), past) / 0.1) ** 2))
    lips = np.maximum(_LOWER_LIP + _UPPER_LIP + _CORNER_MASK, 0.0) > 0
    du = -0.04 * r * np.where(lips, 1.0, near)
    return np.stack([du, _JAW_DROP * weight, 0.08 * np.maximum(weight, 0.0)])


def _taper(f: FaceFrame) -> np.ndarray:
    """(478,) 1 in the middle of the mouth, 0 at and beyond the corners: lens-shaped."""
    return 1.0 - _across(f) ** 2


def _mouth_close(f: FaceFrame) -> np.ndarray:
    # Closes what jawOpen opens while the jaw stays down: the lips meet again,
    # the corners (where they already meet) stay.
    taper = _taper(f)
    dv = (-0.22 * _LOWER_LIP + 0.03 * _UPPER_LIP) * taper
    return np.stack([np.zeros_like(dv), dv, np.zeros_like(dv)])


def _lip_region(f: FaceFrame) -> np.ndarray:
    return _bump(f, 0.0, 0.0, 1.3 * f.mouth_half_width, 0.35)


def _funnel(f: FaceFrame) -> np.ndarray:
    w = _lip_region(f)
    du = -0.22 * f.a * w
    dv = (-0.05 * _UPPER_LIP + 0.07 * _LOWER_LIP) * _taper(f)
    return np.stack([du, dv, -0.12 * w])


def _pucker(f: FaceFrame) -> np.ndarray:
    w = _lip_region(f)
    du = -0.3 * f.a * w
    dv = (0.02 * _UPPER_LIP - 0.02 * _LOWER_LIP) * _taper(f)
    return np.stack([du, dv, -0.18 * w])


def _corner(f: FaceFrame, side: float, du: float, dv: float) -> np.ndarray:
    """Move the mouth corner on one side (side=+1: subject's left, image right)."""
    w = _bump(f, side * f.mouth_half_width, 0.0, 0.45, 0.3)
    return np.stack([side * du * w, dv * w, np.zeros_like(w)])


def _smile(f: FaceFrame, side: float) -> np.ndarray:
    cheek = _bump(f, side * 0.7, -0.6, 0.4, 0.35)
    basis = _corner(f, side, 0.09, -0.11)
    basis[1] -= 0.03 * cheek
    return basis


def _side(f: FaceFrame, side: float) -> np.ndarray:
    return _smoothstep(-0.3, 0.3, side * f.a / max(f.mouth_half_width, 1e-3))


def _press(f: FaceFrame, side: float) -> np.ndarray:
    w = _side(f, side)
    outer_up = _indices_mask(fl.LIPS_OUTER_UPPER, _CORNERS)
    outer_low = _indices_mask(fl.LIPS_OUTER_LOWER, _CORNERS)
    dv = (0.035 * outer_up - 0.035 * outer_low) * w * _taper(f)
    return np.stack([np.zeros_like(dv), dv, np.zeros_like(dv)])


def _upper_up(f: FaceFrame, side: float) -> np.ndarray:
    dv = -0.09 * _UPPER_LIP * _side(f, side) * np.sqrt(_taper(f))
    return np.stack([np.zeros_like(dv), dv, np.zeros_like(dv)])


def _lower_down(f: FaceFrame, side: float) -> np.ndarray:
    dv = 0.1 * _LOWER_LIP * _side(f, side)
    return np.stack([np.zeros_like(dv), dv, np.zeros_like(dv)])


def _eye_centre(f: FaceFrame, side: float) -> tuple[float, float]:
    idx = list(fl.LEFT_EYE_UPPER if side > 0 else fl.RIGHT_EYE_UPPER)
    return float(f.a[idx].mean()), float(f.b[idx].mean())


def _eye_wide(f: FaceFrame, side: float) -> np.ndarray:
    a0, b0 = _eye_centre(f, side)
    upper = _indices_mask(fl.LEFT_EYE_UPPER if side > 0 else fl.RIGHT_EYE_UPPER)
    lid_skin = _bump(f, a0, b0 - 0.2, 0.4, 0.2) * (f.b < b0)
    dv = -0.06 * np.maximum(upper, lid_skin)
    return np.stack([np.zeros_like(dv), dv, np.zeros_like(dv)])


def _eye_squint(f: FaceFrame, side: float) -> np.ndarray:
    a0, b0 = _eye_centre(f, side)
    lower = _indices_mask(fl.LEFT_EYE_LOWER if side > 0 else fl.RIGHT_EYE_LOWER)
    cheek = _bump(f, a0, b0 + 0.3, 0.4, 0.25) * (f.b > b0)
    dv = -0.05 * np.maximum(lower, 0.5 * cheek)
    return np.stack([np.zeros_like(dv), dv, np.zeros_like(dv)])


def _above_eyes(f: FaceFrame) -> np.ndarray:
    # Brows carry the forehead but must not drag the eyelids with them.
    return 1.0 - _smoothstep(f.eye_line - 0.3, f.eye_line - 0.1, f.b)


def _brow(f: FaceFrame, a0: float, dv: float, du: float = 0.0) -> np.ndarray:
    w = _bump(f, a0, f.eye_line - 0.45, 0.45, 0.5) * _above_eyes(f)
    return np.stack([du * w, dv * w, np.zeros_like(w)])


def _brow_inner_up(f: FaceFrame) -> np.ndarray:
    return _brow(f, -0.3, -0.12) + _brow(f, 0.3, -0.12)


def _cheek_squint(f: FaceFrame, side: float) -> np.ndarray:
    a0, b0 = _eye_centre(f, side)
    w = _bump(f, a0 + side * 0.15, b0 + 0.45, 0.35, 0.25)
    return np.stack([np.zeros_like(w), -0.05 * w, np.zeros_like(w)])


def _nose_sneer(f: FaceFrame, side: float) -> np.ndarray:
    nose_b = float(f.b[[129, 358]].mean())
    w = _bump(f, side * 0.25, nose_b, 0.2, 0.2)
    return np.stack([np.zeros_like(w), -0.05 * w, np.zeros_like(w)])


def _none(f: FaceFrame) -> np.ndarray:
    return np.zeros((3, fl.NUM_LANDMARKS))


_L, _R = 1.0, -1.0
_BUILDERS: dict[str, Callable[[FaceFrame], np.ndarray]] = {
    "jawOpen": _jaw_open,
    "mouthClose": _mouth_close,
    "mouthFunnel": _funnel,
    "mouthPucker": _pucker,
    "mouthSmileLeft": lambda f: _smile(f, _L),
    "mouthSmileRight": lambda f: _smile(f, _R),
    "mouthFrownLeft": lambda f: _corner(f, _L, 0.0, 0.08),
    "mouthFrownRight": lambda f: _corner(f, _R, 0.0, 0.08),
    "mouthStretchLeft": lambda f: _corner(f, _L, 0.1, 0.02),
    "mouthStretchRight": lambda f: _corner(f, _R, 0.1, 0.02),
    "mouthPressLeft": lambda f: _press(f, _L),
    "mouthPressRight": lambda f: _press(f, _R),
    "mouthUpperUpLeft": lambda f: _upper_up(f, _L),
    "mouthUpperUpRight": lambda f: _upper_up(f, _R),
    "mouthLowerDownLeft": lambda f: _lower_down(f, _L),
    "mouthLowerDownRight": lambda f: _lower_down(f, _R),
    "eyeBlinkLeft": _none,
    "eyeBlinkRight": _none,
    "eyeWideLeft": lambda f: _eye_wide(f, _L),
    "eyeWideRight": lambda f: _eye_wide(f, _R),
    "eyeSquintLeft": lambda f: _eye_squint(f, _L),
    "eyeSquintRight": lambda f: _eye_squint(f, _R),
    "browInnerUp": _brow_inner_up,
    "browDownLeft": lambda f: _brow(f, 0.45, 0.08, -0.03),
    "browDownRight": lambda f: _brow(f, -0.45, 0.08, 0.03),
    "browOuterUpLeft": lambda f: _brow(f, 0.75, -0.1),
    "browOuterUpRight": lambda f: _brow(f, -0.75, -0.1),
    "cheekSquintLeft": lambda f: _cheek_squint(f, _L),
    "cheekSquintRight": lambda f: _cheek_squint(f, _R),
    "noseSneerLeft": lambda f: _nose_sneer(f, _L),
    "noseSneerRight": lambda f: _nose_sneer(f, _R),
}


def build_expression_basis(landmarks: np.ndarray) -> np.ndarray:
    """float32 (K, 478, 3) pixel displacements per coefficient, K = len(EXPRESSION_NAMES)."""
    frame = FaceFrame(landmarks)
    irises = list(fl.RIGHT_IRIS + fl.LEFT_IRIS)
    basis = []
    for name in EXPRESSION_NAMES:
        du, dv, dz = _BUILDERS[name](frame)
        disp = frame.to_pixels(du, dv, dz)
        disp[irises] = 0.0  # irises ride the eyeball, not the skin
        basis.append(disp)
    return np.stack(basis).astype(np.float32)


def lips_together(landmarks: np.ndarray) -> np.ndarray:
    """float32 (478, 3) pixel displacements that close a portrait's parted lips.

    The motion space's neutral has the lips together, whatever the photo shows:
    the jaw (with chin and lower lip) rises by the opening at the centre, then
    each remaining offset between paired inner-contour points closes from both
    sides, so the lips meet along their whole length, neither apart nor
    overlapping. A closed mouth gets (almost) zeros.
    """
    frame = FaceFrame(landmarks)
    pairs = list(zip(fl.LIPS_INNER_UPPER[1:-1], fl.LIPS_INNER_LOWER[1:-1], strict=True))
    upper, lower = [p[0] for p in pairs], [p[1] for p in pairs]
    gaps = frame.b[lower] - frame.b[upper]  # face units, down the face
    jaw = _jaw_open(frame)
    centre = pairs.index((13, 14))
    opens_per_unit = float(jaw[1][14] - jaw[1][13])
    amount = max(0.0, float(gaps[centre])) / max(opens_per_unit, 1e-6)
    du, dv, dz = -amount * jaw
    # Signed: on a turned face the jaw's arc raises the near side of the lower lip
    # further than its centre, past the upper lip, and lips pushed through each other
    # fold the mesh into a torn seam; those overlaps are undone like gaps are closed.
    left_over = gaps - amount * (jaw[1][lower] - jaw[1][upper])
    dv[upper] += 0.5 * left_over
    dv[lower] -= 0.5 * left_over
    # Across the face too: on a turned head the open lower lip also lies to one side
    # of the upper (the jaw swings back in depth), and lips closed only down the face
    # still show that sideways slit.
    sideways = frame.a[lower] - frame.a[upper] - amount * (jaw[0][lower] - jaw[0][upper])
    du[upper] += 0.5 * sideways
    du[lower] -= 0.5 * sideways
    return frame.to_pixels(du, dv, dz)
