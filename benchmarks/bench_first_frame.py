"""How soon does a new live session show its first frame, and how long does a new portrait take?

Usage: python -m benchmarks.bench_first_frame [--repeats 10] [--uploads 8] [--url URL]

Starts `facecast serve` in a subprocess (or uses --url) and, with the built-in
portrait's avatar already cached (the server prepares it at startup), repeats:
POST /api/sessions -> watch it with a real aiortc peer in this process
(FacecastClient.watch) -> first decoded video frame -> DELETE. Per repetition,
from the start of the POST:

- POST answered (the session exists: avatar from memory, renderer built, neutral
  frame rendered);
- offer answered (POST /offer returned the SDP answer; the peer is set up);
- first decoded frame at the viewer (ICE + DTLS + first VP8 frame + decode);
- the server's own figure: session stats first_frame_ms.

Then "portrait preparation": POST /api/portraits with the built-in portrait
mirrored (as tests/test_api.py does), each upload altered in one pixel so its
content hash is new and the analysis runs cold; the same bytes uploaded again
show the cached path. One warm-up session and one warm-up upload come first.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import time
from typing import Any

from benchmarks._common import (
    finish_machine_info,
    run_and_report,
    summarize,
    summary_table,
)
from benchmarks._live import CpuMeter, live_header, live_machine_info, serve

__all__ = ["main", "run"]

NAME = "bench_first_frame"
FPS = 25
FIRST_FRAME_BUDGET_MS = 100.0
PREPARE_BUDGET_MS = 1000.0

logger = logging.getLogger(__name__)


def _mirrored_portrait(variant: int) -> bytes:
    """The built-in portrait mirrored, as PNG; `variant` changes one pixel (a new content hash)."""
    from PIL import Image

    from engines.paths import default_portrait_path

    image = Image.open(default_portrait_path()).convert("RGB").transpose(Image.FLIP_LEFT_RIGHT)
    image.putpixel((0, 0), (variant % 256, (variant // 256) % 256, 7))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def _one_session(client: Any) -> dict[str, Any]:
    start = time.monotonic()
    session = await client.create_session(fps=FPS)
    created = time.monotonic()
    viewer = await client.watch(session["id"], keep_pixels=lambda index: False)
    answered = time.monotonic()
    try:
        await viewer.wait_frames(1, timeout_s=20)
        first = viewer.frames[0].received_at
        await viewer.wait_frames(5, timeout_s=20)  # stats below are after the first frame went out
        info = await client.request("GET", f"/api/sessions/{session['id']}")
    finally:
        await viewer.close()
        deleting = time.monotonic()
        await client.delete_session(session["id"])
        deleted = time.monotonic()
    return {
        "post_ms": (created - start) * 1000,
        "answer_ms": (answered - start) * 1000,
        "first_decoded_ms": (first - start) * 1000,
        "server_first_frame_ms": info["stats"]["first_frame_ms"],
        "delete_ms": (deleted - deleting) * 1000,
    }


async def _one_upload(client: Any, data: bytes, name: str) -> float:
    start = time.monotonic()
    await client.request("POST", "/api/portraits", files={"file": (name, data, "image/png")})
    return (time.monotonic() - start) * 1000


async def _measure(url: str, server_pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    from server.client import FacecastClient

    async with FacecastClient(url) as client:
        await _one_session(client)  # warm-up: the first peer connection, codec setup
        meter = CpuMeter(server_pid)
        sessions = []
        for i in range(args.repeats):
            sessions.append(await _one_session(client))
            logger.info("session %d: %s", i + 1, {k: round(v, 1) for k, v in sessions[-1].items()})
            await asyncio.sleep(args.pause)
        session_cpu = meter.cores()
        await _one_upload(client, _mirrored_portrait(10_000), "warmup.png")
        meter = CpuMeter(server_pid)
        cold, warm = [], []
        for i in range(args.uploads):
            data = _mirrored_portrait(i + 1)
            cold.append(await _one_upload(client, data, f"mirror{i}.png"))
            warm.append(await _one_upload(client, data, f"mirror{i}.png"))
            logger.info("upload %d: cold %.0f ms, again %.0f ms", i + 1, cold[-1], warm[-1])
        upload_cpu = meter.cores()
    keys = ("post_ms", "answer_ms", "first_decoded_ms", "server_first_frame_ms", "delete_ms")
    return {
        "sessions": sessions,
        "session_summary": {
            k: summarize([s[k] for s in sessions if s[k] is not None]) for k in keys
        },
        "session_cpu": session_cpu,
        "uploads": {"cold_ms": cold, "again_ms": warm},
        "upload_summary": {"cold_ms": summarize(cold), "again_ms": summarize(warm)},
        "upload_cpu": upload_cpu,
        "portrait_bytes": len(_mirrored_portrait(1)),
    }


_LABELS = {
    "post_ms": "POST /api/sessions answered",
    "answer_ms": "SDP answer received (POST /offer)",
    "first_decoded_ms": "first decoded frame at the viewer",
    "server_first_frame_ms": "server stats first_frame_ms",
    "delete_ms": "DELETE /api/sessions/{id} (after the viewer closed)",
}


def _markdown(data: dict[str, Any]) -> str:
    summary, uploads = data["session_summary"], data["upload_summary"]
    rows = [(_LABELS[k], s) for k, s in summary.items()]
    upload_rows = [
        ("new portrait (cold analysis), POST /api/portraits", uploads["cold_ms"]),
        ("same bytes again (avatar cache hit)", uploads["again_ms"]),
    ]
    cpu, ucpu = data["session_cpu"], data["upload_cpu"]
    first = summary["first_decoded_ms"].get("p50", float("nan"))
    return "\n".join(
        [
            *live_header(
                "# First frame of a live session, and portrait preparation", data["machine"]
            ),
            f"{data['repeats']} repetitions of create -> watch (aiortc peer in the client "
            "process) -> first frame -> delete, with the built-in portrait's avatar cached; "
            "times from the start of POST /api/sessions (ms).",
            "",
            summary_table("measure (ms from POST start)", rows),
            "",
            f"Budget (DESIGN.md): first frame <= {FIRST_FRAME_BUDGET_MS:g} ms server-side with a "
            f"cached avatar (a GPU budget); here the viewer's first decoded frame came "
            f"{first:.0f} ms (p50) after the POST started. CPU during the sessions (cores): "
            f"server {cpu['server_cores']}, client {cpu['client_cores']}, other "
            f"{cpu['other_cores']}.",
            "",
            "## Portrait preparation (upload of a new image)",
            "",
            summary_table("measure (ms)", upload_rows),
            "",
            f"Budget: new portrait <= {PREPARE_BUDGET_MS:g} ms. The upload is a "
            f"{data['portrait_bytes'] / 1024:.0f} KiB PNG of the built-in portrait, mirrored "
            "(one pixel changed per upload, so each is a new content hash); the time includes "
            "the HTTP upload on loopback, decoding, face analysis, cache write and storing. "
            f"CPU during the uploads (cores): server {ucpu['server_cores']}, other "
            f"{ucpu['other_cores']}.",
            "",
            "## Notes",
            "",
            "- The server's first_frame_ms runs from the start of the create request (avatar "
            "lookup included) to its first frame being ready to send (the neutral frame); the "
            "'first decoded frame' row adds the viewer's own connection (offer, ICE, DTLS) and "
            "decoding, which is what a user waits for.",
            "- Until the producer's first paced frame, a new session shows its neutral frame "
            "(rendered during POST), so a viewer never waits for a tick.",
        ]
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {"machine": live_machine_info(), "repeats": args.repeats, "fps": FPS}
    with serve(args.url, "--max-sessions", "2") as server:
        data["server"] = {"url": server.url, "own_subprocess": server.pid is not None}
        data.update(asyncio.run(_measure(server.url, server.pid, args)))
    finish_machine_info(data["machine"])
    s, u = data["session_summary"], data["upload_summary"]
    data["headline"] = {
        "first_decoded_ms_p50": round(s["first_decoded_ms"]["p50"], 1),
        "server_first_frame_ms_p50": round(s["server_first_frame_ms"]["p50"], 1),
        "post_ms_p50": round(s["post_ms"]["p50"], 1),
        "portrait_cold_ms_p50": round(u["cold_ms"]["p50"], 1),
    }
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="create/watch/delete cycles")
    parser.add_argument("--uploads", type=int, default=8, help="new-portrait uploads")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between cycles")
    parser.add_argument("--url", help="use this running server instead of starting one")
    run_and_report(NAME, parser, run, _markdown, argv)


if __name__ == "__main__":
    main()
