"""How many concurrent live sessions does this machine hold in real time?

Usage: python -m benchmarks.bench_sessions [--sessions 1 2 3 4] [--seconds 15] [--idle]
                                           [--url URL] [--device cpu] [--before PATH] [--fps 25]

Starts `facecast serve` in a subprocess (or uses --url). For each N it creates N
sessions at 25 fps, watches each with one real aiortc peer (all N viewers live
in this client process, a separate process from the server), streams speech to
every session over its PCM WebSocket in real time (unless --idle), lets them
settle, then measures for --seconds:

- received fps per session (frames decoded at the viewer / seconds);
- the server's dropped frames per session (GET /api/sessions/{id}:
  dropped_frames, frames rendered too late or skipped by the paced track), as a
  share of the frames due;
- frame_time_ms_p50 from the session stats (render time per frame);
- CPU: server process, this client process (VP8/Opus decoding), other processes.

N is "held in real time" when every session receives >= 95 % of its fps and
the server dropped < 5 % of the frames due. The viewers' decoding runs on the
same cores as the server, so this is a lower bound for a server whose viewers
are elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from benchmarks._common import (
    RADIO_SPEECH,
    finish_machine_info,
    markdown_table,
    run_and_report,
)
from benchmarks._live import CpuMeter, live_header, live_machine_info, metric_total, serve

__all__ = ["main", "run", "held"]

NAME = "bench_sessions"
FPS = 25
HELD_FPS_SHARE = 0.95
HELD_DROP_SHARE = 0.05
SETTLE_S = 3.0
PCM_RATE = 16000
SPEECH_TEXT = (
    "Good evening. This is a short test of the talking portrait. The quick brown fox jumps "
    "over the lazy dog, while Peter picked a bowl of blue berries and carried it home."
)

logger = logging.getLogger(__name__)


def _thread_cpu_s(pid: int | None) -> dict[int, float]:
    """CPU seconds per thread (tid) of a process; empty when unknown."""
    if pid is None:
        return {}
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            out[int(tid)] = (float(fields[11]) + float(fields[12])) / ticks
    return out


def _thread_cores(pid: int | None, before: dict[int, float], seconds: float) -> dict[str, Any]:
    """The server's main (event-loop) thread and its busiest other threads, in cores."""
    after = _thread_cpu_s(pid)
    cores = {tid: (cpu - before.get(tid, 0.0)) / seconds for tid, cpu in after.items()}
    others = sorted((c for tid, c in cores.items() if tid != pid), reverse=True)
    return {
        "main_thread": round(cores.get(pid, 0.0), 2) if pid else None,
        "busiest_other_threads": [round(c, 2) for c in others[:6]],
    }


def held(record: dict[str, Any], fps: int) -> bool:
    """Every session received >= 95 % of its fps and the server dropped < 5 % of frames due."""
    return all(
        s["received_fps"] >= HELD_FPS_SHARE * fps and s["dropped_share"] < HELD_DROP_SHARE
        for s in record["per_session"]
    )


def _speech_pcm(seconds: float) -> bytes:
    """Real speech, s16le mono 16 kHz, looped to `seconds`: the radio recording or flite."""
    from engines.audio.ingest import decode_audio_bytes
    from engines.audio.speech import speak_to_file

    with tempfile.TemporaryDirectory() as tmp:
        path = (
            RADIO_SPEECH
            if RADIO_SPEECH.exists()
            else speak_to_file(SPEECH_TEXT, Path(tmp) / "s.wav")
        )
        samples48 = decode_audio_bytes(path.read_bytes(), path.name)
    samples = signal.resample_poly(samples48, 1, 3)  # 48 -> 16 kHz
    repeats = int(np.ceil(seconds * PCM_RATE / len(samples)))
    looped = np.tile(samples, repeats)[: int(seconds * PCM_RATE)]
    return (np.clip(looped, -1, 1) * 32767).astype("<i2").tobytes()


async def _run_n(
    url: str, server_pid: int | None, n: int, args: argparse.Namespace, pcm: bytes
) -> dict[str, Any]:
    from server.client import FacecastClient

    async with FacecastClient(url) as client:
        sessions = [await client.create_session(fps=args.fps) for _ in range(n)]
        ids = [s["id"] for s in sessions]
        viewers = []
        streams: list[asyncio.Task[Any]] = []
        try:
            for sid in ids:
                viewers.append(await client.watch(sid, keep_pixels=lambda index: False))
            await asyncio.gather(*(v.wait_frames(args.fps, timeout_s=30) for v in viewers))
            if pcm:
                streams = [
                    asyncio.create_task(client.stream_pcm(sid, pcm, PCM_RATE)) for sid in ids
                ]
            await asyncio.sleep(SETTLE_S)
            before = [await client.request("GET", f"/api/sessions/{sid}") for sid in ids]
            counts = [len(v.frames) for v in viewers]
            underruns = await metric_total(client, "facecast_audio_underruns_total")
            meter, start = CpuMeter(server_pid), time.monotonic()
            threads_before = _thread_cpu_s(server_pid)
            await asyncio.sleep(args.seconds)
            cpu, elapsed = meter.cores(), time.monotonic() - start
            threads = _thread_cores(server_pid, threads_before, elapsed)
            after = [await client.request("GET", f"/api/sessions/{sid}") for sid in ids]
            underruns = await metric_total(client, "facecast_audio_underruns_total") - underruns
            ends = [len(v.frames) for v in viewers]
        finally:
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
            for viewer in viewers:
                await viewer.close()
            for sid in ids:
                with contextlib.suppress(Exception):
                    await client.delete_session(sid)
    per_session = []
    for viewer, b, a, c0, c1 in zip(viewers, before, after, counts, ends, strict=True):
        received = c1 - c0
        dropped = a["dropped_frames"] - b["dropped_frames"]
        pts = [f.pts for f in viewer.frames]
        per_session.append(
            {
                "received_fps": round(received / elapsed, 2),
                "sent_fps": round((a["frames_sent"] - b["frames_sent"]) / elapsed, 2),
                "dropped": dropped,
                "dropped_share": round(dropped / (elapsed * args.fps), 4),
                "frame_time_ms_p50": a["stats"]["frame_time_ms_p50"],
                "server_stats_fps": a["stats"]["fps"],
                "pts_strictly_increasing": all(y > x for x, y in zip(pts, pts[1:], strict=False)),
            }
        )
    record = {
        "sessions": n,
        "seconds": round(elapsed, 2),
        "per_session": per_session,
        "received_fps_mean": round(float(np.mean([s["received_fps"] for s in per_session])), 2),
        "received_fps_min": min(s["received_fps"] for s in per_session),
        "dropped_share_max": max(s["dropped_share"] for s in per_session),
        "frame_time_ms_p50_max": max(s["frame_time_ms_p50"] or 0.0 for s in per_session),
        "audio_underruns": int(underruns),
        "cpu": cpu,
        "server_threads": threads,
    }
    record["held"] = held(record, args.fps)
    return record


async def _measure(
    servers: dict[str, tuple[str, int | None]], args: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    """Records per server label; with two servers, each N runs on one and then the other
    (alternating which goes first), so this host's drift falls on both."""
    longest = SETTLE_S + args.seconds + 5.0
    pcm = b"" if args.idle else _speech_pcm(longest)
    for url, pid in servers.values():  # warm-up
        warm = argparse.Namespace(seconds=2.0, fps=args.fps)
        await _run_n(url, pid, 1, warm, pcm[: 6 * PCM_RATE * 2])
    records: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
    labels = list(servers)
    for turn, n in enumerate(args.sessions):
        for label in labels if turn % 2 == 0 else labels[::-1]:
            url, pid = servers[label]
            logger.info("%s: %d session(s) for %.0f s", label, n, args.seconds)
            records[label].append(await _run_n(url, pid, n, args, pcm))
            logger.info(
                "%s, %d session(s): %s",
                label,
                n,
                {k: v for k, v in records[label][-1].items() if k != "per_session"},
            )
            await asyncio.sleep(1.0)
    return records


def _rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["sessions"],
            "yes" if r["held"] else "no",
            r["received_fps_mean"],
            r["received_fps_min"],
            " / ".join(str(s["dropped"]) for s in r["per_session"]),
            f"{100 * r['dropped_share_max']:.1f}",
            " / ".join(str(s["frame_time_ms_p50"]) for s in r["per_session"]),
            r["audio_underruns"],
            r["cpu"]["server_cores"],
            r["cpu"]["client_cores"],
            r["cpu"]["other_cores"],
        ]
        for r in results
    ]


_COLUMNS = [
    "N",
    "held",
    "recv fps mean",
    "recv fps min",
    "dropped per session",
    "dropped % (worst)",
    "frame_time_ms_p50 per session",
    "audio underruns",
    "server cores",
    "client cores",
    "other cores",
]


def _markdown(data: dict[str, Any]) -> str:
    before = data.get("before")
    before_lines = (
        [
            f"**Before** (`{before['root']}`, its own server, each N run beside this checkout's, "
            f"alternating which goes first): largest N held "
            f"{before['largest_held'] or 'none'}.",
            "",
            markdown_table(_COLUMNS, _rows(before["results"])),
            "",
            "**After** (this checkout):",
            "",
        ]
        if before
        else []
    )
    held_n = data["largest_held"]
    speech = "idle (no speech)" if data["idle"] else "speech streamed to every session in real time"
    return "\n".join(
        [
            *live_header("# Concurrent live sessions held in real time", data["machine"]),
            f"Device: {data['device']}. {data['fps']} fps sessions, one aiortc viewer each "
            f"(all viewers in one client process), {speech}; measured for {data['seconds']} s "
            f"per N after {SETTLE_S:g} s of settling. Held = every session receives >= "
            f"{HELD_FPS_SHARE * 100:.0f} % of {data['fps']} fps and the server dropped < "
            f"{HELD_DROP_SHARE * 100:.0f} % of the frames due.",
            "",
            f"**Largest N held: {held_n if held_n else 'none'}.**",
            "",
            *before_lines,
            markdown_table(_COLUMNS, _rows(data["results"])),
            "",
            "Server threads (cores): the event-loop thread (WebRTC packetizing and encryption, "
            "frame conversion, WebSockets) and the busiest other threads (one render executor per "
            "session, aiortc's encoder threads):",
            "",
            markdown_table(
                ["N", "event-loop thread", "busiest other threads"],
                [
                    [
                        r["sessions"],
                        r["server_threads"]["main_thread"],
                        ", ".join(str(c) for c in r["server_threads"]["busiest_other_threads"]),
                    ]
                    for r in data["results"]
                ],
            ),
            "",
            "## Notes",
            "",
            "- Received fps stays near 25 even when the server cannot render in time: the paced "
            "track repeats the last frame, so the dropped-frame share is the stricter criterion.",
            "- The viewers' VP8 decoding and this client's work ('client cores') run on the same "
            f"{data['machine']['cpu_cores']} cores as the server; 'other cores' are other jobs "
            "sharing the machine.",
            "- Each session renders on its own one-thread executor (ServerConfig.torch_threads = "
            "1), so N sessions need about N x frame_time / 40 ms cores for rendering alone, plus "
            "VP8 and Opus encoding per viewer.",
            "- GPU: sessions per GPU need a lent GPU and a server option to render on CUDA "
            "(--device cuda is not supported by the server yet); no GPU was lent to this task, "
            "so this table is CPU only.",
        ]
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.device != "cpu":
        raise SystemExit(
            "--device cuda: the live server has no GPU rendering option yet, so sessions per GPU "
            "cannot be measured; run on a machine with a lent GPU once `facecast serve` can "
            "render on CUDA"
        )
    data: dict[str, Any] = {
        "machine": live_machine_info(),
        "device": args.device,
        "fps": args.fps,
        "seconds": args.seconds,
        "idle": args.idle,
    }
    cap = str(max(args.sessions) + 1)
    server_args = ("--max-sessions", cap, "--session-idle-timeout", "30")
    with contextlib.ExitStack() as stack:
        servers = {"this": stack.enter_context(serve(args.url, *server_args))}
        if args.before is not None:
            servers["before"] = stack.enter_context(serve(None, *server_args, root=args.before))
        data["server"] = {
            "url": servers["this"].url,
            "own_subprocess": servers["this"].pid is not None,
        }
        records = asyncio.run(
            _measure({label: (h.url, h.pid) for label, h in servers.items()}, args)
        )
    data["results"] = records["this"]
    if args.before is not None:
        held = [r["sessions"] for r in records["before"] if r["held"]]
        data["before"] = {
            "root": str(args.before),
            "results": records["before"],
            "largest_held": max(held) if held else 0,
        }
    finish_machine_info(data["machine"])
    held_ns = [r["sessions"] for r in data["results"] if r["held"]]
    data["largest_held"] = max(held_ns) if held_ns else 0
    data["headline"] = {"largest_n_held": data["largest_held"]} | {
        f"received_fps_min_n{r['sessions']}": r["received_fps_min"] for r in data["results"]
    }
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 3, 4], help="N values")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per N")
    parser.add_argument("--idle", action="store_true", help="no speech: idle faces only")
    parser.add_argument("--fps", type=int, default=FPS, help="frame rate of every session")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--url", help="use this running server instead of starting one")
    parser.add_argument(
        "--before", type=Path, help="an older checkout: its server runs each N beside this one's"
    )
    run_and_report(NAME, parser, run, _markdown, argv)


if __name__ == "__main__":
    main()
