"""The realism judge's own measures (benchmarks/bench_realism.py) on known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_realism import fold_check
from engines.face.encoder import FaceEncoder, FaceEncoderConfig


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    return FaceEncoder(FaceEncoderConfig(cache_dir=tmp_path_factory.mktemp("cache"))).encode(None)


def _turned(lm: np.ndarray, yaw: float) -> np.ndarray:
    centre = lm[:468].mean(0)
    x, y, z = (lm - centre).T
    x = np.cos(yaw) * x + np.sin(yaw) * z
    return np.stack([x, y], 1) + centre[:2] + np.array([7.0, -3.0])


@pytest.mark.parametrize("yaw", [-0.35, 0.35])
def test_a_rigid_turn_hides_triangles_but_tears_none(builtin, yaw: float) -> None:
    lm = builtin.landmarks.astype(np.float64)
    posed = _turned(lm, yaw)
    folds = fold_check(builtin.image, lm, builtin.image, posed, (yaw, 0.0))
    assert folds["rigid_flips"] > 0.02  # the far side of the nose really turns away
    assert folds["raw_flips"] == pytest.approx(folds["rigid_flips"], abs=1e-3)
    assert folds["triangle_flips"] < 1e-3


def test_a_torn_cheek_counts_beyond_the_turn(builtin) -> None:
    lm = builtin.landmarks.astype(np.float64)
    posed = _turned(lm, 0.2)
    # Pull one cheek's points through their neighbours, as a fold would.
    cheek = [50, 101, 118, 117, 123, 147, 187, 205, 36, 142]
    posed[cheek, 0] += 0.25 * np.ptp(lm[:468, 0])
    folds = fold_check(builtin.image, lm, builtin.image, posed, (0.2, 0.0))
    assert folds["triangle_flips"] > 0.01
