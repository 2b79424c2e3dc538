"""Augmentations real recordings need, each keeping the phone timings valid or mapping them.

Applied by engines.training.corpus.build_corpus to a drawn share of training
utterances (AugmentConfig.share), around the corpus's own room and noise:

    speaker (clean speech):  tempo (sox tempo), pitch (sox pitch)
    then corpus.augment:     synthetic room, noise
    channel (the recording): EQ, band limit, codec round trip

- Tempo: sox `tempo -s` (WSOLA, pitch kept); factor > 1 is faster. The
  output is made exactly round(S / factor) samples long and every phone time
  is multiplied by S_out / S (= 1 / factor to a sample). WSOLA can move a
  local segment by up to its search window (a few ms); the whole-clip offset
  is measured against the time-scaled input's envelope and removed.
- Pitch: sox `pitch` in cents (formants move with the pitch: a vocal-tract
  length change); the length is kept to the sample and the phones unchanged,
  after the same envelope offset removal.
- EQ: a low shelf, a high shelf and a peaking band (RBJ cookbook biquads),
  run forwards and backwards (scipy.signal.sosfiltfilt: zero phase, no
  shift), each designed with half its drawn gain since the two passes square
  the magnitude.
- Band limits: "telephone" (4th-order Butterworth band pass 300-3400 Hz,
  zero phase) or "narrowband" (down to 8 kHz sampling and back with
  resample_poly, whose linear-phase FIR is delay-compensated).
- Codecs: an FFmpeg round trip through MP3 (libmp3lame) or Opus (libopus, in
  Ogg). FFmpeg trims the encoder delay from the container's metadata; the
  result is cut or padded to the input length and any remaining offset is
  measured by cross-correlation with the input (+-30 ms) and removed, so the
  output is sample-aligned with the input.

Every transform is deterministic for a given rng state (sox runs with -R and
no dither, FFmpeg with one thread), so a corpus seed names its files.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import butter, correlate, resample_poly, sosfiltfilt

from ..errors import SynthesisError
from .visemes import Phone

__all__ = [
    "AugmentConfig",
    "change_tempo",
    "shift_pitch",
    "equalize",
    "band_limit",
    "codec_round_trip",
    "augment_speaker",
    "augment_channel",
    "BANDS",
    "CODECS",
    "log_envelope",
]

BANDS: tuple[str, ...] = ("telephone", "narrowband")
CODECS: tuple[str, ...] = ("mp3", "opus")
_ENCODERS = {"mp3": ("libmp3lame", "mp3"), "opus": ("libopus", "ogg")}
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AugmentConfig:
    """Which transforms a drawn utterance gets; every range is (low, high), drawn uniformly."""

    share: float = 0.6  # of training utterances that get the transforms below
    tempo_probability: float = 0.35
    tempo_range: tuple[float, float] = (0.85, 1.18)  # sox tempo factor; > 1 is faster
    pitch_probability: float = 0.35
    pitch_cents_range: tuple[float, float] = (-350.0, 350.0)
    eq_probability: float = 0.5
    shelf_db_range: tuple[float, float] = (-9.0, 9.0)
    low_shelf_hz_range: tuple[float, float] = (100.0, 400.0)
    high_shelf_hz_range: tuple[float, float] = (2500.0, 6000.0)
    peak_db_range: tuple[float, float] = (-9.0, 9.0)
    peak_hz_range: tuple[float, float] = (300.0, 4000.0)
    peak_q_range: tuple[float, float] = (0.5, 2.5)
    band_probability: float = 0.2  # telephone or narrowband, equally
    codec_probability: float = 0.35  # mp3 or opus, equally
    mp3_kbps_range: tuple[int, int] = (32, 64)
    opus_kbps_range: tuple[int, int] = (12, 24)


def change_tempo(
    samples: np.ndarray, phones: tuple[Phone, ...], factor: float, rate: int
) -> tuple[np.ndarray, tuple[Phone, ...]]:
    """sox tempo: float32 (S,) -> (round(S / factor),), phone times scaled by the same ratio."""
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"tempo factor must be in [0.5, 2], got {factor}")
    x = _mono(samples)
    n_out = int(round(len(x) / factor))
    y = _fit(_sox(x, rate, ["tempo", "-s", f"{factor:.6f}"]), n_out)
    reference = np.interp(np.arange(n_out) * (len(x) / n_out), np.arange(len(x)), x)
    y = _shift(y, _envelope_lag(reference, y, rate))
    scale = n_out / len(x)
    end = n_out / rate
    scaled = tuple(Phone(p.symbol, p.start_s * scale, p.end_s * scale) for p in phones)
    if scaled:  # the last end lands exactly on the new length
        scaled = (*scaled[:-1], Phone(scaled[-1].symbol, scaled[-1].start_s, end))
    return y, scaled


def shift_pitch(samples: np.ndarray, cents: float, rate: int) -> np.ndarray:
    """sox pitch: float32 (S,) -> (S,), pitch and formants moved by cents, timing kept."""
    if not -1200.0 <= cents <= 1200.0:
        raise ValueError(f"cents must be in [-1200, 1200], got {cents}")
    x = _mono(samples)
    y = _fit(_sox(x, rate, ["pitch", f"{cents:.2f}"]), len(x))
    return _shift(y, _envelope_lag(x, y, rate))


def equalize(
    samples: np.ndarray, rate: int, bands: list[tuple[str, float, float, float]]
) -> np.ndarray:
    """Zero-phase EQ, (S,) -> (S,); bands of (kind, hz, gain_db, q), kind low, high or peak."""
    x = _mono(samples).astype(np.float64)
    if not bands:
        return x.astype(np.float32)
    sos = np.array([_biquad(kind, hz, db / 2.0, q, rate) for kind, hz, db, q in bands])
    return sosfiltfilt(sos, x).astype(np.float32)


def band_limit(samples: np.ndarray, kind: str, rate: int) -> np.ndarray:
    """ "telephone" (300-3400 Hz) or "narrowband" (8 kHz sampling), zero delay; (S,) -> (S,)."""
    x = _mono(samples).astype(np.float64)
    if kind == "telephone":
        sos = butter(4, [300.0, 3400.0], btype="bandpass", fs=rate, output="sos")
        return sosfiltfilt(sos, x).astype(np.float32)
    if kind == "narrowband":
        if rate % 8000:
            raise ValueError(f"narrowband needs a multiple of 8 kHz, got {rate}")
        down = resample_poly(x, 1, rate // 8000)
        return _fit(resample_poly(down, rate // 8000, 1).astype(np.float32), len(x))
    raise ValueError(f"band kind must be one of {BANDS}, got {kind!r}")


def codec_round_trip(samples: np.ndarray, codec: str, kbps: int, rate: int) -> np.ndarray:
    """Encode with FFmpeg (mp3 or opus at kbps) and decode; (S,) -> (S,), sample-aligned."""
    if codec not in _ENCODERS:
        raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
    if shutil.which("ffmpeg") is None:
        raise SynthesisError("ffmpeg is not installed; install it: apt-get install ffmpeg")
    encoder, suffix = _ENCODERS[codec]
    x = _mono(samples)
    with tempfile.TemporaryDirectory(prefix="facecast-codec-") as tmp:
        src, coded, raw = (Path(tmp) / n for n in ("in.wav", f"coded.{suffix}", "out.f32"))
        wavfile.write(str(src), rate, x)
        base = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-threads", "1"]
        _call([*base, "-i", str(src), "-c:a", encoder, "-b:a", f"{kbps}k", str(coded)], codec)
        _call(
            [*base, "-i", str(coded), "-f", "f32le", "-ac", "1", "-ar", str(rate), str(raw)], codec
        )
        y = _fit(np.fromfile(raw, dtype=np.float32), len(x))
    return _shift(y, _waveform_lag(x, y, int(0.03 * rate)))


def augment_speaker(
    samples: np.ndarray,
    phones: tuple[Phone, ...],
    rng: np.random.Generator,
    config: AugmentConfig,
    rate: int,
) -> tuple[np.ndarray, tuple[Phone, ...], dict[str, object]]:
    """Drawn tempo and pitch shifts of clean speech: (samples, phones, what was applied)."""
    applied: dict[str, object] = {}
    if rng.random() < config.tempo_probability:
        factor = round(float(rng.uniform(*config.tempo_range)), 3)
        samples, phones = change_tempo(samples, phones, factor, rate)
        applied["tempo"] = factor
    if rng.random() < config.pitch_probability:
        cents = round(float(rng.uniform(*config.pitch_cents_range)), 1)
        samples = shift_pitch(samples, cents, rate)
        applied["pitch_cents"] = cents
    return samples, phones, applied


def augment_channel(
    samples: np.ndarray, rng: np.random.Generator, config: AugmentConfig, rate: int
) -> tuple[np.ndarray, dict[str, object]]:
    """Drawn EQ, band limit and codec of a recording: (samples of the same length, applied)."""
    c, applied = config, dict[str, object]()
    if rng.random() < c.eq_probability:
        bands = [
            ("low", _draw(rng, c.low_shelf_hz_range), _draw(rng, c.shelf_db_range), 0.707),
            ("high", _draw(rng, c.high_shelf_hz_range), _draw(rng, c.shelf_db_range), 0.707),
            (
                "peak",
                _draw(rng, c.peak_hz_range),
                _draw(rng, c.peak_db_range),
                _draw(rng, c.peak_q_range),
            ),
        ]
        samples = equalize(samples, rate, bands)
        applied["eq"] = [list(b) for b in bands]
    if rng.random() < c.band_probability:
        kind = BANDS[int(rng.integers(len(BANDS)))]
        samples = band_limit(samples, kind, rate)
        applied["band"] = kind
    if rng.random() < c.codec_probability:
        codec = CODECS[int(rng.integers(len(CODECS)))]
        low, high = c.mp3_kbps_range if codec == "mp3" else c.opus_kbps_range
        kbps = int(rng.integers(low, high + 1))
        samples = codec_round_trip(samples, codec, kbps, rate)
        applied["codec"], applied["codec_kbps"] = codec, kbps
    return np.asarray(samples, dtype=np.float32), applied


def _draw(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return round(float(rng.uniform(*bounds)), 2)


def _biquad(kind: str, hz: float, db: float, q: float, rate: int) -> list[float]:
    """One RBJ cookbook section [b0, b1, b2, 1, a1, a2] (shelves with slope 1)."""
    a, w0 = 10.0 ** (db / 40.0), 2.0 * math.pi * hz / rate
    cos, sin = math.cos(w0), math.sin(w0)
    if kind == "peak":
        alpha = sin / (2.0 * q)
        b = [1 + alpha * a, -2 * cos, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cos, 1 - alpha / a]
    elif kind in ("low", "high"):
        k = 2.0 * math.sqrt(a) * sin / 2.0 * math.sqrt(2.0)  # 2 sqrt(A) alpha, S = 1
        s = 1.0 if kind == "low" else -1.0  # the high shelf flips the cos terms' signs
        b = [a * ((a + 1) - s * (a - 1) * cos + k), s * 2 * a * ((a - 1) - s * (a + 1) * cos)]
        b.append(a * ((a + 1) - s * (a - 1) * cos - k))
        den = [(a + 1) + s * (a - 1) * cos + k, -s * 2 * ((a - 1) + s * (a + 1) * cos)]
        den.append((a + 1) + s * (a - 1) * cos - k)
    else:
        raise ValueError(f"EQ band kind must be low, high or peak, got {kind!r}")
    return [v / den[0] for v in b] + [1.0, den[1] / den[0], den[2] / den[0]]


def _sox(x: np.ndarray, rate: int, effect: list[str]) -> np.ndarray:
    """Run one sox effect on float32 samples (repeatable, no dither)."""
    if shutil.which("sox") is None:
        raise SynthesisError("sox is not installed; install it: apt-get install sox")
    with tempfile.TemporaryDirectory(prefix="facecast-sox-") as tmp:
        src, raw = Path(tmp) / "in.wav", Path(tmp) / "out.f32"
        wavfile.write(str(src), rate, x)
        out = ["-t", "f32", "-e", "floating-point", "-b", "32", "-c", "1", str(raw)]
        _call(["sox", "-D", "-R", "-V1", str(src), *out, *effect], "sox " + effect[0])
        return np.fromfile(raw, dtype=np.float32)


def _call(command: list[str], what: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SynthesisError(f"{command[0]} could not run {what}: {exc}") from exc
    if result.returncode != 0:
        message = result.stderr.strip()[:200] or "no message"
        raise SynthesisError(f"{command[0]} failed ({what}): {message}")


def _mono(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"samples must be a non-empty 1-D array, got shape {x.shape}")
    return x


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to n samples."""
    return np.pad(y[:n], (0, max(0, n - len(y)))).astype(np.float32)


def _shift(y: np.ndarray, lag: int) -> np.ndarray:
    """Undo a delay of lag samples (lag > 0: y is late), keeping the length."""
    if lag == 0:
        return y
    if lag > 0:
        return np.concatenate([y[lag:], np.zeros(lag, dtype=y.dtype)])
    return np.concatenate([np.zeros(-lag, dtype=y.dtype), y[:lag]])


def _waveform_lag(x: np.ndarray, y: np.ndarray, max_lag: int) -> int:
    """The delay of y behind x in samples, by cross-correlation within +-max_lag."""
    c = correlate(y.astype(np.float64), x.astype(np.float64), mode="full", method="fft")
    mid = len(x) - 1
    window = c[mid - max_lag : mid + max_lag + 1]
    return int(np.argmax(window)) - max_lag


def log_envelope(x: np.ndarray, rate: int, hop_s: float = 0.001) -> np.ndarray:
    """Log RMS per hop_s frame: float64 (S // hop,), for aligning speech whose waveform changed."""
    hop = max(1, int(hop_s * rate))
    n = len(x) // hop
    frames = np.asarray(x[: n * hop], dtype=np.float64).reshape(n, hop)  # NxH
    env = np.log(np.sqrt(np.mean(frames**2, axis=1)) + 1e-5)
    return env - env.mean()


def _envelope_lag(x: np.ndarray, y: np.ndarray, rate: int, max_s: float = 0.02) -> int:
    """The delay of y behind x in samples, from their 1 ms log envelopes within +-max_s."""
    hop = int(0.001 * rate)
    ex, ey = log_envelope(x, rate), log_envelope(y, rate)
    n = min(len(ex), len(ey))
    return _waveform_lag(ex[:n], ey[:n], int(max_s * 1000)) * hop
