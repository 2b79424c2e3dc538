"""Decode any audio file PyAV understands into mono float32 PCM, streaming.

Everything downstream (AudioEncoder, baseline, server) sees one format: mono
float32 in [-1, 1] at one sample rate (16 kHz by default), cut into
AudioChunk objects whose pts counts samples since the start of the file.
Decoding is streamed so memory stays bounded by the chunk size, whatever the
file length. Every decoding fault surfaces as InvalidAudioError with a
message a user can act on, never as a raw PyAV exception.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from ..errors import InvalidAudioError
from ..types import AudioChunk

__all__ = [
    "AudioInfo",
    "probe_audio",
    "iter_audio",
    "read_audio",
    "open_audio_container",
    "undecodable_audio_error",
    "SUPPORTED_FORMATS_HINT",
]

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS_HINT = "use wav, mp3, ogg, flac or m4a"


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, as read from its headers (duration may be estimated)."""

    duration_s: float
    sample_rate: int
    channels: int
    codec: str


def _open_audio(path: str | os.PathLike[str]) -> tuple[av.container.InputContainer, av.AudioStream]:
    """Open a container and return it with its first audio stream; InvalidAudioError otherwise."""
    name = Path(path).name
    if not Path(path).is_file():
        raise InvalidAudioError(
            f"audio file '{path}' does not exist or is not a file; check the path"
        )
    container = open_audio_container(str(path), name)
    return container, container.streams.audio[0]


def open_audio_container(source: str | BinaryIO, name: str) -> av.container.InputContainer:
    """Open a path or a file-like object holding audio; InvalidAudioError naming `name` if not."""
    try:
        # Tags in legacy encodings (latin-1 ID3) must not reject otherwise good audio.
        container = av.open(source, mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise undecodable_audio_error(name, exc) from exc
    if not container.streams.audio:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
        container.close()
        raise InvalidAudioError(
            f"'{name}' has no audio stream (it holds {kinds}); {SUPPORTED_FORMATS_HINT}"
        )
    return container


def undecodable_audio_error(name: str, exc: BaseException) -> InvalidAudioError:
    return InvalidAudioError(
        f"could not decode '{name}' as audio: {decode_error_reason(exc)}; {SUPPORTED_FORMATS_HINT}"
    )


def decode_error_reason(exc: BaseException) -> str:
    # av errors carry errno and filename in str(); the strerror alone reads better.
    return str(getattr(exc, "strerror", None) or exc)


def probe_audio(path: str | os.PathLike[str]) -> AudioInfo:
    """Read duration, rate, channels and codec of the first audio stream without decoding it.

    Raises InvalidAudioError for a missing file, a non-audio file or a file without audio.
    """
    container, stream = _open_audio(path)
    try:
        duration_s = _header_duration(container, stream)
        if duration_s is None:
            duration_s = _decoded_duration(container, stream, Path(path).name)
        # canonical_name is the format ("mp3"), not the decoder picked ("mp3float").
        codec = stream.codec_context.codec.canonical_name
        info = AudioInfo(
            duration_s=duration_s,
            sample_rate=int(stream.rate or stream.codec_context.sample_rate or 0),
            channels=int(stream.codec_context.channels or 0),
            codec=str(codec),
        )
    finally:
        container.close()
    if info.duration_s <= 0.0:
        raise InvalidAudioError(
            f"'{Path(path).name}' holds no audio samples; record or export it again"
        )
    return info


def _header_duration(
    container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * Fraction(stream.time_base))
    if container.duration is not None:
        return float(container.duration) / av.time_base
    return None


def _decoded_duration(
    container: av.container.InputContainer, stream: av.AudioStream, name: str
) -> float:
    # Some headers (raw streams, a wav with no samples) carry no duration: count instead.
    num_samples = 0
    try:
        for frame in container.decode(stream):
            num_samples += frame.samples
    except av.FFmpegError as exc:
        raise undecodable_audio_error(name, exc) from exc
    rate = stream.rate or stream.codec_context.sample_rate
    return num_samples / rate if rate else 0.0


def iter_audio(
    path: str | os.PathLike[str], sample_rate: int = 16000, chunk_samples: int = 16000
) -> Iterator[AudioChunk]:
    """Decode a file as mono float32 chunks at `sample_rate`, streaming.

    Every chunk but the last holds exactly `chunk_samples` samples (float32
    array of shape (S,)); chunk.pts is the index of its first sample. The file
    is opened here, so a missing or non-audio file raises InvalidAudioError at
    call time; a decoding fault or a file with no samples raises it while
    iterating.
    """
    if sample_rate <= 0 or chunk_samples <= 0:
        raise ValueError(
            f"sample_rate and chunk_samples must be > 0, got {sample_rate}, {chunk_samples}"
        )
    container, stream = _open_audio(path)
    return _decode_chunks(container, stream, Path(path).name, sample_rate, chunk_samples)


def _decode_chunks(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    name: str,
    sample_rate: int,
    chunk_samples: int,
) -> Iterator[AudioChunk]:
    pending: list[np.ndarray] = []
    pending_len = 0
    pts = 0
    try:
        for block in _decode_blocks(container, stream, name, sample_rate):
            pending.append(block)
            pending_len += len(block)
            if pending_len < chunk_samples:
                continue
            joined = np.concatenate(pending)
            full = len(joined) - len(joined) % chunk_samples
            for start in range(0, full, chunk_samples):
                yield AudioChunk(joined[start : start + chunk_samples].copy(), sample_rate, pts)
                pts += chunk_samples
            pending, pending_len = [joined[full:]], len(joined) - full
        if pending_len:
            yield AudioChunk(np.concatenate(pending), sample_rate, pts)
            pts += pending_len
    finally:
        container.close()
    if pts == 0:
        raise InvalidAudioError(f"'{name}' holds no audio samples; record or export it again")
    logger.debug("decoded %s: %d samples at %d Hz", name, pts, sample_rate)


def _decode_blocks(
    container: av.container.InputContainer, stream: av.AudioStream, name: str, sample_rate: int
) -> Iterator[np.ndarray]:
    """Yield resampled mono float32 blocks (shape (S,)) as the decoder produces them."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                yield _frame_samples(out)
        # Flush the resampler's internal delay line so the tail is not lost.
        for out in resampler.resample(None):
            yield _frame_samples(out)
    except av.FFmpegError as exc:
        raise undecodable_audio_error(name, exc) from exc


def _frame_samples(frame: av.AudioFrame) -> np.ndarray:
    # Packed mono float: to_ndarray is (1, S); clip because codecs overshoot slightly.
    samples = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
    return np.clip(samples, -1.0, 1.0)


def read_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> np.ndarray:
    """Decode a whole (short) file: float32 array of shape (S,), mono at `sample_rate`."""
    chunks = [
        chunk.samples for chunk in iter_audio(path, sample_rate, chunk_samples=sample_rate * 10)
    ]
    return np.concatenate(chunks)
