"""Hardening, HTTP side: what a single cheap request could do to a real `facecast serve`.

Each test is a regression test for one finding of the hardening review (issue 11):
it failed against the server before the fix. All traffic is loopback.
"""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.abuse import (
    face_png,
    offer_sdp,
    raw_request,
    server_answers,
    with_candidates,
    without_candidates,
)
from tests.conftest import TEST_TOKEN
from tests.live import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture()
def api(hardened_server: LiveServer) -> httpx.Client:
    with httpx.Client(base_url=hardened_server.url, timeout=60) as client:
        yield client


def _wait_until(condition, timeout_s: float = 20.0, step_s: float = 0.25) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return bool(condition())


def _sessions(api: httpx.Client) -> list[dict]:
    return api.get("/api/sessions").json()


def _delete_all_sessions(api: httpx.Client) -> None:
    for session in _sessions(api):
        api.delete(f"/api/sessions/{session['id']}")


# ---- 1: peers that never connect ------------------------------------------------------


def test_whep_peers_that_never_connect_are_closed_and_free_the_cap(api: httpx.Client) -> None:
    _delete_all_sessions(api)
    sdp = without_candidates(offer_sdp())
    for _ in range(4):  # the server's cap: before the fix these four held it forever
        response = api.post("/whep", content=sdp, headers={"Content-Type": "application/sdp"})
        assert response.status_code == 201, response.text
    sessions = _sessions(api)
    assert len(sessions) == 4
    # Negotiating is not watching: no viewer, and no frame rendered for nobody.
    assert all(s["viewers"] == 0 for s in sessions), sessions
    assert all(s["stats"]["frame_time_ms_p50"] is None for s in sessions), sessions
    # The 2 s connect deadline closes each peer, and with it the session it made.
    assert _wait_until(lambda: not _sessions(api), timeout_s=15), _sessions(api)
    created = api.post("/api/sessions", json={})
    assert created.status_code == 201, created.text
    api.delete(f"/api/sessions/{created.json()['id']}")


def test_an_offer_whose_client_left_does_not_keep_its_session_alive(api: httpx.Client) -> None:
    session_id = api.post("/api/sessions", json={}).json()["id"]
    offer = {"sdp": without_candidates(offer_sdp()), "type": "offer"}
    answered = api.post(f"/api/sessions/{session_id}/offer", json=offer)
    assert answered.status_code == 200, answered.text
    assert api.get(f"/api/sessions/{session_id}").json()["viewers"] == 0
    # Peer closed at 2 s, then nobody watches or feeds it: reaped after the 3 s idle timeout.
    assert _wait_until(
        lambda: api.get(f"/api/sessions/{session_id}").status_code == 404, timeout_s=25
    )


# ---- 3, 10, 13: SDP size, candidates, negotiation failures, body limits ------------------


def test_offers_with_thousands_of_candidates_are_refused_before_parsing(api: httpx.Client) -> None:
    session_id = api.post("/api/sessions", json={}).json()["id"]
    try:
        crowded = with_candidates(offer_sdp(), 3500)
        response = api.post(f"/api/sessions/{session_id}/offer", json={"sdp": crowded})
        assert response.status_code == 413, response.text
        assert "3500" in response.json()["detail"] or "KB" in response.json()["detail"]
        modest = with_candidates(offer_sdp(), 100)  # under the size limit, over the count
        response = api.post("/whep", content=modest, headers={"Content-Type": "application/sdp"})
        assert response.status_code == 413 and "ICE candidates" in response.json()["detail"]
        assert len(_sessions(api)) == 1  # the refused WHEP offer made no session
        peer = api.post(f"/api/sessions/{session_id}/offer", json={"sdp": offer_sdp()}).json()
        fragment = "a=mid:0\r\n" + "\r\n".join(
            f"a=candidate:{i} 1 udp 2130706431 10.0.{i // 256}.{i % 256} 9 typ host"
            for i in range(80)
        )
        trickled = api.patch(
            f"/whep/resources/{peer['peer_id']}",
            content=fragment,
            headers={"Content-Type": "application/trickle-ice-sdpfrag"},
        )
        assert trickled.status_code == 413 and "ICE candidates" in trickled.json()["detail"]
    finally:
        api.delete(f"/api/sessions/{session_id}")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda s: s.replace("H264/90000", "H265/90000").replace("VP8/90000", "H265/90000"),
            "no codec a session can send",
        ),
        (
            lambda s: "\r\n".join(x for x in s.split("\r\n") if not x.startswith("a=setup")),
            "a=setup",
        ),
        (
            lambda s: "\r\n".join(x for x in s.split("\r\n") if not x.startswith("a=fingerprint")),
            "a=fingerprint",
        ),
        (lambda s: "hello, this is not SDP", "not an SDP offer"),
        (lambda s: "", "not an SDP offer"),
    ],
    ids=["h265-only", "no-setup", "no-fingerprint", "garbage", "empty"],
)
def test_offers_that_cannot_be_negotiated_get_a_400_that_says_why(
    api: httpx.Client,
    edit,
    expected: str,  # type: ignore[no-untyped-def]
) -> None:
    session_id = api.post("/api/sessions", json={}).json()["id"]
    try:
        sdp = edit(offer_sdp())
        response = api.post(f"/api/sessions/{session_id}/offer", json={"sdp": sdp})
        assert response.status_code == 400, response.text
        assert expected in response.json()["detail"]
        whep = api.post("/whep", content=sdp, headers={"Content-Type": "application/sdp"})
        assert whep.status_code in (400, 415), whep.text  # "" is no body: 415 for no type
        assert api.get(f"/api/sessions/{session_id}").status_code == 200
    finally:
        api.delete(f"/api/sessions/{session_id}")


def test_body_limits_hold_before_the_body_is_read(hardened_server: LiveServer) -> None:
    host = f"Host: 127.0.0.1:{hardened_server.url.rsplit(':', 1)[1]}"
    # 300 MB declared, nothing sent: the answer comes at once instead of a wait for the body.
    reply = raw_request(
        hardened_server,
        f"POST /whep HTTP/1.1\n{host}\nContent-Type: application/sdp\nContent-Length: 314572800",
    )
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    reply = raw_request(
        hardened_server,
        f"POST /api/sessions/x/offer HTTP/1.1\n{host}\nContent-Type: application/json\n"
        "Content-Length: 31457280",
    )
    assert reply.startswith("HTTP/1.1 413"), reply[:200]

    def chunks():  # type: ignore[no-untyped-def]  # a chunked upload that never says its size
        yield (
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n"
        )
        for _ in range(30):
            yield b"\x00" * (1024 * 1024)

    response = httpx.post(
        hardened_server.url + "/api/portraits",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert server_answers(hardened_server)


# ---- 4, 5, 8: portraits --------------------------------------------------------------


def test_the_portrait_store_is_bounded_and_portraits_can_be_deleted(api: httpx.Client) -> None:
    _delete_all_sessions(api)
    ids = []
    for variant in range(1, 4):  # the server keeps 2 uploads
        added = api.post("/api/portraits", files={"file": (f"v{variant}.png", face_png(variant))})
        assert added.status_code == 201, added.text
        ids.append(added.json()["id"])
        assert len(added.json()["id"]) == 32
    listed = [p["id"] for p in api.get("/api/portraits").json()]
    assert listed == ["la_velata", ids[1], ids[2]], "the least recently used upload goes first"
    assert api.get(f"/api/portraits/{ids[0]}/image").status_code == 404
    # A portrait a live session shows is never evicted.
    session = api.post("/api/sessions", json={"portrait_id": ids[1]}).json()
    added = api.post("/api/portraits", files={"file": ("v4.png", face_png(4))})
    assert added.status_code == 201, added.text
    listed = [p["id"] for p in api.get("/api/portraits").json()]
    assert ids[1] in listed and ids[2] not in listed
    assert api.delete(f"/api/portraits/{added.json()['id']}").status_code == 204
    assert api.get(f"/api/portraits/{added.json()['id']}/image").status_code == 404
    builtin = api.delete("/api/portraits/la_velata")
    assert builtin.status_code == 403 and "built-in" in builtin.json()["detail"]
    assert api.delete("/api/portraits/nope").status_code == 404
    api.delete(f"/api/sessions/{session['id']}")
    assert api.delete(f"/api/portraits/{ids[1]}").status_code == 204


def test_a_huge_sparse_png_is_refused_before_it_is_decoded(api: httpx.Client) -> None:
    buffer = io.BytesIO()
    Image.new("I;16", (9950, 9950), 1000).save(buffer, "PNG")  # 99 MP in ~200 KB
    response = api.post("/api/portraits", files={"file": ("bomb.png", buffer.getvalue())})
    assert response.status_code == 415, response.text
    assert "megapixels" in response.json()["detail"]


def test_uploads_are_stored_and_served_as_images_under_server_chosen_names(
    api: httpx.Client,
) -> None:
    face = face_png(5)
    for filename in ("evil.html", "evil.svg", "x.json", "a." + "s" * 300):
        added = api.post("/api/portraits", files={"file": (filename, face, "text/html")})
        assert added.status_code == 201, (filename, added.text)
        image = api.get(f"/api/portraits/{added.json()['id']}/image")
        assert image.headers["content-type"] == "image/png", filename
        assert image.headers["x-content-type-options"] == "nosniff"
        assert image.content.startswith(b"\x89PNG")
    listed = {p["id"]: p for p in api.get("/api/portraits").json()}
    stored = listed[added.json()["id"]]
    assert len(stored["name"]) <= 64 and stored["notes"] is not None
    served = np.asarray(Image.open(io.BytesIO(image.content)).convert("RGB"))
    assert served.shape[2] == 3
    api.delete(f"/api/portraits/{added.json()['id']}")


# ---- 6, 14: speech synthesis ----------------------------------------------------------


@pytest.mark.parametrize("voice", ["http://127.0.0.1:9/voice.flitevox", "/etc/passwd", "nope"])
def test_only_listed_voices_are_spoken(api: httpx.Client, voice: str) -> None:
    session_id = api.post("/api/sessions", json={}).json()["id"]
    try:
        response = api.post(
            f"/api/sessions/{session_id}/speak", json={"text": "hi", "voice": voice}
        )
        assert response.status_code == 422, response.text
        assert "unknown" in response.json()["detail"] and "slt" in response.json()["detail"]
        ok = api.post(f"/api/sessions/{session_id}/speak", json={"text": "hi", "voice": "slt"})
        assert ok.status_code == 202, ok.text
    finally:
        api.delete(f"/api/sessions/{session_id}")


def test_text_that_cannot_fit_the_queue_is_refused_before_synthesis(api: httpx.Client) -> None:
    session_id = api.post("/api/sessions", json={}).json()["id"]
    try:
        # The server queues 20 s of speech: 400 characters could be 36 s.
        response = api.post(f"/api/sessions/{session_id}/speak", json={"text": "word " * 80})
        assert response.status_code == 429 and "free" in response.json()["detail"]
        too_long = api.post(f"/api/sessions/{session_id}/speak", json={"text": "a" * 3001})
        assert too_long.status_code == 422
    finally:
        api.delete(f"/api/sessions/{session_id}")


# ---- 11: cross-site requests and DNS rebinding -------------------------------------------


def test_a_web_page_cannot_drive_a_localhost_server(api: httpx.Client) -> None:
    port = api.base_url.port
    rebound = api.get("/api/health", headers={"Host": "attacker.example"})
    assert rebound.status_code == 403 and "Host" in rebound.json()["detail"]
    evil = {"Origin": "http://evil.example"}
    assert api.post("/api/sessions", headers=evil).status_code == 403
    session_id = api.post("/api/sessions", json={}).json()["id"]
    try:
        url = f"/api/sessions/{session_id}/controls"
        simple = api.post(
            url, content=b'{"emotion": "happy"}', headers={"Content-Type": "text/plain"}
        )
        assert simple.status_code == 415, simple.text
        cross = api.post(url, json={"emotion": "happy"}, headers=evil)
        assert cross.status_code == 403
        assert api.get(f"/api/sessions/{session_id}").json()["controls"]["emotion"] == "neutral"
        # The page the server serves itself (same origin) drives it as before.
        own = api.post(
            url, json={"emotion": "happy"}, headers={"Origin": f"http://127.0.0.1:{port}"}
        )
        assert own.status_code == 200, own.text
    finally:
        api.delete(f"/api/sessions/{session_id}")


# ---- 7, 16, 17: tokens and capabilities --------------------------------------------------


def test_non_ascii_tokens_are_wrong_tokens_not_errors(token_server: LiveServer) -> None:
    with httpx.Client(base_url=token_server.url, timeout=30) as client:
        for headers in (
            {"Authorization": "Bearer é".encode()},
            {"Authorization": "Bearer \u00e9t\u00e9".encode("latin-1")},
        ):
            response = client.get("/api/sessions", headers=headers)  # type: ignore[arg-type]
            assert response.status_code == 401, response.text
        assert client.get("/api/sessions", params={"token": "çava"}).status_code == 401
        reply = raw_request(
            token_server,
            "GET /api/sessions/x/events?token=%C3%A9 HTTP/1.1\nHost: 127.0.0.1\n"
            "Upgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 13\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        )
        assert reply.startswith("HTTP/1.1 403"), reply[:100]
    assert "Traceback" not in token_server.log()


def test_tokens_never_reach_the_log_and_ids_are_capabilities(token_server: LiveServer) -> None:
    with httpx.Client(base_url=token_server.url, timeout=30) as client:
        session = client.post("/api/sessions", params={"token": TEST_TOKEN}, json={}).json()
        assert len(session["id"]) >= 32  # 128 random bits
        listed = client.get("/api/sessions", params={"token": TEST_TOKEN})
        assert listed.status_code == 200
        assert client.get("/api/sessions").status_code == 401
        assert client.get("/api/portraits").status_code == 401
        reply = raw_request(
            token_server,
            f"GET /api/sessions/{session['id']}/events?token={TEST_TOKEN} HTTP/1.1\n"
            "Host: 127.0.0.1\nUpgrade: websocket\nConnection: Upgrade\n"
            "Sec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        )
        assert reply.startswith("HTTP/1.1 101"), reply[:100]
        headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
        client.delete(f"/api/sessions/{session['id']}", headers=headers)
    time.sleep(0.5)  # let the log lines land
    log = token_server.log_path.read_text(errors="replace")
    assert "token=***" in log  # the requests were logged, with the token masked
    assert TEST_TOKEN not in log


def test_whep_resources_are_capabilities(api: httpx.Client) -> None:
    response = api.post("/whep", content=offer_sdp(), headers={"Content-Type": "application/sdp"})
    assert response.status_code == 201, response.text
    resource = response.headers["Location"].rsplit("/", 1)[1]
    assert len(resource) >= 32 and len(response.headers["X-Facecast-Session"]) >= 32
    assert api.delete(response.headers["Location"]).status_code == 200
