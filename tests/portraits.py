"""Portrait helpers for tests: the shipped portrait and measurements on rendered frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.face import landmarks as fl
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


def streak_fraction(rgb: np.ndarray, min_run: int = 12) -> float:
    """Share of the frame made of replicated-edge streaks.

    A streak pixel lies in a run, starting at the frame's edge and at least
    `min_run` long, along which the image does not change (within one grey
    level) while it does change across the run: the signature of edge pixels
    repeated outward. A flat background is constant both ways and is not counted.
    """
    grey = rgb.astype(np.float32).mean(-1) if rgb.ndim == 3 else rgb.astype(np.float32)
    total = 0
    for view in (grey, grey[:, ::-1], grey.T, grey.T[:, ::-1]):  # the edge at column 0
        flat_along = np.abs(np.diff(view, axis=1)) <= 1.0
        run = np.cumprod(flat_along, axis=1).sum(1)  # per row: constant length from the edge
        varies_across = np.abs(np.diff(view[:, :min_run], axis=0)).mean(1) > 2.0
        streaky = (run[:-1] >= min_run) & varies_across
        total += int(run[:-1][streaky].sum())
    return total / grey.size
