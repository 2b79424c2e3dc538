"""The synthesized mouth interior: what shows between the lips when they part.

A closed-mouth portrait has no pixels for the inside of the mouth, so
stretching the lip line would smear it. Instead the region between the
rendered inner-lip contours is painted: a dark cavity, a tongue low in it,
upper teeth hanging from under the upper lip and lower teeth showing once the
jaw opens wide, all tinted from the portrait's own skin so a dark old
painting does not get bright white teeth.
"""

from __future__ import annotations

import math

import torch

from ..face import landmarks as fl
from .warp_ops import curve_table, eval_curve_table, local_coords, smoothstep, take, to_frame

__all__ = ["mouth_palette", "mouth_interior"]

_TABLE_STEPS = 48


def mouth_palette(skin_rgb: torch.Tensor) -> torch.Tensor:
    """(3,) mean skin colour in [0, 1] -> (3, 3) rows: teeth, cavity, tongue."""
    lum = float(skin_rgb.mean().clamp(min=0.2))
    white = torch.tensor([0.93, 0.9, 0.84])
    teeth = (0.45 * white + 0.55 * skin_rgb) * min(0.9, 0.45 + lum)
    cavity = torch.tensor([0.16, 0.06, 0.045]) * (0.6 + lum)
    tongue = torch.tensor([0.5, 0.24, 0.2]) * (0.55 + lum)
    return torch.stack([teeth, cavity, tongue]).clamp(0.0, 1.0)


def mouth_interior(
    points: torch.Tensor, landmarks: torch.Tensor, palette: torch.Tensor, pixel: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage and colour of the open mouth.

    points: (1 or B, H, W, 2) output pixel centres; landmarks: (B, 478, 2) as rendered;
    palette: (3, 3) from mouth_palette; pixel: output pixel size (antialiasing width).
    Returns alpha (B, 1, H, W) in [0, 1] and colour (B, 3, H, W).
    """
    upper = take(landmarks, fl.LIPS_INNER_UPPER)
    lower = take(landmarks, fl.LIPS_INNER_LOWER)
    corner_a, corner_b = upper[:, 0], upper[:, -1]
    span = corner_b - corner_a
    width = span.norm(dim=-1).clamp(min=1.0)
    ex = span / width[:, None]
    origin = 0.5 * (corner_a + corner_b)
    xs, ys = local_coords(points, origin, ex)
    ux, uy = to_frame(upper, origin, ex)
    lx, ly = to_frame(lower, origin, ex)
    half = 0.5 * width
    table = curve_table(
        torch.stack([ux, lx], 1), torch.stack([uy, ly], 1), -half, half, _TABLE_STEPS
    )
    curves = eval_curve_table(table, xs, -half, half)
    y_up, y_low = curves[:, 0], curves[:, 1]
    gap = y_low - y_up
    aa = 0.7 * pixel
    alpha = smoothstep(-aa, aa, ys - y_up) * smoothstep(-aa, aa, y_low - ys)
    alpha = alpha * smoothstep(0.5 * pixel, 1.5 * pixel, gap)
    # Close at the corners even where a turned face folds the lip contour.
    alpha = alpha * (1.0 - smoothstep(0.6, 1.0, xs.abs() / half[:, None, None]))

    w = width[:, None, None]
    rel_x = xs / (0.5 * w)
    across = 1.0 - smoothstep(0.55, 0.9, rel_x.abs())
    narrow = 1.0 - smoothstep(0.25, 0.6, rel_x.abs())
    shade = 1.0 - 0.45 * rel_x.clamp(-1, 1) ** 2
    tooth = 0.13 * w
    gaps = 1.0 - 0.35 * torch.exp(-(torch.sin(math.pi * xs / tooth) ** 2) / 0.015)
    upper_teeth = smoothstep(-aa, aa, y_up + 0.11 * w - ys) * across
    lower_teeth = (
        smoothstep(-aa, aa, ys - (y_low - 0.05 * w))
        * narrow
        * smoothstep(0.12, 0.25, gap / w)
        * 0.6
    )
    tongue = torch.exp(-((rel_x / 0.6) ** 2) - ((ys - y_low) / (0.5 * gap.clamp(min=1.0))) ** 2)

    teeth_c, cavity_c, tongue_c = (palette[i][None, :, None, None] for i in range(3))
    depth = smoothstep(0.0, 1.0, (ys - y_up) / gap.clamp(min=1.0))[:, None]
    colour = cavity_c * (0.8 + 0.4 * depth)
    colour = torch.lerp(colour, tongue_c, (0.85 * tongue)[:, None])
    colour = torch.lerp(colour, teeth_c * 0.85 * shade[:, None], lower_teeth[:, None])
    # Teeth darken towards their edges: lit from the front, shadowed by the lips.
    teeth_depth = 1.0 - 0.35 * smoothstep(0.0, 0.11 * w, ys - y_up)
    colour = torch.lerp(
        colour, teeth_c * (shade * gaps * teeth_depth)[:, None], upper_teeth[:, None]
    )
    return alpha[:, None], colour
