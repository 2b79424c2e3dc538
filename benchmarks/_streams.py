"""One live session's engines without the media plane, and the capacity search, shared by
bench_engines and the GPU check (no PyAV or aiortc here: the check runs where they are
missing)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from engines.backends.registry import BackendConfig, frame_renderer
from engines.face.avatar import Avatar
from engines.motion import MotionConfig
from engines.motion.learned import LearnedMotion
from engines.render.renderer import RendererConfig
from engines.types import AudioChunk, MotionWindow

RATE = 16000
CHUNK = 640  # 40 ms: what the live server pushes per tick at 25 fps


class EngineStream:
    """Motion source (+ renderer when given an avatar), fed 40 ms chunks of a looping clip,
    starting offset_chunks into it (so several streams need not run in lockstep)."""

    def __init__(
        self,
        speech: np.ndarray,
        backend: BackendConfig,
        seed: int,
        fps: float = 25.0,
        avatar: Avatar | None = None,
        offset_chunks: int = 0,
    ) -> None:
        self.motion = LearnedMotion(MotionConfig(), fps, seed=seed, backend=backend)
        self.renderer = (
            None if avatar is None else frame_renderer(avatar, RendererConfig(), backend)
        )
        self.speech = speech
        self.offset = offset_chunks * CHUNK
        self.position = 0

    def push(self) -> MotionWindow:
        """The next 40 ms of the looping clip into the motion source; the motion it yields."""
        start = (self.offset + self.position) % (len(self.speech) - CHUNK)
        chunk = AudioChunk(self.speech[start : start + CHUNK], RATE, self.position)
        self.position += CHUNK
        return self.motion.push(chunk)

    def step(self, sink: Callable[[np.ndarray], object] | None = None) -> int:
        """Push one chunk; render what it yields one frame at a time (into sink, if given);
        frames made."""
        window = self.push()
        if self.renderer is not None:
            for values in window.values:
                rgb = self.renderer.render(values[None])[0]
                if sink is not None:
                    sink(rgb)
        return len(window)


def largest_holding(
    holds: Callable[[int], bool], cap: int, deadline: float = math.inf
) -> tuple[int, int | None, bool]:
    """The largest n <= cap for which holds(n), doubling from 1 and then bisecting.

    Returns (that n, 0 if not even 1; the smallest n found not to hold or None; whether
    the deadline (time.perf_counter()) stopped the doubling). Past the deadline the
    bisection stops too, leaving bad - good > 1.
    """
    if not holds(1):
        return 0, 1, False
    good, bad = 1, None
    while bad is None and good < cap:
        if time.perf_counter() > deadline:
            return good, None, True
        n = min(good * 2, cap)
        good, bad = (n, None) if holds(n) else (good, n)
    while bad is not None and bad - good > 1 and time.perf_counter() < deadline:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if holds(mid) else (good, mid)
    return good, bad, False
