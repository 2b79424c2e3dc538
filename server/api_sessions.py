"""REST routes under /api: portraits, sessions, speech in, controls, interrupt, browser offers.

Pydantic lives here, at the HTTP edge only. Blocking work (decoding an upload,
TTS, face analysis) runs on executor threads.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from engines.audio.ingest import PLAYBACK_RATE, check_audio_length, decode_audio_bytes
from engines.audio.speech import MAX_TEXT_CHARS

from .config import MAX_FPS
from .errors import SpeechQueueFullError
from .session import Session
from .state import state_of

__all__ = ["router"]

router = APIRouter()


class SessionRequest(BaseModel):
    portrait_id: str | None = Field(None, max_length=64)
    fps: int | None = Field(None, ge=1, le=MAX_FPS)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)


class PortraitChoice(BaseModel):
    portrait_id: str = Field(..., max_length=64)


class SpeakRequest(BaseModel):
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    voice: str | None = Field(None, max_length=40)


class Offer(BaseModel):
    sdp: str
    type: str = "offer"


def session_info(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "portrait_id": session.portrait_id,
        "fps": session.config.fps,
        "created_at": session.created_at,
        "speaking": session.speaking,
        "viewers": session.viewers,
        "controls": session.controls.to_dict(),
        "frames_sent": session.frames_sent,
        "dropped_frames": session.frames_dropped,
        "queued_speech_s": round(session.speech.queued_samples / PLAYBACK_RATE, 3),
        # The payload every frame carries, as `facecast verify` prints it; None when off.
        "provenance_mark": session.marker.mark_id if session.marker.config.watermark else None,
        "stats": session.stats(),
    }


async def _read_upload(file: UploadFile, limit: int, what: str) -> bytes:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(
            413, f"the {what} is larger than the {limit // (1024 * 1024)} MB upload limit"
        )
    if not data:
        raise HTTPException(400, f"the uploaded {what} is empty")
    return data


# ---- portraits ----------------------------------------------------------------------


@router.get("/portraits")
async def list_portraits(request: Request) -> list[dict[str, Any]]:
    return [
        {"id": p.id, "name": p.name, "builtin": p.builtin, "notes": list(p.notes)}
        for p in state_of(request).portraits.list()
    ]


@router.post("/portraits", status_code=201)
async def upload_portrait(request: Request, file: UploadFile) -> dict[str, Any]:
    state = state_of(request)
    data = await _read_upload(file, state.config.max_portrait_bytes, "image")
    info = await state.portraits.add(data, file.filename or "upload")
    return {"id": info.id, "name": info.name, "builtin": False, "notes": list(info.notes)}


@router.get("/portraits/{portrait_id}/image")
async def portrait_image(request: Request, portrait_id: str) -> FileResponse:
    info = state_of(request).portraits.info(portrait_id)
    # Always an image type the server chose, never sniffed: the file cannot act as a page.
    return FileResponse(
        info.path, media_type=info.media_type, headers={"X-Content-Type-Options": "nosniff"}
    )


@router.delete("/portraits/{portrait_id}", status_code=204)
async def delete_portrait(request: Request, portrait_id: str) -> Response:
    state_of(request).portraits.delete(portrait_id)
    return Response(status_code=204)


# ---- sessions -----------------------------------------------------------------------


@router.post("/sessions", status_code=201)
async def create_session(request: Request, body: SessionRequest | None = None) -> dict[str, Any]:
    body = body or SessionRequest()
    session = await state_of(request).sessions.create(body.portrait_id, body.fps, body.seed)
    return session_info(session)


@router.get("/sessions")
async def list_sessions(request: Request) -> list[dict[str, Any]]:
    return [session_info(s) for s in state_of(request).sessions.list()]


@router.get("/sessions/{session_id}")
async def get_session(request: Request, session_id: str) -> dict[str, Any]:
    return session_info(state_of(request).sessions.get(session_id))


@router.delete("/sessions/{session_id}", status_code=204)
async def delete_session(request: Request, session_id: str) -> Response:
    await state_of(request).sessions.delete(session_id)
    return Response(status_code=204)


@router.put("/sessions/{session_id}/portrait")
async def set_portrait(request: Request, session_id: str, body: PortraitChoice) -> dict[str, Any]:
    state = state_of(request)
    session = state.sessions.get(session_id)
    avatar = await state.portraits.avatar(body.portrait_id)
    await session.set_portrait(avatar, body.portrait_id)
    return session_info(session)


@router.post("/sessions/{session_id}/offer")
async def offer(request: Request, session_id: str, body: Offer) -> dict[str, str]:
    state = state_of(request)
    if body.type != "offer":
        raise HTTPException(400, f"expected an SDP offer, got type {body.type[:20]!r}")
    session = state.sessions.get(session_id)
    link = await state.connect_peer(session, body.sdp, owns_session=False)
    return {"sdp": link.pc.localDescription.sdp, "type": "answer", "peer_id": link.id}


# ---- speech in, controls, interrupt ---------------------------------------------------


@router.post("/sessions/{session_id}/audio", status_code=202)
async def upload_audio(request: Request, session_id: str, file: UploadFile) -> dict[str, Any]:
    state = state_of(request)
    session = state.sessions.get(session_id)
    data = await _read_upload(file, state.config.max_audio_bytes, "audio file")
    name = file.filename or "upload"
    limit = state.config.audio_seconds_limit
    loop = asyncio.get_running_loop()
    # The header's duration is checked against the limit and the queue before decoding.
    header_s = await loop.run_in_executor(None, check_audio_length, data, name, limit)
    free_s = session.free_speech_seconds()
    if header_s is not None and header_s > free_s + 0.1:
        raise SpeechQueueFullError(
            f"'{name}' is {header_s:.1f} s long and the speech queue has {free_s:.1f} s free; "
            "wait for playback (or interrupt) and send it again"
        )
    samples = await loop.run_in_executor(None, decode_audio_bytes, data, name, limit)
    utterance = session.enqueue(samples, "upload")
    return {"utterance_id": utterance.id, "duration_s": round(utterance.duration_s, 3)}


@router.post("/sessions/{session_id}/speak", status_code=202)
async def speak(request: Request, session_id: str, body: SpeakRequest) -> dict[str, Any]:
    state = state_of(request)
    session = state.sessions.get(session_id)
    samples = await state.speech.speak(
        session.tts_lock, session.free_speech_seconds, body.text, body.voice
    )
    utterance = session.enqueue(samples, "tts")
    return {"utterance_id": utterance.id, "duration_s": round(utterance.duration_s, 3)}


@router.post("/sessions/{session_id}/controls")
async def set_controls(request: Request, session_id: str) -> dict[str, Any]:
    session = state_of(request).sessions.get(session_id)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(415, "send the controls as application/json")
    try:
        values = await request.json()
    except (ValueError, RecursionError) as exc:
        raise HTTPException(400, f"the body must be a JSON object: {exc}") from exc
    if not isinstance(values, dict):
        raise HTTPException(400, "the body must be a JSON object of control values")
    controls = await session.set_controls(values)
    return controls.to_dict()


@router.post("/sessions/{session_id}/interrupt")
async def interrupt(request: Request, session_id: str) -> dict[str, int]:
    return {"interrupted": state_of(request).sessions.get(session_id).interrupt()}
