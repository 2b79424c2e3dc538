"""One live session: one avatar, one motion stream, one clock, the buffers its tracks read.

The producer is an asyncio task that wakes once per video tick, takes that
tick's audio from the speech queue, writes it to the playback ring, and hands
it to the engines' Pipeline on the session's own one-thread executor, so the
event loop never blocks and the model work of one session stays serial.
Every rendered frame is marked there too (engines.provenance: the invisible
mark and, if asked, the visible label), once per frame before any peer's
encoder sees it, so WebRTC, WHEP and every viewer carry the same mark.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from engines.audio.ingest import PLAYBACK_RATE
from engines.face.avatar import Avatar
from engines.motion.controls import Controls
from engines.pipeline import Pipeline
from engines.provenance import FrameMarker, ProvenanceConfig
from engines.types import Frame

from .config import SessionConfig
from .media import PlayoutSource, SessionAudioTrack, SessionVideoTrack
from .memory import release_freed_memory
from .metrics import ServerMetrics
from .playout import AudioRing, FrameStore, SessionClock, StoredFrame, sleep_until
from .speech_queue import SpeechQueue, TakenAudio, Utterance

__all__ = ["Session", "playout_delay_s"]

logger = logging.getLogger(__name__)

_EVENT_QUEUE = 256
_RING_SECONDS = 4
_TICKS_REMEMBERED = 64


def playout_delay_s(config: SessionConfig, motion_latency_s: float) -> float:
    """Audio-to-frame floor: motion look-ahead + one tick of pacing + the render budget."""
    if config.playout_delay_s is not None:
        return config.playout_delay_s
    return motion_latency_s + 1.0 / config.fps + config.render_budget


class Session:
    """Create with `await Session.start(...)`; close with `await session.close()`."""

    def __init__(
        self,
        portrait_id: str,
        config: SessionConfig,
        metrics: ServerMetrics,
        pipeline: Pipeline,
        executor: ThreadPoolExecutor,
        provenance: ProvenanceConfig,
    ) -> None:
        # The id is a capability (it addresses every route of the session): 128 random bits.
        self.id = secrets.token_hex(16)
        # Its frames carry a hash of the id, never the id (anyone can read the mark).
        self.marker = FrameMarker(provenance, self.id)
        self.portrait_id = portrait_id
        self.config = config
        self.created_at = time.time()
        self.last_active = time.monotonic()
        self.metrics = metrics
        self.frames_sent = 0
        self.frames_dropped = 0  # not rendered in time
        self.frames_skipped = 0  # rendered or not, skipped by a sender that fell behind
        self.first_frame_s: float | None = None
        self._viewers: set[str] = set()  # connected peers
        self._joining: set[str] = set()  # peers answered, not connected yet
        self.clients = 0
        self.closed = False
        self._pipeline = pipeline
        self._executor = executor
        delay = playout_delay_s(config, pipeline.latency_s)
        self.clock = SessionClock.start_now(config.fps, delay, PLAYBACK_RATE)
        self.speech = SpeechQueue(
            int(config.max_queued_speech_s * PLAYBACK_RATE),
            int(config.jitter_buffer_s * PLAYBACK_RATE),
            stream_gap_s=config.stream_gap_s,
        )
        # One text-to-speech job at a time per session, in the order they came.
        self.tts_lock = asyncio.Lock()
        self._space = asyncio.Event()
        self._space.set()
        self._frames = FrameStore(config.max_buffered_frames)
        self._ring = AudioRing(_RING_SECONDS * PLAYBACK_RATE)
        self._first_frame = asyncio.Event()
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._playing: dict[str, Utterance] = {}  # taken in, end not yet heard
        self._render_times: collections.deque[float] = collections.deque(maxlen=256)
        self._latencies: collections.deque[float] = collections.deque(maxlen=256)
        self._sent_times: collections.deque[float] = collections.deque(maxlen=4 * config.fps)
        self._tick_entered: dict[int, float] = {}
        self._tracks: list[SessionVideoTrack | SessionAudioTrack] = []
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def start(
        cls,
        avatar: Avatar,
        portrait_id: str,
        config: SessionConfig,
        metrics: ServerMetrics,
        provenance: ProvenanceConfig,
        requested_at: float | None = None,
    ) -> Session:
        """`requested_at` (time.monotonic()) is when the caller began, for first-frame time;
        `provenance` says how frames are marked (its instance_id resolved)."""
        requested_at = time.monotonic() if requested_at is None else requested_at
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facecast-session")
        loop = asyncio.get_running_loop()
        pipeline = await loop.run_in_executor(executor, Pipeline, avatar, config.pipeline)
        session = cls(portrait_id, config, metrics, pipeline, executor, provenance)
        # The neutral frame is shown until the first paced frame: a viewer never waits on a tick.
        neutral = await loop.run_in_executor(executor, session._rest_frame)
        session._frames.put(StoredFrame(-1, neutral, time.monotonic()))
        session._first_frame.set()
        session.first_frame_s = time.monotonic() - requested_at
        metrics.first_frame_seconds.observe(session.first_frame_s)
        session._tasks = [
            asyncio.create_task(session._produce(), name=f"produce-{session.id}"),
            asyncio.create_task(session._publish_stats(), name=f"stats-{session.id}"),
        ]
        logger.info(
            "session %s started (portrait %s, provenance mark %s%s)",
            session.id,
            portrait_id,
            session.marker.mark_id,
            "" if provenance.watermark else ", watermark OFF",
        )
        return session

    # ---- outputs -----------------------------------------------------------------

    def create_tracks(self) -> tuple[SessionVideoTrack, SessionAudioTrack]:
        source = PlayoutSource(
            self.clock,
            self._frames,
            self._ring,
            self._first_frame,
            self._on_video_frame,
            self._on_skipped_frames,
        )
        video, audio = SessionVideoTrack(source), SessionAudioTrack(source)
        # Drop tracks of viewers that left, so reconnecting pages do not pile them up.
        self._tracks = [t for t in self._tracks if t.readyState == "live"] + [video, audio]
        return video, audio

    @property
    def viewers(self) -> int:
        """Connected peers; one still negotiating (or never coming) is not a viewer."""
        return len(self._viewers)

    def add_joining(self, peer_id: str) -> None:
        """A peer was answered: keep the motion going so it connects to a face in motion."""
        self._joining.add(peer_id)

    def add_viewer(self, peer_id: str) -> None:
        self._joining.discard(peer_id)
        self._viewers.add(peer_id)
        self._touch()

    def remove_viewer(self, peer_id: str) -> None:
        self._joining.discard(peer_id)
        if peer_id in self._viewers:
            self._viewers.discard(peer_id)
            self._touch()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=_EVENT_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def publish(self, event: dict[str, Any]) -> None:
        for queue in self._subscribers:
            if queue.full():  # a slow reader loses its oldest events, never blocks the session
                queue.get_nowait()
            queue.put_nowait(event)

    # ---- inputs ------------------------------------------------------------------

    def enqueue(self, samples: np.ndarray, source: str) -> Utterance:
        """A whole utterance of float32 (S,) 48 kHz samples, played after what is queued."""
        utterance = Utterance(source, streaming=False)
        self.speech.add(utterance, samples)
        self.metrics.utterances.inc(source=source)
        self._touch()
        return utterance

    def open_stream(self, source: str) -> Utterance:
        utterance = Utterance(source, streaming=True)
        self.speech.add(utterance)
        self.metrics.utterances.inc(source=source)
        return utterance

    def push_stream(self, utterance: Utterance, samples: np.ndarray) -> None:
        """Append to a streamed utterance; SpeechQueueFullError if the queue lacks the room."""
        if utterance.interrupted or self.closed or utterance.ended:
            return  # barge-in (or the stall guard) ended it: the rest is dropped on purpose
        self.speech.push(utterance, samples)
        self._touch()

    async def wait_for_space(self) -> None:
        """Return once playback has taken audio out of the queue (or the session closed)."""
        if self.closed:
            return
        self._space.clear()
        await self._space.wait()

    def end_stream(self, utterance: Utterance) -> None:
        utterance.ended = True

    def push_microphone(self, samples: np.ndarray) -> None:
        self.speech.push_live(samples)
        self._touch()

    def interrupt(self) -> int:
        """Barge-in: queued and playing speech stop now; the face returns to idle.

        Returns how many utterances were cut short."""
        self.metrics.interrupts.inc()
        return self._cut_speech()

    def _cut_speech(self) -> int:
        now = time.monotonic()
        stopped = {u.id: u for u in self.speech.clear()}
        stopped.update(self._playing)
        self._playing.clear()
        self._ring.truncate(max(0, self.clock.sample_position_at(now)))
        # Frames rendered ahead were articulating the dropped audio.
        self._frames.drop_after(self.clock.frame_index_at(now))
        if not self.closed:
            # The motion heard that audio too: its next frames shut the mouth (on the
            # executor, the pipeline's one thread, after the frame step under way).
            asyncio.get_running_loop().run_in_executor(self._executor, self._pipeline.cut)
        for utterance in stopped.values():
            utterance.interrupted = True
            self._finish(utterance, interrupted=True)
        self._space.set()
        return len(stopped)

    async def set_controls(self, values: dict[str, object]) -> Controls:
        """Partial update; read and applied on the executor, so concurrent updates never
        start from the same old controls and undo each other."""
        pipeline = self._pipeline

        def update() -> Controls:
            controls = Controls.from_dict(values, base=pipeline.controls)
            pipeline.set_controls(controls)
            return controls

        return await asyncio.get_running_loop().run_in_executor(self._executor, update)

    @property
    def controls(self) -> Controls:
        return self._pipeline.controls

    async def set_portrait(self, avatar: Avatar, portrait_id: str) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._pipeline.set_avatar, avatar
        )
        self.portrait_id = portrait_id

    def free_speech_seconds(self) -> float:
        """Room left in the speech queue, in seconds."""
        return self.speech.space_samples / PLAYBACK_RATE

    @property
    def speaking(self) -> bool:
        return bool(self._playing) or any(u.taken_samples for u in self.speech.utterances)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._space.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for track in self._tracks:
            track.stop()
        self._cut_speech()
        self.publish({"type": "closed", "session_id": self.id})
        self._subscribers.clear()
        # Wait for a step in flight (it holds the renderer) before letting go of it.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._executor.shutdown, True)
        self._pipeline = None  # type: ignore[assignment]  # release the renderer's tensors
        await loop.run_in_executor(None, release_freed_memory)  # trimming can take 100 ms
        logger.info("session %s closed", self.id)

    # ---- the producer ------------------------------------------------------------

    async def _produce(self) -> None:
        loop = asyncio.get_running_loop()
        tick = 0
        while True:
            await sleep_until(self.clock.tick_time(tick + 1))
            start = self.clock.sample_position(tick)
            taken = self.speech.take(self.clock.sample_position(tick + 1) - start)
            self._tick_entered[tick] = time.monotonic()
            self._tick_entered.pop(tick - _TICKS_REMEMBERED, None)
            self._ring.write(start, taken.playback)
            self._schedule_events(taken, start)
            if taken.underrun:
                self.metrics.audio_underruns.inc()
            self._space.set()
            tick += 1
            if not self._viewers and not self._joining:
                # Nobody watches or is about to: skip the model as well as the pixels.
                # (While a peer connects the motion runs, so that its first frames do not
                # arrive together with the model's and the encoder's first work.)
                self._pipeline.skip()
                continue
            try:
                frames = await loop.run_in_executor(self._executor, self._step, taken.speech)
            except Exception:  # a transient fault repeats the last frame; the session goes on
                logger.exception("session %s: frame step failed", self.id)
                frames = []
            self._store(frames)

    def _step(self, speech: np.ndarray) -> list[Frame]:
        """On the executor: one tick's frames from the pipeline, marked."""
        return self.marker.mark_frames(self._pipeline.push(speech, self._should_render))

    def _rest_frame(self) -> np.ndarray:
        """On the executor: the neutral frame, marked: (H, W, 3) uint8."""
        rgb = self._pipeline.rest_frame().rgb
        assert rgb is not None
        return self.marker.mark(rgb, in_place=True)

    def _should_render(self, index: int) -> bool:
        if self.viewers == 0:
            return False  # nobody watches: keep motion and timing going, skip the pixels
        # Too late to show: rendering it would only make the next one late too.
        return time.monotonic() < self.clock.frame_due(index)

    def _store(self, frames: list[Frame]) -> None:
        for frame in frames:
            index, rgb = frame.pts, frame.rgb
            if rgb is None:
                if self.viewers:
                    self.frames_dropped += 1
                    self.metrics.frames_dropped.inc(reason="late")
                continue
            # Frame k shows the audio of tick k, which entered when that tick ended.
            entered_at = self._tick_entered.get(index, time.monotonic())
            self._frames.put(StoredFrame(index, rgb, entered_at))
            self._render_times.append(frame.render_s)
            self.metrics.frame_time_seconds.observe(frame.render_s)

    def _schedule_events(self, taken: TakenAudio, tick_start: int) -> None:
        loop = asyncio.get_running_loop()
        for utterance, offset in taken.started:
            self._playing[utterance.id] = utterance
            utterance.play_start = tick_start + offset
            delay = self.clock.sample_due(tick_start + offset) - time.monotonic()
            loop.call_later(max(0.0, delay), self._announce_start, utterance)
        for utterance, offset in taken.finished:
            delay = self.clock.sample_due(tick_start + offset) - time.monotonic()
            loop.call_later(max(0.0, delay), self._finish, utterance, False)

    def _announce_start(self, utterance: Utterance) -> None:
        if not utterance.interrupted:
            self.publish(
                {
                    "type": "playback_started",
                    "utterance_id": utterance.id,
                    "source": utterance.source,
                }
            )

    def _finish(self, utterance: Utterance, interrupted: bool) -> None:
        if utterance.interrupted and not interrupted:
            return  # its interrupted event went out already
        self._playing.pop(utterance.id, None)
        played = utterance.taken_samples
        if interrupted and utterance.play_start is not None:
            heard = self.clock.sample_position_at(time.monotonic()) - utterance.play_start
            played = min(max(heard, 0), played)
        elif interrupted:
            played = 0
        self.publish(
            {
                "type": "playback_finished",
                "utterance_id": utterance.id,
                "source": utterance.source,
                "position_s": round(played / PLAYBACK_RATE, 3),
                "interrupted": interrupted,
            }
        )

    # ---- track callbacks and stats -------------------------------------------------

    def _on_video_frame(self, frame: StoredFrame, fresh: bool, sent_at: float) -> None:
        self.frames_sent += 1
        self._sent_times.append(sent_at)
        self.metrics.frames_sent.inc()
        self._touch()
        if fresh and frame.index >= 0:
            latency = sent_at - frame.entered_at
            self._latencies.append(latency)
            self.metrics.audio_to_frame_seconds.observe(latency)

    def _on_skipped_frames(self, count: int) -> None:
        # Counted per viewer and apart from frames_dropped: the same index may be both.
        self.frames_skipped += count
        self.metrics.frames_dropped.inc(count, reason="sender_behind")

    def _touch(self) -> None:
        self.last_active = time.monotonic()

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        recent = sum(1 for t in self._sent_times if t > now - 2.0)
        return {
            "type": "stats",
            "fps": round(recent / 2.0, 2),
            "frames_sent": self.frames_sent,
            "dropped_frames": self.frames_dropped,
            "skipped_frames": self.frames_skipped,
            "frame_time_ms_p50": _p50_ms(self._render_times),
            "audio_to_frame_ms_p50": _p50_ms(self._latencies),
            "first_frame_ms": None if self.first_frame_s is None else self.first_frame_s * 1000,
            "playout_delay_ms": round(self.clock.playout_delay_s * 1000, 1),
            "speaking": self.speaking,
        }

    async def _publish_stats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._subscribers:
                self.publish(self.stats())


def _p50_ms(values: collections.deque[float]) -> float | None:
    return round(float(np.median(values)) * 1000, 2) if values else None
