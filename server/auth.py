"""The optional API token (FACECAST_API_TOKEN): one check for HTTP and WebSocket routes.

Sent as 'Authorization: Bearer <token>' or, where a client cannot set headers
(browser WebSockets, WHEP players given a URL), as ?token=<token>.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from fastapi import HTTPException, Request, WebSocket

from .config import ServerConfig
from .state import state_of

__all__ = ["token_matches", "require_token", "websocket_token_ok"]


def token_matches(
    config: ServerConfig, headers: Mapping[str, str], query: Mapping[str, str]
) -> bool:
    if config.api_token is None:
        return True
    auth = headers.get("authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else query.get("token")
    return given is not None and secrets.compare_digest(given, config.api_token)


def require_token(request: Request) -> None:
    """FastAPI dependency for every protected HTTP route."""
    config = state_of(request).config
    if not token_matches(config, request.headers, request.query_params):
        raise HTTPException(
            401,
            "missing or wrong API token: send 'Authorization: Bearer <token>' "
            "or ?token=<token> (FACECAST_API_TOKEN)",
        )


async def websocket_token_ok(websocket: WebSocket) -> bool:
    config = state_of(websocket).config
    if token_matches(config, websocket.headers, websocket.query_params):
        return True
    await websocket.close(code=1008, reason="missing or wrong API token")
    return False
