"""The one streaming pipeline: speech in, rendered frames out, live and offline alike.

    48 kHz speech --Downsampler--> 16 kHz --motion source (features, sampler)--> motion
    motion --FaceRenderer on the configured backend--> uint8 RGB Frames

`Pipeline(avatar, config)` owns the motion source, the renderer, inference mode
and device placement; the live session calls it on its executor thread once
per video tick, the offline renderer once per chunk of a file. Both feed it
the same 48 kHz audio they play, through the same downsampler, so live and
offline make their features the same way and lips and sound cannot drift.

push() returns the frames the new audio completed: one per 1/fps of audio
once the motion source's look-ahead has filled (`latency_s`). A caller that
cannot use a frame (late for its due time, nobody watching) says so through
`render(pts) -> bool` and gets the Frame without pixels; `skip()` stands for a
whole tick nobody watches (no motion, no pixels; frame numbering goes on).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .audio.ingest import FEATURE_RATE, PLAYBACK_RATE, Downsampler
from .backends.registry import BackendConfig, FrameRenderer, frame_renderer
from .face.avatar import Avatar
from .motion import MotionConfig, MotionSource, open_motion_source
from .motion import space as ms
from .motion.controls import Controls
from .render.renderer import RendererConfig
from .types import AudioChunk, Frame, MotionWindow

__all__ = [
    "INPUT_RATE",
    "LIVE_FPS",
    "OFFLINE_FPS",
    "Pipeline",
    "PipelineConfig",
    "check_fps",
    "set_threads",
]

INPUT_RATE = PLAYBACK_RATE  # what push() takes: the rate sessions play and MP4s carry
# Frame rates, inclusive. Live: aiortc's encoders and browsers' players are built
# for <= 30 fps, 40 is the product's ceiling (the server raises the encoders' rate).
# Offline: whatever an MP4 player shows; 25-40 look right.
LIVE_FPS = (1, 40)
OFFLINE_FPS = (1, 60)
# After cut(): the mouth held at rest, then eased back to the motion (Pipeline.cut).
CUT_HOLD_S = 0.16
CUT_RELEASE_S = 0.08
_MOUTH = np.array([ms.index_of(name) for name in ms.MOUTH_CHANNELS])


def check_fps(fps: int, limits: tuple[int, int]) -> None:
    """ValueError naming the range unless limits[0] <= fps <= limits[1]."""
    low, high = limits
    if not low <= fps <= high:
        raise ValueError(f"fps must be between {low} and {high} (25-40 look best), got {fps}")


def set_threads(threads: int) -> None:
    """Intra-op threads of the engines in this process (torch's, and onnxruntime's
    sessions made after this call follow it)."""
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class PipelineConfig:
    """What a live session and an offline render share: rate, seed and the stages' configs.

    batch_frames: frames per renderer call. On CPU batching is slower per frame
    (benchmarks/results/bench_renderer.md); on a GPU larger batches pay off.
    """

    fps: int = 25
    seed: int = 0
    renderer: RendererConfig = field(default_factory=RendererConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    batch_frames: int = 1

    def __post_init__(self) -> None:
        check_fps(self.fps, (LIVE_FPS[0], OFFLINE_FPS[1]))
        if self.batch_frames < 1:
            raise ValueError(f"batch_frames must be >= 1, got {self.batch_frames}")


def _never(pts: int) -> bool:
    return False


def _always(pts: int) -> bool:
    return True


class Pipeline:
    """Speech in, frames out; see the module docstring. Not thread-safe: one caller thread."""

    def __init__(self, avatar: Avatar, config: PipelineConfig) -> None:
        self.config = config
        self.motion: MotionSource = open_motion_source(
            config.motion, config.fps, seed=config.seed, backend=config.backend
        )
        self.renderer: FrameRenderer = frame_renderer(avatar, config.renderer, config.backend)
        self._downsampler = Downsampler()
        self._feature_pts = 0
        # Ticks nobody watched: the motion source did not hear them, so its frame
        # count is behind the stream's by this much.
        self._skipped = 0
        self._cut_frames: float | None = None  # frames since cut(), while it still acts
        self._cut_rest = np.zeros(len(_MOUTH), np.float32)  # the mouth at rest, at the cut

    @property
    def fps(self) -> int:
        return self.config.fps

    @property
    def latency_s(self) -> float:
        """Algorithmic delay from a sound to its frame: the motion source's look-ahead."""
        return self.motion.latency_s

    @property
    def controls(self) -> Controls:
        return self.motion.controls

    def set_controls(self, controls: Controls) -> None:
        """Gaze, head distance and emotion, eased in from the next frame."""
        self.motion.set_controls(controls)

    def set_avatar(self, avatar: Avatar) -> None:
        """Show another portrait from the next frame on; the motion goes on unbroken."""
        self.renderer = frame_renderer(avatar, self.config.renderer, self.config.backend)

    def push(self, samples: np.ndarray, render: Callable[[int], bool] = _always) -> list[Frame]:
        """float32 (S,) speech at INPUT_RATE in; the frames it completed out, in pts order.

        render(pts) is asked just before each frame is drawn; False leaves its rgb None.
        """
        if samples.ndim != 1:
            raise ValueError(f"push takes mono samples of shape (S,), got {samples.shape}")
        low = self._downsampler.push(samples.astype(np.float32, copy=False))
        chunk = AudioChunk(low, FEATURE_RATE, self._feature_pts)
        self._feature_pts += len(low)
        return self._frames(self.motion.push(chunk), render)

    def flush(self, render: Callable[[int], bool] = _always) -> list[Frame]:
        """End of the stream: the frames held back for look-ahead."""
        return self._frames(self.motion.flush(), render)

    def skip(self) -> None:
        """A tick nobody watches: no motion, no pixels; the next frames keep their numbers."""
        self._skipped += 1

    def cut(self) -> None:
        """The speech was cut off (barge-in): the mouth shuts on the next frames.

        The motion source has already heard audio up to this tick, past what the
        viewer hears, and a sound stopped mid-vowel still opens the model's mouth for a
        frame or three, so a cut would show the lips parting again a few hundred ms
        later. The next CUT_HOLD_S of frames keep the mouth at rest, then it blends back
        into the motion over CUT_RELEASE_S (speech that follows at once starts there).
        """
        self._cut_frames = 0.0
        self._cut_rest = self.motion.rest_frame()[_MOUTH]

    def _rest_mouth(self, window: MotionWindow) -> MotionWindow:
        """window with its mouth eased to the rest pose, as far as cut() still acts."""
        assert self._cut_frames is not None
        hold, release = CUT_HOLD_S * self.fps, CUT_RELEASE_S * self.fps
        since = self._cut_frames + np.arange(len(window))
        rest_share = np.clip(1.0 - (since - hold) / release, 0.0, 1.0)[:, None]  # (N, 1)
        values = window.values.copy()
        values[:, _MOUTH] += rest_share * (self._cut_rest - values[:, _MOUTH])
        self._cut_frames += len(window)
        if self._cut_frames >= hold + release:
            self._cut_frames = None
        return MotionWindow(values, window.fps, window.pts)

    def warm(self) -> None:
        """Make what the first frames would otherwise pay for, on a throwaway pipeline
        (its stream state is left used): the backends' graphs of the motion stages
        (a few sampled frames of silence) and of this portrait's renderer."""
        self.push(np.zeros(INPUT_RATE // 5, np.float32), render=_never)
        self.flush(render=_never)
        # Only some backends replay per-portrait graphs made after construction.
        warm_renderer = getattr(self.renderer, "warm", None)
        if warm_renderer is not None:
            warm_renderer()
        self.rest_frame()

    def rest_frame(self) -> Frame:
        """The face at rest with the current controls (lips together), pts -1."""
        with torch.inference_mode():
            rgb = self.renderer.render(self.motion.rest_frame()[None])[0]
        return Frame(rgb, self.fps, -1)

    def _frames(self, window: MotionWindow, render: Callable[[int], bool]) -> list[Frame]:
        if len(window) == 0:
            return []
        if self._cut_frames is not None:
            window = self._rest_mouth(window)
        first = window.pts + self._skipped
        frames: list[Frame] = []
        batch = self.config.batch_frames
        with torch.inference_mode():
            for start in range(0, len(window), batch):
                rows = range(start, min(start + batch, len(window)))
                wanted = [row for row in rows if render(first + row)]
                frames += [Frame(None, self.fps, first + row) for row in rows if row not in wanted]
                if not wanted:
                    continue
                began = time.perf_counter()
                rgb = self.renderer.render(np.ascontiguousarray(window.values[wanted]))
                each_s = (time.perf_counter() - began) / len(wanted)
                frames += [
                    Frame(rgb[i], self.fps, first + row, each_s) for i, row in enumerate(wanted)
                ]
        return sorted(frames, key=lambda frame: frame.pts)
