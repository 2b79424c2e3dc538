"""WHEP (WebRTC-HTTP Egress Protocol, RFC 9725): any WHEP player can watch a session.

POST /whep                      application/sdp offer -> 201, answer, Location; a new
                                session with the built-in portrait, ended with the player
POST /whep/sessions/{id}        the same, watching an existing session
PATCH /whep/resources/{peer}    application/trickle-ice-sdpfrag -> 204
DELETE /whep/resources/{peer}   ends the playback (and the session it created)
"""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from .errors import UnknownSessionError
from .state import state_of
from .webrtc import check_offer

__all__ = ["router"]

router = APIRouter(prefix="/whep", tags=["whep"])

_SDP = "application/sdp"
_SDP_FRAGMENT = "application/trickle-ice-sdpfrag"


async def _read_body(request: Request, content_type: str) -> str:
    """The body as text; the request guard has bounded its size while it was read."""
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given != content_type:
        raise HTTPException(415, f"send the body as {content_type}, not {given[:60] or 'nothing'}")
    body = await request.body()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, "the SDP body is not UTF-8 text") from exc


async def _answer(request: Request, session_id: str | None) -> Response:
    state = state_of(request)
    offer = await _read_body(request, _SDP)
    check_offer(offer, state.peer_limits)  # before a session is made for it
    owns = session_id is None
    session = await state.sessions.create() if owns else state.sessions.get(session_id or "")
    try:
        link = await state.connect_peer(session, offer, owns_session=owns)
    except BaseException:
        if owns:  # the failed peer may have ended it already
            with contextlib.suppress(UnknownSessionError):
                await state.sessions.delete(session.id)
        raise
    return Response(
        content=link.pc.localDescription.sdp,
        status_code=201,
        media_type=_SDP,
        headers={
            "Location": f"/whep/resources/{link.id}",
            "X-Facecast-Session": session.id,
        },
    )


@router.post("", status_code=201, response_class=Response)
async def watch_new_session(request: Request) -> Response:
    return await _answer(request, None)


@router.post("/sessions/{session_id}", status_code=201, response_class=Response)
async def watch_session(request: Request, session_id: str) -> Response:
    return await _answer(request, session_id)


@router.patch("/resources/{peer_id}", status_code=204, response_class=Response)
async def trickle(request: Request, peer_id: str) -> Response:
    link = state_of(request).link(peer_id)
    fragment = await _read_body(request, _SDP_FRAGMENT)
    await link.add_candidates(fragment)
    return Response(status_code=204)


@router.delete("/resources/{peer_id}", response_class=Response)
async def stop(request: Request, peer_id: str) -> Response:
    await state_of(request).link(peer_id).close()
    return Response(status_code=200)
