"""The synthesized mouth interior: what shows between the lips when they part.

A closed-mouth portrait has no pixels for the inside of the mouth, so
stretching the lip line would smear it. Instead the region between the
rendered inner-lip contours is painted, back to front: a dark cavity that is
deepest in its middle, a rounded tongue low in it, the lower teeth once the
jaw drops, and the upper teeth hanging from under the upper lip, each tooth
drawn on its own (rounded incisal corners, gaps, narrower towards the corners
of the mouth as the dental arch turns away). Everything is tinted from the
portrait's own skin and tone, so a dark old painting does not get bright white
teeth and a grey photo stays grey, and carries a fixed fine grain.

All lengths below are output pixels in the mouth's own frame: x along the line
between the inner lip corners, y down the face (warp_ops.local_coords).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..face import landmarks as fl
from ..face.image_io import LUMA_WEIGHTS
from .warp_ops import curve_table, eval_curve_table, local_coords, smoothstep, take, to_frame

__all__ = ["mouth_palette", "mouth_interior", "portrait_tone", "without_mouth_interior"]

_TABLE_STEPS = 48
# Steps of the box filter smoothing the upper inner-lip curve (of _TABLE_STEPS).
_SMOOTH_TAPS = 7
# Projected width of a central incisor per pixel of (nose width + inner eye-corner distance),
# lengths that do not change when the mouth moves: 8.5 mm against about 35 + 32 mm, a little
# more, as a painted mouth reads better with slightly larger teeth.
_INCISOR_OF_FACE = 0.12
# The dental arch seen from the front: tooth widths shrink as sqrt(1 - x / (ARCH x incisor)).
_ARCH = 3.0


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
    luma = rgb @ LUMA_WEIGHTS
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
    cavity = torch.tensor([0.16, 0.065, 0.055]) * (0.6 + lum)
    tongue = torch.tensor([0.5, 0.24, 0.2]) * (0.55 + lum)
    palette = torch.stack([teeth, cavity, tongue])
    if tint is not None:
        toned = (palette @ torch.from_numpy(LUMA_WEIGHTS))[:, None] * tint[None, :]
        palette = torch.lerp(toned, palette, colour_share)
    return palette.clamp(0.0, 1.0)


class _Mouth(NamedTuple):
    """Where each window pixel lies relative to the rendered mouth, in output pixels."""

    dx: torch.Tensor  # BxHxW x from the upper lip's middle, where the central incisors meet
    rel: torch.Tensor  # BxHxW |x| / half: 0 midway between the inner corners, 1 at them
    d_up: torch.Tensor  # BxHxW below the upper lip's inner edge (negative on the lip)
    d_low: torch.Tensor  # BxHxW above the lower lip's inner edge (negative on the lip)
    gap: torch.Tensor  # BxHxW the lips' distance in this column
    half: torch.Tensor  # Bx1x1 half the inner-corner distance
    opening: torch.Tensor  # Bx1x1 the lips' distance at the middle
    incisor: torch.Tensor  # Bx1x1 projected width of a central incisor


def mouth_interior(
    points: torch.Tensor, landmarks: torch.Tensor, palette: torch.Tensor, pixel: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage and colour of the open mouth.

    points: (1 or B, H, W, 2) output pixel centres; landmarks: (B, 478, 2) as rendered;
    palette: (3, 3) from mouth_palette; pixel: output pixel size (antialiasing width).
    Returns alpha (B, 1, H, W) in [0, 1] and colour (B, 3, H, W).
    """
    m = _mouth_geometry(points, landmarks)
    inside, alpha = _coverage(m, pixel)
    across = (m.dx / m.half).square()
    cavity = _cavity_light(m, across)
    tongue, tongue_light = _tongue(m, across, pixel)
    # Both rows share the arch: q is the projected tooth width per incisor width at dx.
    q = (1.0 - m.dx.abs() / (_ARCH * m.incisor)).clamp(min=0.01).sqrt()
    upper, upper_light = _upper_teeth(m, q, pixel)
    lower, lower_light = _lower_teeth(m, q, pixel)
    # Layers back to front, as weights of the palette rows: teeth, cavity, tongue.
    lower = lower * (1.0 - upper)
    behind = 1.0 - upper - lower
    teeth = upper * upper_light + lower * lower_light
    # Teeth in shadow take the warm dark of the mouth around them, not grey; on the lips
    # only their shadow shows (the band that hides a ragged warp).
    cavity = (cavity * (1.0 - tongue) * behind + upper + lower - teeth - 0.9) * inside + 0.9
    light = _corner_shadow(m) * _grain(points)
    colour = (
        palette[0, None, :, None, None] * (teeth * inside * light)[:, None]
        + palette[1, None, :, None, None] * (cavity * light)[:, None]
        + palette[2, None, :, None, None]
        * (tongue * tongue_light * behind * inside * light)[:, None]
    )
    return alpha[:, None], colour


def _mouth_geometry(points: torch.Tensor, landmarks: torch.Tensor) -> _Mouth:
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
    )  # Bx2x1xn
    # The upper edge follows the inner-lip curve smoothed, never below it, so the paint
    # covers where the warp leaves that edge ragged between landmarks.
    pad = _SMOOTH_TAPS // 2
    padded = F.pad(table[:, :1], (pad, pad, 0, 0), mode="replicate")
    smooth = F.avg_pool2d(padded, (1, _SMOOTH_TAPS), stride=1)
    table = torch.cat([torch.minimum(table[:, :1], smooth), table[:, 1:]], 1)
    curves = eval_curve_table(table, xs, -half, half)
    y_up, y_low = curves[:, 0], curves[:, 1]
    face = (landmarks[:, 98] - landmarks[:, 327]).norm(dim=-1) + (
        landmarks[:, 133] - landmarks[:, 362]
    ).norm(dim=-1)
    mid = fl.LIPS_INNER_UPPER.index(13)
    return _Mouth(
        dx=xs - ux[:, mid, None, None],
        rel=xs.abs() / half[:, None, None],
        d_up=ys - y_up,
        d_low=y_low - ys,
        gap=y_low - y_up,
        half=half[:, None, None],
        opening=(ly[:, mid] - uy[:, mid]).clamp(min=0.0)[:, None, None],
        incisor=(_INCISOR_OF_FACE * face).clamp(min=1.0)[:, None, None],
    )


def _coverage(m: _Mouth, pixel: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(between the lips' inner edges, alpha), both (B, H, W) in [0, 1]."""
    inner, below = _edge(m.d_up, pixel), _edge(m.d_low, pixel)
    inside = inner * below
    alpha = inside * _ramp(m.gap, 0.5 * pixel, 1.5 * pixel)
    # A soft shadow over each lip's inner edge: the lips roll inwards, and the paint
    # hides there what the warp leaves ragged (most at the corners of a wide mouth).
    band = (pixel + 0.08 * m.opening.clamp(max=3.0 * m.incisor)) * (1.0 + 2.0 * m.rel.square())
    over_upper = (m.d_up / band + 1.0).clamp(0.0, 1.0).square() * (1.0 - inner)
    over_lower = (m.d_low / (0.6 * band) + 1.0).clamp(0.0, 1.0).square() * (0.5 - 0.5 * below)
    shadow = 0.8 * _ramp(m.gap, pixel, 4.0 * pixel) * torch.maximum(over_upper, over_lower)
    # Close at the corners even where a turned face folds the lip contour.
    alpha = torch.maximum(alpha, shadow) * _ramp(m.rel, 1.0, 0.82)
    # Lips that touch still meet in a thin shadowed line, not one fused blob of lip.
    seam = (m.d_up - m.d_low) / (0.04 * m.half + 1.8 * pixel)
    seam = (1.0 - seam.square()).clamp(min=0.0).square() * (0.6 * _ramp(m.rel, 1.0, 0.7))
    return inside, torch.maximum(alpha, seam)


def _cavity_light(m: _Mouth, across: torch.Tensor) -> torch.Tensor:
    """(B, H, W): darkest deep in the middle of the opening, lighter near the lips."""
    down = (m.d_up / m.gap.clamp(min=1.0)).clamp(0.0, 1.0)
    # A slit of an opening is all lip shadow: no dark depth shows yet.
    slit = 0.9 - 0.9 * _ramp(m.gap, 1.0, 6.0)
    return 1.9 + slit - 4.0 * down * (1.0 - down) * (1.0 - across.clamp(max=1.0))


def _tongue(m: _Mouth, across: torch.Tensor, pixel: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(coverage, light), (B, H, W): a rounded tongue rising from the floor of the mouth."""
    show = smoothstep(0.8 * m.incisor, 3.0 * m.incisor, m.opening)  # Bx1x1
    rise = 0.38 * m.opening * show
    across = across * (1.0 / 0.72**2)  # the tongue spans 72 % of the mouth
    into = rise * (1.0 - across).clamp(min=0.0).sqrt() - m.d_low  # px below its top
    cover = (into / (2.0 * pixel + 0.16 * rise) + 0.5).clamp(0.0, 1.0) * show
    # Its back rim is deeper in the mouth than its front; a faint groove runs down the middle.
    depth = (into / (0.5 * rise + pixel)).clamp(0.0, 1.0)
    light = (0.72 + 0.38 * depth) * (1.0 - 0.25 * across.clamp(max=1.0))
    return cover, light - 0.14 * depth / (1.0 + 200.0 * across)


def _upper_teeth(m: _Mouth, q: torch.Tensor, pixel: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(coverage, light), (B, H, W): the upper row, hanging from under the upper lip.

    The lip covers all but their incisal part; the more the mouth opens, the
    more of their height shows, up to about one tooth width.
    """
    reach = 0.9 * m.incisor
    shown = reach * torch.tanh(0.6 * m.opening / reach)  # Bx1x1
    dist = torch.minimum(shown, 0.6 * m.gap) - m.d_up
    cover, light = _tooth_row(dist, 2.0 * _ARCH * (1.0 - q), m.incisor * q, m.incisor, pixel)
    gums = 0.62 + 0.38 * (m.d_up / (0.45 * m.incisor)).clamp(0.0, 1.0)
    return cover * _ramp(m.gap, pixel, 3.0 * pixel), light * gums


def _lower_teeth(m: _Mouth, q: torch.Tensor, pixel: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(coverage, light), (B, H, W): the lower row, behind the lower lip until the jaw drops."""
    shown = 0.45 * m.incisor * smoothstep(1.0 * m.incisor, 3.2 * m.incisor, m.opening)
    dist = torch.minimum(shown, 0.3 * m.gap) - m.d_low
    small = 0.68  # lower incisors are about two thirds as wide as the upper
    t = (2.0 * _ARCH / small) * (1.0 - q)
    cover, light = _tooth_row(dist, t, small * m.incisor * q, small * m.incisor, pixel)
    front = _ramp(m.dx.abs(), 1.8 * m.incisor, 0.8 * m.incisor)
    return cover * front * _ramp(shown, 0.0, pixel), 0.75 * light


def _tooth_row(
    dist: torch.Tensor, t: torch.Tensor, width: torch.Tensor, incisor: torch.Tensor, pixel: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(coverage, light), (B, H, W) of a row of teeth.

    dist: px from the row's incisal line into the teeth; t: the tooth coordinate,
    whole at the gaps between teeth (0 at the midline); width: the local tooth
    width in px. The arch turns away from the viewer, so seen from the front
    each tooth is narrower than the one before it: width = incisor x q with
    q = sqrt(1 - |x| / (ARCH x incisor)), and t = 2 ARCH (1 - q) integrates 1 / width.
    """
    across = t - t.floor() - 0.5  # [-0.5, 0.5) over each tooth
    a2 = (2.0 * across).square()
    # Rounded incisal corners; edges a little higher towards the back.
    inside = dist - 0.3 * width * a2.square() - 0.08 * incisor * t
    cover = _edge(inside, pixel)
    side = (0.5 - across.abs()) * width  # px to the gap between this tooth and the next
    light = (0.6 + 0.4 * (side / (1.2 * pixel)).clamp(max=1.0)) * (1.0 - 0.12 * a2)
    # The thin incisal edge lets a little of the dark behind through; each tooth further
    # round the arch is turned further from the light.
    edge = 0.85 + 0.15 * (inside / (0.25 * incisor)).clamp(0.0, 1.0)
    return cover, light * edge / (1.0 + 0.2 * t.square())


def _corner_shadow(m: _Mouth) -> torch.Tensor:
    """(B, H, W): the corners of the mouth lie in the cheeks' shadow."""
    return 1.0 - 0.7 * smoothstep(0.4, 1.0, m.rel)


def _grain(points: torch.Tensor) -> torch.Tensor:
    """(1 or B, H, W) around 1: a fixed fine grain of the pixel's position.

    Interleaved gradient noise (Jimenez 2014): a hash that needs only products
    and floors of small numbers, so it is cheap and the same on every backend.
    """
    phase = 0.06711056 * points[..., 0] + 0.00583715 * points[..., 1]
    phase = 52.9829189 * (phase - phase.floor())
    return 0.96 + 0.08 * (phase - phase.floor())


def _edge(distance: torch.Tensor, pixel: float) -> torch.Tensor:
    """Share of a pixel on the positive side of an edge at signed distance (px) from it."""
    return (distance * (1.0 / pixel) + 0.5).clamp(0.0, 1.0)


def _ramp(x: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor) -> torch.Tensor:
    """0 at lo, 1 at hi (either order), linear between: for where smoothstep's shape never shows."""
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
