"""Every live audio source becomes one format: float32 mono at 48 kHz.

A session plays speech back over WebRTC (Opus, 48 kHz) and computes its audio
features at 16 kHz. Speech arrives four ways: raw s16le PCM over a WebSocket at
a rate the client declares, an uploaded file in any container, a TTS wav, and
browser microphone frames from aiortc. Converting each of them to one playback
format at the edge means the session, its queue and its tracks handle a single
kind of array, and the 16 kHz feature stream is derived from exactly what is
played, so lips and sound cannot drift apart.

Rate conversion into 48 kHz uses libswresample through PyAV; channels are
averaged here in numpy, because libswresample's default float downmix sums
stereo to mono at 0.707 * (L + R), which is +3 dB (and clips) on speech that
sits in both channels. The 48 -> 16 kHz step is a small linear-phase FIR of
our own so that chunked and one-shot output agree and the delay is known.
"""

from __future__ import annotations

import io
import logging
import math
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import numpy as np
from scipy import signal

from ..errors import AudioTooLongError, InvalidAudioError
from .decoding import SUPPORTED_FORMATS_HINT, open_audio_container, undecodable_audio_error

__all__ = [
    "PLAYBACK_RATE",
    "FEATURE_RATE",
    "PCM_RATES",
    "PcmStream",
    "FrameResampler",
    "Downsampler",
    "decode_audio_bytes",
    "check_audio_length",
]

logger = logging.getLogger(__name__)

PLAYBACK_RATE = 48000
FEATURE_RATE = 16000
PCM_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 32000, 44100, 48000)

_DECIMATION = PLAYBACK_RATE // FEATURE_RATE
_S16_SCALE = np.float32(1.0 / 32768.0)
# Codec priming/padding (mp3, aac) can add tens of ms to a file of exactly the limit.
_LENGTH_GRACE_S = 0.1
# Headers estimated from bitrate (VBR mp3) can be a few % long; only trust a clear excess.
_HEADER_TOLERANCE = 1.1


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.float32)


def _join(blocks: list[np.ndarray]) -> np.ndarray:
    """Concatenate float32 (S,) blocks, clipped to [-1, 1] (resampling overshoots full scale)."""
    if not blocks:
        return _empty()
    joined = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return np.clip(joined, -1.0, 1.0).astype(np.float32, copy=False)


def _planar_mean(frame: av.AudioFrame) -> np.ndarray:
    """A planar float frame (C, S) -> its channel mean, float32 (S,)."""
    planes = frame.to_ndarray()  # CxS
    if planes.shape[0] == 1:
        return planes[0].astype(np.float32, copy=False)
    return planes.mean(axis=0, dtype=np.float32)


class PcmStream:
    """Streaming s16le mono PCM at a declared rate -> float32 (S,) mono at 48 kHz.

    push() accepts any byte count: an odd trailing byte waits for the next
    push, so samples never misalign. Output is sample-aligned with the input
    (libswresample compensates its filter delay); it lags by the resampler's
    look-ahead, which flush() returns at the end of an utterance. Rates other
    than 48 kHz hold back a few input samples (8 kHz: 96 output samples, 2 ms).
    """

    def __init__(self, sample_rate: int) -> None:
        if sample_rate not in PCM_RATES:
            rates = ", ".join(str(rate) for rate in PCM_RATES)
            raise InvalidAudioError(
                f"unsupported PCM sample rate: got {sample_rate}; send one of {rates} "
                "(16-bit little-endian mono) and declare it"
            )
        self.sample_rate = int(sample_rate)
        self.dropped_bytes = 0
        self._carry = b""
        self._total_in = 0
        self._resampler = self._new_resampler()
        self._resampler_pts = 0

    @property
    def total_in_samples(self) -> int:
        """Input samples seen since construction (flushes do not reset it)."""
        return self._total_in

    def _new_resampler(self) -> av.AudioResampler | None:
        # 48 kHz needs only a format change, which numpy does exactly and faster.
        if self.sample_rate == PLAYBACK_RATE:
            return None
        return av.AudioResampler(format="flt", layout="mono", rate=PLAYBACK_RATE)

    def push(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        """Bytes of s16le PCM in; float32 (S,) at 48 kHz out (may be empty)."""
        buffer = self._carry + bytes(data)
        usable = len(buffer) - len(buffer) % 2
        self._carry = buffer[usable:]
        if usable == 0:
            return _empty()
        pcm = np.frombuffer(buffer, dtype="<i2", count=usable // 2)
        self._total_in += len(pcm)
        if self._resampler is None:
            return pcm.astype(np.float32) * _S16_SCALE
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.time_base = Fraction(1, self.sample_rate)
        frame.pts = self._resampler_pts
        self._resampler_pts += len(pcm)
        return _join([_packed_mono(out) for out in self._resampler.resample(frame)])

    def flush(self) -> np.ndarray:
        """End of utterance: the resampler's tail, float32 (S,); then ready for a new utterance.

        A dangling odd byte cannot form a sample: it is dropped and counted in dropped_bytes.
        """
        if self._carry:
            self.dropped_bytes += len(self._carry)
            logger.debug("PCM stream ended on an odd byte; dropped %d byte(s)", len(self._carry))
            self._carry = b""
        if self._resampler is None:
            return _empty()
        tail = _join([_packed_mono(out) for out in self._resampler.resample(None)])
        # A flushed libswresample graph is finished; the next utterance needs a new one.
        self._resampler = self._new_resampler()
        self._resampler_pts = 0
        return tail


def _packed_mono(frame: av.AudioFrame) -> np.ndarray:
    return frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)  # 1xS -> S


class FrameResampler:
    """Decoded av.AudioFrame objects -> float32 (S,) mono at 48 kHz, streaming.

    Made for aiortc microphone frames (s16 packed, 48 kHz, mono or stereo,
    converted in numpy with no delay) but takes any format, layout and rate
    (G.711 gives 8 kHz; decoded files give planar float): those go through
    libswresample, which is rebuilt, after emitting its tail, whenever the
    frames change format, layout or rate mid-stream.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._signature: tuple[str, str, int] | None = None

    def push(self, frame: av.AudioFrame) -> np.ndarray:
        """One frame in; float32 (S,) mono at 48 kHz out (may be empty while the filter fills)."""
        if frame.format.name == "s16" and frame.sample_rate == PLAYBACK_RATE:
            tail = self.flush()
            channels = frame.layout.nb_channels
            samples = frame.to_ndarray().reshape(-1, channels).astype(np.float32)  # SxC
            # A matmul averages channels ~10x faster than mean(axis=1) on an Sx2 array.
            mono = samples @ np.full(channels, _S16_SCALE / channels, dtype=np.float32)
            return np.concatenate([tail, mono]) if len(tail) else mono
        signature = (frame.format.name, frame.layout.name, frame.sample_rate)
        blocks: list[np.ndarray] = []
        if signature != self._signature:
            blocks.append(self.flush())
            # layout=None keeps the source channels so _planar_mean can average them.
            self._resampler = av.AudioResampler(format="fltp", rate=PLAYBACK_RATE)
            self._signature = signature
        assert self._resampler is not None
        blocks += [_planar_mean(out) for out in self._resampler.resample(frame)]
        return _join(blocks)

    def flush(self) -> np.ndarray:
        """Emit libswresample's held-back tail, float32 (S,); the next push starts afresh."""
        if self._resampler is None:
            return _empty()
        tail = _join([_planar_mean(out) for out in self._resampler.resample(None)])
        self._resampler = None
        self._signature = None
        return tail


def decode_audio_bytes(
    data: bytes, filename: str = "upload", max_seconds: float = 600.0
) -> np.ndarray:
    """A whole encoded file (wav, mp3, ogg, opus, flac, m4a..., any rate and channels) in memory.

    Returns float32 (S,) mono at 48 kHz in [-1, 1]. Raises InvalidAudioError,
    naming `filename`, for empty, non-audio or corrupt data, a file with no
    samples, or one longer than `max_seconds` (plus 0.1 s of codec padding).
    Decodes on the calling thread: run it in an executor from async code.
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    name = Path(filename).name or "upload"
    if not data:
        raise InvalidAudioError(f"'{name}' is empty (0 bytes); {SUPPORTED_FORMATS_HINT}")
    container = _open_bytes(data, name)
    try:
        stream = container.streams.audio[0]
        header_s = _header_seconds(container, stream)
        if header_s is not None and header_s > max_seconds * _HEADER_TOLERANCE + _LENGTH_GRACE_S:
            raise AudioTooLongError(_too_long(name, max_seconds, header_s))
        samples = _decode_all(container, stream, name, max_seconds)
    finally:
        container.close()
    if samples.size == 0:
        raise InvalidAudioError(f"'{name}' holds no audio samples; record or export it again")
    logger.debug("decoded %s: %.2f s at %d Hz", name, samples.size / PLAYBACK_RATE, PLAYBACK_RATE)
    return samples


def check_audio_length(data: bytes, filename: str, max_seconds: float) -> float | None:
    """The duration the file's header states (None if it states none), refusing audio over
    `max_seconds` (AudioTooLongError) before a sample is decoded.

    decode_audio_bytes still stops at max_seconds for files whose header lies or is silent.
    """
    name = Path(filename).name or "upload"
    if not data:
        raise InvalidAudioError(f"'{name}' is empty (0 bytes); {SUPPORTED_FORMATS_HINT}")
    container = _open_bytes(data, name)
    try:
        header_s = _header_seconds(container, container.streams.audio[0])
    finally:
        container.close()
    if header_s is not None and header_s > max_seconds * _HEADER_TOLERANCE + _LENGTH_GRACE_S:
        raise AudioTooLongError(_too_long(name, max_seconds, header_s))
    return header_s


def _open_bytes(data: bytes, name: str) -> av.container.InputContainer:
    return open_audio_container(io.BytesIO(data), name)


def _header_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * Fraction(stream.time_base))
    if container.duration is not None:
        return float(container.duration) / av.time_base
    return None


def _too_long(name: str, max_seconds: float, seconds: float | None = None) -> str:
    length = f"is {seconds:.1f} s long" if seconds is not None else "is too long"
    return (
        f"'{name}' {length}; the limit is {max_seconds:g} s: trim it or split it into shorter files"
    )


def _decode_all(
    container: av.container.InputContainer, stream: av.AudioStream, name: str, max_seconds: float
) -> np.ndarray:
    """Decode and convert the stream; stops as soon as the decoded audio passes the limit."""
    limit = math.floor((max_seconds + _LENGTH_GRACE_S) * PLAYBACK_RATE)
    resampler = FrameResampler()
    blocks: list[np.ndarray] = []
    total = 0
    try:
        for frame in container.decode(stream):
            blocks.append(resampler.push(frame))
            total += len(blocks[-1])
            if total > limit:
                raise AudioTooLongError(_too_long(name, max_seconds))
        blocks.append(resampler.flush())
    except av.FFmpegError as exc:
        raise undecodable_audio_error(name, exc) from exc
    if total + len(blocks[-1]) > limit:
        raise AudioTooLongError(_too_long(name, max_seconds))
    return _join(blocks)


@cache
def _antialias_taps() -> np.ndarray:
    """95-tap linear-phase low-pass for 48 -> 16 kHz, float32 (N,).

    Equiripple: flat (+-0.07 dB) to 7 kHz, -6 dB at 7.6 kHz, >= 60 dB down
    from 8.4 kHz (what would alias below 7.6 kHz, the feature band's top).
    95 taps keep the delay at 47 input samples, under 1 ms.
    """
    taps = signal.remez(95, [0, 7000, 8400, PLAYBACK_RATE / 2], [1, 0], weight=[1, 10], fs=48000)
    taps /= taps.sum()  # unity gain at DC exactly
    return taps.astype(np.float32)


class Downsampler:
    """Streaming 48 kHz -> 16 kHz (exact 3:1) for audio features.

    Contract: after pushing n input samples in total, in any chunking, exactly
    floor(n / 3) output samples have been returned, equal (up to float32
    rounding) to a one-shot push of the same n samples. Output sample m is
    computed from inputs up to 3m + 2 and is centred on input 3(m - 15): the
    output lags by delay_samples_out = 15 samples at 16 kHz (0.9375 ms).
    The first 15 outputs are the filter filling from silence. There is no
    flush: a caller who needs the last 15 samples pushes 45 zeros.
    """

    def __init__(self) -> None:
        self._taps = _antialias_taps()
        self._history = np.zeros(len(self._taps) - 1, dtype=np.float32)
        self._total_in = 0

    @property
    def delay_samples_out(self) -> int:
        """Group delay in output (16 kHz) samples; the same span is 3x that at 48 kHz."""
        return ((len(self._taps) - 1) // 2 - (_DECIMATION - 1)) // _DECIMATION

    def push(self, samples: np.ndarray) -> np.ndarray:
        """float32 (S,) at 48 kHz in; float32 (S',) at 16 kHz out, S' = the new whole thirds."""
        if samples.ndim != 1:
            raise ValueError(f"Downsampler.push expects (S,) samples, got shape {samples.shape}")
        if samples.size == 0:
            return _empty()
        buffer = np.concatenate([self._history, samples.astype(np.float32, copy=False)])
        # Windows end at global input index total_in + w; outputs land where that index % 3 == 2.
        first = (_DECIMATION - 1 - self._total_in) % _DECIMATION
        count = max(0, (samples.size - first + _DECIMATION - 1) // _DECIMATION)
        # Only the windows that produce an output, as a strided view (no copy); S'xN.
        step = buffer.itemsize
        windows: np.ndarray = np.ndarray(
            (count, len(self._taps)), np.float32, buffer, first * step, (_DECIMATION * step, step)
        )
        out = windows @ self._taps  # taps are symmetric, so no flip
        self._history = buffer[-len(self._history) :].copy()
        self._total_in += samples.size
        return out.astype(np.float32, copy=False)

    def reset(self) -> None:
        """Forget all input, as if new; call it where the audio is discontinuous (new stream)."""
        self._history[:] = 0.0
        self._total_in = 0
