"""Portrait helpers for tests: the shipped portrait and measurements on rendered frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engines.face import landmarks as fl
from engines.face.image_io import LUMA_WEIGHTS
from engines.paths import default_portrait_path

SHARED_PORTRAITS = Path(__file__).resolve().parents[2] / "shared" / "assets" / "portraits"


def portrait_path() -> Path:
    return default_portrait_path()


def landmarks_of(rgb: np.ndarray) -> np.ndarray:
    """Landmarks traced by MediaPipe on a rendered frame: an independent read of what it shows."""
    landmarks = fl.face_mesh(np.ascontiguousarray(rgb))
    assert landmarks is not None, "the landmarker found no face in a rendered frame"
    return landmarks


def mouth_gap(rgb: np.ndarray) -> float:
    """Inner-lip opening / face height, measured on the image itself."""
    return fl.inner_lip_gap(landmarks_of(rgb))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB uint8 image (H, W, 3) as PNG file bytes, as an upload would arrive."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return data.tobytes()


def luma(rgb: np.ndarray) -> np.ndarray:
    """float32 (H, W) Rec. 601 luminance of an RGB image, in its own levels."""
    return rgb.astype(np.float32) @ LUMA_WEIGHTS


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """points (..., V, 2), triangles (M, 3) -> signed areas (..., M) in square pixels."""
    a, b, c = (points[..., triangles[:, k], :] for k in range(3))
    ab, ac = b - a, c - a
    return 0.5 * (ab[..., 0] * ac[..., 1] - ab[..., 1] * ac[..., 0])
