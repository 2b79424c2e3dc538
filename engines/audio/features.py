"""AudioEncoder front end: streaming PCM -> one feature row per video frame.

Timing model (all positions are absolute, counted from the stream start, so
the result does not depend on how the audio was chunked):

- STFT frame j is centred on sample j * hop_length and covers win_length
  samples around it; samples before the stream start are zeros.
- Video frame k spans [k / fps, (k + 1) / fps) and is centred on
  (k + 0.5) / fps. Its feature row aggregates the STFT frames whose centres
  fall inside that span.
- Row k is emitted as soon as audio up to (k + 0.5) / fps + lookahead is
  available. The constructor checks that this covers every sample the row
  reads, so lookahead_ms is the whole algorithmic latency (`latency_s`).

Row layout: SCALAR_NAMES, then n_mels log-mel values (log10 of mel power,
averaged over the row's STFT frames). Index rows by name with
`feature_index`, never by a literal number.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..types import AudioChunk, AudioFeatures

__all__ = [
    "AudioFeatureConfig",
    "AudioFeatureExtractor",
    "SCALAR_NAMES",
    "FEATURE_NAMES",
    "feature_names",
    "feature_index",
    "frame_count",
    "mel_filterbank",
]

logger = logging.getLogger(__name__)

# rms_db: dBFS of the frame's RMS; voiced: periodicity 0..1 (peak of the
# normalised autocorrelation); f0_hz: pitch, 0 when unvoiced; centroid_hz:
# spectral centroid; low_ratio: energy share 250-1000 Hz (jaw opening / F1);
# high_ratio: energy share above 3 kHz (fricatives); flux: positive log-mel
# change per STFT frame in dB (onset strength).
SCALAR_NAMES: tuple[str, ...] = (
    "rms_db",
    "voiced",
    "f0_hz",
    "centroid_hz",
    "low_ratio",
    "high_ratio",
    "flux",
)

_SILENCE_DB = -100.0  # what rms_db reads for digital silence
_MEL_FLOOR = 1e-10  # log10 floor of mel power: digital silence reads -10
_F0_RANGE_HZ = (60.0, 400.0)  # adult speech pitch
_VOICED_THRESHOLD = 0.5  # frames above this periodicity count as voiced for f0
_LOW_BAND_HZ = (250.0, 1000.0)
_HIGH_BAND_HZ = 3000.0


@dataclass(frozen=True)
class AudioFeatureConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    fmin: float = 50.0
    fmax: float = 7600.0
    lookahead_ms: float = 40.0


def feature_names(n_mels: int = 80) -> tuple[str, ...]:
    """Names of the row entries: SCALAR_NAMES then mel_00 .. mel_{n_mels-1}."""
    return SCALAR_NAMES + tuple(f"mel_{i:02d}" for i in range(n_mels))


FEATURE_NAMES: tuple[str, ...] = feature_names(AudioFeatureConfig.n_mels)
_FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def feature_index(name: str) -> int:
    """Column of a named feature in a row (default layout); KeyError names the valid scalars."""
    if name.startswith("mel_") and name[4:].isdigit():
        return len(SCALAR_NAMES) + int(name[4:])
    try:
        return _FEATURE_INDEX[name]
    except KeyError:
        raise KeyError(
            f"unknown audio feature {name!r}; valid: {', '.join(SCALAR_NAMES)}, mel_00.."
        ) from None


def frame_count(num_samples: int, sample_rate: int, fps: float) -> int:
    """How many video frames an audio clip of `num_samples` has: the one definition."""
    return max(1, round(num_samples * fps / sample_rate))


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(config: AudioFeatureConfig) -> np.ndarray:
    """Triangular, area-normalised mel filters: float32 array of shape (n_mels, n_fft // 2 + 1)."""
    bin_hz = np.fft.rfftfreq(config.n_fft, d=1.0 / config.sample_rate)
    edges_mel = np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.fmax), config.n_mels + 2)
    edges = _mel_to_hz(edges_mel)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Area normalisation keeps wide high-frequency filters from dominating.
    weights *= 2.0 / (upper - lower)
    return weights.astype(np.float32)


@dataclass
class _FrameStats:
    """Per-STFT-frame values, each an array with the STFT frame index on axis 0 (J)."""

    power: np.ndarray  # (J, n_fft // 2 + 1) power spectrum
    log_mel: np.ndarray  # (J, n_mels)
    mean_square: np.ndarray  # (J,)
    voiced: np.ndarray  # (J,)
    f0: np.ndarray  # (J,)
    flux: np.ndarray  # (J,)

    def take(self, start: int, stop: int | None = None) -> _FrameStats:
        return _FrameStats(*(getattr(self, f)[start:stop] for f in _STAT_FIELDS))

    @staticmethod
    def join(a: _FrameStats, b: _FrameStats) -> _FrameStats:
        return _FrameStats(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in _STAT_FIELDS))


_STAT_FIELDS = ("power", "log_mel", "mean_square", "voiced", "f0", "flux")


class _Analyser:
    """Stateless per-STFT-frame analysis; holds only constants derived from the config."""

    def __init__(self, config: AudioFeatureConfig) -> None:
        self.config = config
        n = config.win_length
        # Periodic Hann, the usual STFT window; the window is zero-padded to n_fft.
        self.window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)
        self.mel_fb = mel_filterbank(config)
        self.freqs = np.fft.rfftfreq(config.n_fft, d=1.0 / config.sample_rate)
        self.low_mask = (self.freqs >= _LOW_BAND_HZ[0]) & (self.freqs < _LOW_BAND_HZ[1])
        self.high_mask = self.freqs >= _HIGH_BAND_HZ
        self.lag_min = max(2, int(config.sample_rate / _F0_RANGE_HZ[1]))
        # Keep at least a third of the window overlapping at the longest lag.
        self.lag_max = min(int(config.sample_rate / _F0_RANGE_HZ[0]), (2 * n) // 3)
        self.ac_nfft = 1 << int(math.ceil(math.log2(2 * n)))

    def analyse(self, frames: np.ndarray, prev_log_mel: np.ndarray) -> _FrameStats:
        """frames: float32 array of shape (J, win_length); prev_log_mel: shape (n_mels,)."""
        spectrum = np.fft.rfft(frames * self.window, n=self.config.n_fft, axis=1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)  # J x bins
        log_mel = np.log10(np.maximum(power @ self.mel_fb.T, _MEL_FLOOR))  # J x n_mels
        previous = np.concatenate([prev_log_mel[None, :], log_mel[:-1]], axis=0)
        flux = 10.0 * np.maximum(log_mel - previous, 0.0).mean(axis=1)
        mean_square = (frames.astype(np.float64) ** 2).mean(axis=1)
        voiced, f0 = self._periodicity(frames, mean_square)
        return _FrameStats(power, log_mel, mean_square, voiced, f0, flux)

    def _periodicity(
        self, frames: np.ndarray, mean_square: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalised autocorrelation peak (voicing 0..1) and f0 in Hz (0 when unvoiced)."""
        x = frames.astype(np.float64) - frames.mean(axis=1, keepdims=True)
        n = x.shape[1]
        spec = np.fft.rfft(x, n=self.ac_nfft, axis=1)
        acf = np.fft.irfft(spec.real**2 + spec.imag**2, n=self.ac_nfft, axis=1)[:, :n]
        # Normalise each lag by the energy of the two overlapping parts, so the
        # shrinking overlap at long lags does not bias toward short ones.
        csum = np.concatenate([np.zeros((len(x), 1)), np.cumsum(x**2, axis=1)], axis=1)
        lags = np.arange(self.lag_min - 1, self.lag_max + 2)
        head = csum[:, n - lags]
        tail = csum[:, n : n + 1] - csum[:, lags]
        nacf = acf[:, lags] / np.sqrt(head * tail + 1e-12)  # J x L
        inner = nacf[:, 1:-1]
        is_peak = (inner >= nacf[:, :-2]) & (inner >= nacf[:, 2:])
        best = np.where(is_peak, inner, -1.0).max(axis=1)
        # The first peak close to the best one: guards against octave-down errors.
        first = np.argmax(is_peak & (inner >= 0.9 * best[:, None]), axis=1)
        rows = np.arange(len(x))
        left, mid, right = nacf[rows, first], nacf[rows, first + 1], nacf[rows, first + 2]
        # Parabolic interpolation around the chosen peak for sub-sample lag.
        denom = left - 2.0 * mid + right
        safe = np.where(np.abs(denom) > 1e-9, denom, 1.0)
        shift = np.where(np.abs(denom) > 1e-9, 0.5 * (left - right) / safe, 0.0)
        lag = lags[first + 1] + np.clip(shift, -0.5, 0.5)
        audible = mean_square > 1e-8  # below -80 dBFS the estimate is numerical noise
        voiced = np.where(audible, np.clip(best, 0.0, 1.0), 0.0)
        f0 = np.where(voiced >= _VOICED_THRESHOLD, self.config.sample_rate / lag, 0.0)
        return voiced, f0

    def rows(self, stats: _FrameStats, starts: np.ndarray) -> np.ndarray:
        """Aggregate STFT frames into rows: float32 array of shape (R, F).

        stats covers exactly the rows' frames; starts: shape (R,), offset of each row's first frame.
        """
        counts = np.diff(np.append(starts, len(stats.mean_square)))
        # Average power, not dB, so a loud frame counts as loud.
        rms_db = 10.0 * np.log10(_row_mean(stats.mean_square, starts, counts) + 1e-10)
        has_f0 = stats.f0 > 0
        weight = np.where(has_f0, stats.voiced, 0.0)
        f0_mean = np.add.reduceat(stats.f0 * weight, starts) / np.maximum(
            np.add.reduceat(weight, starts), 1e-9
        )
        mostly_voiced = _row_mean(has_f0.astype(np.float64), starts, counts) >= 0.5
        f0 = np.where(mostly_voiced, f0_mean, 0.0)
        power = np.add.reduceat(stats.power.astype(np.float64), starts, axis=0)  # R x bins
        total = power.sum(axis=1) + 1e-12
        centroid = power @ self.freqs / total
        low = power[:, self.low_mask].sum(axis=1) / total
        high = power[:, self.high_mask].sum(axis=1) / total
        voiced = _row_mean(stats.voiced, starts, counts)
        flux = _row_mean(stats.flux, starts, counts)
        scalars = np.stack([rms_db, voiced, f0, centroid, low, high, flux], axis=1)
        log_mel = _row_mean(stats.log_mel, starts, counts)
        return np.concatenate([scalars, log_mel], axis=1).astype(np.float32)


def _row_mean(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean over consecutive groups along axis 0: (J, ...) -> (R, ...)."""
    sums = np.add.reduceat(values.astype(np.float64), starts, axis=0)
    return sums / counts.reshape((-1,) + (1,) * (values.ndim - 1))


class AudioFeatureExtractor:
    """Streaming PCM -> per-video-frame feature rows; keeps its own state.

    push() returns the rows that became ready; flush() ends the stream, emits
    the rest (total rows == frame_count(total samples)) and leaves the
    extractor ready for a new stream, as does reset().
    """

    def __init__(self, config: AudioFeatureConfig, fps: float) -> None:
        _validate(config, fps)
        self.config = config
        self.fps = float(fps)
        self.names = feature_names(config.n_mels)
        self._analyser = _Analyser(config)
        self.reset()

    @property
    def latency_s(self) -> float:
        """Algorithmic look-ahead: audio needed past a frame's centre before its row is out."""
        return self.config.lookahead_ms / 1000.0

    def reset(self) -> None:
        """Forget the stream; the next push starts at sample 0 and row 0."""
        half = self.config.win_length // 2
        # Zeros stand in for the samples before the stream start.
        self._buffer = np.zeros(half, dtype=np.float32)
        self._buffer_start = -half  # absolute index of self._buffer[0]
        self._num_samples = 0
        self._next_stft = 0  # first STFT frame not analysed yet
        self._pending: _FrameStats | None = None  # analysed, not yet in a row
        self._pending_start = 0  # STFT index of the first pending frame
        self._next_row = 0
        self._prev_log_mel = np.full(self.config.n_mels, np.log10(_MEL_FLOOR))

    def push(self, chunk: AudioChunk) -> AudioFeatures:
        """Add audio; returns 0 or more new rows (values float32 array of shape (T, F))."""
        if chunk.sample_rate != self.config.sample_rate:
            raise ValueError(
                f"chunk is {chunk.sample_rate} Hz but the extractor expects "
                f"{self.config.sample_rate} Hz; decode with iter_audio(sample_rate=...)"
            )
        if chunk.pts != self._num_samples:
            raise ValueError(
                f"chunk.pts {chunk.pts} does not follow the {self._num_samples} samples pushed; "
                "fill gaps with silence or call reset() for a new stream"
            )
        self._buffer = np.concatenate([self._buffer, chunk.samples])
        self._num_samples += len(chunk.samples)
        self._analyse_up_to(self._num_samples)
        last = self._next_row
        while self._ready_samples(last) <= self._num_samples and self._row_analysed(last):
            last += 1
        return self._emit_rows(last)

    def flush(self) -> AudioFeatures:
        """Zero-pad the end, emit every remaining row, and reset for a new stream."""
        total_rows = frame_count(self._num_samples, self.config.sample_rate, self.fps)
        stop_stft = self._first_stft(total_rows)
        end_sample = (stop_stft - 1) * self.config.hop_length + self._window_tail()
        missing = end_sample - (self._buffer_start + len(self._buffer))
        if missing > 0:
            self._buffer = np.concatenate([self._buffer, np.zeros(missing, dtype=np.float32)])
        self._analyse_up_to(end_sample)
        features = self._emit_rows(max(total_rows, self._next_row))
        self.reset()
        return features

    def _window_tail(self) -> int:
        """Samples a window needs at and after its centre."""
        return self.config.win_length - self.config.win_length // 2

    def _first_stft(self, row: int) -> int:
        """Index of the first STFT frame whose centre lies in video frame `row`."""
        per_row = self.config.sample_rate / (self.fps * self.config.hop_length)
        return math.ceil(row * per_row - 1e-9)

    def _ready_samples(self, row: int) -> int:
        """Samples that must have arrived before `row` is emitted."""
        due_s = (row + 0.5) / self.fps + self.latency_s
        return math.ceil(due_s * self.config.sample_rate - 1e-9)

    def _row_analysed(self, row: int) -> bool:
        return self._first_stft(row + 1) <= self._next_stft

    def _analyse_up_to(self, available: int) -> None:
        """Analyse every STFT frame whose window ends at or before sample `available`."""
        hop, tail = self.config.hop_length, self._window_tail()
        stop = (available - tail) // hop + 1 if available >= tail else 0
        if stop <= self._next_stft:
            return
        frames = np.lib.stride_tricks.sliding_window_view(self._buffer, self.config.win_length)
        offset = self._next_stft * hop - self.config.win_length // 2 - self._buffer_start
        frames = frames[offset::hop][: stop - self._next_stft]  # J x win_length
        stats = self._analyser.analyse(frames, self._prev_log_mel)
        self._prev_log_mel = stats.log_mel[-1]
        self._pending = stats if self._pending is None else _FrameStats.join(self._pending, stats)
        self._next_stft = stop
        # Old audio is never read again: keep only what the next window needs.
        keep_from = stop * hop - self.config.win_length // 2 - self._buffer_start
        self._buffer = self._buffer[keep_from:]
        self._buffer_start += keep_from

    def _emit_rows(self, stop_row: int) -> AudioFeatures:
        first_row = self._next_row
        if stop_row <= first_row or self._pending is None:
            return AudioFeatures(
                np.zeros((0, len(self.names)), np.float32), self.fps, first_row, self.names
            )
        bounds = np.array([self._first_stft(k) for k in range(first_row, stop_row + 1)])
        local = bounds - self._pending_start
        values = self._analyser.rows(self._pending.take(local[0], local[-1]), local[:-1] - local[0])
        self._pending = self._pending.take(local[-1])
        self._pending_start = int(bounds[-1])
        self._next_row = stop_row
        return AudioFeatures(values, self.fps, first_row, self.names)


def _validate(config: AudioFeatureConfig, fps: float) -> None:
    if config.n_fft < config.win_length:
        raise ValueError(f"n_fft ({config.n_fft}) must be >= win_length ({config.win_length})")
    max_fps = config.sample_rate / config.hop_length
    if not 0 < fps <= max_fps:
        raise ValueError(
            f"fps must be in (0, {max_fps:g}] so every frame gets an STFT frame, got {fps}"
        )
    # A row reads STFT frames up to the end of its video frame plus half a window.
    needed_ms = 1000.0 * (
        0.5 / fps + (config.win_length - config.win_length // 2) / config.sample_rate
    )
    if config.lookahead_ms < needed_ms:
        raise ValueError(
            f"lookahead_ms={config.lookahead_ms:g} is too short for {fps:g} fps; "
            f"use at least {math.ceil(needed_ms)} ms or a higher fps"
        )
