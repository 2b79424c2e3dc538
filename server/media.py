"""aiortc media tracks of a session. They only pace and pull: each recv() waits for its
item's due time on the session clock, reads a buffer, and never runs inference.

Video repeats the last frame when the producer has nothing new (idle or
overloaded); audio plays silence where nothing was queued. When the sender
falls behind (a slow encoder, a stalled loop), both skip ahead to "now" instead
of drifting: a dropped frame is better than a growing delay.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from .playout import AudioRing, FrameStore, SessionClock, StoredFrame, sleep_until

__all__ = ["PlayoutSource", "SessionVideoTrack", "SessionAudioTrack", "AUDIO_PACKET_SAMPLES"]

VIDEO_CLOCK_RATE = 90000
AUDIO_PACKET_SAMPLES = 960  # 20 ms at 48 kHz: one Opus frame
# Audio this far behind its due time is skipped rather than played late.
_MAX_AUDIO_LAG_S = 0.2


@dataclass
class PlayoutSource:
    """What a session exposes to its tracks; read-only for them except the callbacks."""

    clock: SessionClock
    frames: FrameStore
    audio: AudioRing
    first_frame: asyncio.Event
    on_video_frame: Callable[[StoredFrame, bool, float], None]  # frame, fresh, sent_at
    on_skipped_frames: Callable[[int], None]


class SessionVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, source: PlayoutSource) -> None:
        super().__init__()
        self._source = source
        self._next_index: int | None = None
        self._first_index = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        source, clock = self._source, self._source.clock
        await source.first_frame.wait()
        if self._next_index is None:
            self._next_index = self._first_index = clock.frame_index_at(time.monotonic()) + 1
        index = self._next_index
        await sleep_until(clock.frame_due(index))
        newest_due = clock.frame_index_at(time.monotonic())
        if newest_due > index:  # the sender is late: show the frame due now, skip the rest
            source.on_skipped_frames(newest_due - index)
            index = newest_due
        stored, fresh = source.frames.take(index)
        while stored is None:  # nothing to show yet: wait a tick rather than end the track
            await asyncio.sleep(1.0 / clock.fps)
            stored, fresh = source.frames.take(index)
        self._next_index = index + 1
        frame = VideoFrame.from_ndarray(stored.rgb, format="rgb24")
        frame.pts = (index - self._first_index) * VIDEO_CLOCK_RATE // clock.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        source.on_video_frame(stored, fresh, time.monotonic())
        return frame


class SessionAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, source: PlayoutSource) -> None:
        super().__init__()
        self._source = source
        self._next_position: int | None = None
        self._first_position = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        clock = self._source.clock
        if self._next_position is None:
            now_position = max(0, clock.sample_position_at(time.monotonic()))
            self._next_position = self._first_position = _packet_ceil(now_position)
        position = self._next_position
        await sleep_until(clock.sample_due(position))
        lag = time.monotonic() - clock.sample_due(position)
        if lag > _MAX_AUDIO_LAG_S:
            position = _packet_ceil(clock.sample_position_at(time.monotonic()))
        self._next_position = position + AUDIO_PACKET_SAMPLES
        samples = self._source.audio.read(position, AUDIO_PACKET_SAMPLES)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
        frame = AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = clock.sample_rate
        frame.pts = position - self._first_position
        frame.time_base = fractions.Fraction(1, clock.sample_rate)
        return frame


def _packet_ceil(position: int) -> int:
    return -(-position // AUDIO_PACKET_SAMPLES) * AUDIO_PACKET_SAMPLES
