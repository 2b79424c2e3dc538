"""What the HTTP layer shares: config, metrics, portraits, sessions and their peers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field, replace

from starlette.requests import HTTPConnection

from engines.face.avatar import Avatar
from engines.face.encoder import FaceEncoder
from engines.pipeline import Pipeline, set_threads
from engines.provenance import with_instance_id

from .config import ServerConfig
from .errors import UnknownPeerError, UnknownSessionError
from .memory import freeze_startup_objects, thaw_startup_objects
from .metrics import ServerMetrics
from .portraits import BUILTIN_PORTRAIT_ID, PortraitStore, PortraitStoreLimits
from .session import Session
from .sessions import SessionManager
from .tts import SpeechSynthesizer
from .webrtc import PeerLimits, PeerLink, configure_encoders

__all__ = ["ServerState", "state_of"]

logger = logging.getLogger(__name__)


def _warm_engines(avatar: Avatar, config: ServerConfig) -> None:
    """Load the models and make the backends' graphs for the default portrait (graph
    backends export or find theirs; torch-cpu traces its denoiser and renderer, ~1 s),
    so the first session's first frames do not pay for it."""
    Pipeline(avatar, config.session.pipeline).warm()


@dataclass
class ServerState:
    config: ServerConfig
    metrics: ServerMetrics
    portraits: PortraitStore
    sessions: SessionManager
    speech: SpeechSynthesizer
    links: dict[str, PeerLink] = field(default_factory=dict)
    verify_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # POST /api/verify

    @classmethod
    def build(cls, config: ServerConfig) -> ServerState:
        # The install's instance id, read (or made) once: every session's mark carries it.
        provenance = with_instance_id(config.provenance, config.provenance_state_dir)
        config = replace(config, provenance=provenance)
        holder: list[SessionManager] = []
        metrics = ServerMetrics(sessions_active=lambda: len(holder[0]) if holder else 0)
        limits = PortraitStoreLimits(
            config.max_portraits, config.max_portrait_store_bytes, config.avatar_cache_size
        )
        portraits = PortraitStore(
            FaceEncoder(config.encoder),
            config.portrait_dir,
            limits,
            in_use=lambda: {s.portrait_id for s in holder[0].list()} if holder else set(),
        )
        sessions = SessionManager(config, portraits, metrics)
        holder.append(sessions)
        return cls(config, metrics, portraits, sessions, SpeechSynthesizer(config.tts_workers))

    @property
    def peer_limits(self) -> PeerLimits:
        config = self.config
        return PeerLimits(
            config.max_sdp_bytes, config.max_ice_candidates, config.peer_connect_timeout_s
        )

    async def startup(self) -> None:
        set_threads(self.config.torch_threads)
        configure_encoders(max(self.config.session.fps, 30), self.config.h264_preset)
        # Builds the face-analysis graphs and caches the built-in avatar now, so the
        # first session starts in milliseconds instead of waiting ~1 s.
        avatar = await self.portraits.avatar(BUILTIN_PORTRAIT_ID)
        # torch's first forward pass allocates and plans; pay for it before any user waits.
        await asyncio.get_running_loop().run_in_executor(None, _warm_engines, avatar, self.config)
        self.sessions.start_reaper()
        freeze_startup_objects()  # a session's end then collects in ms, not 200 ms
        logger.info("facecast ready on http://%s:%d", self.config.host, self.config.port)

    async def shutdown(self) -> None:
        for link in list(self.links.values()):
            with contextlib.suppress(Exception):
                await link.close()
        await self.sessions.close_all()
        self.speech.shutdown()
        thaw_startup_objects()

    async def connect_peer(self, session: Session, offer_sdp: str, owns_session: bool) -> PeerLink:
        """Answer `offer_sdp` with a new peer on `session`; the answer is link.pc.localDescription.

        A peer that owns its session (WHEP without a session id) ends it when it closes.
        """
        link = PeerLink(
            session, self.config.ice_servers, self._peer_closed, owns_session, self.peer_limits
        )
        try:
            await link.answer(offer_sdp)
        except BaseException:
            await link.close()
            raise
        self.links[link.id] = link
        self.sessions.on_close(session.id, link.close)
        return link

    def link(self, link_id: str) -> PeerLink:
        try:
            return self.links[link_id]
        except KeyError:
            raise UnknownPeerError(link_id) from None

    async def _peer_closed(self, link: PeerLink) -> None:
        self.links.pop(link.id, None)
        if link.owns_session:
            with contextlib.suppress(UnknownSessionError):
                await self.sessions.delete(link.session.id)


def state_of(connection: HTTPConnection) -> ServerState:
    """The server's shared state, from any request or WebSocket."""
    return connection.app.state.facecast  # type: ignore[no-any-return]
