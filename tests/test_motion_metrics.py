"""engines.training.metrics: each measure tells the cases it exists to tell apart."""

from __future__ import annotations

import numpy as np
import pytest

from engines.motion import space as ms
from engines.training.metrics import (
    blink_onsets,
    head_velocity,
    jerk,
    lip_sync_score,
    open_vowel_rate,
)
from engines.training.phone_align import openness_curve
from engines.training.visemes import Phone

FPS = 25
# "Bob ate a map": B AA B | EY T | AH | M AE P, 40 ms frames.
PHONES = [
    Phone("SIL", 0.0, 0.2),
    Phone("B", 0.2, 0.28),
    Phone("AA", 0.28, 0.44),
    Phone("B", 0.44, 0.52),
    Phone("EY", 0.52, 0.68),
    Phone("T", 0.68, 0.76),
    Phone("AH", 0.76, 0.88),
    Phone("M", 0.88, 0.96),
    Phone("AE", 0.96, 1.12),
    Phone("P", 1.12, 1.2),
    Phone("SIL", 1.2, 1.6),
]
T = 40


def _mouth(jaw: np.ndarray, close: np.ndarray) -> np.ndarray:
    motion = ms.neutral_motion(len(jaw)).copy()
    motion[:, ms.index_of("jawOpen")] = jaw
    motion[:, ms.index_of("mouthClose")] = close
    return motion


def test_a_mouth_that_follows_the_phones_scores_everywhere() -> None:
    jaw = 0.6 * openness_curve(PHONES, FPS, T)  # open by vowel height, shut elsewhere
    score = lip_sync_score(PHONES, _mouth(jaw, np.zeros(T)), FPS)
    assert (score.bilabials, score.bilabials_closed) == (4, 4)
    assert (score.open_vowels, score.open_vowels_open) == (2, 2)  # AA, AE
    assert score.openness_r == pytest.approx(1.0) and score.openness_lag == 0


def test_a_shut_mouth_closes_on_bilabials_but_fails_the_vowels() -> None:
    score = lip_sync_score(PHONES, _mouth(np.zeros(T), np.full(T, 0.1)), FPS)
    assert score.bilabials_closed == score.bilabials == 4
    assert score.open_vowels_open == 0
    assert open_vowel_rate(PHONES, _mouth(np.full(T, 0.5), np.zeros(T)), FPS) == (2, 2)


def test_a_late_jaw_shows_its_lag() -> None:
    late = np.roll(0.6 * openness_curve(PHONES, FPS, T), 2)
    assert lip_sync_score(PHONES, _mouth(late, np.zeros(T)), FPS).openness_lag == 2


def test_jerk_finds_a_seam_and_velocity_measures_turning() -> None:
    t = np.arange(60) / FPS
    motion = ms.neutral_motion(60).copy()
    motion[:, ms.index_of("headYaw")] = 0.1 * np.sin(2 * np.pi * 0.5 * t)
    smooth = jerk(motion)
    motion[30:, ms.index_of("headYaw")] += 0.02  # a step between frames 29 and 30
    stepped = jerk(motion)
    assert int(np.argmax(stepped)) in (27, 28, 29) and stepped.max() > 10 * smooth.max()
    speed = head_velocity(ms.neutral_motion(10), FPS)
    assert speed.shape == (9,) and np.all(speed == 0)
    turning = ms.neutral_motion(10).copy()
    turning[:, ms.index_of("headYaw")] = np.arange(10) * 0.01  # 0.25 rad/s
    assert head_velocity(turning, FPS) == pytest.approx(np.full(9, 0.25))


def test_blink_onsets_counts_closures() -> None:
    motion = ms.neutral_motion(50).copy()
    for start in (5, 30):
        motion[start : start + 4, ms.index_of("eyeBlinkLeft")] = 1.0
        motion[start : start + 4, ms.index_of("eyeBlinkRight")] = 1.0
    assert blink_onsets(motion) == 2
    assert blink_onsets(ms.neutral_motion(50)) == 0
