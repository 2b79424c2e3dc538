"""Small torch building blocks shared by the renderer's stages.

All positions are continuous pixel coordinates of the (S, S) crop (pixel
centres at i + 0.5), matching grid_sample with align_corners=False. Every
function is batched and loop-free over pixels so the renderer exports to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "rotation_matrix",
    "pixel_grid",
    "sample_at",
    "local_coords",
    "curve_table",
    "eval_curve_table",
    "smoothstep",
    "to_frame",
    "window_origin",
    "take",
    "window_index",
]


def rotation_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(B,) angles -> (B, 3, 3) rotation in image axes (x right, y down, z away).

    +yaw turns the face to the subject's left (nose to image right), +pitch
    looks up, +roll turns the face counter-clockwise in the image.
    """
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    r_yaw = torch.stack([cy, zero, -sy, zero, one, zero, sy, zero, cy], -1).view(-1, 3, 3)
    r_pitch = torch.stack([one, zero, zero, zero, cp, sp, zero, -sp, cp], -1).view(-1, 3, 3)
    r_roll = torch.stack([cr, sr, zero, -sr, cr, zero, zero, zero, one], -1).view(-1, 3, 3)
    return r_roll @ r_pitch @ r_yaw


def pixel_grid(size: int, image_size: int) -> torch.Tensor:
    """Centres of a (size, size) grid over the crop, in crop pixels: (1, size, size, 2) x,y."""
    step = image_size / size
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) * step
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([gx, gy], -1).unsqueeze(0)


def sample_at(field: torch.Tensor, points: torch.Tensor, image_size: int) -> torch.Tensor:
    """Bilinear read of field (B, C, H, W) over the crop at points (B, h, w, 2) -> (B, C, h, w)."""
    grid = points * (2.0 / image_size) - 1.0
    return F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)


def local_coords(
    points: torch.Tensor, origin: torch.Tensor, x_axis: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates of points (B, h, w, 2) in a frame at origin (B, 2) with unit x_axis (B, 2).

    The frame's y axis is x_axis turned 90 degrees clockwise in the image
    (pointing down the face when x_axis points to image right).
    """
    rel = points - origin[:, None, None, :]
    ex = x_axis[:, None, None, :]
    xs = rel[..., 0] * ex[..., 0] + rel[..., 1] * ex[..., 1]
    ys = -rel[..., 0] * ex[..., 1] + rel[..., 1] * ex[..., 0]
    return xs, ys


def curve_table(
    curve_x: torch.Tensor, curve_y: torch.Tensor, x_lo: torch.Tensor, x_hi: torch.Tensor, n: int
) -> torch.Tensor:
    """Tabulate piecewise-linear curves y(x) at n even steps on [x_lo, x_hi].

    curve_x, curve_y: (B, C, N) vertices of C curves (x need not be sorted);
    x_lo, x_hi: (B,). Returns (B, C, 1, n), a 1-pixel-high image for eval_curve_table.
    Outside its vertices a curve holds its end values.
    """
    order = torch.argsort(curve_x, dim=-1)
    xs = torch.gather(curve_x, -1, order)
    ys = torch.gather(curve_y, -1, order)
    steps = torch.linspace(0.0, 1.0, n, device=curve_x.device)
    xq = x_lo[:, None] + (x_hi - x_lo)[:, None] * steps  # Bxn
    dx = (xs[..., 1:] - xs[..., :-1]).clamp(min=1e-3)  # BxCx(N-1)
    t = ((xq[:, None, :, None] - xs[:, :, None, :-1]) / dx[:, :, None, :]).clamp(0.0, 1.0)
    dy = (ys[..., 1:] - ys[..., :-1])[:, :, None, :]
    table = ys[..., :1] + (t * dy).sum(-1)  # BxCxn
    return table.unsqueeze(2)


def eval_curve_table(
    table: torch.Tensor, xs: torch.Tensor, x_lo: torch.Tensor, x_hi: torch.Tensor
) -> torch.Tensor:
    """Read tabulated curves (B, C, 1, n) at xs (B, h, w) -> (B, C, h, w)."""
    u = (xs - x_lo[:, None, None]) / (x_hi - x_lo)[:, None, None].clamp(min=1e-3)
    grid = torch.stack([u * 2.0 - 1.0, torch.zeros_like(u)], -1)
    return F.grid_sample(table, grid, mode="bilinear", padding_mode="border", align_corners=True)


def smoothstep(
    edge0: float | torch.Tensor, edge1: float | torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def to_frame(
    pts: torch.Tensor, origin: torch.Tensor, x_axis: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (B, ..., 2) -> their x, y (B, ...) in the frame of local_coords."""
    shape = pts.shape[:-1]
    flat = pts.reshape(pts.shape[0], -1, 2) - origin[:, None, :]
    ex = x_axis[:, None, :]
    xs = flat[..., 0] * ex[..., 0] + flat[..., 1] * ex[..., 1]
    ys = -flat[..., 0] * ex[..., 1] + flat[..., 1] * ex[..., 0]
    return xs.reshape(shape), ys.reshape(shape)


def take(values: torch.Tensor, indices: tuple[int, ...]) -> torch.Tensor:
    """values[:, indices] for fixed indices, without a host-to-device copy of the index.

    Indexing a CUDA tensor with a Python list uploads the list on every call: a
    synchronous copy per frame, and an error inside CUDA graph capture. Integer
    picks are views; one stack gathers them on the device.
    """
    return torch.stack([values[:, i] for i in indices], 1)


def window_origin(centre: torch.Tensor, side: int, limit: int) -> torch.Tensor:
    """Top-left corners (B, 2) int64 (x, y) of side-wide windows centred near centre (B, 2).

    Eyes and mouth are small: working on a window around them instead of the
    whole frame cuts their cost about twenty-fold on CPU. The corner stays a
    tensor, so a frame costs no host round trip and the graph exports.
    """
    return torch.round(centre - side / 2).clamp(0, limit - side).long()


def window_index(origin: torch.Tensor, side: int, width: int) -> torch.Tensor:
    """Flat pixel indices (B, side * side) of the windows at origin (B, 2) in a width-wide image."""
    steps = torch.arange(side, device=origin.device)
    rows = origin[:, 1, None] + steps
    cols = origin[:, 0, None] + steps
    return (rows[:, :, None] * width + cols[:, None, :]).reshape(origin.shape[0], side * side)
