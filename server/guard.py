"""The request guard: what every HTTP request and WebSocket handshake passes before a route runs.

A pure ASGI middleware, so it sees requests before FastAPI reads a byte of
their bodies:

- Host allow-list: a page on attacker.example whose name is re-pointed at
  127.0.0.1 (DNS rebinding) arrives with `Host: attacker.example` and is refused.
- Origin: a browser names the page that sent a request. State-changing requests
  (anything but GET/HEAD/OPTIONS) and WebSocket handshakes from another origin
  than the server's own (or a configured CORS origin) are refused, so no web page
  the user visits can drive a localhost server. Programs send no Origin and pass.
- Body limits: a declared Content-Length over the route's limit gets 413 before
  reading; a chunked body is counted while it streams and stopped at the limit.
- Content types: a body must have the type its route takes (JSON, multipart,
  SDP): a cross-site text/plain "simple request" never reaches a JSON route.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

__all__ = ["RequestGuard", "BodyRule", "body_rules", "default_allowed_hosts"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARD_BINDS = ("0.0.0.0", "::", "")
JSON = ("application/json",)
MULTIPART = ("multipart/form-data",)
SDP = ("application/sdp",)
SDP_FRAGMENT = ("application/trickle-ice-sdpfrag",)


@dataclass(frozen=True)
class BodyRule:
    """The largest body a route takes, and the content types it accepts."""

    pattern: re.Pattern[str]
    methods: frozenset[str]
    max_bytes: int
    content_types: tuple[str, ...]


def body_rules(
    max_portrait_bytes: int,
    max_audio_bytes: int,
    max_sdp_bytes: int,
    max_json_bytes: int,
    max_video_bytes: int,
) -> tuple[BodyRule, ...]:
    """The routes that take bodies; anything else takes JSON up to max_json_bytes."""
    form_overhead = 64 * 1024  # multipart boundaries and part headers

    def rule(path: str, methods: str, max_bytes: int, types: tuple[str, ...]) -> BodyRule:
        return BodyRule(re.compile(path), frozenset(methods.split()), max_bytes, types)

    return (
        rule(r"^/api/portraits$", "POST", max_portrait_bytes + form_overhead, MULTIPART),
        rule(r"^/api/sessions/[^/]+/audio$", "POST", max_audio_bytes + form_overhead, MULTIPART),
        rule(r"^/api/verify$", "POST", max_video_bytes + form_overhead, MULTIPART),
        # JSON escapes every CR LF of the SDP: room for twice the SDP plus the envelope.
        rule(r"^/api/sessions/[^/]+/offer$", "POST", 2 * max_sdp_bytes + 1024, JSON),
        rule(r"^/whep(/sessions/[^/]+)?$", "POST", max_sdp_bytes, SDP),
        rule(r"^/whep/resources/[^/]+$", "PATCH", max_sdp_bytes, SDP_FRAGMENT),
        rule(r"", "POST PUT PATCH DELETE", max_json_bytes, JSON),
    )


def default_allowed_hosts(bind_host: str) -> tuple[str, ...]:
    """Localhost names and the bound address; a wildcard bind ("0.0.0.0") allows any Host."""
    if bind_host in _WILDCARD_BINDS:
        return ("*",)
    return tuple(dict.fromkeys((*_LOCAL_NAMES, bind_host.strip("[]").lower())))


def _host_name(host_header: str) -> str:
    """'Example.org:8080' -> 'example.org', '[::1]:8080' -> '::1'."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


class _BodyTooLargeError(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is larger than this route's limit of {_size(limit)}"
        )


def _size(count: int) -> str:
    return f"{count // (1024 * 1024)} MB" if count >= 1024 * 1024 else f"{count // 1024} KB"


class RequestGuard:
    """ASGI middleware; `allowed_hosts` may hold "*" (any), `allowed_origins` extra origins."""

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: tuple[str, ...],
        allowed_origins: tuple[str, ...],
        rules: tuple[BodyRule, ...],
    ) -> None:
        self.app = app
        self._any_host = "*" in allowed_hosts
        self._hosts = frozenset(h.strip("[]").lower() for h in allowed_hosts)
        self._origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self._rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._refusal(scope, headers)
        if problem is not None:
            status, detail = problem
            await _refuse(scope, send, status, detail)
            return
        if scope["type"] == "http":
            rule = self._rule(scope)
            if rule is not None:
                problem = _body_problem(rule, headers)
                if problem is not None:
                    await _refuse(scope, send, *problem)
                    return
                receive = _counting(receive, rule.max_bytes)
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if not host:
            return 400, "the request has no Host header"
        if not self._any_host and _host_name(host) not in self._hosts:
            return 403, (
                f"Host {host!r} is not served here (a DNS-rebinding guard); add it to "
                "FACECAST_ALLOWED_HOSTS if this server should answer to that name"
            )
        origin = headers.get("origin")
        changes_state = scope["type"] == "websocket" or scope["method"] not in _SAFE_METHODS
        if origin is not None and changes_state and not self._origin_ok(origin, host):
            return 403, (
                f"requests from the page at {origin!r} are not allowed; serve the page from "
                "this server or list its origin in FACECAST_CORS_ORIGINS"
            )
        return None

    def _origin_ok(self, origin: str, host: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self._origins:
            return True
        parts = urlsplit(origin)
        # Same origin: the page came from this very server (the Host it addressed).
        return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()

    def _rule(self, scope: Scope) -> BodyRule | None:
        for rule in self._rules:
            if scope["method"] in rule.methods and rule.pattern.search(scope["path"]):
                return rule
        return None


def _body_problem(rule: BodyRule, headers: dict[str, str]) -> tuple[int, str] | None:
    length = headers.get("content-length")
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            return 400, f"Content-Length must be a number of bytes, got {length!r}"
        if declared > rule.max_bytes:
            return (
                413,
                f"the request body is larger than this route's limit of {_size(rule.max_bytes)}",
            )
        if declared == 0 and not chunked:
            return None
    elif not chunked:
        return None  # no body at all
    given = _media_type(headers.get("content-type", ""))
    if given not in rule.content_types:
        wanted = " or ".join(rule.content_types)
        return 415, f"send the body as {wanted}, not {given or 'no content type'}"
    return None


def _counting(receive: Receive, limit: int) -> Receive:
    """`receive`, raising 413 (an HTTPException FastAPI passes through) past `limit` bytes."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLargeError(limit)
        return message

    return counted


async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        # Closing before accepting makes the server answer the handshake with HTTP 403.
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
