"""Test portraits for benchmarks/bench_realism.py, made on the fly (nothing downloaded).

    portraits = realism_portraits()            # [Portrait(name, rgb, expect_refusal, note)]

- the paintings in /work/shared/assets/portraits/*.jpg when that folder exists
  (la_velata.jpg is the built-in portrait, always present through engines.paths);
- scikit-image's astronaut (a smiling photo with teeth), camera (grayscale
  cameraman, made 3-channel) and chelsea (a cat: the encoder must refuse it);
- derived from the built-in portrait: the face near the left edge, a wide and a
  tall strip around the face, grayscale, sepia, and a parted-lip source (the
  built-in portrait rendered by this checkout's renderer with jawOpen 0.6).

Every image is RGB uint8 of shape (H, W, 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["Portrait", "realism_portraits", "parted_lip_source", "SHARED_PORTRAITS"]

SHARED_PORTRAITS = Path("/work/shared/assets/portraits")
PARTED_JAW_OPEN = 0.6
# Sepia as the usual photo-editor matrix (rows: output R, G, B from input R, G, B).
_SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


@dataclass(frozen=True)
class Portrait:
    """One test portrait: rgb is uint8 (H, W, 3); expect_refusal marks a non-face."""

    name: str
    rgb: np.ndarray
    expect_refusal: bool = False
    note: str = ""


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot decode {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _face_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the largest face MediaPipe detects, in pixels."""
    from engines.face.landmarks import detect_faces

    faces = detect_faces(rgb)
    if not faces:
        raise ValueError("no face in the built-in portrait; cannot derive the test crops")
    x0, y0, x1, y1 = faces[0].box
    return int(x0), int(y0), int(x1), int(y1)


def _crop(rgb: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


def _derived(base: np.ndarray) -> list[Portrait]:
    """Crops and colourings of the built-in portrait that stress framing and colour."""
    h, w = base.shape[:2]
    fx0, fy0, fx1, fy1 = _face_box(base)
    fw, fh = fx1 - fx0, fy1 - fy0
    cx, cy = (fx0 + fx1) // 2, (fy0 + fy1) // 2
    # Face 5% of the crop's width from its left edge; the encoder's square crop
    # around the head must then reach past the source's left edge.
    side = int(2.6 * fw)
    left = _crop(base, fx0 - side // 20, cy - side // 2, fx0 - side // 20 + side, cy + side // 2)
    # A wide strip as close to 3:1 as the painting's width allows, at least one face high.
    strip_h = max(fh, w // 3)
    wide = _crop(base, 0, cy - strip_h // 2, w, cy - strip_h // 2 + strip_h)
    # A tall 1:3 strip a little wider than the face.
    strip_w = int(1.3 * fw)
    tall_h = min(h, 3 * strip_w)
    top = min(max(0, cy - tall_h // 2), h - tall_h)
    tall = _crop(base, cx - strip_w // 2, top, cx - strip_w // 2 + strip_w, top + tall_h)
    gray = cv2.cvtColor(cv2.cvtColor(base, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    sepia = np.clip(base.astype(np.float64) @ _SEPIA.T, 0, 255).astype(np.uint8)

    def shape(img: np.ndarray) -> str:
        return f"{img.shape[1]}x{img.shape[0]}"

    return [
        Portrait("offcentre_left", left, note=f"face at the left edge, {shape(left)}"),
        Portrait("strip_wide", wide, note=f"wide strip {shape(wide)}"),
        Portrait("strip_tall", tall, note=f"tall strip {shape(tall)}"),
        Portrait("grayscale", gray, note="built-in portrait, grayscale"),
        Portrait("sepia", sepia, note="built-in portrait, sepia"),
    ]


def parted_lip_source(base: np.ndarray | None = None) -> np.ndarray:
    """The built-in portrait (or base) rendered by this checkout with jawOpen PARTED_JAW_OPEN.

    Returns the rendered frame, uint8 (S, S, 3): a portrait whose own mouth is open.
    """
    import torch

    from engines.face.encoder import FaceEncoder
    from engines.motion.space import index_of, neutral_motion
    from engines.render.renderer import FaceRenderer

    source = None if base is None else _png_bytes(base)
    renderer = FaceRenderer(FaceEncoder().encode(source))
    motion = neutral_motion(1)
    motion[0, index_of("jawOpen")] = PARTED_JAW_OPEN
    with torch.inference_mode():
        return np.ascontiguousarray(renderer.render(motion)[0])


def _png_bytes(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def realism_portraits(parted_lips: bool = True) -> list[Portrait]:
    """All test portraits, in a fixed order; parted_lips=False skips the rendered one."""
    import skimage.data

    from engines.paths import default_portrait_path

    base = _read_rgb(default_portrait_path())
    found = [Portrait("la_velata", base, note="built-in portrait")]
    if SHARED_PORTRAITS.is_dir():
        for path in sorted(SHARED_PORTRAITS.glob("*.jpg")):
            if path.name != default_portrait_path().name:
                found.append(Portrait(path.stem, _read_rgb(path), note=f"shared {path.name}"))
    camera = cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2RGB)
    found += [
        Portrait("astronaut", np.ascontiguousarray(skimage.data.astronaut()), note="smile, teeth"),
        Portrait("cameraman", camera, note="grayscale photo"),
        Portrait("chelsea_cat", np.ascontiguousarray(skimage.data.chelsea()), True, "a cat"),
    ]
    found += _derived(base)
    if parted_lips:
        found.append(
            Portrait(
                "parted_lips",
                parted_lip_source(),
                note=f"built-in rendered with jawOpen {PARTED_JAW_OPEN} by this checkout",
            )
        )
    return found
