"""Memory per live session, and whether a server gives it back: 50 create/watch/delete cycles.

Usage: python -m benchmarks.bench_session_memory [--cycles 50] [--url URL] [--before PATH]

Starts `facecast serve` in a subprocess (or uses --url; RSS, threads and file
descriptors are then not read). Each cycle creates a 25 fps session, watches it
with one real aiortc peer in this process, streams 1 s of real speech over the
PCM WebSocket, waits for the frames, closes the viewer and deletes the session.
After each cycle, and while the session is live, the server's RSS, thread count
and open file descriptors are read from /proc. Reported: the idle server, the
extra memory one live session holds, and growth over the cycles (the slope of
RSS after deletion from cycle 10 on, where allocator warm-up has settled; a leak
of a session's buffers shows as MB per cycle, leaked threads or sockets as a
climbing count). A plot of the three curves is written beside the results.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import RESULTS_DIR, finish_machine_info, markdown_table, run_and_report
from benchmarks._live import live_header, live_machine_info, process_figures, serve
from benchmarks.bench_sessions import PCM_RATE, _speech_pcm

__all__ = ["main", "run"]

NAME = "bench_session_memory"
FPS = 25
WARM_CYCLES = 10  # the allocator's and the caches' first cycles are not growth
SETTLE_S = 0.5


def growth_per_cycle(values: list[float], warm: int = WARM_CYCLES) -> float | None:
    """Least-squares slope of values against the cycle number, from cycle `warm` on."""
    tail = values[warm:]
    if len(tail) < 3:
        return None
    return float(np.polyfit(np.arange(len(tail)), np.asarray(tail, float), 1)[0])


async def _cycles(url: str, pid: int | None, cycles: int, pcm: bytes) -> list[dict[str, Any]]:
    from server.client import FacecastClient

    records = []
    async with FacecastClient(url) as client:
        for cycle in range(cycles):
            began = time.monotonic()
            session = await client.create_session(fps=FPS)
            viewer = await client.watch(session["id"], keep_pixels=lambda index: False)
            try:
                await viewer.wait_frames(FPS // 2, timeout_s=30)
                await client.stream_pcm(session["id"], pcm, PCM_RATE)
                await viewer.wait_frames(len(viewer.frames) + FPS // 2, timeout_s=30)
                live = process_figures(pid)
                frames = len(viewer.frames)
            finally:
                await viewer.close()
                await client.delete_session(session["id"])
            await asyncio.sleep(SETTLE_S)
            after = process_figures(pid)
            left = len(await client.request("GET", "/api/sessions"))
            records.append(
                {
                    "cycle": cycle,
                    "seconds": round(time.monotonic() - began, 2),
                    "frames_received": frames,
                    "sessions_left": left,
                    **{f"live_{k}": v for k, v in live.items()},
                    **after,
                }
            )
            print(records[-1], flush=True)
    return records


def _plot(runs: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, measured in runs.items():
        records = measured["records"]
        cycles = [r["cycle"] for r in records]
        for axis, key, label in (
            (axes[0], "rss_mb", "server RSS (MB)"),
            (axes[1], "threads", "server threads"),
            (axes[2], "fds", "open file descriptors"),
        ):
            live = axis.plot(cycles, [r.get(f"live_{key}") for r in records], ls=":")
            axis.plot(cycles, [r.get(key) for r in records], color=live[0].get_color(), label=name)
            axis.set_xlabel("create / watch / delete cycle")
            axis.set_title(f"{label}: after delete (dotted: live)")
    for axis in axes:
        axis.axvline(WARM_CYCLES, color="grey", lw=0.8, ls=":")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _measure(url: str | None, root: Path | None, cycles: int, pcm: bytes) -> dict[str, Any]:
    with serve(url, root=root) as server:
        time.sleep(1.0)
        idle = process_figures(server.pid)
        records = asyncio.run(_cycles(server.url, server.pid, cycles, pcm))
    return {"summary": _summary(idle, records), "records": records}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.loopback import use_loopback_ice

    use_loopback_ice()
    info = live_machine_info()
    pcm = _speech_pcm(1.0)
    runs = {}
    if args.before is not None:
        runs["before"] = _measure(None, args.before, args.cycles, pcm)
    runs["after" if args.before is not None else "this"] = _measure(
        args.url, None, args.cycles, pcm
    )
    out_dir = args.out_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot(runs, out_dir / f"{NAME}.png")
    return {
        "machine": finish_machine_info(info),
        "before_root": str(args.before) if args.before else None,
        "runs": runs,
    }


def _summary(idle: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"idle": idle, "cycles": len(records)}
    if idle and records:
        live_extra = [r["live_rss_mb"] - r["rss_mb"] for r in records[WARM_CYCLES:]]
        summary.update(
            session_mb_median=round(float(np.median(live_extra)), 1) if live_extra else None,
            rss_after_first_mb=records[0]["rss_mb"],
            rss_after_last_mb=records[-1]["rss_mb"],
            rss_growth_mb_per_cycle=_round(growth_per_cycle([r["rss_mb"] for r in records])),
            threads_growth_per_cycle=_round(growth_per_cycle([r["threads"] for r in records])),
            fds_growth_per_cycle=_round(growth_per_cycle([r["fds"] for r in records])),
            sessions_left_max=max(r["sessions_left"] for r in records),
        )
    return summary


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


MEASURES = (
    ("idle server RSS (MB), threads, fds", lambda s: _triple(s.get("idle", {}))),
    ("RSS one live session adds (MB, median from cycle 10)", lambda s: s.get("session_mb_median")),
    ("RSS after cycle 1 / after the last (MB)", lambda s: _pair(s)),
    (
        "RSS growth after delete (MB per cycle, from cycle 10)",
        lambda s: s.get("rss_growth_mb_per_cycle"),
    ),
    ("threads growth per cycle", lambda s: s.get("threads_growth_per_cycle")),
    ("file descriptors growth per cycle", lambda s: s.get("fds_growth_per_cycle")),
    ("sessions left after a delete (max)", lambda s: s.get("sessions_left_max")),
)


def markdown(data: dict[str, Any]) -> str:
    runs = data["runs"]
    rows = [[label, *(value(r["summary"]) for r in runs.values())] for label, value in MEASURES]
    names = list(runs)
    every = []
    for name, measured in runs.items():
        records = measured["records"]
        every += [
            [name, r["cycle"], r["live_rss_mb"], r["rss_mb"], r["live_threads"], r["threads"]]
            for r in records
            if r["cycle"] % 10 == 0 or r["cycle"] == len(records) - 1
        ]
    cycles = next(iter(runs.values()))["summary"]["cycles"]
    before = (
        [f"before = `{data['before_root']}`, after = this checkout, one after the other.", ""]
        if data.get("before_root")
        else []
    )
    return "\n".join(
        [
            *live_header("# Memory per session over create/watch/delete", data["machine"]),
            f"{cycles} cycles, each: create a 25 fps session, one aiortc viewer, 1 s of "
            "speech over the PCM WebSocket, close, delete; figures read from the server "
            "process's /proc entry while the session is live and 0.5 s after deletion.",
            "",
            *before,
            markdown_table(["measure", *names], rows),
            "",
            f"![{NAME}.png]({NAME}.png)",
            "",
            markdown_table(
                ["server", "cycle", "RSS live", "RSS after", "threads live", "threads after"],
                every,
            ),
        ]
    )


def _triple(figures: dict[str, Any]) -> str:
    return ", ".join(str(figures.get(k)) for k in ("rss_mb", "threads", "fds"))


def _pair(summary: dict[str, Any]) -> str:
    return f"{summary.get('rss_after_first_mb')} / {summary.get('rss_after_last_mb')}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--url", help="a running server (RSS is then not read)")
    parser.add_argument("--before", type=Path, help="an older checkout, measured first")
    run_and_report(NAME, parser, run, markdown, argv)


if __name__ == "__main__":
    main()
