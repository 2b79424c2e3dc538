"""Eyelids and gaze, applied in output space as offsets to where each pixel reads from.

A blink slides the upper lid's skin down over the eye: an output pixel
between the open lid line and the closing lid reads skin from above it. Gaze
moves the iris disc inside the visible aperture with a local, smooth warp.
Defining both as output-space offsets avoids inverting a collapsing warp.
"""

from __future__ import annotations

import torch

from ..face import landmarks as fl
from .warp_ops import curve_table, eval_curve_table, local_coords, smoothstep, take, to_frame

__all__ = ["EYES", "LID_REST", "eye_centre", "eye_offsets", "lid_cover"]

# (upper lid, lower lid, iris centre) per eye, right eye first; matches
# the order of (eyeBlinkRight, eyeBlinkLeft) the renderer passes in.
EYES = (
    (fl.RIGHT_EYE_UPPER, fl.RIGHT_EYE_LOWER, fl.RIGHT_IRIS[0]),
    (fl.LEFT_EYE_UPPER, fl.LEFT_EYE_LOWER, fl.LEFT_IRIS[0]),
)
_TABLE_STEPS = 32
# Lids closed no further than this are open: they shed no shadow and draw no lash line,
# exactly, so a frame of open eyes (a model holds them at 0.001-0.01) can skip the
# lid pass. Closure itself (the slide of the lid) starts from 0 all the same.
LID_REST = 0.02
# How far the iris travels per unit sin(gaze), as a share of the eye's width.
_GAZE_REACH = 0.45


def eye_centre(landmarks: torch.Tensor, eye: int) -> torch.Tensor:
    """Midpoint (B, 2) of one eye's corners: windows around the lids centre on it, not
    on the iris, which looks off to one side in half-profile and downcast portraits and
    would leave a lid's far corner outside its window, cut off in a straight line."""
    upper = EYES[eye][0]
    return 0.5 * (landmarks[:, upper[0]] + landmarks[:, upper[-1]])


def eye_offsets(
    points: torch.Tensor,
    landmarks: torch.Tensor,
    blink: torch.Tensor,
    gaze: torch.Tensor,
    iris_radius: torch.Tensor,
    pixel: float,
    eye: int,
) -> torch.Tensor:
    """Offsets to add to output positions before reading the warped portrait.

    points: (1 or B, h, w, 2) output positions in crop pixels (a window around the eye).
    landmarks: (B, 478, 2) landmarks as they appear in the output.
    blink: (B, 2) closure of the right and left eye in [0, 1].
    gaze: (B, 2) gaze yaw, pitch in radians.
    iris_radius: (B, 2) iris radius in output pixels, right and left.
    pixel: size of one field pixel in crop pixels (edge softness).
    eye: 0 for the right eye, 1 for the left.
    Returns (B, h, w, 2).
    """
    upper, lower, iris = EYES[eye]
    return _one_eye(
        points, landmarks, upper, lower, iris, blink[:, eye], gaze, iris_radius[:, eye], pixel
    )


class _Lid:
    """One eye's lid geometry at some points, in the eye's own frame (x along the eye)."""

    def __init__(
        self,
        points: torch.Tensor,
        landmarks: torch.Tensor,
        upper: tuple[int, ...],
        lower: tuple[int, ...],
        blink: torch.Tensor,
    ) -> None:
        lid_up = take(landmarks, upper)  # Bx9x2
        lid_low = take(landmarks, lower)
        corner_a, corner_b = lid_up[:, 0], lid_up[:, -1]
        origin = 0.5 * (corner_a + corner_b)
        span = corner_b - corner_a
        self.width = span.norm(dim=-1).clamp(min=1.0)  # B
        self.ex = span / self.width[:, None]
        self.ey = torch.stack([-self.ex[:, 1], self.ex[:, 0]], -1)
        self.xs, self.ys = local_coords(points, origin, self.ex)
        vx, vy = to_frame(torch.stack([lid_up, lid_low], 1), origin, self.ex)  # Bx2x9 each
        half = 0.55 * self.width
        table = curve_table(vx, vy, -half, half, _TABLE_STEPS)
        curves = eval_curve_table(table, self.xs, -half, half)  # Bx2xhxw
        self.y_up, self.y_low = curves[:, 0], curves[:, 1]
        gap = (self.y_low - self.y_up).clamp(min=0.0)
        w = self.width[:, None, None]
        # Closed, the lid edge lies a little past the lower lid so no white shows between.
        self.shift = blink[:, None, None] * (gap + 0.03 * w)
        self.edge = self.y_up + self.shift
        # The lash line and the thin lid margin above it slide down rigidly with the lid
        # edge, so lashes stay lashes; only the skin between them and the brow-lid fold
        # stretches, and over a band tall enough that it is not smeared into streaks.
        # A taller margin carries the open eye's dark upper rim down with it and reads
        # as a dark band across the shut lid.
        self.lashes = 0.03 * w
        self.band = 0.4 * w
        self.blink = blink


def lid_cover(
    points: torch.Tensor, landmarks: torch.Tensor, blink: torch.Tensor, pixel: float, eye: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a closing lid lies, at output points: (skin, lash), each (B, h, w) in [0, 1].

    skin: lid skin that slid over the eye, the lash line excluded (the renderer lifts
    it out of the socket's shadow). lash: a line along the lid edge, drawn over the
    seam where the warp blends the lid into what lies below it (a bright sliver of
    the eye's white otherwise); it fades in only as the lid nears the lower lid.
    """
    upper, lower, _ = EYES[eye]
    lid = _Lid(points, landmarks, upper, lower, blink[:, eye])
    # An eye seen far narrower than the other is turned away behind the nose (a
    # three-quarter view): its landmarks are a guess there, and a lash line or a lit
    # lid drawn on them floats over the nose's edge as a dark dash.
    other = EYES[1 - eye][0]
    other_width = (landmarks[:, other[-1]] - landmarks[:, other[0]]).norm(dim=-1).clamp(min=1.0)
    shown = smoothstep(0.4, 0.6, lid.width / other_width)[:, None, None]
    over_eye = smoothstep(lid.y_up - lid.band, lid.y_up, lid.ys) * (
        1.0 - smoothstep(lid.edge - 2.0 * lid.lashes, lid.edge - 0.5 * lid.lashes, lid.ys)
    )
    reach = lid.xs.abs() / (0.5 * lid.width[:, None, None])
    # The lid covers the eye out to its corners; fading the lift from mid-eye left
    # them in the socket's shadow, two dark pits either side of the lid.
    within = 1.0 - smoothstep(0.75, 1.15, reach)
    skin = over_eye * within * smoothstep(LID_REST, 0.6, lid.blink)[:, None, None] * shown
    # Thicker in the middle of the lid, thinning towards the corners, like a lash line.
    thickness = (0.022 * lid.width[:, None, None] + 0.6 * pixel) * (1.0 - 0.6 * reach**2)
    line = torch.exp(-(((lid.ys - lid.edge) / thickness.clamp(min=0.3 * pixel)) ** 2))
    closing = smoothstep(0.6, 0.95, lid.blink)[:, None, None]
    lash = line * (1.0 - smoothstep(0.8, 1.05, reach)) * closing * shown
    return skin, lash


def _one_eye(
    points: torch.Tensor,
    landmarks: torch.Tensor,
    upper: tuple[int, ...],
    lower: tuple[int, ...],
    iris: int,
    blink: torch.Tensor,
    gaze: torch.Tensor,
    iris_radius: torch.Tensor,
    pixel: float,
) -> torch.Tensor:
    lid = _Lid(points, landmarks, upper, lower, blink)
    ys, shift = lid.ys, lid.shift
    stretch = ((ys - (lid.y_up - lid.band)) / (lid.band - lid.lashes + shift)).clamp(0.0, 1.0)
    below_lid = smoothstep(lid.edge - 0.5 * pixel, lid.edge + 0.5 * pixel, ys)
    lid_pull = (shift * stretch * (1.0 - below_lid))[..., None]
    offset = -lid_pull * lid.ey[:, None, None, :]

    visible = below_lid * smoothstep(-0.5 * pixel, 0.5 * pixel, lid.y_low - ys)
    reach = _GAZE_REACH * lid.width
    travel = (torch.sin(gaze[:, :1]) * lid.ex - torch.sin(gaze[:, 1:]) * lid.ey) * reach[:, None]
    centre = landmarks[:, iris, :] + travel
    dist = (points - centre[:, None, None, :]).norm(dim=-1)
    r = iris_radius[:, None, None]
    disc = 1.0 - smoothstep(1.0 * r, 2.3 * r, dist)
    return offset - (disc * visible)[..., None] * travel[:, None, None, :]
