"""All live sessions of the server: the cap, lookup, and cleanup of abandoned ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from .config import ServerConfig
from .errors import SessionLimitError, UnknownSessionError
from .metrics import ServerMetrics
from .portraits import BUILTIN_PORTRAIT_ID, PortraitStore
from .session import Session

__all__ = ["SessionManager"]

logger = logging.getLogger(__name__)


class SessionManager:
    def __init__(
        self, config: ServerConfig, portraits: PortraitStore, metrics: ServerMetrics
    ) -> None:
        self._config = config
        self._portraits = portraits
        self._metrics = metrics
        self._sessions: dict[str, Session] = {}
        self._starting = 0
        self._on_close: dict[str, list[Callable[[], Awaitable[None]]]] = {}
        self._reaper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def start_reaper(self) -> None:
        self._reaper = asyncio.create_task(self._reap(), name="session-reaper")

    async def create(
        self, portrait_id: str | None = None, fps: int | None = None, seed: int | None = None
    ) -> Session:
        if len(self._sessions) + self._starting >= self._config.max_sessions:
            self._metrics.sessions_rejected.inc()
            raise SessionLimitError(
                f"the server is at its limit of {self._config.max_sessions} sessions; "
                "end one (DELETE /api/sessions/{id}) or start the server with a higher "
                "--max-sessions"
            )
        portrait_id = portrait_id or BUILTIN_PORTRAIT_ID
        session_config = self._config.session
        if fps is not None or seed is not None:
            session_config = session_config.with_pipeline(
                fps=session_config.fps if fps is None else fps,
                seed=session_config.pipeline.seed if seed is None else seed,
            )
        requested_at = time.monotonic()
        self._starting += 1  # count it against the cap while its avatar loads
        try:
            avatar = await self._portraits.avatar(portrait_id)
            session = await Session.start(
                avatar,
                portrait_id,
                session_config,
                self._metrics,
                self._config.provenance,
                requested_at,
            )
        finally:
            self._starting -= 1
        self._sessions[session.id] = session
        self._metrics.sessions_created.inc()
        return session

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownSessionError(session_id) from None

    def list(self) -> list[Session]:
        return list(self._sessions.values())

    def on_close(self, session_id: str, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` when the session ends (e.g. close its peer connections)."""
        self._on_close.setdefault(session_id, []).append(callback)

    async def delete(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            raise UnknownSessionError(session_id)
        for callback in self._on_close.pop(session_id, []):
            try:
                await callback()
            except Exception:  # one failing peer must not keep the session alive
                logger.exception("session %s: close callback failed", session_id)
        await session.close()

    async def close_all(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for session_id in list(self._sessions):
            await self.delete(session_id)

    async def _reap(self) -> None:
        """Close sessions nobody watches or feeds (a client that vanished)."""
        timeout = self._config.session_idle_timeout_s
        while True:
            await asyncio.sleep(min(5.0, max(timeout / 4, 0.1)))
            now = time.monotonic()
            for session in list(self._sessions.values()):
                idle = session.viewers == 0 and session.clients == 0
                if idle and now - session.last_active > timeout:
                    logger.info("session %s idle for %.0f s: closing", session.id, timeout)
                    with contextlib.suppress(UnknownSessionError):
                        await self.delete(session.id)
