"""engines.training.augment: every transform keeps or maps the phone timings exactly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy.signal import correlate, welch

from engines.training.augment import (
    band_limit,
    change_tempo,
    codec_round_trip,
    equalize,
    log_envelope,
    shift_pitch,
)
from engines.training.visemes import Phone

RATE = 16000
HAS_SOX = shutil.which("sox") is not None
HAS_FFMPEG = shutil.which("ffmpeg") is not None
needs_sox = pytest.mark.skipif(not HAS_SOX, reason="sox is not installed (apt-get install sox)")
needs_ffmpeg = pytest.mark.skipif(
    not HAS_FFMPEG, reason="ffmpeg is not installed (apt-get install ffmpeg)"
)


def _bursts() -> tuple[np.ndarray, tuple[Phone, ...]]:
    """Voiced bursts (vowel-like: 150 Hz harmonics) between silences, with their phones."""
    rng = np.random.default_rng(0)
    t = np.arange(int(2.0 * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    spans = [(0.2, 0.45), (0.6, 0.75), (0.95, 1.35), (1.5, 1.7)]
    gate = np.zeros_like(t)
    phones, cursor = [], 0.0
    for a, b in spans:
        gate[(t >= a) & (t < b)] = 1.0
        phones += [Phone("SIL", cursor, a), Phone("AA", a, b)]
        cursor = b
    phones.append(Phone("SIL", cursor, 2.0))
    x = 0.2 * voiced * gate + 1e-4 * rng.standard_normal(len(t))
    return x.astype(np.float32), tuple(phones)


def _speech() -> np.ndarray:
    """Broadband noise bursts: a waveform every lag of the codec can be measured on."""
    x, _ = _bursts()
    noise = np.random.default_rng(1).standard_normal(len(x)).astype(np.float32)
    return 0.5 * x + 0.1 * noise * (np.abs(x) > 1e-3)


def _lag_samples(x: np.ndarray, y: np.ndarray, max_lag: int) -> int:
    c = correlate(y.astype(np.float64), x.astype(np.float64), mode="full", method="fft")
    mid = len(x) - 1
    return int(np.argmax(c[mid - max_lag : mid + max_lag + 1])) - max_lag


def _loud_fraction(samples: np.ndarray, phones: tuple[Phone, ...], symbol: str) -> float:
    """Mean power inside the phones of symbol over the clip's mean power."""
    power = samples.astype(np.float64) ** 2
    inside = [power[int(p.start_s * RATE) : int(p.end_s * RATE)] for p in phones]
    wanted = np.concatenate([s for s, p in zip(inside, phones, strict=True) if p.symbol == symbol])
    return float(wanted.mean() / power.mean())


@needs_ffmpeg
@pytest.mark.parametrize(("codec", "kbps"), [("mp3", 32), ("mp3", 64), ("opus", 12), ("opus", 24)])
def test_codec_round_trip_is_sample_aligned(codec: str, kbps: int) -> None:
    x = _speech()
    y = codec_round_trip(x, codec, kbps, RATE)
    assert y.shape == x.shape and y.dtype == np.float32
    assert abs(_lag_samples(x, y, int(0.05 * RATE))) <= RATE // 1000  # |offset| <= 1 ms
    assert np.corrcoef(x, y)[0, 1] > 0.6  # it is the same signal, coded


@needs_sox
@pytest.mark.parametrize("factor", [0.85, 1.18])
def test_tempo_scales_phone_times_by_the_factor(factor: float) -> None:
    x, phones = _bursts()
    y, scaled = change_tempo(x, phones, factor, RATE)
    assert len(y) == round(len(x) / factor)
    for before, after in zip(phones, scaled, strict=True):
        assert after.symbol == before.symbol
        assert after.start_s == pytest.approx(before.start_s / factor, abs=1.0 / RATE)
    assert scaled[-1].end_s == len(y) / RATE
    # The bursts are where the scaled phones say: the envelopes agree within 2 ms.
    reference = np.zeros_like(y)
    for p in scaled:
        if p.symbol == "AA":
            reference[int(p.start_s * RATE) : int(p.end_s * RATE)] = 1.0
    lag = _lag_samples(log_envelope(reference, RATE), log_envelope(y, RATE), 40)
    assert abs(lag) <= 2, lag
    assert _loud_fraction(y, scaled, "AA") > 0.95 * len(y) / sum(
        int((p.end_s - p.start_s) * RATE) for p in scaled if p.symbol == "AA"
    )


@needs_sox
@pytest.mark.parametrize("cents", [-350.0, 350.0])
def test_pitch_shift_keeps_length_and_timing(cents: float) -> None:
    x, phones = _bursts()
    y = shift_pitch(x, cents, RATE)
    assert y.shape == x.shape
    lag = _lag_samples(log_envelope(x, RATE), log_envelope(y, RATE), 40)
    assert abs(lag) <= 2, lag
    f, px = welch(x, RATE, nperseg=4096)
    _, py = welch(y, RATE, nperseg=4096)
    ratio = f[np.argmax(py)] / f[np.argmax(px)]
    assert ratio == pytest.approx(2 ** (cents / 1200), rel=0.06)


def test_eq_is_zero_phase_and_hits_its_gains() -> None:
    impulse = np.zeros(RATE, dtype=np.float32)
    impulse[RATE // 2] = 1.0
    bands = [("low", 200.0, 9.0, 0.707), ("high", 4000.0, -6.0, 0.707), ("peak", 1000.0, 6.0, 1.0)]
    y = equalize(impulse, RATE, bands)
    assert int(np.argmax(np.abs(y))) == RATE // 2  # no shift
    assert np.allclose(y[RATE // 2 + 1 : RATE // 2 + 200], y[RATE // 2 - 1 : RATE // 2 - 200 : -1])
    spectrum = np.abs(np.fft.rfft(np.roll(y, -RATE // 2)))
    db = 20 * np.log10(spectrum[[30, 1000, 7900]])
    assert db == pytest.approx([9.0, 6.0, -6.0], abs=1.0)


@pytest.mark.parametrize("kind", ["telephone", "narrowband"])
def test_band_limits_remove_the_band_without_delay(kind: str) -> None:
    x = _speech()
    y = band_limit(x, kind, RATE)
    assert y.shape == x.shape
    f, px = welch(x, RATE, nperseg=1024)
    _, py = welch(y, RATE, nperseg=1024)
    high = f > (5000 if kind == "telephone" else 4300)
    assert py[high].sum() < 1e-3 * px[high].sum()
    assert abs(_lag_samples(x, y, 200)) == 0
