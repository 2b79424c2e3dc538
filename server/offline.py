"""Offline rendering: portrait + audio file -> talking-portrait MP4, streaming end to end.

Audio is decoded twice in lockstep, one-second chunks at a time: at 16 kHz
for the audio features and at 48 kHz for the MP4's soundtrack, so memory
stays bounded however long the input is.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engines.audio.decoding import iter_audio
from engines.backends.registry import BackendConfig, FrameRenderer, frame_renderer
from engines.face.avatar import Avatar
from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.motion import MotionConfig, open_motion_source
from engines.render.renderer import RendererConfig
from engines.types import MotionWindow

from .mp4_output import Mp4Writer

__all__ = ["RenderJobConfig", "RenderReport", "render_to_mp4"]

logger = logging.getLogger(__name__)

FEATURE_RATE = 16000
OUTPUT_AUDIO_RATE = 48000


@dataclass(frozen=True)
class RenderJobConfig:
    fps: int = 25
    seed: int = 0
    # Frames per renderer call. On CPU batching is slower per frame
    # (benchmarks/results/bench_renderer.md); on GPU larger batches pay off.
    batch_frames: int = 1
    encoder: FaceEncoderConfig = field(default_factory=FaceEncoderConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)
    # Offline there is no latency budget: the sampler hears whole windows
    # (heard_frames is capped at the model's window), which lets the lips
    # anticipate the next sound as people's do.
    motion: MotionConfig = field(default_factory=lambda: MotionConfig(heard_frames=64))
    backend: BackendConfig = field(default_factory=BackendConfig)


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
    if not 1 <= config.fps <= 60:
        raise ValueError(f"fps must be between 1 and 60 (25-40 recommended), got {config.fps}")
    start = time.perf_counter()
    avatar = FaceEncoder(config.encoder).encode(portrait)
    prepare_s = time.perf_counter() - start
    # Open both decoders before the output exists: a bad audio file fails cleanly.
    feature_audio = iter_audio(audio, FEATURE_RATE, chunk_samples=FEATURE_RATE)
    output_audio = iter_audio(audio, OUTPUT_AUDIO_RATE, chunk_samples=OUTPUT_AUDIO_RATE)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial.mp4")
    try:
        frames, samples = _render(avatar, feature_audio, output_audio, partial, config)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    wall_s = time.perf_counter() - start
    return RenderReport(
        output, frames, config.fps, samples / FEATURE_RATE, wall_s, prepare_s, avatar.notes
    )


def _render(
    avatar: Avatar, feature_audio, output_audio, path: Path, config: RenderJobConfig
) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    renderer = frame_renderer(avatar, config.renderer, config.backend)
    motion = open_motion_source(config.motion, config.fps, seed=config.seed, backend=config.backend)
    frames = samples = 0
    with Mp4Writer(path, config.fps, width=avatar.image_size, height=avatar.image_size) as writer:
        for chunk, out_chunk in itertools.zip_longest(feature_audio, output_audio):
            if out_chunk is not None:
                writer.write_audio(out_chunk.samples, OUTPUT_AUDIO_RATE)
            if chunk is not None:
                samples += len(chunk.samples)
                frames += _emit(motion.push(chunk), renderer, writer, config)
        frames += _emit(motion.flush(), renderer, writer, config)
    return frames, samples


def _emit(
    window: MotionWindow, renderer: FrameRenderer, writer: Mp4Writer, config: RenderJobConfig
) -> int:
    if len(window) == 0:
        return 0
    with torch.inference_mode():
        for start in range(0, len(window), config.batch_frames):
            batch = window.values[start : start + config.batch_frames]
            for rgb in renderer.render(np.ascontiguousarray(batch)):
                writer.write_frame(rgb)
    return len(window)
