"""engines.audio.features: timing contract, chunk invariance, features that mean what they say."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from engines.audio.decoding import iter_audio, read_audio
from engines.audio.features import (
    FEATURE_NAMES,
    SCALAR_NAMES,
    AudioFeatureConfig,
    AudioFeatureExtractor,
    feature_index,
    feature_names,
    frame_count,
    mel_filterbank,
)
from engines.types import AudioChunk

SR = 16000
CONFIG = AudioFeatureConfig()


def _run(samples: np.ndarray, fps: float, sizes: Iterable[int] | None = None) -> np.ndarray:
    """Push `samples` in chunks of `sizes` (whole if None), flush: float32 array (T, F)."""
    extractor = AudioFeatureExtractor(CONFIG, fps)
    rows, pos, expected_pts = [], 0, 0
    sizes = iter(sizes) if sizes is not None else iter([max(len(samples), 1)])
    while pos < len(samples):
        n = next(sizes)
        out = extractor.push(AudioChunk(samples[pos : pos + n], SR, pos))
        assert out.pts == expected_pts and out.values.shape[1] == len(FEATURE_NAMES)
        rows.append(out.values)
        expected_pts += len(out)
        pos += n
    tail = extractor.flush()
    assert tail.pts == expected_pts
    rows.append(tail.values)
    return np.concatenate(rows)


def _col(rows: np.ndarray, name: str) -> np.ndarray:
    return rows[:, feature_index(name)]


def _tone(hz: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def speech(speech_path: Path) -> np.ndarray:
    return read_audio(speech_path)


@pytest.fixture(scope="module")
def speech_rows(speech: np.ndarray) -> np.ndarray:
    return _run(speech, 25)


def test_frame_count_definition() -> None:
    assert frame_count(16000, 16000, 25) == 25
    assert frame_count(0, 16000, 25) == 1
    assert frame_count(1, 16000, 30) == 1
    assert frame_count(16000 * 10, 16000, 29.97) == 300
    assert frame_count(48000, 48000, 30) == 30


@pytest.mark.parametrize("fps", [25, 30, 29.97, 50])
@pytest.mark.parametrize("num_samples", [0, 1, 399, 533, 16000, 16001, 37123])
def test_total_rows_equal_frame_count(fps: float, num_samples: int) -> None:
    samples = np.random.default_rng(num_samples).normal(0, 0.1, num_samples).astype(np.float32)
    rows = _run(samples, fps, sizes=[1000] * (num_samples // 1000 + 1))
    assert len(rows) == frame_count(num_samples, SR, fps)
    assert np.all(np.isfinite(rows))


def test_chunking_does_not_change_rows(speech: np.ndarray, speech_rows: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    random_sizes = rng.integers(1, 4000, size=len(speech)).tolist()
    tiny_then_big = [1, 2, 3, 159, 161, 399, 401] * 50 + [100000]
    for sizes in (random_sizes, tiny_then_big, [160] * len(speech)):
        np.testing.assert_allclose(_run(speech, 25, sizes), speech_rows, rtol=1e-5, atol=1e-4)


def test_iter_audio_chunks_feed_the_extractor(speech_path: Path, speech_rows: np.ndarray) -> None:
    extractor = AudioFeatureExtractor(CONFIG, 25)
    rows = [extractor.push(chunk).values for chunk in iter_audio(speech_path, chunk_samples=640)]
    rows.append(extractor.flush().values)
    np.testing.assert_allclose(np.concatenate(rows), speech_rows, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fps", [25, 30])
def test_row_k_is_emitted_exactly_when_its_lookahead_arrives(fps: float) -> None:
    samples = np.random.default_rng(1).normal(0, 0.1, SR * 2).astype(np.float32)
    extractor = AudioFeatureExtractor(CONFIG, fps)
    assert extractor.latency_s == pytest.approx(CONFIG.lookahead_ms / 1000)
    pushed = emitted = 0
    for k in range(20):
        due = math.ceil(((k + 0.5) / fps + extractor.latency_s) * SR - 1e-9)
        emitted += len(extractor.push(AudioChunk(samples[pushed : due - 1], SR, pushed)))
        pushed = due - 1
        assert emitted == k, f"row {k} came out before audio up to its look-ahead"
        emitted += len(extractor.push(AudioChunk(samples[pushed:due], SR, pushed)))
        pushed = due
        assert emitted == k + 1, f"row {k} did not come out once its look-ahead arrived"


def test_rows_ignore_audio_past_their_lookahead(speech: np.ndarray) -> None:
    cut = len(speech) // 2
    extractor = AudioFeatureExtractor(CONFIG, 25)
    early = extractor.push(AudioChunk(speech[:cut], SR, 0)).values
    changed = speech.copy()
    changed[cut:] = np.random.default_rng(2).normal(0, 0.3, len(speech) - cut)
    later = _run(changed, 25)
    assert len(early) > 0
    np.testing.assert_allclose(later[: len(early)], early, rtol=1e-5, atol=1e-4)


def test_flush_resets_for_a_new_stream(speech: np.ndarray, speech_rows: np.ndarray) -> None:
    extractor = AudioFeatureExtractor(CONFIG, 25)
    for _ in range(2):
        first = extractor.push(AudioChunk(speech, SR, 0))
        rest = extractor.flush()
        assert first.pts == 0
        np.testing.assert_allclose(np.concatenate([first.values, rest.values]), speech_rows)
    extractor.push(AudioChunk(speech[:5000], SR, 0))
    extractor.reset()
    assert extractor.push(AudioChunk(speech, SR, 0)).pts == 0


def test_speech_differs_from_silence(
    speech_rows: np.ndarray, speech_span: tuple[float, float]
) -> None:
    times = (np.arange(len(speech_rows)) + 0.5) / 25
    start, end = speech_span
    in_speech = (times > start + 0.1) & (times < end - 0.1)
    in_silence = (times < start - 0.1) | (times > end + 0.1)
    rms, voiced = _col(speech_rows, "rms_db"), _col(speech_rows, "voiced")
    assert np.median(rms[in_speech]) > np.max(rms[in_silence]) + 40
    assert np.mean(voiced[in_speech]) > np.mean(voiced[in_silence]) + 0.4
    f0 = _col(speech_rows, "f0_hz")
    assert np.all(f0[in_silence] == 0)
    assert 60 < np.median(f0[in_speech & (f0 > 0)]) < 250  # an adult voice
    assert np.mean(f0[in_speech] > 0) > 0.4  # most of speech is voiced
    high = _col(speech_rows, "high_ratio")
    assert np.max(high[in_speech]) > 0.5  # the s/sh of the sentence
    assert np.all(np.diff(_col(speech_rows, "mel_40")[in_silence]) == 0)


def test_pure_tone_features() -> None:
    rows = _run(_tone(200.0, 1.0), 25)[5:-5]  # away from the edges
    assert np.allclose(_col(rows, "rms_db"), 20 * np.log10(0.5 / np.sqrt(2)), atol=0.3)
    assert np.allclose(_col(rows, "f0_hz"), 200.0, atol=3.0)
    assert np.all(_col(rows, "voiced") > 0.9)
    assert np.allclose(_col(rows, "centroid_hz"), 200.0, atol=40.0)
    assert np.all(_col(rows, "flux") < 0.5)  # steady sound: no onsets
    for hz, name in ((600.0, "low_ratio"), (5000.0, "high_ratio")):
        rows = _run(_tone(hz, 1.0), 25)[5:-5]
        assert np.all(_col(rows, name) > 0.95), name
        assert np.allclose(_col(rows, "centroid_hz"), hz, rtol=0.05)


@pytest.mark.parametrize("f0", [90.0, 140.0, 230.0])
def test_f0_of_a_harmonic_voice_like_signal(f0: float) -> None:
    t = np.arange(SR) / SR
    signal = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 12))
    rows = _run((0.2 * signal).astype(np.float32), 25)[5:-5]
    assert np.allclose(_col(rows, "f0_hz"), f0, rtol=0.03)


def test_white_noise_is_unvoiced_and_broadband() -> None:
    noise = np.random.default_rng(3).normal(0, 0.1, SR).astype(np.float32)
    rows = _run(noise, 25)[5:-5]
    assert np.mean(_col(rows, "voiced")) < 0.5
    assert np.all(_col(rows, "f0_hz") == 0)
    share_above_3k = (SR / 2 - 3000) / (SR / 2)
    assert np.allclose(_col(rows, "high_ratio"), share_above_3k, atol=0.06)
    assert np.allclose(_col(rows, "centroid_hz"), SR / 4, rtol=0.1)


def test_flux_peaks_at_an_onset() -> None:
    signal = np.concatenate([np.zeros(SR, np.float32), _tone(440.0, 1.0)])
    flux = _col(_run(signal, 25), "flux")
    assert int(np.argmax(flux)) in (24, 25)  # the tone starts at 1.0 s = frame 25
    assert flux.max() > 10 * np.median(flux)


def test_log_mel_peaks_in_the_band_of_a_tone() -> None:
    mel = _run(_tone(1000.0, 1.0), 25)[10, len(SCALAR_NAMES) :]
    fb = mel_filterbank(CONFIG)
    freqs = np.fft.rfftfreq(CONFIG.n_fft, 1 / SR)
    centres = freqs[np.argmax(fb, axis=1)]
    assert abs(centres[np.argmax(mel)] - 1000.0) < 100.0


def test_mel_filterbank_covers_the_range() -> None:
    fb = mel_filterbank(CONFIG)
    assert fb.shape == (CONFIG.n_mels, CONFIG.n_fft // 2 + 1) and fb.dtype == np.float32
    assert np.all(fb.max(axis=1) > 0)  # no empty filter
    freqs = np.fft.rfftfreq(CONFIG.n_fft, 1 / SR)
    used = freqs[fb.max(axis=0) > 0]
    assert used.min() >= CONFIG.fmin and used.max() <= CONFIG.fmax


def test_feature_names_and_index() -> None:
    assert feature_names(CONFIG.n_mels) == FEATURE_NAMES
    assert len(FEATURE_NAMES) == len(SCALAR_NAMES) + CONFIG.n_mels
    for required in ("rms_db", "voiced", "f0_hz", "centroid_hz", "low_ratio", "high_ratio", "flux"):
        assert required in SCALAR_NAMES
    assert all(FEATURE_NAMES[feature_index(name)] == name for name in FEATURE_NAMES)
    with pytest.raises(KeyError, match="rms_db"):
        feature_index("loudness")
    out = AudioFeatureExtractor(CONFIG, 25).flush()
    assert out.names == FEATURE_NAMES and out.values.dtype == np.float32


def test_invalid_use_raises() -> None:
    with pytest.raises(ValueError, match="lookahead_ms"):
        AudioFeatureExtractor(CONFIG, 10)  # half a 100 ms frame exceeds 40 ms look-ahead
    with pytest.raises(ValueError, match="fps"):
        AudioFeatureExtractor(CONFIG, 200)
    extractor = AudioFeatureExtractor(CONFIG, 25)
    with pytest.raises(ValueError, match="Hz"):
        extractor.push(AudioChunk(np.zeros(100, np.float32), 8000, 0))
    with pytest.raises(ValueError, match="pts"):
        extractor.push(AudioChunk(np.zeros(100, np.float32), SR, 500))
