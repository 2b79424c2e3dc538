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

import cv2
import numpy as np
import torch

from ..face import landmarks as fl
from .warp_ops import curve_table, eval_curve_table, local_coords, smoothstep, take, to_frame

__all__ = ["mouth_palette", "mouth_interior", "portrait_tone", "without_mouth_interior"]

_TABLE_STEPS = 48
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def without_mouth_interior(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The portrait (uint8 H x W x 3) with whatever shows between its lips filled from the lips.

    Neutral closes a parted mouth by squeezing the opening to a line; what the
    warp cannot squeeze away at that line must be lip, not the photo's teeth.
    An open mouth is always the painted interior, so nothing real is lost.
    """
    contour = np.concatenate(
        [landmarks[list(fl.LIPS_INNER_UPPER), :2], landmarks[list(fl.LIPS_INNER_LOWER[::-1]), :2]]
    )
    hole = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(hole, [np.round(contour).astype(np.int32)], 255)  # type: ignore[call-overload]
    if not hole.any():
        return image
    grown = cv2.dilate(hole, np.ones((3, 3), np.uint8))
    return np.asarray(cv2.inpaint(image, grown, 4, cv2.INPAINT_TELEA))


def portrait_tone(image: np.ndarray) -> tuple[torch.Tensor, float]:
    """How colourful a portrait (uint8 H x W x 3) is, and the tint of a monotone one.

    Returns (tint (3,), colour share in [0, 1]): a grey or sepia picture is
    luma x one tint everywhere (share near 0); a colour photo or painting
    departs from that by 20-60 % of its luma (share 1).
    """
    rgb = image.reshape(-1, 3).astype(np.float32) / 255.0
    luma = rgb @ _LUMA
    lit = luma > 0.04
    if not lit.any():
        return torch.ones(3), 0.0
    tint = rgb[lit].sum(0) / luma[lit].sum()
    departure = np.abs(rgb[lit] - luma[lit, None] * tint).sum(1).mean() / luma[lit].mean()
    t = float(np.clip((departure - 0.03) / 0.12, 0.0, 1.0))
    return torch.from_numpy(tint.astype(np.float32)), t * t * (3 - 2 * t)


def mouth_palette(
    skin_rgb: torch.Tensor, tint: torch.Tensor | None = None, colour_share: float = 1.0
) -> torch.Tensor:
    """(3,) mean skin colour in [0, 1] -> (3, 3) rows: teeth, cavity, tongue.

    tint and colour_share (portrait_tone) pull the colours towards the
    portrait's own tone: a grayscale photo gets a grey mouth, a sepia one sepia.
    """
    lum = float(skin_rgb.mean().clamp(min=0.2))
    white = torch.tensor([0.93, 0.9, 0.84])
    teeth = (0.45 * white + 0.55 * skin_rgb) * min(0.9, 0.45 + lum)
    cavity = torch.tensor([0.16, 0.06, 0.045]) * (0.6 + lum)
    tongue = torch.tensor([0.5, 0.24, 0.2]) * (0.55 + lum)
    palette = torch.stack([teeth, cavity, tongue])
    if tint is not None:
        toned = (palette @ torch.from_numpy(_LUMA))[:, None] * tint[None, :]
        palette = torch.lerp(toned, palette, colour_share)
    return palette.clamp(0.0, 1.0)


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
    # Lips that touch still meet in a thin shadowed line, not one fused blob of lip.
    seam_width = 0.012 * width[:, None, None] + 0.5 * pixel
    seam = torch.exp(-(((ys - 0.5 * (y_up + y_low)) / seam_width) ** 2))
    seam = 0.6 * seam * (1.0 - smoothstep(0.7, 1.0, xs.abs() / half[:, None, None]))
    alpha = torch.maximum(alpha, seam)

    w = width[:, None, None]
    rel_x = xs / (0.5 * w)
    across = 1.0 - smoothstep(0.55, 0.9, rel_x.abs())
    narrow = 1.0 - smoothstep(0.25, 0.6, rel_x.abs())
    shade = 1.0 - 0.45 * rel_x.clamp(-1, 1) ** 2
    tooth = 0.13 * w
    gaps = 1.0 - 0.35 * torch.exp(-(torch.sin(math.pi * xs / tooth) ** 2) / 0.015)
    # Teeth show only once the lips part by a few pixels; the seam of closed lips is shadow.
    parted = smoothstep(1.0 * pixel, 3.0 * pixel, gap)
    upper_teeth = smoothstep(-aa, aa, y_up + 0.11 * w - ys) * across * parted
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
