"""Avatar: everything known about one portrait, computed once and cached on disk."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .mesh import WarpMesh

__all__ = ["Avatar", "save_avatar", "load_avatar"]


@dataclass(frozen=True)
class Avatar:
    """A prepared portrait.

    image: uint8 (S, S, 3) RGB square crop around the head, S = image_size.
    person_mask: float32 (S, S) in [0, 1], the layer that moves with the head.
    background: uint8 (S, S, 3) the crop with the person inpainted away,
        shown where head motion uncovers what was behind it.
    landmarks: float32 (478, 3) MediaPipe landmarks in crop pixels (z on the x scale).
    pose: float32 (3,) the portrait's own head yaw, pitch, roll in radians.
    expression: dict of ARKit-named coefficients the portrait starts with
        (e.g. jawOpen if painted with the mouth open); informational.
    mesh: the warp mesh and its per-pixel bindings.
    content_hash: sha256 of the source file bytes plus encoder settings.
    notes: what the encoder did that the user should know (several faces, downscaled...).
    crop_box: (x0, y0, side) of the crop in the source image's pixels.
    """

    image: np.ndarray
    person_mask: np.ndarray
    background: np.ndarray
    landmarks: np.ndarray
    pose: np.ndarray
    expression: dict[str, float]
    mesh: WarpMesh
    content_hash: str
    notes: tuple[str, ...]
    crop_box: tuple[float, float, float]

    @property
    def image_size(self) -> int:
        return int(self.image.shape[0])


_ARRAY_FIELDS = ("image", "person_mask", "background", "landmarks", "pose")
_MESH_FIELDS = tuple(f.name for f in dataclasses.fields(WarpMesh) if f.name != "field_size")


def save_avatar(avatar: Avatar, path: Path) -> None:
    """Write atomically, so a crash mid-write never leaves a corrupt cache entry."""
    arrays = {name: getattr(avatar, name) for name in _ARRAY_FIELDS}
    arrays.update({f"mesh_{name}": getattr(avatar.mesh, name) for name in _MESH_FIELDS})
    meta = {
        "expression": avatar.expression,
        "content_hash": avatar.content_hash,
        "notes": list(avatar.notes),
        "crop_box": list(avatar.crop_box),
        "field_size": avatar.mesh.field_size,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)


def load_avatar(path: Path) -> Avatar:
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        mesh = WarpMesh(
            **{name: data[f"mesh_{name}"] for name in _MESH_FIELDS},
            field_size=int(meta["field_size"]),
        )
        arrays = {name: data[name] for name in _ARRAY_FIELDS}
    return Avatar(
        **arrays,
        expression={k: float(v) for k, v in meta["expression"].items()},
        mesh=mesh,
        content_hash=meta["content_hash"],
        notes=tuple(meta["notes"]),
        crop_box=tuple(meta["crop_box"]),  # type: ignore[arg-type]
    )
