"""What single cheap, abusive requests cost a live server: before and after the hardening.

Usage: python -m benchmarks.bench_abuse --before PATH [--scenarios a,b,...]

PATH is a checkout of the commit before the hardening (e.g. `git worktree add
/tmp/before <commit>`); both servers run from the same virtual environment, one
after the other for each scenario, each fresh, so the two columns are measured
side by side on the same machine minutes apart. While a scenario runs, a probe
thread asks /api/health every 50 ms (its worst latency is how long the event loop
stalled) and the server's RSS is sampled every 50 ms. All traffic is loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from PIL import Image

from benchmarks._common import finish_machine_info, machine_info, markdown_table, run_and_report
from benchmarks._live import process_figures
from tests.abuse import face_png, offer_sdp, with_candidates, without_candidates
from tests.live import ROOT, LiveServer, run_server

__all__ = ["main", "run"]

NAME = "bench_abuse"
PROBE_S = 0.05


@dataclass
class Probe:
    """Health-probe latencies (from a separate process, so this one's work cannot delay
    them) and RSS samples of one server while a scenario runs."""

    server: LiveServer
    rss_mb: list[float] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _process: subprocess.Popen[str] | None = None

    def run(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PROBE_SCRIPT, self.server.url, str(PROBE_S)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self._process.stdout.readline()  # "ready": probing before the scenario starts
        self.ready.set()
        while not self._stop.is_set():
            self.rss_mb.append(_rss_mb(self.server.process.pid))
            time.sleep(PROBE_S)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        latencies: list[float] = []
        if self._process is not None:
            out, _ = self._process.communicate("stop\n", timeout=150)
            latencies = json.loads(out or "[]")
        return {
            "loop_stall_ms_max": round(max(latencies, default=0) * 1000, 1),
            "rss_mb_peak": round(max(self.rss_mb, default=0), 1),
        }


# The probe: its own process with nothing but httpx, so neither this process's work
# nor its imports can delay a probe. GET /api/health every interval until stdin says stop.
_PROBE_SCRIPT = """
import json, sys, threading, time
import httpx
url, interval = sys.argv[1], float(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
latencies = []
with httpx.Client(base_url=url, timeout=120) as client:
    client.get("/api/health")
    print("ready", flush=True)
    while not stop.is_set():
        start = time.perf_counter()
        try:
            client.get("/api/health")
        except httpx.HTTPError:
            pass
        latencies.append(time.perf_counter() - start)
        time.sleep(interval)
print(json.dumps(latencies))
"""


def _rss_mb(pid: int) -> float:
    return float(process_figures(pid).get("rss_mb", 0.0))


def _cpu_s(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _measured(root: Path) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    """A fresh server from `root`, its probe running; the dict collects the scenario's figures."""
    with (
        tempfile.TemporaryDirectory(prefix="facecast-abuse-") as tmp,
        run_server(Path(tmp), env={"FACECAST_CACHE_DIR": f"{tmp}/avatars"}, root=root) as server,
    ):
        time.sleep(1.0)
        figures: dict[str, Any] = {"rss_mb_start": round(_rss_mb(server.process.pid), 1)}
        probe = Probe(server)
        thread = threading.Thread(target=probe.run, daemon=True)
        thread.start()
        probe.ready.wait(timeout=60)
        try:
            yield server, figures
        finally:
            figures.update(probe.stop())
            thread.join(timeout=130)
            figures["rss_mb_end"] = round(_rss_mb(server.process.pid), 1)
            figures["tracebacks_in_log"] = server.log_path.read_text(errors="replace").count(
                "Traceback"
            )


# ---- the scenarios ------------------------------------------------------------------------


def never_connecting_whep(server: LiveServer, figures: dict[str, Any]) -> None:
    """Four WHEP offers without candidates whose clients leave; 20 s later, room for a fifth?"""
    sdp = without_candidates(offer_sdp())
    cpu = _cpu_s(server.process.pid)
    with httpx.Client(base_url=server.url, timeout=60) as api:
        for _ in range(4):
            api.post("/whep", content=sdp, headers={"Content-Type": "application/sdp"})
        time.sleep(20)
        figures["server_cores_while_unwatched"] = round((_cpu_s(server.process.pid) - cpu) / 20, 2)
        figures["sessions_left_after_20s"] = len(api.get("/api/sessions").json())
        figures["next_session_status"] = api.post("/api/sessions", json={}).status_code


def huge_pcm_message(server: LiveServer, figures: dict[str, Any]) -> None:
    """One 10 MiB PCM message at 16 kHz, then a controls message: answered?"""

    async def attack() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as api:
            session_id = (await api.post("/api/sessions", json={})).json()["id"]
        url = "ws" + server.url[4:] + f"/api/sessions/{session_id}/stream?sample_rate=16000"
        async with websockets.connect(url, max_size=None) as socket:
            try:
                await socket.send(b"\x00\x10" * (5 * 1024 * 1024))
                start = time.perf_counter()
                await socket.send(json.dumps({"type": "controls", "emotion": "happy"}))
                while True:
                    event = json.loads(await asyncio.wait_for(socket.recv(), 5))
                    if event["type"] in ("controls", "error"):
                        break
                figures["reply"] = event["type"]
                figures["reply_ms"] = round((time.perf_counter() - start) * 1000, 1)
            except (TimeoutError, websockets.ConnectionClosed) as exc:
                closed = getattr(exc, "rcvd", None)
                figures["reply"] = f"closed {closed.code}" if closed else "none within 5 s"

    asyncio.run(attack())


def many_candidates(server: LiveServer, figures: dict[str, Any]) -> None:
    """An /offer carrying 3 500 ICE candidates."""
    with httpx.Client(base_url=server.url, timeout=300) as api:
        session_id = api.post("/api/sessions", json={}).json()["id"]
        start = time.perf_counter()
        response = api.post(
            f"/api/sessions/{session_id}/offer", json={"sdp": with_candidates(offer_sdp(), 3500)}
        )
        figures["status"] = response.status_code
        figures["answered_ms"] = round((time.perf_counter() - start) * 1000, 1)


def many_uploads(server: LiveServer, figures: dict[str, Any], count: int = 36) -> None:
    """`count` different face uploads: what stays on disk and in memory."""
    with httpx.Client(base_url=server.url, timeout=120) as api:
        statuses = [
            api.post("/api/portraits", files={"file": (f"p{i}.png", face_png(i))}).status_code
            for i in range(1, count + 1)
        ]
        figures["uploads_accepted"] = statuses.count(201)
        figures["portraits_listed"] = len(api.get("/api/portraits").json()) - 1
    disk = Path(server.log_path).parent / "portraits"
    figures["portrait_disk_mb"] = round(sum(p.stat().st_size for p in disk.iterdir()) / 2**20, 1)


def sparse_png(server: LiveServer, figures: dict[str, Any]) -> None:
    """A 99-megapixel 16-bit grayscale PNG of a few hundred KB."""
    buffer = io.BytesIO()
    Image.new("I;16", (9950, 9950), 1000).save(buffer, "PNG")
    with httpx.Client(base_url=server.url, timeout=300) as api:
        start = time.perf_counter()
        response = api.post("/api/portraits", files={"file": ("bomb.png", buffer.getvalue())})
        figures["status"] = response.status_code
        figures["answered_ms"] = round((time.perf_counter() - start) * 1000, 1)
        figures["file_kb"] = len(buffer.getvalue()) // 1024


def speech_flood(server: LiveServer, figures: dict[str, Any]) -> None:
    """Six /speak calls of 3 000 characters on one session, then "hi" on another."""
    text = ("We talk about the weather and then we stop for a while. " * 60)[:3000]

    async def flood() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as api:
            busy = (await api.post("/api/sessions", json={})).json()["id"]
            other = (await api.post("/api/sessions", json={})).json()["id"]
            calls = [
                asyncio.create_task(api.post(f"/api/sessions/{busy}/speak", json={"text": text}))
                for _ in range(6)
            ]
            await asyncio.sleep(0.1)
            start = time.perf_counter()
            hi = await api.post(f"/api/sessions/{other}/speak", json={"text": "hi"})
            figures["hi_ms"] = round((time.perf_counter() - start) * 1000, 1)
            figures["hi_status"] = hi.status_code
            statuses = [r.status_code for r in await asyncio.gather(*calls)]
            figures["flood_statuses"] = ",".join(map(str, sorted(statuses)))
            figures["flood_done_ms"] = round((time.perf_counter() - start) * 1000, 1)

    asyncio.run(flood())


def big_whep_body(server: LiveServer, figures: dict[str, Any]) -> None:
    """A 100 MB WHEP body (the old limit was checked after reading it all)."""
    with httpx.Client(base_url=server.url, timeout=120) as api:
        start = time.perf_counter()
        try:
            response = api.post(
                "/whep", content=b"v" * (100 * 2**20), headers={"Content-Type": "application/sdp"}
            )
            figures["status"] = response.status_code
        except httpx.HTTPError as exc:  # the server answered 413 and closed before the body ended
            figures["status"] = f"closed early ({type(exc).__name__})"
        figures["answered_ms"] = round((time.perf_counter() - start) * 1000, 1)


def stalled_stream(server: LiveServer, figures: dict[str, Any]) -> None:
    """200 ms of PCM, then silence without end_of_utterance; how long does a /speak wait?"""

    async def stall() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as api:
            session_id = (await api.post("/api/sessions", json={})).json()["id"]
            base = "ws" + server.url[4:] + f"/api/sessions/{session_id}"
            async with (
                websockets.connect(base + "/events") as events,
                websockets.connect(base + "/stream?sample_rate=16000") as stream,
            ):
                await stream.send(b"\x00\x10" * 3200)
                await asyncio.sleep(0.3)
                start = time.perf_counter()
                spoken = await api.post(f"/api/sessions/{session_id}/speak", json={"text": "hi"})
                utterance = spoken.json()["utterance_id"]
                figures["tts_started_ms"] = "not within 20 s"
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        event = json.loads(await asyncio.wait_for(events.recv(), 1))
                    except TimeoutError:
                        continue
                    if event.get("type") == "playback_started" and (
                        event.get("utterance_id") == utterance
                    ):
                        figures["tts_started_ms"] = round((time.perf_counter() - start) * 1000)
                        break

    asyncio.run(stall())


SCENARIOS: dict[str, Callable[[LiveServer, dict[str, Any]], None]] = {
    "never-connecting WHEP x4": never_connecting_whep,
    "10 MiB PCM message": huge_pcm_message,
    "3 500 ICE candidates": many_candidates,
    "36 portrait uploads": many_uploads,
    "99 MP 16-bit PNG": sparse_png,
    "6 x 3 000-char /speak + hi": speech_flood,
    "100 MB WHEP body": big_whep_body,
    "stalled stream, then /speak": stalled_stream,
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info()
    chosen = [s for s in SCENARIOS if not args.scenarios or s in args.scenarios.split(",")]
    results = []
    for scenario in chosen:
        row: dict[str, Any] = {"scenario": scenario}
        for label, root in (("before", args.before), ("after", ROOT)):
            with _measured(root) as (server, figures):
                SCENARIOS[scenario](server, figures)
            row[label] = figures
            print(scenario, label, figures, flush=True)
        results.append(row)
    return {"machine": finish_machine_info(info), "results": results}


def markdown(data: dict[str, Any]) -> str:
    rows = []
    for result in data["results"]:
        before, after = result["before"], result["after"]
        for key in before:
            if key in ("rss_mb_start",):
                continue
            rows.append([result["scenario"], key, before.get(key), after.get(key)])
    info = data["machine"]
    return "\n".join(
        [
            "# Abusive requests: before and after the hardening",
            "",
            f"Measured {info['date']} on {info['cpu_model']} ({info['cpu_cores']} cores); "
            "each cell from a fresh `facecast serve` on loopback, the two columns minutes apart. "
            "loop_stall_ms_max is the worst /api/health latency during the scenario "
            "(50 ms probes), rss_mb_peak the largest server RSS sampled. The 'after' server "
            "uses its defaults (15 s connect deadline, 1 MiB WebSocket messages, "
            "64 candidates, 32 portraits).",
            "",
            markdown_table(["scenario", "measure", "before", "after"], rows),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout before the fix")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    run_and_report(NAME, parser, run, markdown, argv)


if __name__ == "__main__":
    main()
