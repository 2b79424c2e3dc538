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

__all__ = ["EYES", "eye_offsets"]

# (upper lid, lower lid, iris centre) per eye, right eye first; matches
# the order of (eyeBlinkRight, eyeBlinkLeft) the renderer passes in.
EYES = (
    (fl.RIGHT_EYE_UPPER, fl.RIGHT_EYE_LOWER, fl.RIGHT_IRIS[0]),
    (fl.LEFT_EYE_UPPER, fl.LEFT_EYE_LOWER, fl.LEFT_IRIS[0]),
)
_TABLE_STEPS = 32
# How far the iris travels per unit sin(gaze), as a share of the eye's width.
_GAZE_REACH = 0.45


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
    lid_up = take(landmarks, upper)  # Bx9x2
    lid_low = take(landmarks, lower)
    corner_a, corner_b = lid_up[:, 0], lid_up[:, -1]
    origin = 0.5 * (corner_a + corner_b)
    span = corner_b - corner_a
    width = span.norm(dim=-1).clamp(min=1.0)  # B
    ex = span / width[:, None]
    ey = torch.stack([-ex[:, 1], ex[:, 0]], -1)

    xs, ys = local_coords(points, origin, ex)
    vx, vy = to_frame(torch.stack([lid_up, lid_low], 1), origin, ex)  # Bx2x9 each
    half = 0.55 * width
    table = curve_table(vx, vy, -half, half, _TABLE_STEPS)
    curves = eval_curve_table(table, xs, -half, half)  # Bx2xhxw
    y_up, y_low = curves[:, 0], curves[:, 1]
    gap = (y_low - y_up).clamp(min=0.0)

    w = width[:, None, None]
    # Closed, the lid edge lies a little past the lower lid so no white shows between.
    shift = blink[:, None, None] * (gap + 0.03 * w)
    lid = y_up + shift
    # The lash line and the lid margin above it slide down rigidly with the lid edge,
    # so lashes stay lashes; only the skin between them and the brow-lid fold
    # stretches, and over a band tall enough that it is not smeared into streaks.
    lashes = 0.07 * w
    band = 0.4 * w
    stretch = ((ys - (y_up - band)) / (band - lashes + shift)).clamp(0.0, 1.0)
    below_lid = smoothstep(lid - 0.5 * pixel, lid + 0.5 * pixel, ys)
    lid_pull = (shift * stretch * (1.0 - below_lid))[..., None]
    offset = -lid_pull * ey[:, None, None, :]

    visible = below_lid * smoothstep(-0.5 * pixel, 0.5 * pixel, y_low - ys)
    reach = _GAZE_REACH * width
    travel = (torch.sin(gaze[:, :1]) * ex - torch.sin(gaze[:, 1:]) * ey) * reach[:, None]  # Bx2
    centre = landmarks[:, iris, :] + travel
    dist = (points - centre[:, None, None, :]).norm(dim=-1)
    r = iris_radius[:, None, None]
    disc = 1.0 - smoothstep(1.0 * r, 2.3 * r, dist)
    return offset - (disc * visible)[..., None] * travel[:, None, None, :]
