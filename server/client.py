"""A small Python client for a running facecast server: REST calls, PCM streaming, watching.

For programs that drive an avatar (a voice agent's audio sink) and for the
tests and benchmarks, which talk to a real server exactly as users do:

    async with FacecastClient("http://127.0.0.1:8080") as client:
        session = await client.create_session()
        viewer = await client.watch(session["id"])          # aiortc peer, frames arrive
        await client.stream_pcm(session["id"], pcm_s16le, 16000)
        await viewer.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import websockets
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

__all__ = ["FacecastClient", "Viewer", "ReceivedFrame", "ApiError"]


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ReceivedFrame:
    received_at: float  # time.monotonic()
    pts: int
    time_s: float  # pts in seconds
    rgb: np.ndarray | None  # uint8 (H, W, 3) when the viewer keeps pixels


@dataclass
class Viewer:
    """A receiving WebRTC peer. Video frames and audio samples accumulate as they arrive."""

    pc: RTCPeerConnection
    keep_pixels: Callable[[int], bool] = lambda index: True
    frames: list[ReceivedFrame] = field(default_factory=list)
    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (received_at, mono f32)
    peer_id: str | None = None
    location: str | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def attach(self, track: MediaStreamTrack) -> None:
        pump = self._pump_video if track.kind == "video" else self._pump_audio
        self._tasks.append(asyncio.create_task(pump(track)))

    async def _pump_video(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: VideoFrame = await track.recv()  # type: ignore[assignment]
                now = time.monotonic()
                keep = self.keep_pixels(len(self.frames))
                rgb = frame.to_ndarray(format="rgb24") if keep else None
                pts = frame.pts or 0
                time_s = float(pts * frame.time_base) if frame.time_base else 0.0
                self.frames.append(ReceivedFrame(now, pts, time_s, rgb))

    async def _pump_audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: AudioFrame = await track.recv()  # type: ignore[assignment]
                pcm = frame.to_ndarray().astype(np.float32) / 32768.0
                channels = len(frame.layout.channels)
                mono = pcm.reshape(-1, channels).mean(axis=1) if channels > 1 else pcm.ravel()
                self.audio.append((time.monotonic(), mono))

    async def wait_frames(self, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.frames) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.frames)} of {count} frames in {timeout_s} s")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


class FacecastClient:
    """`ice_servers`: STUN/TURN for the viewer peers; none by default (aiortc would
    otherwise fall back to a public STUN server, which a localhost server never needs)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout_s: float = 30.0,
        ice_servers: list[RTCIceServer] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._ice_servers = list(ice_servers or [])
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    async def __aenter__(self) -> FacecastClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, str(detail))
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    async def create_session(self, **options: Any) -> dict[str, Any]:
        return await self.request("POST", "/api/sessions", json=options)  # type: ignore[no-any-return]

    async def delete_session(self, session_id: str) -> None:
        await self.request("DELETE", f"/api/sessions/{session_id}")

    async def speak(self, session_id: str, text: str, voice: str | None = None) -> dict[str, Any]:
        body = {"text": text, **({"voice": voice} if voice else {})}
        return await self.request("POST", f"/api/sessions/{session_id}/speak", json=body)  # type: ignore[no-any-return]

    async def controls(self, session_id: str, **values: Any) -> dict[str, Any]:
        return await self.request("POST", f"/api/sessions/{session_id}/controls", json=values)  # type: ignore[no-any-return]

    async def interrupt(self, session_id: str) -> dict[str, Any]:
        return await self.request("POST", f"/api/sessions/{session_id}/interrupt")  # type: ignore[no-any-return]

    async def watch(self, session_id: str, **viewer_options: Any) -> Viewer:
        """Receive a session's video and audio through POST /api/sessions/{id}/offer."""
        viewer = await self._offer_peer(**viewer_options)
        offer = viewer.pc.localDescription
        body = {"sdp": offer.sdp, "type": offer.type}
        answer = await self.request("POST", f"/api/sessions/{session_id}/offer", json=body)
        viewer.peer_id = answer.get("peer_id")
        await viewer.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return viewer

    async def watch_whep(self, session_id: str | None = None, **viewer_options: Any) -> Viewer:
        """Receive through WHEP only: POST the SDP offer, read the answer and Location."""
        viewer = await self._offer_peer(**viewer_options)
        path = "/whep" if session_id is None else f"/whep/sessions/{session_id}"
        response = await self.http.post(
            path,
            content=viewer.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp"},
        )
        if response.status_code != 201:
            await viewer.close()
            raise ApiError(response.status_code, response.text)
        viewer.location = response.headers["Location"]
        await viewer.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
        return viewer

    async def _offer_peer(
        self, microphone: MediaStreamTrack | None = None, **viewer_options: Any
    ) -> Viewer:
        """A receiving peer; `microphone` (an audio track) is sent for the face to lip-sync."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self._ice_servers)))
        viewer = Viewer(pc, **viewer_options)
        pc.on("track", viewer.attach)
        pc.addTransceiver("video", direction="recvonly")
        if microphone is not None:
            pc.addTrack(microphone)  # sendrecv: the session's audio still comes back
        else:
            pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        return viewer

    def websocket_url(self, path: str, **query: Any) -> str:
        if self._token:
            query["token"] = self._token
        url = "ws" + self.base_url[len("http") :] + path
        return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")

    @contextlib.asynccontextmanager
    async def events(self, session_id: str) -> AsyncIterator[EventLog]:
        """Collect a session's events in the background while the block runs."""
        url = self.websocket_url(f"/api/sessions/{session_id}/events")
        async with websockets.connect(url) as socket:
            log = EventLog()
            task = asyncio.create_task(log.collect(socket))
            try:
                yield log
            finally:
                task.cancel()

    async def stream_pcm(
        self,
        session_id: str,
        pcm: bytes,
        sample_rate: int,
        chunk_s: float = 0.02,
        realtime: bool = True,
        end_of_utterance: bool = True,
    ) -> EventLog:
        """Send s16le mono PCM over the stream WebSocket, paced like a live source by default."""
        url = self.websocket_url(f"/api/sessions/{session_id}/stream", sample_rate=sample_rate)
        step = int(sample_rate * chunk_s) * 2
        log = EventLog()
        async with websockets.connect(url) as socket:
            collector = asyncio.create_task(log.collect(socket))
            start = time.monotonic()
            for i, offset in enumerate(range(0, len(pcm), step)):
                if realtime:
                    await asyncio.sleep(max(0.0, start + i * chunk_s - time.monotonic()))
                await socket.send(pcm[offset : offset + step])
            if end_of_utterance:
                await socket.send(json.dumps({"type": "end_of_utterance"}))
            await asyncio.sleep(0.05)
            collector.cancel()
        return log


@dataclass
class EventLog:
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    async def collect(self, socket: Any) -> None:
        with contextlib.suppress(websockets.ConnectionClosed, asyncio.CancelledError):
            async for message in socket:
                self.events.append((time.monotonic(), json.loads(message)))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for _, event in self.events if event.get("type") == kind]

    async def wait_for(self, kind: str, timeout_s: float = 20.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.of_type(kind):
                if all(event.get(k) == v for k, v in match.items()):
                    return event
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no {kind} event {match or ''} within {timeout_s} s")
