"""WebSocket routes: streamed PCM in with control messages, and session events out.

/api/sessions/{id}/stream?sample_rate=16000 takes binary s16le mono PCM (8-48 kHz,
declared in the URL or in a first {"type": "start", "sample_rate": N} message),
plus JSON text messages:

    {"type": "end_of_utterance"}   the current utterance is complete; the next
                                   binary message starts a new one
    {"type": "interrupt"}          barge-in: drop queued speech, return to idle
    {"type": "controls", ...}      same fields as POST /controls

and sends JSON events back: playback_started {utterance_id}, playback_finished
{utterance_id, position_s, interrupted}, stats, error {message}. These are the
semantics voice-agent frameworks (LiveKit Agents, Pipecat) use for an avatar's
audio sink, so adapters stay thin. When the speech queue is full the server
stops reading, which pushes back on the sender through TCP.

/api/sessions/{id}/events sends the same events, for viewers such as the web page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from engines.errors import FacecastError

from .audio_ingest import PcmStream
from .auth import websocket_token_ok
from .session import Session
from .sessions import UnknownSessionError
from .speech_queue import Utterance
from .state import state_of

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter()


async def _open(websocket: WebSocket, session_id: str) -> Session | None:
    if not await websocket_token_ok(websocket):
        return None
    state = state_of(websocket)
    try:
        session = state.sessions.get(session_id)
    except UnknownSessionError as exc:
        await websocket.close(code=1008, reason=str(exc)[:120])
        return None
    await websocket.accept()
    return session


async def _forward_events(websocket: WebSocket, session: Session) -> None:
    queue = session.subscribe()
    try:
        while True:
            event = await queue.get()
            await websocket.send_text(json.dumps(event))
            if event["type"] == "closed":
                await websocket.close(code=1000, reason="session ended")
                return
    finally:
        session.unsubscribe(queue)


@router.websocket("/sessions/{session_id}/events")
async def events(websocket: WebSocket, session_id: str) -> None:
    session = await _open(websocket, session_id)
    if session is None:
        return
    session.clients += 1
    forward = asyncio.create_task(_forward_events(websocket, session))
    try:
        while True:  # nothing is expected in; reading notices the client leaving
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        forward.cancel()
        session.clients -= 1


class _StreamReader:
    """One /stream connection: PCM into streamed utterances, control messages to the session."""

    def __init__(self, websocket: WebSocket, session: Session, sample_rate: int | None) -> None:
        self.websocket = websocket
        self.session = session
        self.pcm = PcmStream(sample_rate) if sample_rate else None
        self.utterance: Utterance | None = None

    async def error(self, message: str) -> None:
        await self.websocket.send_text(json.dumps({"type": "error", "message": message}))

    async def on_bytes(self, data: bytes) -> None:
        if self.pcm is None:
            await self.error(
                "declare the sample rate first: ?sample_rate=16000 in the URL or "
                '{"type": "start", "sample_rate": 16000}'
            )
            return
        samples = self.pcm.push(data)
        if self.utterance is None or self.utterance.interrupted:
            self.utterance = self.session.open_stream("websocket")
        await self.session.push_stream(self.utterance, samples)

    async def on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            await self.error(f"expected a JSON object with a 'type', got {text[:80]!r}")
            return
        handler = {
            "start": self._start,
            "end_of_utterance": self._end_of_utterance,
            "interrupt": self._interrupt,
            "controls": self._controls,
        }.get(kind)
        if handler is None:
            await self.error(
                f"unknown message type {kind!r}; use start, end_of_utterance, interrupt, controls"
            )
            return
        try:
            await handler(message)
        except (FacecastError, ValueError) as exc:
            await self.error(str(exc))

    async def _start(self, message: dict[str, Any]) -> None:
        self.pcm = PcmStream(int(message.get("sample_rate", 0)))

    async def _end_of_utterance(self, message: dict[str, Any]) -> None:
        if self.utterance is None:
            return
        if self.pcm is not None:
            tail = self.pcm.flush()
            if len(tail) and not self.utterance.interrupted:
                await self.session.push_stream(self.utterance, tail)
        self.session.end_stream(self.utterance)
        self.utterance = None

    async def _interrupt(self, message: dict[str, Any]) -> None:
        self.session.interrupt()
        self.utterance = None

    async def _controls(self, message: dict[str, Any]) -> None:
        values = {k: v for k, v in message.items() if k != "type"}
        controls = await self.session.set_controls(values)
        await self.websocket.send_text(json.dumps({"type": "controls", **controls.to_dict()}))


@router.websocket("/sessions/{session_id}/stream")
async def stream(websocket: WebSocket, session_id: str) -> None:
    session = await _open(websocket, session_id)
    if session is None:
        return
    rate = websocket.query_params.get("sample_rate")
    try:
        reader = _StreamReader(websocket, session, int(rate) if rate else None)
    except (FacecastError, ValueError) as exc:
        await websocket.send_text(json.dumps({"type": "error", "message": str(exc)}))
        await websocket.close(code=1003, reason="unsupported sample rate")
        return
    session.clients += 1
    forward = asyncio.create_task(_forward_events(websocket, session))
    try:
        await _read_loop(websocket, reader)
    finally:
        forward.cancel()
        session.clients -= 1
        if reader.utterance is not None:  # the sender vanished mid-utterance: play what came
            session.end_stream(reader.utterance)


async def _read_loop(websocket: WebSocket, reader: _StreamReader) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await reader.on_bytes(message["bytes"])
            elif message.get("text") is not None:
                await reader.on_text(message["text"])
