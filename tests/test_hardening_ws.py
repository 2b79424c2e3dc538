"""Hardening, streaming side: WebSocket floods and junk, stalled senders, speech synthesis
shared fairly, audio files that must fit the queue, and loopback-only ICE in the tests.

Against the real `facecast serve` of the hardened_server fixture (20 s speech queue,
1 MiB WebSocket messages). Each test failed against the server before its fix.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from server.client import FacecastClient
from tests.conftest import TEST_TOKEN
from tests.live import LiveServer
from tests.speech import write_wav

pytestmark = pytest.mark.slow

RATE = 48000


def _ws(server: LiveServer, path: str) -> str:
    return "ws" + server.url[len("http") :] + path


def _pcm_seconds(seconds: float, rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    return (tone * 32767).astype("<i2").tobytes()


async def _next_event(socket: Any, kind: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {kind} event in {timeout_s} s")
        event = json.loads(await asyncio.wait_for(socket.recv(), left))
        if event.get("type") == kind:
            return event


async def _session(client: FacecastClient) -> str:
    return (await client.create_session())["id"]


# ---- 2: one huge message; a flood ahead of a full queue ---------------------------------


async def _huge_message(server: LiveServer) -> dict[str, Any]:
    async with FacecastClient(server.url) as client:
        session_id = await _session(client)
        url = _ws(server, f"/api/sessions/{session_id}/stream?sample_rate=16000")
        codes = {}
        for size in (1536 * 1024, 10 * 1024 * 1024):  # over the app's limit; over uvicorn's
            async with websockets.connect(url, max_size=None) as socket:
                await socket.send(b"\x00\x01" * (size // 2))
                events = []
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        events.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
                codes[size] = (closed.value.rcvd.code if closed.value.rcvd else None, events)
        info = await client.request("GET", f"/api/sessions/{session_id}")
        await client.delete_session(session_id)
        return {"codes": codes, "info": info}


def test_a_huge_pcm_message_is_refused_with_a_close_code(hardened_server: LiveServer) -> None:
    result = asyncio.run(_huge_message(hardened_server))
    code, events = result["codes"][1536 * 1024]
    assert code == 1009
    assert any(e["type"] == "error" and "limit" in e["message"] for e in events), events
    assert result["codes"][10 * 1024 * 1024][0] == 1009
    assert result["info"]["queued_speech_s"] == 0  # nothing of it was queued


async def _flood_then_control(server: LiveServer) -> dict[str, Any]:
    async with FacecastClient(server.url) as client:
        session_id = await _session(client)
        url = _ws(server, f"/api/sessions/{session_id}/stream?sample_rate={RATE}")
        second = _pcm_seconds(1.0)
        async with websockets.connect(url) as socket:
            for _ in range(30):  # 30 s of audio at once: the 20 s queue is full, 10 s wait
                await socket.send(second)
            await socket.send(json.dumps({"type": "controls", "emotion": "happy"}))
            reply = await _next_event(socket, "controls", timeout_s=5)
            queued = (await client.request("GET", f"/api/sessions/{session_id}"))["queued_speech_s"]
            await socket.send(json.dumps({"type": "interrupt"}))
            finished = await _next_event(socket, "playback_finished", timeout_s=5)
            after = (await client.request("GET", f"/api/sessions/{session_id}"))["queued_speech_s"]
        # A sender more than the pending buffer ahead of a full queue is cut off cleanly.
        async with websockets.connect(url) as socket:
            for _ in range(60):
                await socket.send(second)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(socket.recv(), 10)
        alive = await client.request("GET", f"/api/sessions/{session_id}")
        await client.delete_session(session_id)
        return {
            "reply": reply,
            "queued": queued,
            "finished": finished,
            "after": after,
            "close": closed.value.rcvd.code if closed.value.rcvd else None,
            "alive": alive,
        }


def test_control_messages_never_wait_behind_audio(hardened_server: LiveServer) -> None:
    result = asyncio.run(_flood_then_control(hardened_server))
    assert result["reply"]["emotion"] == "happy"  # answered while 10 s of audio waited
    assert 19 <= result["queued"] <= 20.5
    assert result["finished"]["interrupted"] is True
    assert result["after"] == 0
    assert result["close"] == 1013
    assert result["alive"]["id"]


# ---- 9: malformed JSON, binary where text belongs -----------------------------------------


async def _junk(server: LiveServer) -> dict[str, Any]:
    async with FacecastClient(server.url) as client:
        session_id = await _session(client)
        url = _ws(server, f"/api/sessions/{session_id}/stream")
        errors = []
        async with websockets.connect(url) as socket:
            for junk in (
                '{"type": []}',
                '{"type": {}}',
                '{"type": "start", "sample_rate": null}',
                '{"type": "start", "sample_rate": 1e400}',
                '{"type": "start", "sample_rate": "16000"}',
                '{"type": "controls", "gaze_yaw": 1e400}',
                "[" * 60000,
                "null",
                '"type"',
            ):
                await socket.send(junk)
                errors.append(await _next_event(socket, "error", timeout_s=5))
            await socket.send(json.dumps({"type": "controls", "emotion": "sad"}))
            still_open = await _next_event(socket, "controls", timeout_s=5)
        events_url = _ws(server, f"/api/sessions/{session_id}/events")
        async with websockets.connect(events_url) as socket:
            await socket.send(b"\x00\x01binary where nothing is expected")
            await socket.send("text where nothing is expected")
            stats = await _next_event(socket, "stats", timeout_s=5)  # still served
        await client.delete_session(session_id)
        return {"errors": errors, "open": still_open, "stats": stats}


def test_malformed_websocket_messages_get_error_events(hardened_server: LiveServer) -> None:
    result = asyncio.run(_junk(hardened_server))
    assert len(result["errors"]) == 9
    assert all(isinstance(e["message"], str) and e["message"] for e in result["errors"])
    assert "sample_rate" in result["errors"][2]["message"]
    assert result["open"]["emotion"] == "sad"
    assert result["stats"]["type"] == "stats"
    assert "Traceback" not in hardened_server.log()


# ---- 12: a sender that stalls mid-utterance -----------------------------------------------


async def _stalled_then_speak(server: LiveServer) -> dict[str, Any]:
    async with FacecastClient(server.url) as client:
        session_id = await _session(client)
        stream_url = _ws(server, f"/api/sessions/{session_id}/stream?sample_rate={RATE}")
        async with (
            websockets.connect(_ws(server, f"/api/sessions/{session_id}/events")) as events,
            websockets.connect(stream_url) as stalled,
        ):
            await stalled.send(_pcm_seconds(0.2))  # ...and then nothing, socket left open
            await asyncio.sleep(0.5)
            spoken = await client.speak(session_id, "Hello there.")
            deadline = time.monotonic() + 15
            started = None
            while time.monotonic() < deadline and started is None:
                event = json.loads(await asyncio.wait_for(events.recv(), 15))
                if event.get("type") == "playback_started" and event.get("source") == "tts":
                    started = event
            await client.delete_session(session_id)
        return {"spoken": spoken, "started": started}


def test_a_stalled_stream_does_not_block_later_speech(hardened_server: LiveServer) -> None:
    result = asyncio.run(_stalled_then_speak(hardened_server))
    assert result["started"] is not None, "the TTS utterance waited behind the stalled stream"
    assert result["started"]["utterance_id"] == result["spoken"]["utterance_id"]


# ---- 14: speech synthesis is serialized per session and fair across sessions --------------


async def _fair_speech(server: LiveServer) -> dict[str, Any]:
    long_text = "We go on and on about the weather, and then we stop. " * 5  # ~270 chars
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=120, headers=headers) as http:
        busy = (await http.post("/api/sessions", json={})).json()["id"]
        other = (await http.post("/api/sessions", json={})).json()["id"]
        done: list[tuple[str, int]] = []

        async def speak(session_id: str, text: str, label: str) -> None:
            response = await http.post(f"/api/sessions/{session_id}/speak", json={"text": text})
            done.append((label, response.status_code))

        flood = [asyncio.create_task(speak(busy, long_text, f"busy{i}")) for i in range(6)]
        await asyncio.sleep(0.05)
        await speak(other, "hi", "other")
        await asyncio.gather(*flood)
        for session_id in (busy, other):
            await http.delete(f"/api/sessions/{session_id}")
    return {"done": done}


def test_speech_synthesis_is_bounded_and_fair(token_server: LiveServer) -> None:
    # The token server queues the default 5 minutes of speech: room for all of it.
    done = asyncio.run(_fair_speech(token_server))["done"]
    statuses = dict(done)
    busy = [label for label, _ in done if label.startswith("busy")]
    assert statuses["other"] == 202
    # One job per session at a time, four more waiting: the rest are refused at once.
    assert sorted(statuses[b] for b in busy).count(429) == 1, done
    accepted = [label for label, status in done if label.startswith("busy") and status == 202]
    order = [label for label, _ in done]
    # The other session's "hi" is not stuck behind the busy session's queue.
    assert order.index("other") < order.index(accepted[1]), done


# ---- 15: uploaded audio must fit the queue; the limit is said before decoding ---------------


def test_audio_files_must_fit_the_speech_queue(hardened_server: LiveServer, tmp_path: Path) -> None:
    long = write_wav(tmp_path / "long.wav", np.zeros(25 * 16000, dtype=np.float32) + 0.01, 16000)
    medium = write_wav(tmp_path / "medium.wav", np.full(12 * 16000, 0.01, np.float32), 16000)
    with httpx.Client(base_url=hardened_server.url, timeout=60) as api:
        session_id = api.post("/api/sessions", json={}).json()["id"]
        try:
            url = f"/api/sessions/{session_id}/audio"
            response = api.post(url, files={"file": ("long.wav", long.read_bytes())})
            assert response.status_code == 413 and "limit is 20 s" in response.json()["detail"]
            first = api.post(url, files={"file": ("medium.wav", medium.read_bytes())})
            assert first.status_code == 202, first.text
            second = api.post(url, files={"file": ("medium.wav", medium.read_bytes())})
            assert second.status_code == 429 and "free" in second.json()["detail"]
        finally:
            api.delete(f"/api/sessions/{session_id}")


# ---- 19: test peers use loopback only and no STUN server ---------------------------------------


async def _peer_candidates(server: LiveServer) -> dict[str, Any]:
    async with FacecastClient(server.url) as client:
        session_id = await _session(client)
        viewer = await client.watch(session_id)
        offer = viewer.pc.localDescription.sdp
        answer = viewer.pc.remoteDescription.sdp
        # What aioice was told to ask: a STUN server here would mean traffic off the machine.
        stun_servers = [
            t.receiver.transport.transport.iceGatherer._connection.stun_server
            for t in viewer.pc.getTransceivers()
        ]
        await viewer.close()
        await client.delete_session(session_id)
    return {"offer": offer, "answer": answer, "stun_servers": stun_servers}


def _candidate_addresses(sdp: str) -> list[tuple[str, str]]:
    found = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:"):
            fields = line.split()
            found.append((fields[4], fields[7]))  # address, type
    return found


def test_test_peers_offer_loopback_candidates_only(hardened_server: LiveServer) -> None:
    result = asyncio.run(_peer_candidates(hardened_server))
    assert result["stun_servers"] and not any(result["stun_servers"])  # no public STUN fallback
    for side in ("offer", "answer"):
        addresses = _candidate_addresses(result[side])
        assert addresses, f"the {side} has no candidates"
        assert all(address == "127.0.0.1" and kind == "host" for address, kind in addresses), (
            side,
            addresses,
        )
