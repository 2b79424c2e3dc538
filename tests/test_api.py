"""The HTTP and WebSocket API against a real server: happy paths, and bad input that must
get a clear error and leave the server as it was."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from engines.paths import default_portrait_path
from server.app import create_app
from server.config import ServerConfig
from tests.live import LiveServer
from tests.speech import write_wav

pytestmark = pytest.mark.slow


@pytest.fixture()
def api(live_server: LiveServer) -> httpx.Client:
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        yield client


@pytest.fixture()
def session_id(api: httpx.Client) -> str:
    response = api.post("/api/sessions", json={})
    assert response.status_code == 201, response.text
    yield response.json()["id"]
    api.delete(f"/api/sessions/{response.json()['id']}")


def _detail(response: httpx.Response) -> str:
    return str(response.json()["detail"])


def _ws_url(live_server: LiveServer, path: str) -> str:
    return "ws" + live_server.url[len("http") :] + path


def test_unknown_ids_get_404_with_a_message(api: httpx.Client) -> None:
    for method, path in [
        ("GET", "/api/sessions/nope"),
        ("DELETE", "/api/sessions/nope"),
        ("POST", "/api/sessions/nope/interrupt"),
        ("GET", "/api/portraits/nope/image"),
    ]:
        response = api.request(method, path)
        assert response.status_code == 404, (path, response.text)
        assert "nope" in _detail(response)
    response = api.post("/api/sessions/nope/speak", json={"text": "hi"})
    assert response.status_code == 404
    response = api.post("/api/sessions", json={"portrait_id": "nope"})
    assert response.status_code == 404 and "GET /api/portraits" in _detail(response)


def test_malformed_offers_are_rejected_and_the_session_survives(
    api: httpx.Client, session_id: str
) -> None:
    garbage = api.post(f"/api/sessions/{session_id}/offer", json={"sdp": "v=0\r\nnonsense"})
    assert garbage.status_code == 400 and "offer" in _detail(garbage)
    truncated = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    )
    response = api.post(f"/api/sessions/{session_id}/offer", json={"sdp": truncated})
    assert response.status_code == 400 and "malformed" in _detail(response)
    answer = api.post(f"/api/sessions/{session_id}/offer", json={"sdp": "x", "type": "answer"})
    assert answer.status_code == 400
    whep = api.post("/whep", content=b"v=0\r\n", headers={"Content-Type": "application/sdp"})
    assert whep.status_code == 400
    wrong_type = api.post("/whep", content=b"{}", headers={"Content-Type": "application/json"})
    assert wrong_type.status_code == 415 and "application/sdp" in _detail(wrong_type)
    sessions = api.get("/api/sessions").json()
    assert [s["id"] for s in sessions] == [session_id]  # nothing leaked by the failed WHEP
    assert api.get(f"/api/sessions/{session_id}").json()["viewers"] == 0


def test_bad_uploads_get_clear_errors(api: httpx.Client, session_id: str, tmp_path: Path) -> None:
    text = api.post("/api/portraits", files={"file": ("notes.txt", b"hello there", "text/plain")})
    assert text.status_code == 415 and "image" in _detail(text).lower()
    blank = io.BytesIO()
    Image.new("RGB", (400, 400), (120, 140, 160)).save(blank, format="PNG")
    noface = api.post("/api/portraits", files={"file": ("wall.png", blank.getvalue())})
    assert noface.status_code == 422 and "face" in _detail(noface).lower()
    huge = api.post("/api/portraits", files={"file": ("big.jpg", b"\xff" * (21 * 1024 * 1024))})
    assert huge.status_code == 413 and "limit" in _detail(huge)
    audio = api.post(
        f"/api/sessions/{session_id}/audio", files={"file": ("speech.wav", b"RIFF0000WAVEjunk")}
    )
    assert audio.status_code == 415 and "speech.wav" in _detail(audio)
    empty = api.post(f"/api/sessions/{session_id}/audio", files={"file": ("a.wav", b"")})
    assert empty.status_code == 400
    blank_text = api.post(f"/api/sessions/{session_id}/speak", json={"text": "   "})
    assert blank_text.status_code == 422 and "empty" in _detail(blank_text)
    assert [p["id"] for p in api.get("/api/portraits").json()] == ["la_velata"]


def test_uploads_that_work(api: httpx.Client, session_id: str, tmp_path: Path) -> None:
    mirrored = io.BytesIO()
    Image.open(default_portrait_path()).transpose(Image.FLIP_LEFT_RIGHT).save(mirrored, "PNG")
    added = api.post("/api/portraits", files={"file": ("mirror.png", mirrored.getvalue())})
    assert added.status_code == 201, added.text
    portrait_id = added.json()["id"]
    assert portrait_id in [p["id"] for p in api.get("/api/portraits").json()]
    image = api.get(f"/api/portraits/{portrait_id}/image")
    assert image.status_code == 200
    # Stored re-encoded by the server (never the client's bytes), losslessly for a PNG.
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    served = np.asarray(Image.open(io.BytesIO(image.content)).convert("RGB"))
    sent = np.asarray(Image.open(io.BytesIO(mirrored.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(served, sent)
    switched = api.put(f"/api/sessions/{session_id}/portrait", json={"portrait_id": portrait_id})
    assert switched.status_code == 200 and switched.json()["portrait_id"] == portrait_id

    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(22050) / 22050).astype(np.float32)
    wav = write_wav(tmp_path / "tone.wav", tone, 22050)
    queued = api.post(
        f"/api/sessions/{session_id}/audio", files={"file": ("t.wav", wav.read_bytes())}
    )
    assert queued.status_code == 202 and queued.json()["duration_s"] == pytest.approx(1.0, abs=0.01)
    info = api.get(f"/api/sessions/{session_id}").json()
    assert info["queued_speech_s"] > 0 or info["speaking"]


def test_controls_validate_and_apply(api: httpx.Client, session_id: str) -> None:
    url = f"/api/sessions/{session_id}/controls"
    bad = api.post(url, json={"emotion": "smug"})
    assert bad.status_code == 422 and "happy" in _detail(bad)
    far = api.post(url, json={"head_distance": 5})
    assert far.status_code == 422 and "head_distance" in _detail(far)
    unknown = api.post(url, json={"volume": 1})
    assert unknown.status_code == 422 and "gaze_yaw" in _detail(unknown)
    ok = api.post(url, json={"emotion": "happy", "gaze_yaw": 0.2})
    assert ok.status_code == 200
    assert ok.json()["emotion"] == "happy" and ok.json()["gaze_yaw"] == 0.2
    cleared = api.post(url, json={"gaze_yaw": None}).json()
    assert cleared["gaze_yaw"] is None and cleared["emotion"] == "happy"
    assert api.get(f"/api/sessions/{session_id}").json()["controls"]["emotion"] == "happy"


async def _websocket_errors(live_server: LiveServer, session_id: str) -> list:
    url = _ws_url(live_server, f"/api/sessions/{session_id}/stream")
    results = []
    async with websockets.connect(url + "?sample_rate=11025") as socket:
        results.append(json.loads(await socket.recv()))
        await asyncio.sleep(0.2)
        results.append(socket.close_code)
    async with websockets.connect(url) as socket:
        await socket.send(b"\x00\x01" * 100)  # no rate declared yet
        results.append(json.loads(await socket.recv()))
        await socket.send("{not json")
        results.append(json.loads(await socket.recv()))
        await socket.send(json.dumps({"type": "start", "sample_rate": 24000}))
        for size in (3, 5, 4801, 1):  # odd byte counts: nothing lost, no error
            await socket.send(b"\x10" * size)
        await socket.send(json.dumps({"type": "end_of_utterance"}))
        await socket.send(json.dumps({"type": "dance"}))
        results.append(json.loads(await socket.recv()))
    try:
        async with websockets.connect(_ws_url(live_server, "/api/sessions/nope/events")) as socket:
            await socket.recv()
    except websockets.ConnectionClosed as exc:
        results.append(exc.rcvd.code if exc.rcvd else None)
    except websockets.InvalidStatus as exc:
        results.append(exc.response.status_code)
    return results


def test_websocket_rejects_bad_rates_and_messages_clearly(
    live_server: LiveServer, session_id: str
) -> None:
    rate, closed, no_rate, bad_json, unknown, missing = asyncio.run(
        _websocket_errors(live_server, session_id)
    )
    assert rate["type"] == "error" and "11025" in rate["message"] and "16000" in rate["message"]
    assert closed == 1003
    assert "sample_rate" in no_rate["message"]
    assert "JSON" in bad_json["message"]
    assert "dance" in unknown["message"] and "end_of_utterance" in unknown["message"]
    assert missing in (1008, 403)


def test_session_cap_gives_503_and_metrics_count_it(api: httpx.Client) -> None:
    existing = len(api.get("/api/sessions").json())
    created = [api.post("/api/sessions", json={}) for _ in range(3 - existing)]
    try:
        assert all(r.status_code == 201 for r in created)
        full = api.post("/api/sessions", json={})
        assert full.status_code == 503 and "limit of 3 sessions" in _detail(full)
        metrics = api.get("/metrics").text
        assert "facecast_sessions_active 3.0" in metrics
        rejected = [
            line for line in metrics.splitlines() if line.startswith("facecast_sessions_rejected")
        ]
        assert rejected and float(rejected[0].split()[-1]) >= 1
    finally:
        for response in created:
            api.delete(f"/api/sessions/{response.json()['id']}")
    again = api.post("/api/sessions", json={})  # room again
    assert again.status_code == 201
    api.delete(f"/api/sessions/{again.json()['id']}")


def test_api_token_protects_every_endpoint() -> None:
    app = create_app(ServerConfig(api_token="s3cret"))
    client = TestClient(app, base_url="http://localhost")  # no lifespan: no engines needed
    for method, path in [
        ("GET", "/api/health"),
        ("GET", "/api/sessions"),
        ("POST", "/api/sessions"),
        ("GET", "/metrics"),
        ("POST", "/whep"),
        ("GET", "/api/portraits"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 401, path
        assert "FACECAST_API_TOKEN" in response.json()["detail"]
    assert client.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/api/sessions/x/events"),
    ):
        pass
    assert refused.value.code == 1008
    assert client.get("/api/portraits?token=s3cret").status_code == 200
    health = client.get("/api/health", headers={"Authorization": "Bearer s3cret"}).json()
    assert health["backend"] == "torch-cpu" and health["motion"] == "learned"
    assert health["motion_backend"] == "torch-cpu"
    assert (
        client.get("/api/portraits", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    )


def test_cors_allows_only_configured_origins() -> None:
    client = TestClient(
        create_app(ServerConfig(cors_origins=("http://app.example",))), base_url="http://localhost"
    )
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = client.options("/api/sessions", headers={"Origin": "http://app.example", **preflight})
    assert allowed.headers.get("access-control-allow-origin") == "http://app.example"
    other = client.options("/api/sessions", headers={"Origin": "http://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers
    closed = TestClient(create_app(ServerConfig()), base_url="http://localhost")  # no CORS
    response = closed.options(
        "/api/sessions", headers={"Origin": "http://app.example", **preflight}
    )
    assert "access-control-allow-origin" not in response.headers


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_ended_sessions_release_their_memory(api: httpx.Client, live_server: LiveServer) -> None:
    def cycle() -> None:
        ids = [api.post("/api/sessions", json={}).json()["id"] for _ in range(3)]
        for session_id in ids:
            assert api.delete(f"/api/sessions/{session_id}").status_code == 204

    cycle()  # the first sessions warm allocator pools and caches
    settled = _rss_mb(live_server.process.pid)
    for _ in range(4):
        cycle()
    grown = _rss_mb(live_server.process.pid) - settled
    # Twelve more sessions (each holds a renderer of tens of MB while alive) leave no trace.
    assert grown < 40, f"server memory grew {grown:.0f} MB over 12 ended sessions"


def test_errors_carry_their_status_and_anything_else_is_a_500() -> None:
    from engines.errors import FacecastError, InvalidControlsError, NoFaceError
    from server.errors import SpeechQueueFullError, UnknownSessionError, status_of

    app = create_app(ServerConfig())
    # No blanket handler turns an internal ValueError (a bug) into a client error.
    assert ValueError not in app.exception_handlers
    assert OverflowError not in app.exception_handlers
    assert status_of(UnknownSessionError("x")) == 404
    assert status_of(SpeechQueueFullError("full")) == 429
    assert status_of(InvalidControlsError("bad")) == 422
    assert status_of(NoFaceError("none")) == 422
    assert status_of(FacecastError("unexpected")) == 500
