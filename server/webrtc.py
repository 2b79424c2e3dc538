"""WebRTC peers of a session (aiortc): answering offers, the microphone lane, trickled ICE.

One PeerLink is one RTCPeerConnection watching one session: the browser page
or a WHEP player. Offers are answered non-trickle (aiortc gathers its
candidates before answering), which needs no STUN on localhost; STUN/TURN
servers come from ServerConfig.ice_servers. Video answers H.264 first (VP8 for
a peer without it), encoded at the x264 preset of server.encoders.

An offer is checked before aiortc sees it (size, candidate count, the
sections and codecs a session needs): aiortc parses on the event loop with a
cost that grows with the square of the candidates, and answers some broken
offers with an assertion much later. A peer counts as a viewer only once it
is connected, and one that has not connected by its deadline is closed, so
an offer whose client walked away holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.codecs import h264, vpx
from aiortc.exceptions import (
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import MediaDescription, SessionDescription, candidate_from_sdp
from av import AudioFrame

from engines.audio.ingest import FrameResampler

from .config import IceServer
from .encoders import X264_PRESET, install_h264_preset, preferred_video_codecs
from .errors import InvalidOfferError, OfferTooLargeError
from .session import Session

__all__ = ["PeerLink", "PeerLimits", "check_offer", "configure_encoders"]

logger = logging.getLogger(__name__)

# aiortc's parser raises whatever its code hits: StopIteration for an attribute naming
# a payload type the m= line lacks, IndexError and KeyError for missing fields...
_SDP_ERRORS = (
    AttributeError,
    StopIteration,
    ValueError,
    AssertionError,
    KeyError,
    IndexError,
    TypeError,
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)
_VIDEO_CODECS = ("video/h264", "video/vp8")
_AUDIO_CODECS = ("audio/opus", "audio/pcmu", "audio/pcma")


@dataclass(frozen=True)
class PeerLimits:
    """What one peer may cost: SDP size, remote candidates, time to connect."""

    max_sdp_bytes: int = 64 * 1024
    max_candidates: int = 64
    connect_timeout_s: float = 15.0


def check_offer(sdp: str, limits: PeerLimits) -> None:
    """Refuse, with a message saying what is wrong, an offer a session cannot answer.

    Cheap and bounded: runs before aiortc parses the offer on the event loop.
    """
    if len(sdp.encode("utf-8", "replace")) > limits.max_sdp_bytes:
        raise OfferTooLargeError(
            f"the SDP offer is larger than {limits.max_sdp_bytes // 1024} KB; "
            "a browser's offer is a few KB"
        )
    _check_candidate_count(sdp.count("a=candidate:"), limits.max_candidates, "offer")
    hint = "send the offer your WebRTC stack made (lines v=0, o=, s=, t=, m=video ...)"
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidOfferError(f"this is not an SDP offer (it does not start with v=0); {hint}")
    try:
        description = SessionDescription.parse(sdp)
    # aiortc's parser is not written for hostile text: whatever it raises on the offer
    # (AttributeError, StopIteration, IndexError...) means the offer is malformed.
    except Exception as exc:
        raise InvalidOfferError(
            f"this is not an SDP offer ({exc or type(exc).__name__}); {hint}"
        ) from exc
    active = [m for m in description.media if m.port != 0]
    video = [m for m in active if m.kind == "video"]
    if not video:
        raise InvalidOfferError(
            "the offer has no video section; add a video transceiver "
            "(recvonly) so the session can send its face"
        )
    problem = _bundle_problem(description) or next(
        (p for p in map(_media_problem, active) if p is not None), None
    )
    if problem is not None:
        raise InvalidOfferError(f"malformed SDP offer: {problem}")


def _bundle_problem(description: SessionDescription) -> str | None:
    """Sections aiortc would pair up wrongly: missing or repeated mids, BUNDLE of unknowns."""
    mids = [media.rtp.muxId for media in description.media]
    if any(not mid for mid in mids) or len(set(mids)) != len(mids):
        return f"every m= section needs its own a=mid (got {mids})"
    for group in description.group:
        unknown = [item for item in group.items if item not in mids]
        if unknown:
            return f"a=group:{group.semantic} names sections that do not exist: {unknown}"
    return None


def _check_candidate_count(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise OfferTooLargeError(
            f"the {what} carries {count} ICE candidates; at most {limit} are accepted per peer"
        )


def _media_problem(media: MediaDescription) -> str | None:
    """What keeps a session from answering this m= section, or None."""
    kind = media.kind
    if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
        return f"the {kind} section has no a=ice-ufrag / a=ice-pwd"
    if media.dtls is None:  # aiortc's parser drops the DTLS parameters when a=setup is missing
        return f"the {kind} section has no a=setup (actpass, active or passive)"
    if not media.dtls.fingerprints:
        return f"the {kind} section has no a=fingerprint: DTLS-SRTP (WebRTC media) needs one"
    codecs = {codec.mimeType.lower() for codec in media.rtp.codecs}
    wanted = _VIDEO_CODECS if kind == "video" else _AUDIO_CODECS if kind == "audio" else ()
    if wanted and not codecs & set(wanted):
        offered = ", ".join(sorted(c.split("/", 1)[-1] for c in codecs)) or "none"
        names = ", ".join(c.split("/", 1)[1].upper() for c in wanted)
        return (
            f"the {kind} section offers no codec a session can send (offered: {offered}); "
            f"offer one of {names}"
        )
    return None


def configure_encoders(max_fps: int, h264_preset: str = X264_PRESET) -> None:
    """Tell aiortc's encoders the real frame rate ceiling and the x264 preset.

    aiortc builds its H.264 and VP8 encoders for 30 fps (module constant
    MAX_FRAME_RATE). x264 derives its per-frame bit budget from it, so 40 fps
    would overshoot the bitrate by a third. Frame timestamps are ours (90 kHz,
    exact per frame), so raising the ceiling changes only rate control.

    H.264 is encoded at `h264_preset` with tune=zerolatency instead of x264's
    default preset (server.encoders; benchmarks/results/bench_encode.md).
    """
    h264.MAX_FRAME_RATE = max(h264.MAX_FRAME_RATE, max_fps)
    vpx.MAX_FRAME_RATE = max(vpx.MAX_FRAME_RATE, max_fps)
    install_h264_preset(h264_preset)


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
        limits: PeerLimits | None = None,
    ) -> None:
        # The resource id in a WHEP Location is a capability: 128 random bits.
        self.id = secrets.token_hex(16)
        self.session = session
        self.limits = limits or PeerLimits()
        self._remote_candidates = 0
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
        """Apply the remote offer; returns the complete answer SDP (all candidates inside).

        Raises OfferTooLargeError or InvalidOfferError, before any work, for an offer
        over the limits or one a session cannot answer."""
        check_offer(offer_sdp, self.limits)
        self._remote_candidates = offer_sdp.count("a=candidate:")
        try:
            self._prefer_h264()
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            video, audio = self.session.create_tracks()
            self._tracks = [video, audio]
            self.pc.addTrack(video)
            if "m=audio" in offer_sdp:
                self.pc.addTrack(audio)
            else:
                audio.stop()
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except (*_SDP_ERRORS, OperationError) as exc:
            raise InvalidOfferError(
                f"the offer could not be negotiated: {exc or type(exc).__name__}"
            ) from exc
        self.session.add_joining(self.id)
        self._start_deadline()
        logger.info("session %s: peer %s answered", self.session.id, self.id)
        return self.pc.localDescription.sdp

    def _prefer_h264(self) -> None:
        """The video transceiver, made before the offer is applied, answers H.264 first.

        aiortc orders an answer's codecs as the offer does (browsers offer VP8 first)
        and sends the first; preferences apply only to a transceiver that exists when
        the offer is set, which then takes the offer's first video section. VP8 stays
        for a peer that offers no H.264. The server only sends video: sendonly.
        """
        transceiver = self.pc.addTransceiver("video", direction="sendonly")
        transceiver.setCodecPreferences(preferred_video_codecs())

    def _start_deadline(self) -> None:
        task = asyncio.create_task(self._close_unless_connected(), name=f"deadline-{self.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_unless_connected(self) -> None:
        await asyncio.sleep(self.limits.connect_timeout_s)
        if self.pc.connectionState != "connected":
            logger.info(
                "session %s: peer %s did not connect within %.0f s: closing",
                self.session.id,
                self.id,
                self.limits.connect_timeout_s,
            )
            await self.close()

    async def add_candidates(self, sdp_fragment: str) -> int:
        """Trickled remote candidates (WHEP PATCH, application/trickle-ice-sdpfrag)."""
        if len(sdp_fragment.encode("utf-8", "replace")) > self.limits.max_sdp_bytes:
            raise OfferTooLargeError(
                f"the SDP fragment is larger than {self.limits.max_sdp_bytes // 1024} KB"
            )
        total = self._remote_candidates + sdp_fragment.count("a=candidate:")
        _check_candidate_count(total, self.limits.max_candidates, "peer")
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
                try:
                    await self.pc.addIceCandidate(candidate)
                except _SDP_ERRORS as exc:
                    raise InvalidOfferError(
                        f"ICE candidate {line[:80]!r} does not fit the session: {exc}"
                    ) from exc
                added += 1
                self._remote_candidates += 1
        return added

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        self.session.remove_viewer(self.id)
        for track in self._tracks:
            track.stop()
        try:
            await self.pc.close()
        except _SDP_ERRORS as exc:  # a half-negotiated peer aiortc cannot tear down cleanly
            logger.warning(
                "session %s: peer %s closed uncleanly: %r", self.session.id, self.id, exc
            )
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
            if isinstance(frame, AudioFrame):  # an audio track yields audio frames only
                self.session.push_microphone(resampler.push(frame))

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        logger.info("session %s: peer %s is %s", self.session.id, self.id, state)
        if state == "connected" and not self._closed:
            self.session.add_viewer(self.id)  # only a connected peer makes frames worth rendering
        if state in ("failed", "closed"):
            with contextlib.suppress(Exception):
                await self.close()
