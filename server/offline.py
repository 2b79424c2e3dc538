"""Offline rendering: portrait + audio file -> talking-portrait MP4, streaming end to end.

The audio is decoded once, one second at a time at 48 kHz: the same samples go
into the MP4's soundtrack and into the engines' Pipeline (which makes its
features from them exactly as a live session does), so memory stays bounded
however long the input is and sound and lips come from one signal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engines.audio.decoding import iter_audio
from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.motion import MotionConfig
from engines.pipeline import INPUT_RATE, OFFLINE_FPS, Pipeline, PipelineConfig, check_fps
from engines.types import AudioChunk, Frame

from .mp4_output import Mp4Writer

__all__ = ["RenderJobConfig", "RenderReport", "render_to_mp4"]

logger = logging.getLogger(__name__)


def _offline_pipeline() -> PipelineConfig:
    # Offline there is no latency budget: the sampler hears whole windows
    # (heard_frames is capped at the model's window), which lets the lips
    # anticipate the next sound as people's do.
    return PipelineConfig(motion=MotionConfig(heard_frames=64))


@dataclass(frozen=True)
class RenderJobConfig:
    """An offline render: the pipeline (rate, seed, stages) and the portrait's encoder."""

    pipeline: PipelineConfig = field(default_factory=_offline_pipeline)
    encoder: FaceEncoderConfig = field(default_factory=FaceEncoderConfig)

    def __post_init__(self) -> None:
        check_fps(self.pipeline.fps, OFFLINE_FPS)

    @classmethod
    def of(cls, encoder: FaceEncoderConfig | None = None, **pipeline: Any) -> RenderJobConfig:
        """The offline defaults with some pipeline settings changed (fps, seed, motion...)."""
        settings = replace(_offline_pipeline(), **pipeline)
        return cls(settings, encoder or FaceEncoderConfig())

    @property
    def fps(self) -> int:
        return self.pipeline.fps


@dataclass(frozen=True)
class RenderReport:
    output: Path
    frames: int
    fps: int
    audio_s: float
    wall_s: float
    prepare_s: float
    notes: tuple[str, ...]

    @property
    def realtime_factor(self) -> float:
        """Audio seconds rendered per wall-clock second (> 1 is faster than real time)."""
        return self.audio_s / max(self.wall_s, 1e-9)


def render_to_mp4(
    audio: Path, output: Path, portrait: Path | None = None, config: RenderJobConfig | None = None
) -> RenderReport:
    """Render `audio` spoken by `portrait` (None: the built-in portrait) into `output`.

    Raises FacecastError subclasses for bad images or audio, before `output` is created.
    """
    config = config or RenderJobConfig()
    start = time.perf_counter()
    avatar = FaceEncoder(config.encoder).encode(portrait)
    prepare_s = time.perf_counter() - start
    # Open the decoder before the output exists: a bad audio file fails cleanly.
    chunks = iter_audio(audio, INPUT_RATE, chunk_samples=INPUT_RATE)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial.mp4")
    pipeline = Pipeline(avatar, config.pipeline)
    try:
        size = avatar.image_size
        with Mp4Writer(partial, config.fps, width=size, height=size) as writer:
            frames, samples = _render(pipeline, chunks, writer)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    wall_s = time.perf_counter() - start
    return RenderReport(
        output, frames, config.fps, samples / INPUT_RATE, wall_s, prepare_s, avatar.notes
    )


def _render(pipeline: Pipeline, chunks: Iterator[AudioChunk], writer: Mp4Writer) -> tuple[int, int]:
    """(frames, audio samples) written."""
    frames = samples = 0
    for chunk in chunks:
        writer.write_audio(chunk.samples, INPUT_RATE)
        samples += len(chunk.samples)
        frames += _write(pipeline.push(chunk.samples), writer)
    frames += _write(pipeline.flush(), writer)
    return frames, samples


def _write(frames: list[Frame], writer: Mp4Writer) -> int:
    for frame in frames:
        assert frame.rgb is not None  # offline draws every frame
        writer.write_frame(frame.rgb)
    return len(frames)
