"""Provenance end to end: every live and offline frame carries the mark, `facecast verify` and
POST /api/verify find it, MP4s carry a C2PA manifest c2pa's own Reader validates, the
visible label is in the corner, --no-watermark really turns the mark off, and a mark made
with a private key is found with that key only (test_watermark_key.py: the key itself)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import av
import c2pa
import httpx
import numpy as np
import pytest
from PIL import Image

from engines.paths import default_portrait_path
from engines.provenance import (
    DIGITAL_SOURCE_TYPE,
    FrameMarker,
    ProvenanceConfig,
    WatermarkConfig,
    detect,
    format_mark,
    instance_id_of,
    label_box,
    split_payload,
    stream_mark,
    verify_video,
)
from server.client import FacecastClient
from server.config import load_config
from server.offline import RenderJobConfig, RenderReport, render_to_mp4
from tests.live import LiveServer, run_server

pytestmark = pytest.mark.slow

FPS = 12  # few frames: the mark needs seconds, not frames (bench_watermark.md)
INSTANCE = "c0ffee"
MAX_VIDEO_BYTES = 1_000_000
PRIVATE_KEY = "a-deployment's-own-key-5e1d"


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _verify_cli(path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "verify", str(path), "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=None if env is None else {**os.environ, **env},
    )
    assert result.returncode in (0, 1), result.stderr
    assert PRIVATE_KEY not in result.stdout  # reports name the key, never print it
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("provenance")


@pytest.fixture(scope="module")
def renders(
    silence_path: Path, state_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, RenderReport]]:
    """3 s of the idle built-in portrait at 12 fps: marked (the default), unmarked with the
    visible label, and marked with a private key, same seed."""
    folder = tmp_path_factory.mktemp("renders")
    out = {}
    for name, provenance in (
        ("marked", ProvenanceConfig()),
        ("labelled", ProvenanceConfig(watermark=False, visible_label=True)),
        ("private", ProvenanceConfig(mark=WatermarkConfig(key=PRIVATE_KEY.encode()))),
    ):
        config = replace(RenderJobConfig.of(provenance=provenance, fps=FPS), state_dir=state_dir)
        path = folder / f"{name}.mp4"
        out[name] = (path, render_to_mp4(silence_path, path, config=config))
    return out


@pytest.fixture(scope="module")
def unmarked_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An FFmpeg test source: 3 s of moving pattern, 256x256, never marked."""
    path = tmp_path_factory.mktemp("unmarked") / "testsrc.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=256x256:rate=12",
         "-t", "3", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    env = {"FACECAST_INSTANCE_ID": INSTANCE, "FACECAST_MAX_VIDEO_BYTES": str(MAX_VIDEO_BYTES)}
    with run_server(tmp_path_factory.mktemp("server"), env=env) as live:
        yield live


async def _live_frames(url: str, seconds: float) -> tuple[dict, list[np.ndarray]]:
    async with FacecastClient(url) as client:
        session = await client.create_session(fps=FPS)
        viewer = await client.watch(session["id"])
        await viewer.wait_frames(round(seconds * FPS), timeout_s=30)
        await viewer.close()
        await client.delete_session(session["id"])
    return session, [f.rgb for f in viewer.frames if f.rgb is not None]


# ---- offline ------------------------------------------------------------------------


def test_offline_mp4_is_marked_and_facecast_verify_reads_the_job(renders) -> None:
    path, report = renders["marked"]
    assert report.watermark and report.development_certificate
    code, out = _verify_cli(path)
    assert code == 0 and out["identified"]
    mark = out["watermark"]
    assert mark["marked"] and mark["mark"] == report.mark_id
    assert mark["stream_mark"] == f"{stream_mark(report.job_id):010x}"
    assert mark["p_value"] < 1e-9 and mark["frames"] == report.frames
    manifest = out["manifest"]
    assert manifest["valid"] and manifest["ai_generated"] and manifest["development_certificate"]
    assert manifest["watermark"] == report.mark_id  # the manifest names the frames' mark
    assert mark["key"] == "public" and mark["keys_tried"] == ["public"]


def test_a_private_key_mp4_is_found_by_facecast_verify_with_that_key_only(
    renders, tmp_path: Path
) -> None:
    path, report = renders["private"]
    code, out = _verify_cli(path, "--watermark-key", PRIVATE_KEY)
    assert code == 0 and out["watermark"]["marked"]
    assert out["watermark"]["mark"] == report.mark_id and out["watermark"]["key"] == "private"
    assert out["watermark"]["keys_tried"] == ["private", "public"]
    key_file = tmp_path / "watermark.key"
    key_file.write_text(PRIVATE_KEY + "\n")
    _, out = _verify_cli(path, env={"FACECAST_WATERMARK_KEY_FILE": str(key_file)})
    assert out["watermark"]["mark"] == report.mark_id and out["watermark"]["key"] == "private"
    # Without the key the mark is not there (the manifest still says AI-generated).
    assert not verify_video(path).watermark.marked
    # A holder of a private key still recognises public-key output.
    public = verify_video(renders["marked"][0], config=WatermarkConfig(key=PRIVATE_KEY.encode()))
    assert public.watermark.marked and public.watermark.key == "public"


def test_no_watermark_render_is_unmarked_and_labelled_in_the_corner(renders) -> None:
    marked, labelled = (_frames(renders[k][0]) for k in ("marked", "labelled"))
    code, out = _verify_cli(renders["labelled"][0])
    assert not out["watermark"]["marked"] and out["watermark"]["mark"] is None
    assert out["manifest"]["watermark"] is None
    assert code == 0  # still identified: its manifest says it is AI-generated
    y0, y1, x0, x1 = label_box(512, 512)
    plain, label = marked[len(marked) // 2], labelled[len(labelled) // 2]
    box_plain, box_label = plain[y0:y1, x0:x1].astype(float), label[y0:y1, x0:x1].astype(float)
    assert np.median(box_label) < 0.6 * np.median(box_plain)  # the dark box
    assert (box_label.min(axis=2) > 200).sum() > 50  # white text on it
    outside = np.ones(plain.shape[:2], bool)
    outside[y0 - 4 : y1 + 4, x0 - 4 : x1 + 4] = False
    diff = np.abs(plain.astype(float) - label)[outside]
    assert diff.mean() < 3.0  # elsewhere the frames differ only by the mark and the codec


def test_c2pa_reader_validates_the_manifest_and_sees_tampering(renders, tmp_path: Path) -> None:
    path, _ = renders["marked"]
    with c2pa.Reader(str(path)) as reader:
        assert reader.get_validation_state() in ("Valid", "Trusted")
        manifest = reader.get_active_manifest()
        failures = reader.get_validation_results()["activeManifest"].get("failure", [])
    assert {f["code"] for f in failures} <= {"signingCredential.untrusted"}  # dev cert only
    assert manifest["claim_generator_info"][0]["name"] == "facecast"
    actions = next(a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))
    created = actions["data"]["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == DIGITAL_SOURCE_TYPE
    # One byte changed in the middle of the media data: the content hash no longer matches.
    tampered = tmp_path / "tampered.mp4"
    shutil.copy(path, tampered)
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with c2pa.Reader(str(tampered)) as reader:
        assert reader.get_validation_state() == "Invalid"


def test_an_unmarked_video_is_not_facecast_output(unmarked_clip: Path) -> None:
    code, out = _verify_cli(unmarked_clip)
    assert code == 1 and not out["identified"]
    assert not out["watermark"]["marked"] and not out["manifest"]["present"]


# ---- live -----------------------------------------------------------------------------


def test_live_frames_carry_the_session_mark_and_health_says_so(server: LiveServer) -> None:
    health = httpx.get(f"{server.url}/api/health").json()
    assert health["watermark"] is True and health["visible_label"] is False
    assert health["instance_id"] == INSTANCE and health["watermark_key"] == "public"
    session, frames = asyncio.run(_live_frames(server.url, 3.0))
    detection = detect(frames)  # frames as the viewer's decoder gave them
    assert detection.marked, detection
    assert detection.payload is not None
    assert split_payload(detection.payload) == (int(INSTANCE, 16), stream_mark(session["id"]))
    assert session["provenance_mark"] == format_mark(*split_payload(detection.payload))


def test_api_verify_marked_unmarked_and_bad_uploads(
    server: LiveServer, renders, unmarked_clip: Path
) -> None:
    path, report = renders["marked"]
    with httpx.Client(base_url=server.url, timeout=60) as api:

        def verify(name: str, data: bytes) -> httpx.Response:
            return api.post("/api/verify", files={"file": (name, data, "video/mp4")})

        marked = verify("marked.mp4", path.read_bytes())
        assert marked.status_code == 200, marked.text
        body = marked.json()
        assert body["identified"] and body["watermark"]["mark"] == report.mark_id
        assert body["manifest"]["valid"] and body["manifest"]["ai_generated"]
        unmarked = verify("testsrc.mp4", unmarked_clip.read_bytes())
        assert unmarked.status_code == 200 and not unmarked.json()["identified"]
        junk = verify("junk.mp4", b"\x00\x00\x00\x18ftypjunk" + bytes(range(256)) * 40)
        assert junk.status_code == 415 and "not a video" in junk.json()["detail"]
        empty = verify("empty.mp4", b"")
        assert empty.status_code == 400 and "empty" in empty.json()["detail"]
        big = verify("big.mp4", bytes(MAX_VIDEO_BYTES + 100 * 1024))
        assert big.status_code == 413 and "limit" in big.json()["detail"]
        text = api.post("/api/verify", json={"file": "x"})
        assert text.status_code == 415
    assert httpx.get(f"{server.url}/api/health").status_code == 200  # the server is fine


def test_api_verify_refuses_a_frame_over_4k_before_decoding(server: LiveServer, tmp_path) -> None:
    """A 4000x2176 clip (over 3840x2160 in pixels) is refused from its header: 413."""
    path = tmp_path / "huge.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 4000, 2176, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((2176, 4000, 3), np.uint8), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert path.stat().st_size < MAX_VIDEO_BYTES  # the size limit is not what refuses it
    response = httpx.post(
        f"{server.url}/api/verify", files={"file": ("huge.mp4", path.read_bytes())}, timeout=60
    )
    assert response.status_code == 413, response.text
    assert "4000x2176" in response.json()["detail"] and "scale it down" in response.json()["detail"]


def test_api_verify_runs_one_at_a_time_and_says_when_busy(unmarked_clip: Path) -> None:
    """While a verification holds the server's verifier, the next upload gets 429, with a
    message, and is answered normally once the verifier is free."""
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.config import ServerConfig

    app = create_app(ServerConfig())
    client = TestClient(app, base_url="http://localhost")
    lock = app.state.facecast.verify_lock
    upload = {"file": ("clip.mp4", unmarked_clip.read_bytes(), "video/mp4")}
    answers: list[httpx.Response] = []
    asyncio.run(lock.acquire())  # a verification in flight
    try:
        # In a thread with a deadline: a server that queued the upload instead would
        # wait for this lock forever.
        asking = threading.Thread(
            target=lambda: answers.append(client.post("/api/verify", files=upload)), daemon=True
        )
        asking.start()
        asking.join(timeout=60)
    finally:
        lock.release()
    assert answers, "the second upload waited instead of being told the server is busy"
    assert answers[0].status_code == 429 and "again" in answers[0].json()["detail"]
    after = client.post("/api/verify", files=upload)
    assert after.status_code == 200 and after.json()["identified"] is False


def test_api_verify_on_a_private_key_server_says_which_key_matched(renders, tmp_path: Path) -> None:
    """A server with a private key tries its own key and the public one, and names the one
    that matched, never the key."""
    from fastapi.testclient import TestClient

    from server.app import create_app

    config = load_config(
        {"FACECAST_WATERMARK_KEY": PRIVATE_KEY, "FACECAST_DATA_DIR": str(tmp_path)}
    )
    client = TestClient(create_app(config), base_url="http://localhost")
    for name, key in (("private", "private"), ("marked", "public")):
        path, report = renders[name]
        response = client.post("/api/verify", files={"file": ("clip.mp4", path.read_bytes())})
        assert response.status_code == 200, response.text
        mark = response.json()["watermark"]
        assert mark["marked"] and mark["mark"] == report.mark_id and mark["key"] == key
        assert mark["keys_tried"] == ["private", "public"]
        assert PRIVATE_KEY not in response.text


def test_no_watermark_server_reports_it_and_sends_unmarked_frames(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with run_server(tmp_path_factory.mktemp("off"), "--no-watermark") as live:
        health = httpx.get(f"{live.url}/api/health").json()
        assert health["watermark"] is False
        session, frames = asyncio.run(_live_frames(live.url, 3.0))
    assert not detect(frames).marked and session["provenance_mark"] is None


# ---- configuration ---------------------------------------------------------------------


def test_marking_is_on_unless_turned_off_explicitly(tmp_path: Path) -> None:
    assert load_config({}).provenance.watermark is True
    assert load_config({"FACECAST_WATERMARK": "0"}).provenance.watermark is False
    assert load_config({"FACECAST_WATERMARK": "0"}, watermark=True).provenance.watermark is True
    with pytest.raises(ValueError, match="FACECAST_WATERMARK must be"):
        load_config({"FACECAST_WATERMARK": "maybe"})
    with pytest.raises(ValueError, match="6 hex digits"):
        load_config({"FACECAST_INSTANCE_ID": "not-hex"})
    # The instance id is made once and kept.
    first = instance_id_of(ProvenanceConfig(), tmp_path)
    assert instance_id_of(ProvenanceConfig(), tmp_path) == first
    assert instance_id_of(ProvenanceConfig(instance_id=7), tmp_path) == 7


def test_marking_in_place_matches_a_copy_and_takes_the_renderers_planar_frames() -> None:
    portrait = np.asarray(Image.open(default_portrait_path()).convert("RGB").resize((320, 256)))
    source = np.ascontiguousarray(portrait.transpose(2, 0, 1))  # (3, H, W) planes
    marker = FrameMarker(ProvenanceConfig(instance_id=1, visible_label=True), "job")
    unmarked = np.ascontiguousarray(source.transpose(1, 2, 0))
    copied = marker.mark(unmarked)
    assert not np.array_equal(copied, unmarked)
    planar = source.copy().transpose(1, 2, 0)  # (H, W, 3) view of planes, as the renderer's
    assert np.array_equal(marker.mark(planar, in_place=True), copied)
    packed = unmarked.copy()
    assert marker.mark(packed, in_place=True) is packed and np.array_equal(packed, copied)
    assert detect([copied] * 4).marked
