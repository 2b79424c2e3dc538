"""WebRTC peers of a session (aiortc): answering offers, the microphone lane, trickled ICE.

One PeerLink is one RTCPeerConnection watching one session: the browser page
or a WHEP player. Offers are answered non-trickle (aiortc gathers its
candidates before answering), which needs no STUN on localhost; STUN/TURN
servers come from ServerConfig.ice_servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.codecs import h264, vpx
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from engines.errors import FacecastError

from .audio_ingest import FrameResampler
from .config import IceServer
from .session import Session

__all__ = ["PeerLink", "InvalidOfferError", "configure_encoders"]

logger = logging.getLogger(__name__)

_SDP_ERRORS = (
    ValueError,
    AssertionError,
    KeyError,
    IndexError,
    TypeError,
    InternalError,
    InvalidAccessError,
    InvalidStateError,
)


class InvalidOfferError(FacecastError):
    """The SDP offer could not be parsed or does not ask for what a session sends."""


def configure_encoders(max_fps: int) -> None:
    """Tell aiortc's encoders the real frame rate ceiling.

    aiortc builds its H.264 and VP8 encoders for 30 fps (module constant
    MAX_FRAME_RATE). x264 derives its per-frame bit budget from it, so 40 fps
    would overshoot the bitrate by a third. Frame timestamps are ours (90 kHz,
    exact per frame), so raising the ceiling changes only rate control.
    """
    h264.MAX_FRAME_RATE = max(h264.MAX_FRAME_RATE, max_fps)
    vpx.MAX_FRAME_RATE = max(vpx.MAX_FRAME_RATE, max_fps)


def _rtc_configuration(ice_servers: tuple[IceServer, ...]) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in ice_servers
        ]
    )


class PeerLink:
    """One peer connection sending a session's video and audio (and taking a microphone)."""

    def __init__(
        self,
        session: Session,
        ice_servers: tuple[IceServer, ...],
        on_closed: Callable[[PeerLink], Awaitable[None]] | None = None,
        owns_session: bool = False,
    ) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.session = session
        # A WHEP player that created its own session ends it when it leaves.
        self.owns_session = owns_session
        self.pc = RTCPeerConnection(_rtc_configuration(ice_servers))
        self._on_closed = on_closed
        self._tracks: list[MediaStreamTrack] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer_sdp: str) -> str:
        """Apply the remote offer; returns the complete answer SDP (all candidates inside)."""
        if "m=video" not in offer_sdp:
            raise InvalidOfferError(
                "the offer has no video section; add a video transceiver "
                "(recvonly) so the session can send its face"
            )
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except _SDP_ERRORS as exc:
            raise InvalidOfferError(f"malformed SDP offer: {exc or type(exc).__name__}") from exc
        video, audio = self.session.create_tracks()
        self._tracks = [video, audio]
        self.pc.addTrack(video)
        if "m=audio" in offer_sdp:
            self.pc.addTrack(audio)
        else:
            audio.stop()
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        logger.info("session %s: peer %s connected", self.session.id, self.id)
        return self.pc.localDescription.sdp

    async def add_candidates(self, sdp_fragment: str) -> int:
        """Trickled remote candidates (WHEP PATCH, application/trickle-ice-sdpfrag)."""
        mid: str | None = None
        added = 0
        for raw in sdp_fragment.splitlines():
            line = raw.strip()
            if line.startswith("a=mid:"):
                mid = line[len("a=mid:") :]
            elif line.startswith("a=candidate:"):
                try:
                    candidate = candidate_from_sdp(line[len("a=") :].split(":", 1)[1])
                except _SDP_ERRORS as exc:
                    raise InvalidOfferError(f"malformed ICE candidate {line!r}") from exc
                candidate.sdpMid = mid
                candidate.sdpMLineIndex = None if mid is not None else 0
                await self.pc.addIceCandidate(candidate)
                added += 1
        return added

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for track in self._tracks:
            track.stop()  # the session counts its viewers by live tracks
        await self.pc.close()
        if self._on_closed is not None:
            await self._on_closed(self)
        logger.info("session %s: peer %s closed", self.session.id, self.id)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        task = asyncio.create_task(self._pump_microphone(track), name=f"mic-{self.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump_microphone(self, track: MediaStreamTrack) -> None:
        """The browser's microphone drives the lips (not played back: no echo)."""
        resampler = FrameResampler()
        while not self._closed:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.session.push_microphone(resampler.push(frame))

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        logger.info("session %s: peer %s is %s", self.session.id, self.id, state)
        if state in ("failed", "closed"):
            with contextlib.suppress(Exception):
                await self.close()
