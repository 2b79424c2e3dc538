"""One session's clock and the two buffers its media tracks read from.

Everything in a session is timed on one clock (time.monotonic): input audio
for video tick n is taken in at `tick_time(n + 1)`; the frame with index k and
the playback sample at position p leave at `frame_due(k)` and `sample_due(p)`,
both a fixed playout delay after their audio was taken in. Because audio and
video derive their times from the same origin and integer positions, they
cannot drift apart, however long the session runs.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["SessionClock", "AudioRing", "FrameStore", "StoredFrame", "sleep_until"]


async def sleep_until(deadline: float) -> None:
    """Sleep until time.monotonic() reaches `deadline` (at once if it has passed)."""
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


@dataclass(frozen=True)
class SessionClock:
    origin: float  # time.monotonic() at which tick 0 began
    fps: int
    playout_delay_s: float
    sample_rate: int = 48000

    @classmethod
    def start_now(cls, fps: int, playout_delay_s: float, sample_rate: int = 48000) -> SessionClock:
        return cls(time.monotonic(), fps, playout_delay_s, sample_rate)

    def sample_position(self, tick: int) -> int:
        """First playback sample of video tick `tick` (exact for any fps)."""
        return tick * self.sample_rate // self.fps

    def tick_time(self, tick: int) -> float:
        return self.origin + tick / self.fps

    def frame_due(self, index: int) -> float:
        return self.origin + self.playout_delay_s + index / self.fps

    def sample_due(self, position: int) -> float:
        return self.origin + self.playout_delay_s + position / self.sample_rate

    def frame_index_at(self, now: float) -> int:
        """The newest frame index due at `now`."""
        return math.floor((now - self.origin - self.playout_delay_s) * self.fps)

    def sample_position_at(self, now: float) -> int:
        return math.floor((now - self.origin - self.playout_delay_s) * self.sample_rate)


class AudioRing:
    """Playback samples by absolute position; positions never written read as silence.

    Written by the producer (contiguously, ahead of playback), read by the audio track.
    """

    def __init__(self, capacity: int) -> None:
        self._buffer = np.zeros(capacity, dtype=np.float32)
        self._start = 0  # oldest position still held
        self._end = 0  # one past the newest written position
        self._lock = threading.Lock()

    def write(self, position: int, samples: np.ndarray) -> None:
        with self._lock:
            if position > self._end:  # a gap (e.g. after truncate) plays as silence
                self._store(self._end, np.zeros(position - self._end, dtype=np.float32))
            elif position < self._end:
                samples = samples[self._end - position :]
                position = self._end
            self._store(position, samples)

    def read(self, position: int, count: int) -> np.ndarray:
        out = np.zeros(count, dtype=np.float32)
        with self._lock:
            lo, hi = max(position, self._start), min(position + count, self._end)
            if lo < hi:
                out[lo - position : hi - position] = self._slice(lo, hi)
        return out

    def truncate(self, position: int) -> None:
        """Forget everything from `position` on (barge-in: queued sound stops at once)."""
        with self._lock:
            self._end = max(self._start, min(self._end, position))

    def _store(self, position: int, samples: np.ndarray) -> None:
        capacity = len(self._buffer)
        if len(samples) > capacity:
            position, samples = position + len(samples) - capacity, samples[-capacity:]
        index = position % capacity
        first = min(len(samples), capacity - index)
        self._buffer[index : index + first] = samples[:first]
        self._buffer[: len(samples) - first] = samples[first:]
        self._end = position + len(samples)
        self._start = max(self._start, self._end - capacity)

    def _slice(self, lo: int, hi: int) -> np.ndarray:
        capacity = len(self._buffer)
        indices = np.arange(lo, hi) % capacity
        return self._buffer[indices]


@dataclass(frozen=True)
class StoredFrame:
    index: int
    rgb: np.ndarray  # uint8 array of shape (H, W, 3)
    entered_at: float  # time.monotonic() at which the audio behind this frame was taken in


class FrameStore:
    """Rendered frames waiting for their due time; bounded, the oldest is dropped when full."""

    def __init__(self, capacity: int) -> None:
        self._frames: collections.OrderedDict[int, StoredFrame] = collections.OrderedDict()
        self._capacity = capacity
        self._latest: StoredFrame | None = None
        self._lock = threading.Lock()
        self.overflowed = 0

    def put(self, frame: StoredFrame) -> None:
        with self._lock:
            self._frames[frame.index] = frame
            while len(self._frames) > self._capacity:
                self._frames.popitem(last=False)
                self.overflowed += 1

    def take(self, index: int) -> tuple[StoredFrame | None, bool]:
        """The frame to show at `index`: its own if rendered, else the last one shown.

        Returns (frame, fresh); frames older than `index` are discarded.
        """
        with self._lock:
            fresh = None
            while self._frames:
                first = next(iter(self._frames))
                if first > index:
                    break
                fresh = self._frames.pop(first)
            if fresh is not None and fresh.index == index:
                self._latest = fresh
                return fresh, True
            if fresh is not None:
                self._latest = fresh
            elif self._latest is None and self._frames:
                # A new viewer whose first due frame predates everything kept:
                # show the oldest kept frame rather than nothing.
                self._latest = next(iter(self._frames.values()))
            return self._latest, False

    def drop_after(self, index: int) -> None:
        with self._lock:
            for key in [k for k in self._frames if k > index]:
                del self._frames[key]

    @property
    def latest(self) -> StoredFrame | None:
        return self._latest
