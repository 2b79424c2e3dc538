"""FacecastVideoService: a facecast talking face in a Pipecat pipeline.

Place it after the TTS service and before the output transport, whose video
output is on and live at the session's size and rate:

    face = FacecastVideoService(base_url="http://127.0.0.1:8080")
    pipeline = Pipeline([transport.input(), stt, user_aggregator, llm, tts, face,
                         transport.output(), assistant_aggregator])
    # TransportParams(audio_out_enabled=True, video_out_enabled=True, video_out_is_live=True,
    #                 video_out_width=512, video_out_height=512, video_out_framerate=25)

It talks to a running `facecast serve` (see `server.integrations.session_link`),
as Pipecat's Simli, Tavus and HeyGen services talk to theirs: the TTS audio goes
up the session's stream WebSocket and is swallowed here; the face comes back as
`OutputImageRawFrame`s (RGB) and the sound the face speaks as
`SpeechOutputAudioRawFrame`s, both off one WebRTC peer and so one session clock,
so the transport plays lips and sound together. Like Tavus' and HeyGen's audio,
it is a continuous stream, silence included (the face idles, blinks and breathes
between utterances); the output transport tells speech from silence itself for
`BotStartedSpeakingFrame` / `BotStoppedSpeakingFrame`. Frame `pts` are
nanoseconds on the pipeline clock: each track's RTP time, anchored where its first
frame arrived.

Frames: `TTSAudioRawFrame` is sent (resampled when its rate is not one the socket
takes, downmixed to mono) and not passed on; `TTSStoppedFrame` ends the utterance
(`end_of_utterance`), `TTSStartedFrame` starts the TTFB metric; neither is passed
on (as in Tavus' service). `InterruptionFrame` sends `interrupt` (the session
drops queued speech and the frames rendered ahead) and is passed on. Pipecat 1.x
broadcasts `InterruptionFrame` right after `UserStartedSpeakingFrame` when
interruptions are on, so `UserStartedSpeakingFrame` alone (interruptions off)
passes through and the face keeps talking, as the bot's audio does. `EndFrame`
waits until the speech sent has played (at most `end_timeout_s`), then closes;
`CancelFrame` closes at once; either deletes the session if this service made it.
Server errors become `ErrorFrame`s upstream carrying the server's message. All
other frames pass through unchanged.

Needs pipecat-ai, in an environment of its own (its protobuf >= 5 cannot share
one with mediapipe 0.10.21): `bash .ci/install` makes `.venv-pipecat`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from aiortc import RTCIceServer
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    SpeechOutputAudioRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.services.ai_service import AIService
from pipecat.services.settings import ServiceSettings

from server.integrations.session_link import (
    ACCEPTED_RATES,
    FaceAudioFrame,
    FaceVideoFrame,
    LinkConfig,
    LinkError,
    SessionLink,
)

__all__ = ["FacecastVideoService"]

_RESAMPLE_TO = 24000  # for TTS rates the stream socket does not take


@dataclass
class _TrackAnchor:
    """Puts one track's RTP time on the pipeline clock, anchored at its first frame."""

    offset_ns: int | None = None

    def pts(self, time_s: float, clock_ns: int) -> int:
        track_ns = round(time_s * 1e9)
        if self.offset_ns is None:
            self.offset_ns = clock_ns - track_ns
        return track_ns + self.offset_ns


class FacecastVideoService(AIService):
    """A facecast face for the TTS audio flowing through; see the module docstring."""

    def __init__(
        self,
        *,
        base_url: str,
        api_token: str | None = None,
        session_id: str | None = None,
        portrait_id: str | None = None,
        fps: int | None = None,
        seed: int | None = None,
        ice_servers: list[RTCIceServer] | None = None,
        connect_timeout_s: float = 15.0,
        end_timeout_s: float = 30.0,
        **kwargs: object,
    ) -> None:
        """Args:
        base_url: the facecast server, e.g. "http://127.0.0.1:8080".
        api_token: its FACECAST_API_TOKEN, if it has one.
        session_id: attach to this existing session (left running at the end);
            otherwise one is created with portrait_id / fps / seed (server
            defaults when None) and deleted at the end.
        ice_servers: STUN/TURN to reach a remote server; none by default.
        connect_timeout_s: how long the socket and the peer may take to connect.
        end_timeout_s: how long an EndFrame waits for queued speech to play.
        """
        super().__init__(settings=ServiceSettings(model=None), **kwargs)
        self._config = LinkConfig(
            base_url=base_url,
            token=api_token,
            session_id=session_id,
            portrait_id=portrait_id,
            fps=fps,
            seed=seed,
            ice_servers=tuple(ice_servers or ()),
            connect_timeout_s=connect_timeout_s,
        )
        self._end_timeout_s = end_timeout_s
        self._link: SessionLink | None = None
        self._pushing = False  # between our StartFrame going downstream and the end
        self._video_anchor = _TrackAnchor()
        self._audio_anchor = _TrackAnchor()
        self._resampler = create_stream_resampler()

    @property
    def session_id(self) -> str | None:
        """The facecast session this service drives, once set up."""
        return self._link.session_id if self._link else None

    def can_generate_metrics(self) -> bool:
        return True

    # ---- lifecycle ----------------------------------------------------------------

    async def setup(self, setup: FrameProcessorSetup) -> None:
        """Connect (Pipecat sets processors up concurrently, before the StartFrame)."""
        await super().setup(setup)
        link = SessionLink(self._config, self._on_video, self._on_audio, self._on_error)
        try:
            await link.open()
        except LinkError as exc:
            await self.push_error(str(exc), exception=exc, force_treat_as_permanent=True)
            return
        self._link = link

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)
        if self._link is not None:
            await self._link.wait_until_quiet(self._end_timeout_s)
        await self._disconnect()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._disconnect()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._disconnect()

    async def _disconnect(self) -> None:
        self._pushing = False
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    # ---- frames in ------------------------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        downstream = direction == FrameDirection.DOWNSTREAM
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self._pushing = self._link is not None
        elif isinstance(frame, TTSAudioRawFrame) and downstream:
            await self._send_tts_audio(frame)
        elif isinstance(frame, TTSStartedFrame) and downstream:
            await self.start_ttfb_metrics()
        elif isinstance(frame, TTSStoppedFrame) and downstream:
            await self._end_utterance()
        elif isinstance(frame, InterruptionFrame):
            await self._interrupt()
            await self.push_frame(frame, direction)
        elif isinstance(frame, BotStartedSpeakingFrame):
            await self.stop_ttfb_metrics()  # the face's speech reached the transport
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _send_tts_audio(self, frame: TTSAudioRawFrame) -> None:
        if self._link is None:
            return
        audio, rate = frame.audio, frame.sample_rate
        if frame.num_channels > 1:
            samples = np.frombuffer(audio, dtype=np.int16).reshape(-1, frame.num_channels)
            audio = samples.mean(axis=1).astype(np.int16).tobytes()  # SxC -> S
        if rate not in ACCEPTED_RATES:
            audio, rate = await self._resampler.resample(audio, rate, _RESAMPLE_TO), _RESAMPLE_TO
        await self._link.send_audio(audio, rate)

    async def _end_utterance(self) -> None:
        if self._link is None:
            return
        tail = await self._resampler.flush()
        if tail:
            await self._link.send_audio(tail, _RESAMPLE_TO)
        await self._link.end_utterance()

    async def _interrupt(self) -> None:
        await self._resampler.reset()
        if self._link is not None:
            await self._link.interrupt()

    # ---- frames out -----------------------------------------------------------------

    async def _on_video(self, face: FaceVideoFrame) -> None:
        if not self._pushing:
            return  # idle frames before the pipeline started
        height, width = face.rgb.shape[:2]
        frame = OutputImageRawFrame(image=face.rgb.tobytes(), size=(width, height), format="RGB")
        frame.pts = self._video_anchor.pts(face.time_s, self.get_clock().get_time())
        await self.push_frame(frame)

    async def _on_audio(self, face: FaceAudioFrame) -> None:
        if not self._pushing:
            return
        frame = SpeechOutputAudioRawFrame(
            audio=face.pcm.tobytes(), sample_rate=face.sample_rate, num_channels=1
        )
        frame.pts = self._audio_anchor.pts(face.time_s, self.get_clock().get_time())
        await self.push_frame(frame)

    async def _on_error(self, message: str, permanent: bool) -> None:
        await self.push_error(message, force_treat_as_permanent=permanent)
