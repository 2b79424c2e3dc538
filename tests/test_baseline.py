"""engines.motion.baseline on real speech: the mouth follows speech, the face never freezes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.audio.decoding import read_audio
from engines.audio.features import (
    FEATURE_NAMES,
    AudioFeatureConfig,
    AudioFeatureExtractor,
    feature_index,
)
from engines.motion import space as ms
from engines.motion.baseline import BaselineConfig, ProceduralMotionSource
from engines.types import AudioChunk, AudioFeatures, MotionWindow

FPS = 25
CONFIG = BaselineConfig()


def _features(samples: np.ndarray) -> AudioFeatures:
    extractor = AudioFeatureExtractor(AudioFeatureConfig(), FPS)
    head = extractor.push(AudioChunk(samples, 16000, 0))
    tail = extractor.flush()
    return AudioFeatures(np.concatenate([head.values, tail.values]), FPS, 0, head.names)


def _motion(features: AudioFeatures, seed: int = 0) -> np.ndarray:
    return ProceduralMotionSource(CONFIG, FPS, seed).step(features).values


def _ch(motion: np.ndarray, name: str) -> np.ndarray:
    return motion[:, ms.index_of(name)]


def _blink_onsets(motion: np.ndarray) -> np.ndarray:
    closed = _ch(motion, "eyeBlinkLeft") > 0.5
    return np.flatnonzero(closed[1:] & ~closed[:-1]) + 1


@pytest.fixture(scope="module")
def speech_features(speech_path: Path) -> AudioFeatures:
    return _features(read_audio(speech_path))


@pytest.fixture(scope="module")
def masks(speech_features: AudioFeatures, speech_span: tuple[float, float]) -> dict:
    times = (np.arange(len(speech_features)) + 0.5) / FPS
    start, end = speech_span
    return {
        "speech": (times > start) & (times < end),
        # Leave the jaw its release time after the speech ends.
        "silence": (times < start - 0.1) | (times > end + 0.4),
    }


@pytest.fixture(scope="module")
def speech_motion(speech_features: AudioFeatures) -> np.ndarray:
    return _motion(speech_features)


def test_window_shape_pts_and_range(speech_features: AudioFeatures) -> None:
    shifted = AudioFeatures(speech_features.values, FPS, 1234, speech_features.names)
    window = ProceduralMotionSource(CONFIG, FPS).step(shifted)
    assert isinstance(window, MotionWindow)
    assert (window.pts, len(window), window.fps) == (1234, len(speech_features), FPS)
    assert window.values.dtype == np.float32
    np.testing.assert_array_equal(ms.clip_motion(window.values.copy()), window.values)


def test_jaw_opens_in_speech_and_rests_in_silence(speech_motion: np.ndarray, masks: dict) -> None:
    jaw = _ch(speech_motion, "jawOpen")
    speech, silence = jaw[masks["speech"]], jaw[masks["silence"]]
    assert np.max(silence) < 0.02
    assert np.mean(speech) > 0.15
    assert 0.3 < np.percentile(speech, 90) < 0.8  # typical speech peaks
    assert np.min(speech) < 0.15  # it closes again between syllables


def test_jaw_follows_loudness(
    speech_motion: np.ndarray, speech_features: AudioFeatures, masks: dict
) -> None:
    rms = speech_features.values[masks["speech"], feature_index("rms_db")]
    jaw = _ch(speech_motion, "jawOpen")[masks["speech"]]
    assert np.corrcoef(rms, jaw)[0, 1] > 0.6


def test_lips_closed_in_silence_and_on_dips(speech_motion: np.ndarray, masks: dict) -> None:
    close, press = _ch(speech_motion, "mouthClose"), _ch(speech_motion, "mouthPressLeft")
    assert np.all(close[masks["silence"]] > 0.05) and np.all(press[masks["silence"]] > 0.02)
    jaw = _ch(speech_motion, "jawOpen")
    in_speech = masks["speech"]
    # Closures inside speech: some frames with a nearly shut jaw and pressed lips...
    assert np.any(in_speech & (close > 0.15) & (jaw < 0.2))
    # ...but open vowels do not press the lips.
    assert np.all(close[in_speech & (jaw > 0.4)] < 0.1)


def test_teeth_show_on_fricatives(
    speech_motion: np.ndarray, speech_features: AudioFeatures, masks: dict
) -> None:
    high = speech_features.values[:, feature_index("high_ratio")]
    upper = _ch(speech_motion, "mouthUpperUpLeft")
    fricative = masks["speech"] & (high > 0.5)
    vowel = masks["speech"] & (high < 0.05)
    assert fricative.any() and vowel.any()
    assert np.mean(upper[fricative]) > np.mean(upper[vowel]) + 0.05


def test_lip_shape_follows_vowel_colour() -> None:
    # Features with a fixed loudness and voicing, only the centroid moves: dark then bright.
    rows = np.zeros((150, len(FEATURE_NAMES)), np.float32)
    rows[:, feature_index("rms_db")] = -100.0
    rows[25:, feature_index("rms_db")] = -20.0
    rows[25:, feature_index("voiced")] = 0.9
    rows[25:, feature_index("low_ratio")] = 0.7
    rows[:, feature_index("centroid_hz")] = 500.0
    rows[75:90, feature_index("centroid_hz")] = 250.0  # rounded (oo)
    rows[120:135, feature_index("centroid_hz")] = 1000.0  # front (ee)
    motion = _motion(AudioFeatures(rows, FPS, 0, FEATURE_NAMES))
    funnel, stretch = _ch(motion, "mouthFunnel"), _ch(motion, "mouthStretchLeft")
    assert funnel[80:90].mean() > 0.1 > funnel[125:135].mean()
    assert stretch[125:135].mean() > 0.05 > stretch[80:90].mean()
    assert _ch(motion, "mouthSmileLeft")[125:135].mean() > 0.02


def test_brows_and_nods_come_with_speech(speech_motion: np.ndarray, masks: dict) -> None:
    brow = _ch(speech_motion, "browInnerUp")
    assert brow[masks["speech"]].max() > 0.1
    assert brow[masks["speech"]].mean() > 5 * brow[masks["silence"]].mean() + 0.02
    assert np.all(_ch(speech_motion, "browOuterUpLeft") <= brow + 1e-6)


def test_head_moves_more_in_speech(speech_path: Path) -> None:
    samples = read_audio(speech_path)
    features = _features(np.concatenate([np.zeros(6 * 16000, np.float32), samples, samples]))
    talking = np.zeros(len(features), bool)
    talking[7 * FPS :] = True  # past the 6 s of silence and the 1 s lead-in of the clip
    speeds = {True: [], False: []}
    for seed in range(6):
        motion = _motion(features, seed)
        speed = sum(np.abs(np.diff(_ch(motion, n))) for n in ("headYaw", "headPitch"))
        for part in speeds:
            speeds[part].append(speed[talking[1:] == part].mean())
    assert np.mean(speeds[True]) > 1.3 * np.mean(speeds[False])


def test_blinks_in_ten_seconds_of_silence() -> None:
    counts = []
    for seed in range(6):
        motion = ProceduralMotionSource(CONFIG, FPS, seed).idle(10 * FPS).values
        left, right = _ch(motion, "eyeBlinkLeft"), _ch(motion, "eyeBlinkRight")
        np.testing.assert_array_equal(left, right)
        onsets = _blink_onsets(motion)
        counts.append(len(onsets))
        assert len(onsets) >= 1, f"seed {seed}: no blink in 10 s"
        assert np.all(np.diff(onsets) / FPS >= CONFIG.blink_refractory_s - 1 / FPS)
        for onset in onsets:
            blink = left[max(0, onset - 3) : onset + 8]
            assert blink.max() > 0.95  # fully closed at the closed point
            assert 2 <= np.count_nonzero(blink > 0.1) <= 0.3 * FPS  # ~150-250 ms
    assert 1.5 <= np.mean(counts) <= 5.0  # one blink every 2-6 s


def test_blinks_with_silent_features(silence_path: Path) -> None:
    silent = _features(np.concatenate([read_audio(silence_path)] * 4))  # 12 s
    motion = _motion(silent, seed=3)
    assert len(_blink_onsets(motion)) >= 1
    assert np.max(_ch(motion, "jawOpen")) < 0.01


def test_idle_head_moves_but_stays_small() -> None:
    for seed in range(4):
        motion = ProceduralMotionSource(CONFIG, FPS, seed).idle(20 * FPS).values
        yaw, pitch, roll = (_ch(motion, n) for n in ("headYaw", "headPitch", "headRoll"))
        assert yaw.std() > 0.003 and pitch.std() > 0.002 and roll.std() > 0.001
        assert np.mean(np.abs(yaw) < 0.06) > 0.9 and np.abs(yaw).max() < 0.15
        assert np.abs(pitch).max() < 0.12 and np.abs(roll).max() < 0.1
        ty = _ch(motion, "headTy")
        assert ty.std() > 0.001 and np.abs(ty).max() < 0.01  # breathing
        gaze = _ch(motion, "gazeYaw")
        assert len(np.unique(np.round(gaze, 3))) > 3 and np.abs(gaze).max() < 0.2
        assert np.all(_ch(motion, "jawOpen") < 0.01)


def test_never_a_frozen_face() -> None:
    motion = ProceduralMotionSource(CONFIG, FPS, seed=5).idle(10 * FPS).values
    change = np.abs(np.diff(motion, axis=0)).max(axis=1)
    assert np.all(change > 0), "some frame repeats the previous one exactly"


def test_deterministic_per_seed_and_seeds_differ(speech_features: AudioFeatures) -> None:
    np.testing.assert_array_equal(_motion(speech_features, 7), _motion(speech_features, 7))
    assert not np.allclose(_motion(speech_features, 7), _motion(speech_features, 8))
    a = ProceduralMotionSource(CONFIG, FPS, 1).idle(200).values
    b = ProceduralMotionSource(CONFIG, FPS, 2).idle(200).values
    assert not np.allclose(a, b)


def test_reset_replays_the_same_motion(speech_features: AudioFeatures) -> None:
    source = ProceduralMotionSource(CONFIG, FPS, 4)
    first = source.step(speech_features).values
    source.idle(37)
    source.reset()
    np.testing.assert_array_equal(source.step(speech_features).values, first)


def test_chunking_does_not_change_motion(speech_features: AudioFeatures) -> None:
    whole = _motion(speech_features, 9)
    source = ProceduralMotionSource(CONFIG, FPS, 9)
    rng = np.random.default_rng(0)
    parts, start = [], 0
    while start < len(speech_features):
        stop = min(len(speech_features), start + int(rng.integers(1, 12)))
        part = AudioFeatures(speech_features.values[start:stop], FPS, start, speech_features.names)
        window = source.step(part)
        assert window.pts == start
        parts.append(window.values)
        start = stop
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_idle_pts_continue_after_step(speech_features: AudioFeatures) -> None:
    source = ProceduralMotionSource(CONFIG, FPS)
    source.step(speech_features)
    assert source.idle(10).pts == len(speech_features)


def test_rejects_mismatched_input(speech_features: AudioFeatures) -> None:
    with pytest.raises(ValueError, match="fps"):
        ProceduralMotionSource(CONFIG, 30).step(speech_features)
    unnamed = AudioFeatures(np.zeros((3, 5), np.float32), FPS, 0, ("a", "b", "c", "d", "e"))
    with pytest.raises(ValueError, match="rms_db"):
        ProceduralMotionSource(CONFIG, FPS).step(unnamed)
