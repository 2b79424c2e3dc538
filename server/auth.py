"""The optional API token (FACECAST_API_TOKEN): one check for HTTP and WebSocket routes.

Sent as 'Authorization: Bearer <token>' or, where a client cannot set headers
(browser WebSockets, WHEP players given a URL), as ?token=<token>. Tokens are
compared as UTF-8 bytes in constant time: any text a client sends is a wrong
token, never an error. They never reach a log (TokenRedactingFilter).
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping

from fastapi import HTTPException, Request, WebSocket

from .config import ServerConfig
from .state import state_of

__all__ = ["token_matches", "require_token", "websocket_token_ok", "TokenRedactingFilter"]

_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']*", re.IGNORECASE)
_BEARER_IN_TEXT = re.compile(r"(bearer\s+)\S+", re.IGNORECASE)


def token_matches(
    config: ServerConfig, headers: Mapping[str, str], query: Mapping[str, str]
) -> bool:
    if config.api_token is None:
        return True
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        # Header values arrive decoded as latin-1: this gives back the bytes sent.
        given = auth[7:].strip().encode("latin-1", "replace")
    elif "token" in query:
        given = query["token"].encode("utf-8", "replace")
    else:
        return False
    # compare_digest on str raises for non-ASCII text; on bytes it compares anything.
    return hmac.compare_digest(given, config.api_token.encode("utf-8"))


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


def redact(text: str) -> str:
    """`text` with every ?token=... value and Bearer credential replaced by ***."""
    return _BEARER_IN_TEXT.sub(r"\1***", _TOKEN_IN_TEXT.sub(r"\1***", text))


class TokenRedactingFilter(logging.Filter):
    """Rewrites log records so no token in a URL or header reaches a handler.

    uvicorn's access log prints the request line with its query string, and its
    WebSocket log the full path: both carry ?token= for browser clients.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # Arguments are cleaned in place: uvicorn's access formatter unpacks them.
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redacted_arg(arg) for key, arg in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def _redacted_arg(arg: object) -> object:
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, (int, float)) or arg is None:
        return arg
    text = str(arg)
    cleaned = redact(text)
    return arg if cleaned == text else cleaned
