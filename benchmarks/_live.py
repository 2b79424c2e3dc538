"""What the live benchmarks share: a server to measure, its CPU, the machine's speed, headers.

Every live benchmark starts `facecast serve` in a subprocess on loopback (or takes
--url), measures it with real aiortc viewers in this process, and opens its report
with the same header: the machine, a reference render time taken just before the
run (the host is shared and its speed varies), and a note when it was busy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import machine_info, machine_markdown

__all__ = [
    "ServerHandle",
    "process_figures",
    "serve",
    "CpuMeter",
    "reference_render_ms",
    "live_machine_info",
    "reference_note",
    "metric_total",
    "load_note",
    "live_header",
]

BUSY_LOAD = 1.5  # load average above this on 2 cores: say so next to the numbers


@dataclass(frozen=True)
class ServerHandle:
    url: str
    pid: int | None  # None when the server is not ours (--url)


@contextlib.contextmanager
def serve(url: str | None, *server_args: str, root: Path | None = None) -> Iterator[ServerHandle]:
    """A running server: --url as given, else `facecast serve` in a subprocess on loopback.

    The subprocess gets a fresh data dir and avatar cache, so uploads are analysed cold;
    it runs from the checkout `root` (default: this one), so benchmarks compare commits.
    """
    if url:
        yield ServerHandle(url.rstrip("/"), None)
        return
    from tests.live import ROOT, run_server

    with tempfile.TemporaryDirectory(prefix="facecast-bench-") as tmp:
        env = {"FACECAST_CACHE_DIR": str(Path(tmp) / "avatars")}
        with run_server(Path(tmp), *server_args, env=env, root=root or ROOT) as server:
            yield ServerHandle(server.url, server.process.pid)


def _process_cpu_s(pid: int | None) -> float:
    """utime + stime of a process (all its threads), seconds; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_figures(pid: int | None) -> dict[str, float]:
    """RSS (MB), threads and open file descriptors of a process; {} when unknown."""
    if pid is None:
        return {}
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        return {}
    values = {line.split(":")[0]: line.split(":")[1].split() for line in status if ":" in line}
    return {
        "rss_mb": round(int(values["VmRSS"][0]) / 1024, 1),
        "threads": int(values["Threads"][0]),
        "fds": fds,
    }


def _machine_busy_s() -> float:
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores in use during a measurement: the server process, this (client) process, the rest.

    With an external server (--url) its CPU is part of 'other'.
    """

    def __init__(self, server_pid: int | None) -> None:
        self._pid = server_pid
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float, float]:
        own = os.times()
        return (
            time.perf_counter(),
            _machine_busy_s(),
            _process_cpu_s(self._pid),
            own.user + own.system,
        )

    def cores(self) -> dict[str, float]:
        end = self._snapshot()
        wall = max(end[0] - self._start[0], 1e-9)
        machine, server, client = (end[i] - self._start[i] for i in (1, 2, 3))
        return {
            "machine_cores": round(machine / wall, 2),
            "server_cores": round(server / wall, 2),
            "client_cores": round(client / wall, 2),
            "other_cores": round(max(0.0, machine - server - client) / wall, 2),
        }


def reference_render_ms(frames: int = 40) -> float:
    """This machine's speed right now: p50 ms of one standalone 512x512 render (1 torch thread,
    built-in portrait, neutral pose), to read the server's frame_time_ms_p50 against.

    The host is shared: the same loop has varied 2x within minutes on an idle guest."""
    import torch

    from engines.face.encoder import FaceEncoder
    from engines.motion.space import neutral_motion
    from engines.render.renderer import FaceRenderer, RendererConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        renderer = FaceRenderer(FaceEncoder().encode(None), RendererConfig())
        motion = neutral_motion(1)
        times = []
        with torch.inference_mode():
            for i in range(frames + 3):
                start = time.perf_counter()
                renderer.render(motion)
                if i >= 3:
                    times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return round(float(np.median(times)) * 1000, 1)


def live_machine_info() -> dict[str, Any]:
    """machine_info() plus the reference render time (measured before the server starts)."""
    info = machine_info()
    info["reference_render_ms_p50"] = reference_render_ms()
    return info


def reference_note(info: dict[str, Any]) -> str:
    return (
        f"Reference: a standalone render (1 torch thread, batch 1, neutral pose) took "
        f"{info['reference_render_ms_p50']} ms p50 on this machine just before the run."
    )


async def metric_total(client: Any, name: str) -> float:
    """Sum of a metric's samples (all label sets) from the server's /metrics text."""
    text = await client.request("GET", "/metrics")
    total = 0.0
    for line in str(text).splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def load_note(info: dict[str, Any]) -> str:
    """A warning line when the machine was busy at the start or the end of a run."""
    worst = max(info["loadavg_start"][0], (info.get("loadavg_end") or [0.0])[0])
    if worst <= BUSY_LOAD:
        return ""
    return (
        f"**The machine was busy**: 1-min load average up to {worst:.2f} on "
        f"{info['cpu_cores']} cores. It counts this benchmark's own server and client too; the "
        "'other' CPU figures below are what other jobs used during the measurement."
    )


def live_header(title: str, info: dict[str, Any]) -> list[str]:
    """Markdown lines every live benchmark opens with: title, machine, reference, load note."""
    note = load_note(info)
    return [
        title,
        "",
        machine_markdown(info),
        "",
        reference_note(info),
        "",
        *([note, ""] if note else []),
    ]
