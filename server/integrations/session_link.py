"""One facecast session for a voice-agent adapter: speech goes up, face and audio come down.

    link = SessionLink(LinkConfig("http://127.0.0.1:8080"), on_video, on_audio, on_error)
    await link.open()                    # create (or attach to) a session, open socket and peer
    await link.send_audio(pcm, 24000)    # s16le mono, one of ACCEPTED_RATES
    await link.end_utterance()
    await link.interrupt()               # queued speech dropped, the mouth stops at once
    await link.close()                   # socket and peer closed, the session it made deleted

Speech goes up the session's stream WebSocket (binary PCM and JSON control
messages, README "Streaming speech from a program"); the face and the audio
the viewer hears come back on one aiortc peer, both timed by the session's one
clock, so an adapter that plays this audio (not the TTS audio it sent) keeps
lips and sound together. Only the packages of `server.client` are needed, so
adapters run in a framework's own environment without the engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import websockets
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from server.client import ApiError, FacecastClient

__all__ = [
    "ACCEPTED_RATES",
    "FaceAudioFrame",
    "FaceVideoFrame",
    "LinkConfig",
    "LinkError",
    "SessionLink",
]

logger = logging.getLogger(__name__)

# Rates the stream WebSocket takes (engines.audio.ingest); others must be resampled first.
ACCEPTED_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


class LinkError(RuntimeError):
    """The server refused or dropped the link; the message is the server's, or says what to do."""


@dataclass(frozen=True)
class LinkConfig:
    """Where the session is and how to make it.

    `session_id` attaches to an existing session (left running on close); without
    it a session is created with `portrait_id`, `fps` and `seed` (server defaults
    when None) and deleted on close. `ice_servers`: none by default, which is all
    a server on this machine or LAN needs (aiortc would otherwise use public STUN).
    """

    base_url: str
    token: str | None = None
    session_id: str | None = None
    portrait_id: str | None = None
    fps: int | None = None
    seed: int | None = None
    ice_servers: tuple[RTCIceServer, ...] = ()
    connect_timeout_s: float = 15.0
    outbox_messages: int = 256  # queued uplink messages before send_audio waits

    def session_options(self) -> dict[str, Any]:
        options = {"portrait_id": self.portrait_id, "fps": self.fps, "seed": self.seed}
        return {key: value for key, value in options.items() if value is not None}


@dataclass(frozen=True)
class FaceVideoFrame:
    rgb: np.ndarray  # uint8 (H, W, 3)
    time_s: float  # on the video track's clock (RTP time since its first frame)


@dataclass(frozen=True)
class FaceAudioFrame:
    pcm: np.ndarray  # int16 (S,), mono
    sample_rate: int
    time_s: float  # on the audio track's clock (RTP time since its first frame)


VideoCallback = Callable[[FaceVideoFrame], Awaitable[None]]
AudioCallback = Callable[[FaceAudioFrame], Awaitable[None]]
ErrorCallback = Callable[[str, bool], Awaitable[None]]  # (message, permanent)
EventCallback = Callable[[dict[str, Any]], Awaitable[None]]


class SessionLink:
    """Callbacks run on the event loop as frames arrive; keep them short (hand frames on).

    `on_error(message, permanent)`: permanent when the socket, the peer or the
    session is gone (reported once; later sends are dropped), else a refusal the
    server sent (an `error` event) while the link keeps working. `on_event` gets
    the session's other events (playback_started, playback_finished, stats)."""

    def __init__(
        self,
        config: LinkConfig,
        on_video: VideoCallback,
        on_audio: AudioCallback,
        on_error: ErrorCallback,
        on_event: EventCallback | None = None,
    ) -> None:
        self.config = config
        self.on_video, self.on_audio = on_video, on_audio
        self.on_error, self.on_event = on_error, on_event
        self.session_id: str | None = None
        self._client: FacecastClient | None = None
        self._created = False
        self._socket: Any = None  # websockets ClientConnection
        self._pc: RTCPeerConnection | None = None
        self._outbox: asyncio.Queue[bytes | str] = asyncio.Queue(config.outbox_messages)
        self._rate: int | None = None
        self._closing = False
        self._failed = False
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        """Create or attach to the session, open the stream socket and the receiving peer.

        Raises LinkError with the server's message; nothing is left open then."""
        self._client = FacecastClient(
            self.config.base_url,
            token=self.config.token,
            ice_servers=list(self.config.ice_servers),
        )
        try:
            await self._open_session()
            await self._open_socket()
            await self._open_peer()
        except BaseException:
            await self.close()
            raise

    async def send_audio(self, pcm: bytes, sample_rate: int) -> None:
        """Queue s16le mono PCM for the current utterance (a new one after end or interrupt)."""
        if sample_rate not in ACCEPTED_RATES:
            raise ValueError(f"sample_rate {sample_rate} is not one of {ACCEPTED_RATES}; resample")
        if self._failed or self._closing or not pcm:
            return
        if sample_rate != self._rate:
            self._rate = sample_rate
            await self._outbox.put(json.dumps({"type": "start", "sample_rate": sample_rate}))
        await self._outbox.put(pcm)

    async def end_utterance(self) -> None:
        if not (self._failed or self._closing):
            await self._outbox.put(json.dumps({"type": "end_of_utterance"}))

    async def interrupt(self) -> None:
        """Barge-in: drop speech not yet sent, and have the session cut what it has."""
        if self._failed or self._closing:
            return
        while not self._outbox.empty():
            self._outbox.get_nowait()
        self._outbox.put_nowait(json.dumps({"type": "interrupt"}))
        if self._rate is not None:  # a dropped "start" may have carried the current rate
            self._outbox.put_nowait(json.dumps({"type": "start", "sample_rate": self._rate}))

    async def wait_until_quiet(self, timeout_s: float) -> bool:
        """Wait (at most timeout_s) until all speech sent has played; False on timeout."""
        deadline = time.monotonic() + timeout_s
        quiet_polls = 0
        while time.monotonic() < deadline and not (self._failed or self._closing):
            if not self._outbox.empty():
                quiet_polls = 0
            else:
                try:
                    info = await self._request("GET", f"/api/sessions/{self.session_id}")
                except LinkError:
                    return False  # the session or the server is gone: nothing left to play
                idle = not info["speaking"] and info["queued_speech_s"] == 0
                quiet_polls = quiet_polls + 1 if idle else 0
                if quiet_polls >= 2:  # twice, 0.1 s apart: longer than the jitter buffer
                    return True
            await asyncio.sleep(0.1)
        return False

    async def close(self) -> None:
        """Close socket and peer and delete the session this link created. Idempotent."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._socket is not None:
            await self._socket.close()
            self._socket = None
        if self._pc is not None:
            await self._pc.close()
            self._pc = None
        if self._client is not None:
            if self._created and self.session_id is not None:
                with contextlib.suppress(ApiError, httpx.HTTPError):
                    await self._client.delete_session(self.session_id)
            await self._client.http.aclose()
            self._client = None

    # ---- opening ------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self._client is not None
        try:
            return await self._client.request(method, path, **kwargs)
        except ApiError as exc:
            raise LinkError(f"facecast: {exc.detail} (HTTP {exc.status} on {path})") from exc
        except httpx.HTTPError as exc:
            raise LinkError(
                f"cannot reach facecast at {self.config.base_url} ({exc!r}); "
                "start it with `facecast serve` or fix the URL"
            ) from exc

    async def _open_session(self) -> None:
        if self.config.session_id is not None:
            info = await self._request("GET", f"/api/sessions/{self.config.session_id}")
        else:
            info = await self._request("POST", "/api/sessions", json=self.config.session_options())
            self._created = True
        self.session_id = str(info["id"])
        how = "created" if self._created else "attached"
        logger.info("session %s: linked (%s)", self.session_id, how)

    async def _open_socket(self) -> None:
        assert self._client is not None
        url = self._client.websocket_url(f"/api/sessions/{self.session_id}/stream")
        try:
            self._socket = await websockets.connect(
                url, open_timeout=self.config.connect_timeout_s, max_size=2**20
            )
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            raise LinkError(f"facecast: the stream WebSocket did not open: {exc}") from exc
        self._tasks.append(asyncio.create_task(self._send_loop(self._socket)))
        self._tasks.append(asyncio.create_task(self._receive_loop(self._socket)))

    async def _open_peer(self) -> None:
        configuration = RTCConfiguration(iceServers=list(self.config.ice_servers))
        pc = self._pc = RTCPeerConnection(configuration)
        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        async def _changed() -> None:
            if pc.connectionState == "connected":
                connected.set()
            elif pc.connectionState == "failed" and not self._closing:
                await self._fail("facecast: the WebRTC peer failed; the face stopped")

        pc.on("track", self._attach)
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        answer = await self._request("POST", f"/api/sessions/{self.session_id}/offer", json=offer)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        try:
            await asyncio.wait_for(connected.wait(), self.config.connect_timeout_s)
        except TimeoutError as exc:
            raise LinkError(
                f"facecast: the WebRTC peer did not connect in {self.config.connect_timeout_s} s; "
                "a remote server needs FACECAST_ICE_SERVERS (TURN) and matching ice_servers here"
            ) from exc

    def _attach(self, track: MediaStreamTrack) -> None:
        pump = self._pump_video if track.kind == "video" else self._pump_audio
        self._tasks.append(asyncio.create_task(pump(track)))

    # ---- running ------------------------------------------------------------------

    async def _fail(self, message: str) -> None:
        """Report a permanent fault once; later sends are dropped."""
        if self._failed or self._closing:
            return
        self._failed = True
        await self.on_error(message, True)

    async def _send_loop(self, socket: Any) -> None:
        try:
            while True:
                await socket.send(await self._outbox.get())
        except websockets.ConnectionClosed as exc:
            await self._fail(f"facecast: the stream WebSocket closed ({exc})")

    async def _receive_loop(self, socket: Any) -> None:
        try:
            async for message in socket:
                await self._on_message(message)
        except websockets.ConnectionClosed:
            pass
        if not self._closing:
            closed = f"{socket.close_code}: {socket.close_reason or 'no reason given'}"
            await self._fail(f"facecast: the stream WebSocket closed ({closed})")

    async def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "error":
            await self.on_error(f"facecast: {event.get('message', 'unknown error')}", False)
        elif kind == "closed":
            await self._fail("facecast: the session was closed on the server")
        elif self.on_event is not None:
            await self.on_event(event)

    async def _pump_video(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: VideoFrame = await track.recv()  # type: ignore[assignment]
                time_s = float((frame.pts or 0) * frame.time_base) if frame.time_base else 0.0
                await self.on_video(FaceVideoFrame(frame.to_ndarray(format="rgb24"), time_s))

    async def _pump_audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: AudioFrame = await track.recv()  # type: ignore[assignment]
                time_s = float((frame.pts or 0) * frame.time_base) if frame.time_base else 0.0
                pcm = _mono_s16(frame)
                await self.on_audio(FaceAudioFrame(pcm, frame.sample_rate, time_s))


def _mono_s16(frame: AudioFrame) -> np.ndarray:
    """int16 (S,) mono from a decoded s16 frame, packed (1, S*C) or planar (C, S)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if channels == 1:
        return data.reshape(-1).astype(np.int16, copy=False)
    if frame.format.is_planar:
        return data.mean(axis=0).astype(np.int16)  # CxS -> S
    return data.reshape(-1, channels).mean(axis=1).astype(np.int16)  # S*C -> SxC -> S
