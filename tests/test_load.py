"""Two live sessions at once on the shared test server: both keep streaming, neither leaks.

A load test that stops by itself and speaks only to loopback. It records the
frame rates and dropped frames it saw (pytest record_property) but asserts
only loose floors: capacity is measured by benchmarks/bench_sessions.py, not
here, because the test machine may be busy.
"""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from server.client import ApiError, FacecastClient, Viewer
from tests.live import LiveServer

FPS = 25
SESSIONS = 2
MEASURE_S = 8.0
MIN_FPS_SHARE = 0.6
pytestmark = pytest.mark.slow


def _pcm(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        return wav.readframes(wav.getnframes()), wav.getframerate()


async def _create(client: FacecastClient, timeout_s: float = 10.0) -> dict[str, Any]:
    """A new session; waits while an earlier test's session still holds the server's cap."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await client.create_session(fps=FPS)
        except ApiError as exc:
            if exc.status != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _two_sessions(url: str, speech_path: Path) -> dict[str, Any]:
    pcm, rate = _pcm(speech_path)
    async with FacecastClient(url) as client:
        ids: list[str] = []
        viewers: list[Viewer] = []
        try:
            for _ in range(SESSIONS):
                ids.append((await _create(client))["id"])
                viewers.append(await client.watch(ids[-1], keep_pixels=lambda index: False))
            await asyncio.gather(*(v.wait_frames(FPS, timeout_s=30) for v in viewers))
            speaking = asyncio.create_task(client.stream_pcm(ids[0], pcm, rate))
            before = [await client.request("GET", f"/api/sessions/{sid}") for sid in ids]
            counts, start = [len(v.frames) for v in viewers], time.monotonic()
            await asyncio.sleep(MEASURE_S)
            elapsed = time.monotonic() - start
            ends = [len(v.frames) for v in viewers]
            after = [await client.request("GET", f"/api/sessions/{sid}") for sid in ids]
            await speaking
        finally:
            for viewer in viewers:
                await viewer.close()
            for sid in ids:
                await client.delete_session(sid)
        listed = [s["id"] for s in await client.request("GET", "/api/sessions")]
        metrics = await client.request("GET", "/metrics")
    return {
        "ids": ids,
        "viewers": viewers,
        "fps": [(end - count) / elapsed for count, end in zip(counts, ends, strict=True)],
        "dropped": [
            a["dropped_frames"] - b["dropped_frames"] for a, b in zip(after, before, strict=True)
        ],
        "frame_ms": [a["stats"]["frame_time_ms_p50"] for a in after],
        "listed": listed,
        "metrics": metrics,
    }


def test_two_sessions_stream_at_once_and_leave_nothing_behind(
    live_server: LiveServer, speech_path: Path, record_property: Any
) -> None:
    result = asyncio.run(_two_sessions(live_server.url, speech_path))
    for k, (fps, dropped, frame_ms) in enumerate(
        zip(result["fps"], result["dropped"], result["frame_ms"], strict=True)
    ):
        role = "speaking" if k == 0 else "idle"
        print(
            f"session {k} ({role}): {fps:.1f} fps received, {dropped} frames dropped by the "
            f"server in {MEASURE_S:g} s, render p50 {frame_ms} ms"
        )
        record_property(f"session{k}_received_fps", round(fps, 2))
        record_property(f"session{k}_dropped_frames", dropped)
        record_property(f"session{k}_frame_time_ms_p50", frame_ms)

    for k, fps in enumerate(result["fps"]):
        assert fps >= MIN_FPS_SHARE * FPS, f"session {k} received {fps:.1f} fps of {FPS}"
    for k, viewer in enumerate(result["viewers"]):
        pts = [f.pts for f in viewer.frames]
        assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), f"session {k}: pts {pts}"

    assert not set(result["ids"]) & set(result["listed"]), "a deleted session is still listed"
    active = [
        line
        for line in str(result["metrics"]).splitlines()
        if line.startswith("facecast_sessions_active")
    ]
    assert active == [f"facecast_sessions_active {len(result['listed'])}.0"], active
