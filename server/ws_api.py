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
audio sink, so adapters stay thin.

The socket is read all the time, so a control message never waits behind audio
and a client that leaves is noticed at once. Audio the speech queue has no room
for waits in a small per-connection buffer that a pump task feeds into the
queue as playback frees space. A sender more than that buffer ahead of a full
queue (5 minutes of speech) gets an error event and close code 1013; a message
over the size limit gets an error event and close code 1009.

/api/sessions/{id}/events sends the same events, for viewers such as the web page.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from engines.audio.ingest import PLAYBACK_RATE, PcmStream
from engines.errors import FacecastError, InvalidAudioError

from .auth import websocket_token_ok
from .errors import UnknownSessionError
from .session import Session
from .speech_queue import Utterance
from .state import state_of

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter()

_MAX_TEXT_CHARS = 64 * 1024  # a control message is a few hundred bytes
_PENDING_SECONDS = 30.0  # audio held per connection while the speech queue is full
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013
CLOSE_UNSUPPORTED = 1003


class _Refusal(Exception):
    """Ends the connection: an error event, then this close code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


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


async def _send_event(websocket: WebSocket, event: dict[str, Any]) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the client left
        await websocket.send_text(json.dumps(event))


async def _forward_events(websocket: WebSocket, session: Session) -> None:
    queue = session.subscribe()
    try:
        while True:
            event = await queue.get()
            await websocket.send_text(json.dumps(event))
            if event["type"] == "closed":
                await websocket.close(code=1000, reason="session ended")
                return
    except (WebSocketDisconnect, RuntimeError, OSError):
        return  # the client left; the reader notices and cleans up
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
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
    except WebSocketDisconnect:
        pass
    finally:
        forward.cancel()
        session.clients -= 1


class _AudioPump:
    """Moves a connection's audio into the session's speech queue as space allows.

    Items are (utterance, samples), or (utterance, None) for "this utterance ends
    here", kept in arrival order so an end never overtakes its own audio.
    """

    def __init__(self, session: Session, max_samples: int) -> None:
        self.session = session
        self.max_samples = max_samples
        self._items: collections.deque[tuple[Utterance, np.ndarray | None]] = collections.deque()
        self._queued_in_items = 0
        self._in_flight_left = 0
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"pump-{session.id}")

    @property
    def pending_samples(self) -> int:
        """Samples received but not yet in the speech queue."""
        return self._queued_in_items + self._in_flight_left

    def add(self, utterance: Utterance, samples: np.ndarray | None) -> None:
        if samples is not None:
            self._queued_in_items += len(samples)
        self._items.append((utterance, samples))
        self._wake.set()

    def clear(self) -> None:
        """Forget what is not queued yet; a push in flight stops at its utterance's cut."""
        self._items.clear()
        self._queued_in_items = 0
        self._in_flight_left = 0

    async def drain(self) -> None:
        """Queue everything added so far (until the session closes), then stop."""
        self._stopping = True
        self._wake.set()
        await self._task

    async def _run(self) -> None:
        while self._items or not self._stopping:
            if not self._items:
                self._wake.clear()
                await self._wake.wait()
                continue
            utterance, samples = self._items.popleft()
            if samples is None:
                self.session.end_stream(utterance)
                continue
            self._queued_in_items -= len(samples)
            await self._push(utterance, samples)

    async def _push(self, utterance: Utterance, samples: np.ndarray) -> None:
        """Queue `samples` in pieces that fit, waiting for playback to free space."""
        offset = 0
        while offset < len(samples) and not self.session.closed:
            if utterance.interrupted or utterance.ended:
                break  # barge-in cut it: the rest of its audio is dropped on purpose
            self._in_flight_left = len(samples) - offset
            room = self.session.speech.space_samples
            if room == 0:
                await self.session.wait_for_space()
                continue
            piece = samples[offset : offset + room]
            self.session.push_stream(utterance, piece)
            offset += len(piece)
        self._in_flight_left = 0


class _StreamReader:
    """One /stream connection: PCM into streamed utterances, control messages to the session."""

    def __init__(
        self, websocket: WebSocket, session: Session, sample_rate: int | None, max_bytes: int
    ) -> None:
        self.websocket = websocket
        self.session = session
        self.max_bytes = max_bytes
        self.pcm = PcmStream(sample_rate) if sample_rate else None
        self.utterance: Utterance | None = None
        self.pump = _AudioPump(session, int(_PENDING_SECONDS * PLAYBACK_RATE))

    async def error(self, message: str) -> None:
        await _send_event(self.websocket, {"type": "error", "message": message})

    async def on_bytes(self, data: bytes) -> None:
        if len(data) > self.max_bytes:
            raise _Refusal(
                CLOSE_TOO_BIG,
                f"a binary message of {len(data)} bytes is over the {self.max_bytes} byte limit; "
                "send audio in chunks of 20-200 ms",
            )
        if self.pcm is None:
            await self.error(
                "declare the sample rate first: ?sample_rate=16000 in the URL or "
                '{"type": "start", "sample_rate": 16000}'
            )
            return
        samples = self.pcm.push(data)
        if self.pump.pending_samples + len(samples) > self.pump.max_samples:
            queued = self.session.speech.queued_samples / PLAYBACK_RATE
            raise _Refusal(
                CLOSE_TRY_LATER,
                f"the speech queue is full ({queued:.0f} s queued) and this sender is "
                f"{_PENDING_SECONDS:.0f} s further ahead; stream no faster than playback "
                "once minutes are queued, or interrupt first",
            )
        utterance = self.utterance
        if utterance is None or utterance.interrupted or utterance.ended:
            utterance = self.utterance = self.session.open_stream("websocket")
        self.pump.add(utterance, samples)

    async def on_text(self, text: str) -> None:
        if len(text) > _MAX_TEXT_CHARS:
            raise _Refusal(CLOSE_TOO_BIG, f"a text message is over {_MAX_TEXT_CHARS} characters")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if not isinstance(kind, str):
            await self.error(f"expected a JSON object with a string 'type', got {text[:80]!r}")
            return
        handler = {
            "start": self._start,
            "end_of_utterance": self._end_of_utterance,
            "interrupt": self._interrupt,
            "controls": self._controls,
        }.get(kind)
        if handler is None:
            await self.error(
                f"unknown message type {kind[:40]!r}; "
                "use start, end_of_utterance, interrupt, controls"
            )
            return
        try:
            await handler(message)
        except FacecastError as exc:
            await self.error(str(exc))

    async def _start(self, message: dict[str, Any]) -> None:
        rate = message.get("sample_rate")
        if isinstance(rate, bool) or not isinstance(rate, int):
            raise InvalidAudioError(f"sample_rate must be an integer such as 16000, got {rate!r}")
        self.pcm = PcmStream(rate)

    async def _end_of_utterance(self, message: dict[str, Any]) -> None:
        utterance = self.utterance
        if utterance is None:
            return
        if self.pcm is not None:
            tail = self.pcm.flush()
            if len(tail):
                self.pump.add(utterance, tail)
        self.pump.add(utterance, None)
        self.utterance = None

    async def _interrupt(self, message: dict[str, Any]) -> None:
        self.pump.clear()  # audio not yet queued belongs to the speech being cut
        self.session.interrupt()
        self.utterance = None

    async def _controls(self, message: dict[str, Any]) -> None:
        values = {k: v for k, v in message.items() if k != "type"}
        controls = await self.session.set_controls(values)
        await _send_event(self.websocket, {"type": "controls", **controls.to_dict()})

    async def finish(self, refused: bool) -> None:
        """The connection ended: what came plays (all of it, unless it was refused)."""
        if refused:
            self.pump.clear()
        if self.utterance is not None:
            self.pump.add(self.utterance, None)
        await self.pump.drain()


def _sample_rate(websocket: WebSocket) -> int | None:
    rate = websocket.query_params.get("sample_rate")
    if not rate:
        return None
    try:
        return int(rate)
    except ValueError:
        return -1  # PcmStream refuses it with the list of rates


@router.websocket("/sessions/{session_id}/stream")
async def stream(websocket: WebSocket, session_id: str) -> None:
    session = await _open(websocket, session_id)
    if session is None:
        return
    max_bytes = state_of(websocket).config.max_ws_message_bytes
    try:
        reader = _StreamReader(websocket, session, _sample_rate(websocket), max_bytes)
    except FacecastError as exc:
        await _send_event(websocket, {"type": "error", "message": str(exc)})
        await websocket.close(code=CLOSE_UNSUPPORTED, reason="unsupported sample rate")
        return
    session.clients += 1
    forward = asyncio.create_task(_forward_events(websocket, session))
    refused = False
    try:
        await _read_loop(websocket, reader)
    except _Refusal as refusal:
        refused = True
        await reader.error(str(refusal))
        with contextlib.suppress(RuntimeError):
            await websocket.close(code=refusal.code, reason=str(refusal)[:120])
    finally:
        forward.cancel()
        try:
            await reader.finish(refused)
        finally:
            session.clients -= 1


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
