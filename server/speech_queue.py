"""Queued speech of one session, at the 48 kHz playback rate, taken out one video tick at a time.

Utterances play one after another. Each is either whole (an uploaded file, a
TTS result) or streamed (WebSocket PCM, which may arrive slower than real
time). A streamed utterance starts once a small jitter buffer is filled or it
has ended, and an underrun inside it is padded with silence rather than
stretching time: audio and video share one clock, so nothing may slow down.
Each padded sample delays the rest of that utterance, so the queue keeps the
debt and pays it back by skipping quiet stretches (pauses between words) once
more than the jitter buffer is waiting: a live source's latency returns to the
jitter buffer after every pause instead of growing with every network hiccup.
Speech itself is never skipped, and a source that runs ahead (TTS) never pads.

A streamed utterance whose sender goes quiet (no samples for stream_gap_s
while it has nothing left to play) is ended there, as if the sender had said
end_of_utterance: a client that vanished mid-stream must not hold every later
utterance of the session behind it.

The microphone is a separate live lane: it drives the lips but is not played
back (the user would hear themselves), and it never waits behind queued speech.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import SpeechQueueFullError

__all__ = ["Utterance", "TakenAudio", "SpeechQueue"]

_ids = itertools.count(1)
_QUIET_BLOCK = 480  # 10 ms at 48 kHz: the unit of latency catch-up
_QUIET_RMS = 0.003  # about -50 dBFS: a pause, not a soft consonant


def _peek(chunks: collections.deque[np.ndarray], count: int) -> np.ndarray:
    """The first `count` queued samples without taking them (fewer if not queued)."""
    parts, have = [], 0
    for chunk in chunks:
        parts.append(chunk[: count - have])
        have += len(parts[-1])
        if have >= count:
            break
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


@dataclass
class Utterance:
    source: str  # "upload", "tts", "websocket"
    streaming: bool
    id: str = field(default_factory=lambda: f"u{next(_ids)}")
    queued_samples: int = 0
    taken_samples: int = 0
    ended: bool = False
    interrupted: bool = False
    play_start: int | None = None  # playback position of its first sample, once taken
    debt_samples: int = 0  # silence padded into it by underruns, not yet paid back
    skipped_samples: int = 0  # quiet samples dropped to pay the debt back
    last_push_at: float = 0.0  # queue clock of its newest samples (streamed utterances)
    _chunks: collections.deque[np.ndarray] = field(default_factory=collections.deque, repr=False)

    @property
    def pending_samples(self) -> int:
        return self.queued_samples - self.taken_samples

    @property
    def duration_s(self) -> float:
        return self.queued_samples / SpeechQueue.RATE


@dataclass(frozen=True)
class TakenAudio:
    """One tick of audio.

    speech: float32 array of shape (S,): what the face should articulate (queued speech + mic).
    playback: float32 array of shape (S,): what the viewer hears (queued speech only).
    started / finished: utterances whose first / last sample is in this tick, with the
    sample offset inside the tick.
    """

    speech: np.ndarray
    playback: np.ndarray
    started: tuple[tuple[Utterance, int], ...]
    finished: tuple[tuple[Utterance, int], ...]
    underrun: bool


class SpeechQueue:
    RATE = 48000

    def __init__(
        self,
        max_samples: int,
        jitter_samples: int,
        max_live_samples: int = 12000,
        stream_gap_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_samples = max_samples
        self._jitter_samples = jitter_samples
        self._max_live = max_live_samples
        self._stream_gap_s = stream_gap_s
        self._clock = clock
        self._queue: collections.deque[Utterance] = collections.deque()
        self._live: collections.deque[np.ndarray] = collections.deque()
        self._live_samples = 0

    @property
    def queued_samples(self) -> int:
        return sum(u.pending_samples for u in self._queue)

    @property
    def space_samples(self) -> int:
        return max(0, self._max_samples - self.queued_samples)

    @property
    def utterances(self) -> tuple[Utterance, ...]:
        return tuple(self._queue)

    def add(self, utterance: Utterance, samples: np.ndarray | None = None) -> None:
        """Queue an utterance behind the others; a whole one comes with all its samples.

        Raises SpeechQueueFullError (and queues nothing) when its samples do not fit."""
        if samples is not None:
            self._check_space(len(samples))
        utterance.last_push_at = self._clock()
        self._queue.append(utterance)
        if samples is not None:
            self.push(utterance, samples)
        if not utterance.streaming:
            utterance.ended = True

    def push(self, utterance: Utterance, samples: np.ndarray) -> None:
        """Append float32 (S,) samples to a queued, not yet ended utterance."""
        if utterance.ended or utterance.interrupted:
            raise ValueError(f"utterance {utterance.id} has ended; start a new one")
        if samples.ndim != 1:
            raise ValueError(f"samples must have shape (S,), got {samples.shape}")
        self._check_space(len(samples))
        if len(samples):
            utterance._chunks.append(samples.astype(np.float32, copy=False))
            utterance.queued_samples += len(samples)
            utterance.last_push_at = self._clock()

    def _check_space(self, count: int) -> None:
        if count > self.space_samples:
            raise SpeechQueueFullError(
                f"the speech queue is full: {count / self.RATE:.1f} s of audio does not fit "
                f"({self.space_samples / self.RATE:.1f} s free of "
                f"{self._max_samples / self.RATE:.0f} s); wait for playback or interrupt"
            )

    def push_live(self, samples: np.ndarray) -> None:
        """Microphone audio; only the newest max_live_samples are kept, so lag cannot build up."""
        self._live.append(samples.astype(np.float32, copy=False))
        self._live_samples += len(samples)
        while self._live_samples - len(self._live[0]) >= self._max_live:
            self._live_samples -= len(self._live.popleft())

    def clear(self) -> list[Utterance]:
        """Drop all queued speech (barge-in); returns the utterances cut short."""
        dropped = list(self._queue)
        for utterance in dropped:
            utterance.interrupted = True
            utterance._chunks.clear()
        self._queue.clear()
        self._live.clear()
        self._live_samples = 0
        return dropped

    def take(self, num_samples: int) -> TakenAudio:
        """The next num_samples of audio; silence where nothing is ready."""
        playback = np.zeros(num_samples, dtype=np.float32)
        started: list[tuple[Utterance, int]] = []
        finished: list[tuple[Utterance, int]] = []
        filled = 0
        underrun = False
        while filled < num_samples and self._queue:
            utterance = self._queue[0]
            self._end_if_stalled(utterance)
            if utterance.taken_samples == 0 and not self._ready_to_start(utterance):
                break
            if utterance.taken_samples == 0 and utterance.pending_samples:
                started.append((utterance, filled))
            self._repay_debt(utterance)
            filled += self._drain(utterance, playback[filled:])
            if utterance.ended and utterance.pending_samples == 0:
                self._queue.popleft()
                finished.append((utterance, filled))
                if utterance.taken_samples == 0:  # an empty utterance still reports its end
                    started.append((utterance, filled))
            elif filled < num_samples:
                underrun = True  # mid-utterance starvation: pad, keep the clock
                utterance.debt_samples += num_samples - filled
                break
        return TakenAudio(
            playback + self._take_live(num_samples),
            playback,
            tuple(started),
            tuple(finished),
            underrun,
        )

    def _end_if_stalled(self, utterance: Utterance) -> None:
        """End a streamed utterance that is starving and whose sender has gone quiet."""
        if self._stream_gap_s is None or utterance.ended or not utterance.streaming:
            return
        starving = utterance.pending_samples < max(self._jitter_samples, 1)
        if starving and self._clock() - utterance.last_push_at > self._stream_gap_s:
            utterance.ended = True

    def _ready_to_start(self, utterance: Utterance) -> bool:
        return utterance.ended or utterance.pending_samples >= self._jitter_samples

    def _repay_debt(self, utterance: Utterance) -> None:
        """Skip quiet blocks at the head of a late utterance, at most its debt."""
        while (
            utterance.debt_samples >= _QUIET_BLOCK
            and utterance.pending_samples - _QUIET_BLOCK >= self._jitter_samples
            and utterance._chunks
        ):
            head = _peek(utterance._chunks, _QUIET_BLOCK)
            if len(head) < _QUIET_BLOCK or float(np.sqrt(np.mean(head**2))) > _QUIET_RMS:
                return
            self._drain(utterance, np.empty(_QUIET_BLOCK, dtype=np.float32))
            utterance.skipped_samples += _QUIET_BLOCK
            utterance.debt_samples -= _QUIET_BLOCK

    @staticmethod
    def _drain(utterance: Utterance, out: np.ndarray) -> int:
        filled = 0
        while filled < len(out) and utterance._chunks:
            chunk = utterance._chunks[0]
            count = min(len(chunk), len(out) - filled)
            out[filled : filled + count] = chunk[:count]
            if count == len(chunk):
                utterance._chunks.popleft()
            else:
                utterance._chunks[0] = chunk[count:]
            filled += count
        utterance.taken_samples += filled
        return filled

    def _take_live(self, num_samples: int) -> np.ndarray:
        out = np.zeros(num_samples, dtype=np.float32)
        filled = 0
        while filled < num_samples and self._live:
            chunk = self._live[0]
            count = min(len(chunk), num_samples - filled)
            out[filled : filled + count] = chunk[:count]
            if count == len(chunk):
                self._live.popleft()
            else:
                self._live[0] = chunk[count:]
            filled += count
        self._live_samples -= filled
        return out
