"""A facecast face for LiveKit Agents: the avatar's video generator and the agent-side session.

Two halves, as LiveKit's own avatar plugins have them:

- On the avatar worker (`server.integrations.livekit_worker`), `FacecastVideoGenerator`
  is the `VideoGenerator` that LiveKit's `AvatarRunner` drives: the agent's speech
  arrives from the room's `lk.audio_stream` data stream (`DataStreamAudioReceiver`)
  and goes up a facecast session's stream WebSocket (`push_audio`); the face and the
  audio it speaks come back on the session's WebRTC peer and are yielded as
  `rtc.VideoFrame`s and `rtc.AudioFrame`s, with `AudioSegmentEnd` when an utterance
  has played, so the runner publishes them in sync and answers `lk.playback_finished`.
- In the agent, `FacecastAvatarSession` dispatches that worker to the room (LiveKit's
  agent dispatch places it on the least-loaded worker) and routes the agent's audio
  output to it (`DataStreamAudioOutput`):

      avatar = FacecastAvatarSession(portrait_id="...")
      await avatar.start(session, room=ctx.room)   # before session.start(...)

The facecast session's audio is a continuous stream (silence between utterances,
while the face idles), but `AvatarRunner` counts every audio frame it is given as
playback. So only speech is yielded: from the session's `playback_started` event
(leading digital silence skipped) until as many samples as its `playback_finished`
reports (`position_s`); in between only video flows, the idle face included.
`clear_buffer` sends `interrupt` and stops the audio at once; the runner then reports
what it had been given as the interrupted playback position.

Needs livekit-agents, in an environment of its own (its protobuf >= 5 cannot share
one with mediapipe 0.10.21): `bash .ci/install` makes `.venv-livekit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from livekit import api, rtc
from livekit.agents import AgentSession, get_job_context
from livekit.agents.voice.avatar import AudioSegmentEnd, AvatarSession, DataStreamAudioOutput
from livekit.agents.voice.avatar import VideoGenerator as _VideoGenerator

from server.integrations.session_link import (
    ACCEPTED_RATES,
    FaceAudioFrame,
    FaceVideoFrame,
    LinkConfig,
    SessionLink,
)

__all__ = [
    "AGENT_NAME",
    "AvatarJob",
    "FacecastAvatarSession",
    "FacecastVideoGenerator",
]

logger = logging.getLogger(__name__)

AGENT_NAME = "facecast-avatar"  # the avatar worker's agent_name, for explicit dispatch
AVATAR_IDENTITY = "facecast-avatar"
SPEECH_RATE = 24000  # the rate the agent streams its speech at (and the resampler's target)
_SILENT_PEAK = 16  # int16: below this a frame is digital silence (Opus' decoded zeros)
_MAX_LEAD_S = 0.3  # at most this much silence is skipped after playback_started
_MAX_TAIL_S = 0.5  # audio awaited past playback_finished before the segment ends anyway
_END = object()  # ends the frame iterator


@dataclass(frozen=True)
class AvatarJob:
    """What the agent asks of the avatar worker: the dispatch's metadata, as JSON.

    `agent_identity`: the participant whose speech the avatar plays and on whose
    behalf it publishes; `avatar_identity`: the identity it joins with; the rest is
    the facecast session to create (server defaults when None)."""

    agent_identity: str
    avatar_identity: str = AVATAR_IDENTITY
    portrait_id: str | None = None
    fps: int | None = None
    seed: int | None = None

    def to_metadata(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_metadata(cls, metadata: str) -> AvatarJob:
        """Raises ValueError when the metadata is not an AvatarJob's."""
        try:
            fields = json.loads(metadata)
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"dispatch metadata {metadata!r} is not a facecast avatar job; "
                "dispatch the worker with FacecastAvatarSession"
            ) from exc


@dataclass
class _Segment:
    """One utterance as the session plays it back: how much of its audio was yielded."""

    utterance_id: str
    skipping_lead: bool = True
    skipped: int = 0  # samples of leading silence not yielded
    yielded: int = 0  # samples
    target: int | None = None  # samples, from playback_finished
    after_target: int = 0  # samples received while waiting for the target


class FacecastVideoGenerator(_VideoGenerator):
    """A facecast session as LiveKit's `VideoGenerator`; see the module docstring.

    `await start()` before handing it to `AvatarRunner` (it returns once the first
    face frame is here, so `video_size` is known); `await aclose()` after."""

    def __init__(self, config: LinkConfig, *, queue_frames: int = 100) -> None:
        self._link = SessionLink(
            config, self._on_video, self._on_audio, self._on_error, self._on_event
        )
        self._frames: asyncio.Queue[Any] = asyncio.Queue(queue_frames)
        self._segments: deque[_Segment] = deque()
        self._resampler: rtc.AudioResampler | None = None
        self._resample_from = 0
        self.video_size: tuple[int, int] | None = None  # (width, height)
        self.audio_rate: int | None = None
        self._first_frame = asyncio.Event()

    @property
    def session_id(self) -> str | None:
        return self._link.session_id

    async def start(self, timeout_s: float = 30.0) -> None:
        """Open the session link and wait for the first face frame (raises LinkError)."""
        await self._link.open()
        await asyncio.wait_for(self._first_frame.wait(), timeout_s)

    async def aclose(self) -> None:
        await self._link.close()
        with contextlib.suppress(asyncio.QueueFull):
            self._frames.put_nowait(_END)

    # ---- VideoGenerator -----------------------------------------------------------

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        """Send the agent's speech up; AudioSegmentEnd ends the utterance."""
        if isinstance(frame, AudioSegmentEnd):
            await self._flush_resampler()
            await self._link.end_utterance()
            return
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)  # SxC -> S
        if frame.sample_rate in ACCEPTED_RATES:
            await self._link.send_audio(pcm.tobytes(), frame.sample_rate)
            return
        if self._resampler is None or self._resample_from != frame.sample_rate:
            self._resampler = rtc.AudioResampler(frame.sample_rate, SPEECH_RATE, num_channels=1)
            self._resample_from = frame.sample_rate
        mono = rtc.AudioFrame(pcm.tobytes(), frame.sample_rate, 1, len(pcm))
        for out in self._resampler.push(mono):
            await self._link.send_audio(bytes(out.data), SPEECH_RATE)

    async def clear_buffer(self) -> None:
        """Barge-in: the session drops its queued speech, and no more audio is yielded."""
        self._segments.clear()
        self._resampler = None
        kept = [f for f in self._drain() if isinstance(f, rtc.VideoFrame) or f is _END]
        for item in kept:
            self._frames.put_nowait(item)
        await self._link.interrupt()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        while (item := await self._frames.get()) is not _END:
            yield item

    # ---- from the session ---------------------------------------------------------

    async def _on_video(self, face: FaceVideoFrame) -> None:
        height, width = face.rgb.shape[:2]
        self.video_size = (width, height)
        self._first_frame.set()
        self._put(rtc.VideoFrame(width, height, rtc.VideoBufferType.RGB24, face.rgb.tobytes()))

    async def _on_audio(self, face: FaceAudioFrame) -> None:
        self.audio_rate = face.sample_rate
        pcm = face.pcm
        while self._segments and len(pcm):
            pcm = self._yield_speech(self._segments[0], pcm, face.sample_rate)

    def _yield_speech(self, segment: _Segment, pcm: np.ndarray, rate: int) -> np.ndarray:
        """Yield what of pcm belongs to the segment; returns the rest (for the next one)."""
        if segment.skipping_lead:
            if np.abs(pcm).max() < _SILENT_PEAK and segment.skipped < _MAX_LEAD_S * rate:
                segment.skipped += len(pcm)
                return pcm[:0]
            segment.skipping_lead = False
        if segment.target is not None:
            take = pcm[: max(segment.target - segment.yielded, 0)]
            segment.after_target += len(pcm) - len(take)
        else:
            take = pcm
        if len(take):
            self._put(rtc.AudioFrame(take.tobytes(), rate, 1, len(take)))
            segment.yielded += len(take)
        done = segment.target is not None and segment.yielded >= segment.target
        if done or segment.after_target > _MAX_TAIL_S * rate:
            self._end_segment()
        return pcm[len(take) :] if done else pcm[:0]

    def _end_segment(self) -> None:
        self._segments.popleft()
        self._put(AudioSegmentEnd())

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind, utterance = event.get("type"), str(event.get("utterance_id"))
        if kind == "playback_started":
            self._segments.append(_Segment(utterance))
            return
        if kind != "playback_finished":
            return
        segment = next((s for s in self._segments if s.utterance_id == utterance), None)
        if segment is None:
            return  # cleared by clear_buffer already
        if event.get("interrupted"):  # cut on the server, not by clear_buffer
            segment.target = segment.yielded
        else:
            segment.target = round(float(event["position_s"]) * (self.audio_rate or 48000))
        if segment is self._segments[0] and segment.yielded >= segment.target:
            self._end_segment()

    async def _on_error(self, message: str, permanent: bool) -> None:
        if not permanent:
            logger.warning("session %s: %s", self.session_id, message)
            return
        logger.error("session %s: %s; the avatar stops", self.session_id, message)
        self._drain()
        self._frames.put_nowait(_END)

    # ---- queue --------------------------------------------------------------------

    def _put(self, item: Any) -> None:
        """Queue a frame; when the runner is a queue behind, the oldest video frame goes."""
        if self._frames.full():
            items = self._drain()
            oldest_video = next(
                (i for i, f in enumerate(items) if isinstance(f, rtc.VideoFrame)), 0
            )
            del items[oldest_video]
            for kept in items:
                self._frames.put_nowait(kept)
        self._frames.put_nowait(item)

    def _drain(self) -> list[Any]:
        items = []
        while not self._frames.empty():
            items.append(self._frames.get_nowait())
        return items

    async def _flush_resampler(self) -> None:
        if self._resampler is None:
            return
        for out in self._resampler.flush():
            await self._link.send_audio(bytes(out.data), SPEECH_RATE)
        self._resampler = None


class FacecastAvatarSession(AvatarSession):
    """The agent's side: dispatch a facecast avatar worker to the room and speak through it.

    Call `start(agent_session, room)` before `agent_session.start(...)` (as with
    LiveKit's vendor avatars). LiveKit credentials come from the arguments or
    LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET; `agent_name` must match the
    workers' (`livekit_worker`, FACECAST_AGENT_NAME)."""

    def __init__(
        self,
        *,
        portrait_id: str | None = None,
        fps: int | None = None,
        seed: int | None = None,
        agent_name: str = AGENT_NAME,
        avatar_identity: str = AVATAR_IDENTITY,
        sample_rate: int = SPEECH_RATE,
    ) -> None:
        super().__init__()
        self._portrait_id, self._fps, self._seed = portrait_id, fps, seed
        self._agent_name = agent_name
        self._avatar_identity = avatar_identity
        self._sample_rate = sample_rate
        self.dispatch_id: str | None = None

    @property
    def avatar_identity(self) -> str:
        return self._avatar_identity

    @property
    def provider(self) -> str:
        return "facecast"

    def job_for(self, agent_identity: str) -> AvatarJob:
        """The job the worker gets for this agent (its dispatch metadata)."""
        return AvatarJob(
            agent_identity, self._avatar_identity, self._portrait_id, self._fps, self._seed
        )

    async def start(
        self,
        agent_session: AgentSession,
        room: rtc.Room,
        *,
        livekit_url: str | None = None,
        livekit_api_key: str | None = None,
        livekit_api_secret: str | None = None,
    ) -> None:
        await super().start(agent_session, room)
        job_context = get_job_context(required=False)
        agent_identity = (
            job_context.local_participant_identity
            if job_context
            else room.local_participant.identity
        )
        lkapi = api.LiveKitAPI(
            livekit_url or os.environ.get("LIVEKIT_URL"),
            livekit_api_key or os.environ.get("LIVEKIT_API_KEY"),
            livekit_api_secret or os.environ.get("LIVEKIT_API_SECRET"),
        )
        request = api.CreateAgentDispatchRequest(
            agent_name=self._agent_name,
            room=room.name,
            metadata=self.job_for(agent_identity).to_metadata(),
        )
        try:
            dispatch = await lkapi.agent_dispatch.create_dispatch(request)
        finally:
            await lkapi.aclose()
        self.dispatch_id = dispatch.id
        logger.info("room %s: dispatched %s (%s)", room.name, self._agent_name, dispatch.id)
        agent_session.output.replace_audio_tail(
            DataStreamAudioOutput(
                room,
                destination_identity=self._avatar_identity,
                sample_rate=self._sample_rate,
                wait_remote_track=rtc.TrackKind.KIND_VIDEO,
            )
        )
