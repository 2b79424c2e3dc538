"""A fuzz layer against a live server: random and mutated control messages, PCM streams,
SDP offers and multipart uploads (hypothesis, bounded in examples and derandomized so
CI sees the same cases every run).

The property everywhere: the answer is a 2xx/4xx or a clean close with a known code,
the server still answers /api/health, and its log holds no traceback.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.abuse import log_has_traceback, offer_sdp, server_answers
from tests.live import LiveServer

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CLEAN_CLOSES = {1000, 1003, 1008, 1009, 1013}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
control_keys = st.sampled_from(
    [
        "type",
        "sample_rate",
        "gaze_yaw",
        "gaze_pitch",
        "head_distance",
        "emotion",
        "emotion_strength",
    ]
)
messages = st.dictionaries(control_keys | st.text(max_size=8), json_values, max_size=5).map(
    lambda d: {"type": d.get("type")} | d
) | st.fixed_dictionaries(
    {"type": st.sampled_from(["start", "end_of_utterance", "interrupt", "controls", "dance"])},
    optional={k: json_values for k in ["sample_rate", "gaze_yaw", "emotion", "head_distance"]},
)


@pytest.fixture(scope="module")
def session_id(hardened_server: LiveServer) -> Iterator[str]:
    """A session kept alive for the whole module by a listening /events client."""
    with httpx.Client(base_url=hardened_server.url, timeout=30) as api:
        created = api.post("/api/sessions", json={})
        assert created.status_code == 201, created.text
        session = created.json()["id"]
        events_url = "ws" + hardened_server.url[len("http") :] + f"/api/sessions/{session}/events"
        with connect(events_url, open_timeout=10) as listener:
            reader = threading.Thread(target=_read_until_closed, args=(listener,), daemon=True)
            reader.start()
            yield session
        api.delete(f"/api/sessions/{session}")


def _read_until_closed(socket: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            socket.recv()


def _stream(server: LiveServer, session_id: str, query: str = "") -> ClientConnection:
    url = "ws" + server.url[len("http") :] + f"/api/sessions/{session_id}/stream{query}"
    return connect(url, open_timeout=10, close_timeout=5)


def _drain(socket: ClientConnection, seconds: float = 0.05) -> None:
    """Read what the server says back, until it goes quiet; a close must be a clean one."""
    try:
        while True:
            reply = socket.recv(timeout=seconds)
            if isinstance(reply, str):
                assert isinstance(json.loads(reply), dict)
    except TimeoutError:
        return
    except ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code in CLEAN_CLOSES, closed
        raise


def _healthy(server: LiveServer) -> None:
    assert server_answers(server)
    assert not log_has_traceback(server), server.log()


@FUZZ
@given(batch=st.lists(messages | st.text(max_size=200), min_size=1, max_size=6))
def test_fuzzed_control_messages(
    hardened_server: LiveServer, session_id: str, batch: list[object]
) -> None:
    with _stream(hardened_server, session_id, "?sample_rate=16000") as socket:
        try:
            for message in batch:
                socket.send(message if isinstance(message, str) else json.dumps(message))
                _drain(socket)
        except ConnectionClosed:
            pass
    _healthy(hardened_server)


@FUZZ
@given(
    rate=st.sampled_from(
        ["", "?sample_rate=16000", "?sample_rate=48000", "?sample_rate=7", "?sample_rate=x"]
    ),
    chunks=st.lists(st.binary(max_size=3000), min_size=1, max_size=8),
    end=st.booleans(),
)
def test_fuzzed_pcm_streams(
    hardened_server: LiveServer, session_id: str, rate: str, chunks: list[bytes], end: bool
) -> None:
    with _stream(hardened_server, session_id, rate) as socket:
        try:
            for chunk in chunks:
                socket.send(chunk)
            if end:
                socket.send(json.dumps({"type": "end_of_utterance"}))
            _drain(socket)
        except ConnectionClosed:
            pass
    _healthy(hardened_server)


@pytest.fixture(scope="module")
def offer_lines() -> list[str]:
    return offer_sdp().split("\r\n")


sdp_edits = st.lists(
    st.tuples(
        st.sampled_from(["drop", "duplicate", "replace", "truncate"]),
        st.integers(0, 200),
        st.text(max_size=60),
    ),
    min_size=1,
    max_size=4,
)


def _mutate(lines: list[str], edits: list[tuple[str, int, str]]) -> str:
    lines = list(lines)
    for kind, where, text in edits:
        index = where % max(len(lines), 1)
        if kind == "drop" and lines:
            del lines[index]
        elif kind == "duplicate" and lines:
            lines.insert(index, lines[index])
        elif kind == "replace" and lines:
            lines[index] = text
        elif kind == "truncate":
            lines = lines[:index]
    return "\r\n".join(lines)


@FUZZ
@given(edits=sdp_edits)
def test_fuzzed_sdp_offers(
    hardened_server: LiveServer, session_id: str, offer_lines: list[str], edits: list
) -> None:
    sdp = _mutate(offer_lines, edits)
    with httpx.Client(base_url=hardened_server.url, timeout=30) as api:
        response = api.post(f"/api/sessions/{session_id}/offer", json={"sdp": sdp})
        assert response.status_code in (200, 400, 413), response.text
        whep = api.post(
            f"/whep/sessions/{session_id}", content=sdp, headers={"Content-Type": "application/sdp"}
        )
        assert whep.status_code in (201, 400, 413, 415), whep.text
        if whep.status_code == 201:
            api.delete(whep.headers["Location"])
    _healthy(hardened_server)


image_heads = st.sampled_from(
    [b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP", b"BM"]
)


@FUZZ
@given(
    head=image_heads,
    body=st.binary(max_size=4000),
    filename=st.text(max_size=300),
    content_type=st.sampled_from(["image/png", "text/html", "image/svg+xml", "application/json"]),
)
def test_fuzzed_portrait_uploads(
    hardened_server: LiveServer, head: bytes, body: bytes, filename: str, content_type: str
) -> None:
    with httpx.Client(base_url=hardened_server.url, timeout=30) as api:
        response = api.post(
            "/api/portraits", files={"file": (filename or "x", head + body, content_type)}
        )
        assert response.status_code in (400, 413, 415, 422, 429), response.text
        assert isinstance(response.json()["detail"], (str, list))
    _healthy(hardened_server)
