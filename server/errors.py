"""The server's errors: each carries the HTTP status it answers with and a message that says
what to do. Engine errors (engines.errors) get their status from ENGINE_STATUS.

Anything else that escapes a route is a bug: it is logged with its traceback and
answered 500, never dressed up as a client error.
"""

from __future__ import annotations

from engines.errors import (
    AudioTooLongError,
    BackendUnavailableError,
    FacecastError,
    FaceTooSmallError,
    InvalidAudioError,
    InvalidControlsError,
    InvalidImageError,
    InvalidVideoError,
    NoFaceError,
    NotAFaceError,
    SynthesisError,
    VideoTooLargeError,
)

__all__ = [
    "ApiError",
    "NotFoundError",
    "UnknownSessionError",
    "UnknownPortraitError",
    "UnknownPeerError",
    "SessionLimitError",
    "InvalidOfferError",
    "OfferTooLargeError",
    "BuiltinPortraitError",
    "PortraitStoreFullError",
    "SpeechQueueFullError",
    "SynthesisBusyError",
    "VerifyBusyError",
    "ENGINE_STATUS",
    "status_of",
]


class ApiError(FacecastError):
    """An error a request caused; `status` is what the API answers, str() what to do."""

    status = 400


class NotFoundError(ApiError):
    status = 404


class UnknownSessionError(NotFoundError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session with id {session_id[:64]!r}; it may have ended or timed out")
        self.session_id = session_id


class UnknownPortraitError(NotFoundError):
    def __init__(self, portrait_id: str) -> None:
        super().__init__(f"no portrait with id {portrait_id[:64]!r}; GET /api/portraits lists them")
        self.portrait_id = portrait_id


class UnknownPeerError(NotFoundError):
    def __init__(self, peer_id: str) -> None:
        super().__init__(f"no WebRTC peer with id {peer_id[:64]!r}; it may have been closed")
        self.peer_id = peer_id


class SessionLimitError(ApiError):
    """The server holds its configured maximum of sessions."""

    status = 503


class InvalidOfferError(ApiError):
    """The SDP offer could not be parsed or does not ask for what a session sends."""


class OfferTooLargeError(ApiError):
    """The SDP (or a trickled fragment) is over the size or candidate limits."""

    status = 413


class BuiltinPortraitError(ApiError):
    """The built-in portrait is part of the install and cannot be deleted."""

    status = 403


class PortraitStoreFullError(ApiError):
    """No room for another upload now (every stored portrait in use, or analyses queued)."""

    status = 429


class SpeechQueueFullError(ApiError):
    """The session's speech queue has no room for this audio."""

    status = 429


class SynthesisBusyError(ApiError):
    """This session already has its share of speech synthesis queued."""

    status = 429


class VerifyBusyError(ApiError):
    """Another video is being verified; verification runs one at a time."""

    status = 429


# What the engines' own errors mean for an HTTP client.
ENGINE_STATUS: dict[type[FacecastError], int] = {
    InvalidImageError: 415,
    InvalidAudioError: 415,
    VideoTooLargeError: 413,
    InvalidVideoError: 415,
    AudioTooLongError: 413,
    NoFaceError: 422,
    NotAFaceError: 422,
    FaceTooSmallError: 422,
    InvalidControlsError: 422,
    SynthesisError: 422,
    BackendUnavailableError: 503,
}


def status_of(error: FacecastError) -> int:
    """The HTTP status for a facecast error: its own, or the closest engine error's."""
    if isinstance(error, ApiError):
        return error.status
    for kind in type(error).__mro__:
        if kind in ENGINE_STATUS:
            return ENGINE_STATUS[kind]
    return 500
