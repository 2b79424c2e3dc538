"""The live server end to end with real aiortc peers on loopback: speech in over the
WebSocket, video and audio out over WebRTC, barge-in, WHEP, and a vanished client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from server.client import FacecastClient, Viewer
from tests.live import LiveServer, run_server
from tests.portraits import mouth_gap, psnr

# Below the product's 25 fps on purpose: on the 2-core test machine one 25 fps session
# (motion ~15 ms + render 25-40 ms per 40 ms tick, with aiortc and this test's own
# decoder on the same cores) drops whole runs of frames when the machine is busy,
# and a stale frame says nothing about lip sync. Pacing at 25 and 40 fps is tested
# below; capacity is benchmarks/bench_sessions.py's job (issue 15).
FPS = 12
pytestmark = pytest.mark.slow


def _read_wav_pcm(path: Path) -> tuple[bytes, int]:
    import wave

    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        return wav.readframes(wav.getnframes()), wav.getframerate()


def _every_third(index: int) -> bool:
    return index % 3 == 0


def _every_frame(index: int) -> bool:
    return True


def _gaps_between(viewer: Viewer, start: float, stop: float) -> np.ndarray:
    return np.array(
        [
            mouth_gap(f.rgb)
            for f in viewer.frames
            if f.rgb is not None and start <= f.received_at <= stop
        ]
    )


def _audio_rms_between(viewer: Viewer, start: float, stop: float) -> float:
    chunks = [samples for at, samples in viewer.audio if start <= at <= stop]
    return float(np.sqrt(np.mean(np.concatenate(chunks) ** 2))) if chunks else 0.0


async def _speak_and_watch(url: str, speech_path: Path, speech_span: tuple[float, float]) -> dict:
    pcm, rate = _read_wav_pcm(speech_path)
    async with FacecastClient(url) as client:
        session = await client.create_session(fps=FPS)
        viewer = await client.watch(session["id"], keep_pixels=_every_frame)
        await viewer.wait_frames(FPS)  # connected and flowing
        async with client.events(session["id"]) as events:
            idle_start = asyncio.get_running_loop().time()
            await asyncio.sleep(1.5)
            await client.stream_pcm(session["id"], pcm, rate)
            started = await events.wait_for("playback_started")
            finished = await events.wait_for("playback_finished")
            await asyncio.sleep(1.5)
        info = await client.request("GET", f"/api/sessions/{session['id']}")
        await viewer.close()
        await client.delete_session(session["id"])
        return {
            "viewer": viewer,
            "events": events,
            "started": started,
            "finished": finished,
            "idle_start": idle_start,
            "info": info,
            "duration_s": len(pcm) / 2 / rate,
        }


def test_webrtc_session_lip_syncs_streamed_speech(
    live_server: LiveServer, speech_path: Path, speech_span: tuple[float, float]
) -> None:
    result = asyncio.run(_speak_and_watch(live_server.url, speech_path, speech_span))
    viewer: Viewer = result["viewer"]
    events = result["events"]
    times = {event["type"]: at for at, event in events.events if "playback" in event["type"]}
    t_start, t_end = times["playback_started"], times["playback_finished"]

    # Frames at the configured rate (+-10 %) with strictly increasing timestamps.
    steady = [f for f in viewer.frames if f.received_at > viewer.frames[0].received_at + 1.0]
    span = steady[-1].received_at - steady[0].received_at
    assert abs((len(steady) - 1) / span - FPS) <= 0.1 * FPS, f"{len(steady)} frames in {span} s"
    pts = [f.pts for f in viewer.frames]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
    assert abs(pts[1] - pts[0] - 90000 / FPS) <= 1  # aiortc converts through float seconds

    # The whole utterance played, with the events a voice agent expects.
    assert result["finished"]["interrupted"] is False
    assert result["finished"]["utterance_id"] == result["started"]["utterance_id"]
    assert result["finished"]["position_s"] == pytest.approx(result["duration_s"], abs=0.05)
    assert t_end - t_start == pytest.approx(result["duration_s"], abs=0.25)

    # The mouth moves while the words are heard and rests in silence before and after.
    speech_from, speech_to = (t_start + s for s in speech_span)
    speaking = _gaps_between(viewer, speech_from + 0.2, speech_to - 0.2)
    before = _gaps_between(viewer, viewer.frames[0].received_at, t_start)
    after = _gaps_between(viewer, t_end + 0.5, t_end + 1.5)
    assert len(speaking) >= 15 and len(before) >= 8 and len(after) >= 5
    # Open wide on the open vowels, shut on p/b/m: the lips follow the phones.
    assert np.percentile(speaking, 90) > 0.04, speaking
    assert np.percentile(speaking, 10) < 0.01, speaking
    assert before.max() < 0.02 and after.max() < 0.02, (before, after)

    # The speech is heard in the same window; silence around it.
    heard = _audio_rms_between(viewer, speech_from + 0.2, speech_to - 0.2)
    quiet = _audio_rms_between(viewer, t_end + 0.5, t_end + 1.5)
    assert heard > 0.02 and quiet < 0.001, (heard, quiet)
    assert result["info"]["frames_sent"] > 5 * FPS


async def _interrupt_midway(url: str) -> dict:
    text = (
        "This is a long announcement that keeps going for quite a while, so that we "
        "can cut it short in the middle and check that the face goes quiet at once."
    )
    async with FacecastClient(url) as client:
        session = await client.create_session(fps=FPS)
        sid = session["id"]
        viewer = await client.watch(sid, keep_pixels=_every_frame)
        await viewer.wait_frames(FPS)
        async with client.events(sid) as events:
            spoken = await client.speak(sid, text)
            await events.wait_for("playback_started", utterance_id=spoken["utterance_id"])
            await asyncio.sleep(1.5)
            cut_at = asyncio.get_running_loop().time()
            cut = await client.interrupt(sid)
            finished = await events.wait_for("playback_finished")
            await asyncio.sleep(2.0)
        info = await client.request("GET", f"/api/sessions/{sid}")
        await viewer.close()
        await client.delete_session(sid)
    return {
        "viewer": viewer,
        "spoken": spoken,
        "cut_at": cut_at,
        "cut": cut,
        "finished": finished,
        "info": info,
    }


def test_interrupt_stops_speech_and_mouth_at_once(live_server: LiveServer) -> None:
    result = asyncio.run(_interrupt_midway(live_server.url))
    viewer, cut_at = result["viewer"], result["cut_at"]
    assert result["spoken"]["duration_s"] > 5.0
    assert result["cut"] == {"interrupted": 1}
    finished = result["finished"]
    assert finished["interrupted"] is True
    assert finished["utterance_id"] == result["spoken"]["utterance_id"]
    assert finished["position_s"] == pytest.approx(1.5, abs=0.35)
    assert result["info"]["speaking"] is False and result["info"]["queued_speech_s"] == 0

    talking = _audio_rms_between(viewer, cut_at - 1.0, cut_at)
    after = _audio_rms_between(viewer, cut_at + 0.3, cut_at + 2.0)
    assert talking > 0.02 and after < 0.001, (talking, after)
    gaps_before = _gaps_between(viewer, cut_at - 1.2, cut_at)
    gaps_after = _gaps_between(viewer, cut_at + 0.6, cut_at + 2.0)
    assert gaps_before.max() > 0.04 and gaps_after.max() < 0.02, (gaps_before, gaps_after)


async def _whep_roundtrip(url: str) -> dict:
    async with FacecastClient(url) as client:
        before = {s["id"] for s in await client.request("GET", "/api/sessions")}
        viewer = await client.watch_whep(keep_pixels=lambda i: i == 30)
        await viewer.wait_frames(31)
        created = [s for s in await client.request("GET", "/api/sessions") if s["id"] not in before]
        fragment = (
            "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\na=mid:0\r\n"
            "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
        )
        patched = await client.http.patch(
            viewer.location,
            content=fragment,
            headers={"Content-Type": "application/trickle-ice-sdpfrag"},
        )
        deleted = await client.http.delete(viewer.location)
        await viewer.close()
        after = {s["id"] for s in await client.request("GET", "/api/sessions")}
        gone = await client.http.delete(viewer.location)
        return {
            "viewer": viewer,
            "created": created,
            "patched": patched.status_code,
            "deleted": deleted.status_code,
            "leftover": after - before,
            "gone": gone.status_code,
        }


def test_whep_player_watches_a_new_session_and_ends_it(live_server: LiveServer) -> None:
    result = asyncio.run(_whep_roundtrip(live_server.url))
    assert len(result["created"]) == 1 and result["created"][0]["viewers"] == 1
    frame = result["viewer"].frames[30].rgb
    assert frame is not None and frame.shape == (512, 512, 3) and frame.std() > 20
    assert result["patched"] == 204
    assert result["deleted"] == 200 and result["gone"] == 404
    assert result["leftover"] == set()


_VANISHING_CLIENT = """
import asyncio, sys
from server.client import FacecastClient

async def main(url):
    async with FacecastClient(url) as client:
        session = await client.create_session()
        viewer = await client.watch(session["id"], keep_pixels=lambda i: False)
        await viewer.wait_frames(10)
        print(session["id"], flush=True)
        await client.stream_pcm(session["id"], bytes(16000 * 2 * 30), 16000)

asyncio.run(main(sys.argv[1]))
"""


def test_a_client_that_vanishes_mid_stream_is_cleaned_up(live_server: LiveServer) -> None:
    """SIGKILL a real client while it streams audio and watches: no goodbye of any kind."""
    import subprocess
    import sys
    import time

    import httpx

    from tests.live import ROOT

    client = subprocess.Popen(
        [sys.executable, "-c", _VANISHING_CLIENT, live_server.url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        session_id = client.stdout.readline().strip()  # type: ignore[union-attr]
        assert session_id, "the client did not start watching"
        time.sleep(1.0)
        info = httpx.get(f"{live_server.url}/api/sessions/{session_id}").json()
        assert info["viewers"] == 1 and info["frames_sent"] > 0
    finally:
        client.kill()
        client.wait()
    # ICE consent freshness expires in about 30 s without the peer, then the idle timeout.
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline:
        status = httpx.get(f"{live_server.url}/api/sessions/{session_id}").status_code
        if status == 404:
            break
        time.sleep(1.0)
    assert status == 404, "the abandoned session was never cleaned up"
    metrics = httpx.get(f"{live_server.url}/metrics").text
    active = [line for line in metrics.splitlines() if line.startswith("facecast_sessions_active")]
    assert active == [
        f"facecast_sessions_active {len(httpx.get(live_server.url + '/api/sessions').json())}.0"
    ]


async def _microphone_session(url: str, speech_path: Path) -> dict:
    from aiortc.contrib.media import MediaPlayer

    async with FacecastClient(url) as client:
        session = await client.create_session(fps=FPS)
        microphone = MediaPlayer(str(speech_path))  # real-time paced, like a live mic
        viewer = await client.watch(
            session["id"], keep_pixels=_every_frame, microphone=microphone.audio
        )
        await viewer.wait_frames(int(FPS * 7.5), timeout_s=30)
        await viewer.close()
        await client.delete_session(session["id"])
    return {"viewer": viewer}


def test_microphone_over_webrtc_drives_the_lips_without_echo(
    live_server: LiveServer, speech_path: Path, speech_span: tuple[float, float]
) -> None:
    viewer: Viewer = asyncio.run(_microphone_session(live_server.url, speech_path))["viewer"]
    gaps = np.array([mouth_gap(f.rgb) for f in viewer.frames if f.rgb is not None])
    # The mic starts with the connection, so the speech falls inside the first ~6 s.
    assert (gaps > 0.04).sum() >= 4, gaps  # the mouth opens wide on the open vowels
    assert np.percentile(gaps, 25) < 0.02, gaps  # silences before and after close the mouth
    loudest = max(float(np.abs(samples).max()) for _, samples in viewer.audio)
    assert loudest < 0.001, "the microphone was played back to the viewer (echo)"


async def _watch_for(
    url: str, fps: int, seconds: float, keep: Callable[[int], bool] = lambda i: False
) -> Viewer:
    async with FacecastClient(url) as client:
        session = await client.create_session(fps=fps)
        viewer = await client.watch(session["id"], keep_pixels=keep)
        await viewer.wait_frames(fps)
        await asyncio.sleep(seconds)
        await viewer.close()
        await client.delete_session(session["id"])
    return viewer


def test_forty_fps_sessions_are_paced_at_forty(live_server: LiveServer) -> None:
    """aiortc's encoders assume 30 fps; the track's own pacing and timestamps must win."""
    viewer = asyncio.run(_watch_for(live_server.url, 40, 3.0))
    steady = [f for f in viewer.frames if f.received_at > viewer.frames[0].received_at + 0.5]
    rate = (len(steady) - 1) / (steady[-1].received_at - steady[0].received_at)
    assert rate == pytest.approx(40, rel=0.1)
    steps = np.diff([f.pts for f in viewer.frames])
    assert steps.min() > 0 and np.median(steps) == 90000 // 40


def test_a_server_on_the_onnxruntime_backend_streams_the_same_face(
    tmp_path: Path, live_server: LiveServer
) -> None:
    """The exported graphs behind a live session: frames flow and show the portrait.

    10 fps: onnxruntime's CPU renderer is slower than torch's on this 2-core machine
    (benchmarks/results/bench_engines.md); what is checked is the wiring, not speed.
    """
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    env = {"FACECAST_ENGINE_CACHE_DIR": str(tmp_path / "engines")}
    with run_server(tmp_path, "--backend", "onnxruntime", env=env) as server:
        health = httpx.get(server.url + "/api/health").json()
        viewer = asyncio.run(_watch_for(server.url, 10, 2.0, keep=_every_third))
    on_graph = [f.rgb for f in viewer.frames if f.rgb is not None]
    assert health["backend"] == "onnxruntime" and len(viewer.frames) >= 20
    assert len(list((tmp_path / "engines").glob("face_renderer-*.onnx"))) == 1
    reference = asyncio.run(_watch_for(live_server.url, 10, 0.5, keep=lambda i: i == 0))
    first = next(f.rgb for f in reference.frames if f.rgb is not None)
    assert psnr(on_graph[0], first) > 28  # the same idle portrait, through two VP8 encodes
