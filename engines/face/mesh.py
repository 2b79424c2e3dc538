"""The warp mesh: face landmarks plus anchor points, triangulated, with per-pixel bindings.

The renderer moves mesh vertices and needs a dense field; binding every pixel
of the field grid to one triangle and its barycentric weights once per
portrait turns the per-frame interpolation into a gather and a weighted sum.

Coordinates are continuous pixels of the (S, S) portrait crop: pixel i covers
[i, i + 1), so its centre is i + 0.5 (grid_sample's align_corners=False).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import Delaunay

from .landmarks import FACE_OVAL

__all__ = ["WarpMesh", "build_warp_mesh", "NUM_FACE_VERTICES"]

# Irises (468..477) stay out of the triangulation: the renderer moves them
# with a local eye warp, and as mesh vertices they would fold the lids.
NUM_FACE_VERTICES = 468

# Rings around the face oval, as multiples of the oval's radius from its
# centre, and how fully each follows head motion (hair, veil, ears).
_RING_SCALES = (1.3, 1.65)
_RING_FOLLOW = (1.0, 0.8)
_BORDER_STEP = 64


@dataclass(frozen=True)
class WarpMesh:
    """Mesh over the portrait crop.

    vertices: float32 (V, 3) source positions; the first NUM_FACE_VERTICES are
        face landmarks, then head rings, then fixed border points.
    follow: float32 (V,) how much each vertex follows head pose (1 = rigidly).
    is_face: bool (V,) True for landmark vertices (these carry expressions).
    triangles: int32 (M, 3) vertex indices.
    bind_vertices: int32 (R*R, 3) vertex indices of the triangle under each field pixel.
    bind_weights: float32 (R*R, 3) barycentric weights of each field pixel.
    field_size: R, the side of the field grid.
    """

    vertices: np.ndarray
    follow: np.ndarray
    is_face: np.ndarray
    triangles: np.ndarray
    bind_vertices: np.ndarray
    bind_weights: np.ndarray
    field_size: int


def build_warp_mesh(landmarks: np.ndarray, image_size: int, field_size: int) -> WarpMesh:
    """Triangulate landmarks plus anchors and bind a (field_size, field_size) grid to it.

    landmarks: float32 (478, 3) in crop pixels.
    """
    face = landmarks[:NUM_FACE_VERTICES].astype(np.float32)
    rings, ring_follow = _head_rings(face, image_size)
    border = _border_points(image_size)
    depth = float(face[:, 2].mean())
    border3 = np.concatenate([border, np.full((len(border), 1), depth, np.float32)], axis=1)
    vertices = np.concatenate([face, rings, border3]).astype(np.float32)
    follow = np.concatenate([np.ones(len(face)), ring_follow, np.zeros(len(border))]).astype(
        np.float32
    )
    is_face = np.arange(len(vertices)) < len(face)
    triangulation = Delaunay(vertices[:, :2].astype(np.float64))
    triangles = triangulation.simplices.astype(np.int32)
    bind_vertices, bind_weights = _bind_grid(vertices[:, :2], triangulation, image_size, field_size)
    return WarpMesh(vertices, follow, is_face, triangles, bind_vertices, bind_weights, field_size)


def _head_rings(face: np.ndarray, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Anchor rings outside the face oval: float32 (N, 3) points and (N,) follow weights.

    Each ring point takes the depth of the silhouette point it extends, so a
    head turn moves hair and silhouette together instead of folding the warp
    between them (the far side of a turned face is much deeper than the middle).
    """
    oval = face[list(FACE_OVAL)]
    centre = oval.mean(axis=0)
    centre[2] = 0.0
    chin_y = float(face[152, 1])
    face_height = chin_y - float(face[10, 1])
    points, follow = [], []
    for scale, weight in zip(_RING_SCALES, _RING_FOLLOW, strict=True):
        ring = centre + (oval - centre) * np.array([scale, scale, 1.0], np.float32)
        # Below the chin is neck: it should stretch between the moving head
        # and the still torso rather than travel with the head.
        below = np.clip((ring[:, 1] - chin_y) / (0.35 * face_height), 0.0, 1.0)
        points.append(ring)
        follow.append(weight * (1.0 - 0.75 * below))
    pts = np.concatenate(points)
    wts = np.concatenate(follow)
    margin = 0.02 * image_size
    inside = np.all((pts[:, :2] > margin) & (pts[:, :2] < image_size - margin), axis=1)
    return pts[inside].astype(np.float32), wts[inside].astype(np.float32)


def _border_points(image_size: int) -> np.ndarray:
    """Fixed points along the crop border, corners included: float32 (N, 2)."""
    s = float(image_size)
    ticks = np.arange(0.0, s + 1e-3, _BORDER_STEP, dtype=np.float32)
    top = np.stack([ticks, np.zeros_like(ticks)], 1)
    bottom = np.stack([ticks, np.full_like(ticks, s)], 1)
    left = np.stack([np.zeros_like(ticks[1:-1]), ticks[1:-1]], 1)
    right = np.stack([np.full_like(ticks[1:-1], s), ticks[1:-1]], 1)
    return np.concatenate([top, bottom, left, right]).astype(np.float32)


def _bind_grid(
    points: np.ndarray, triangulation: Delaunay, image_size: int, field_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Triangle vertices and barycentric weights for every field pixel centre.

    Exact point location (not rasterisation): a pixel bound to a neighbouring
    sliver triangle would extrapolate wildly and speckle the warp.
    """
    step = image_size / field_size
    ticks = (np.arange(field_size) + 0.5) * step
    centres = np.stack(np.meshgrid(ticks, ticks), -1).reshape(-1, 2)  # (R*R)x2, x then y
    # Border pixel centres lie inside the hull, so every pixel finds a triangle.
    ids = triangulation.find_simplex(centres)
    if (ids < 0).any():
        ids[ids < 0] = triangulation.find_simplex(
            np.clip(centres[ids < 0], 1e-3, image_size - 1e-3)
        )
    tri = triangulation.simplices[ids]  # (R*R)x3
    weights = _barycentric(centres, points[tri])
    return tri.astype(np.int32), weights.astype(np.float32)


def _barycentric(p: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Barycentric weights of points p (N, 2) in triangles corners (N, 3, 2) -> (N, 3)."""
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    v0, v1, v2 = b - a, c - a, p - a
    d00 = (v0 * v0).sum(1)
    d01 = (v0 * v1).sum(1)
    d11 = (v1 * v1).sum(1)
    d20 = (v2 * v0).sum(1)
    d21 = (v2 * v1).sum(1)
    denom = d00 * d11 - d01 * d01
    denom = np.where(np.abs(denom) < 1e-9, 1e-9, denom)
    w1 = (d11 * d20 - d01 * d21) / denom
    w2 = (d00 * d21 - d01 * d20) / denom
    return np.stack([1.0 - w1 - w2, w1, w2], axis=1)
