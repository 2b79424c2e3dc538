"""The GPU check's session checks: the batched sampler, sessions per box, memory per stream.

Streams are engines only, benchmarks._streams.EngineStream as bench_engines runs
them (that module loads no PyAV): each is a LearnedMotion fed
40 ms chunks of a looping speech clip, and for the session checks its own
frame renderer, on its own thread.

- sampler: N motion streams on N threads through the backend the server uses
  (torch-cuda: its shared CoalescingDenoiser; in CPU mode the torch-cpu
  denoiser behind one CoalescingDenoiser, so the same batching code runs);
  ms per frame per session = wall time / frames / N; sessions per batch from
  the coalescer's counters.
- sessions per box: the largest N whose slowest stream renders >= 30 fps
  (doubling, then bisecting, within a time budget), the process's CPU cores
  meanwhile, and the estimate with the media plane added (see box_estimate).
- memory: GPU memory (allocated and reserved) and host RSS per extra stream.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._streams import EngineStream, largest_holding
from benchmarks.gpu_check_report import Report, against
from engines.backends.batching import CoalescingDenoiser
from engines.backends.registry import BackendConfig
from engines.face.avatar import Avatar

__all__ = ["StreamSizes", "check_sampler", "check_sessions", "check_memory"]

logger = logging.getLogger(__name__)

SESSION_FPS = 30.0  # issue 15: sessions per box at 30 fps, target >= 32 on an H200 box
SESSIONS_TARGET = 32
SAMPLER_MS_TARGET = 3.0  # issue 15: sampled motion <= 3 ms per frame per session, batched
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class StreamSizes:
    sessions: tuple[int, ...]  # sampler: concurrent motion streams
    chunks: int  # sampler: 40 ms chunks per stream, timed
    capacity_cap: int  # sessions per box: stop doubling here
    capacity_frames: int  # frames per stream per trial
    capacity_budget_s: float  # stop searching after this
    memory_streams: int  # extra streams in the memory check


def _run_threads(streams: list[EngineStream], frames: int) -> tuple[list[float], float, float]:
    """Each stream on its own thread until it made `frames` frames, started together.

    Returns (fps of each stream, wall seconds of the slowest, process CPU cores used).
    """
    barrier = threading.Barrier(len(streams) + 1)
    fps: list[float] = []
    errors: list[BaseException] = []

    def run(stream: EngineStream) -> None:
        try:
            barrier.wait()
            start, done = time.perf_counter(), 0
            while done < frames:
                done += stream.step()
            fps.append(done / (time.perf_counter() - start))
        except BaseException as error:  # re-raised on the calling thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in streams]
    for t in threads:
        t.start()
    barrier.wait()
    cpu0, wall0 = os.times(), time.perf_counter()
    for t in threads:
        t.join()
    wall, cpu1 = time.perf_counter() - wall0, os.times()
    if errors:
        raise errors[0]
    cores = ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / max(wall, 1e-9)
    return fps, wall, cores


def _coalescer(streams: list[EngineStream]) -> CoalescingDenoiser:
    """The CoalescingDenoiser every stream's sampler calls (made shared for torch-cpu)."""
    shared = streams[0].motion.sampler.denoiser
    if not isinstance(shared, CoalescingDenoiser):  # torch-cpu: each session calls the module
        shared = CoalescingDenoiser(shared)
    for s in streams:
        s.motion.sampler.denoiser = shared
    return shared


def check_sampler(
    report: Report, speech: np.ndarray, backend: BackendConfig, sizes: StreamSizes
) -> None:
    for n in sizes.sessions:
        streams = [
            EngineStream(speech, backend, seed=i, fps=25.0, offset_chunks=7 * i) for i in range(n)
        ]
        coalescer = _coalescer(streams)
        for s in streams:  # a receptive field of features, and warm kernels
            for _ in range(10):
                s.push()
        batches, calls = coalescer.batches, coalescer.calls
        _, wall, cores = _run_threads(streams, sizes.chunks)  # one frame per 40 ms chunk
        per_batch = (coalescer.calls - calls) / max(coalescer.batches - batches, 1)
        per_frame = wall * 1e3 / sizes.chunks / n
        report.add(
            "sampler",
            f"{n} session(s) on threads, {backend.motion.name}",
            against(per_frame, SAMPLER_MS_TARGET, False, backend.on_gpu and n > 1),
            per_frame,
            "ms/frame/session",
            f"<= {SAMPLER_MS_TARGET:g} batched" if n > 1 else "",
            f"{wall * 1e3 / sizes.chunks:.3g} ms per frame of all {n}; {per_batch:.1f} sessions "
            f"per denoiser batch; {cores:.2f} CPU cores",
            sessions=n,
            sessions_per_batch=per_batch,
            cpu_cores=cores,
        )


class _Pool:
    """Streams made on demand and reused across trials (a renderer per stream)."""

    def __init__(self, avatar: Avatar, speech: np.ndarray, backend: BackendConfig) -> None:
        self.avatar, self.speech, self.backend = avatar, speech, backend
        self.streams: list[EngineStream] = []

    def take(self, n: int) -> list[EngineStream]:
        while len(self.streams) < n:
            seed = len(self.streams)
            s = EngineStream(self.speech, self.backend, seed, SESSION_FPS, self.avatar, 7 * seed)
            for _ in range(3):  # features, and the renderer's graph capture
                s.step()
            self.streams.append(s)
        return self.streams[:n]


def _capacity(pool: _Pool, sizes: StreamSizes) -> tuple[int, dict[int, dict[str, float]], str]:
    """Largest N whose slowest stream holds SESSION_FPS: doubling, then bisecting."""
    tried: dict[int, dict[str, float]] = {}
    deadline = time.perf_counter() + sizes.capacity_budget_s

    def holds(n: int) -> bool:
        if n not in tried:
            fps, _, cores = _run_threads(pool.take(n), sizes.capacity_frames)
            tried[n] = {
                "slowest_fps": min(fps),
                "mean_fps": float(np.mean(fps)),
                "cpu_cores": cores,
            }
            logger.info("%d streams: slowest %.1f fps, %.2f cores", n, min(fps), cores)
        return tried[n]["slowest_fps"] >= SESSION_FPS

    good, bad, doubling_cut = largest_holding(holds, sizes.capacity_cap, deadline)
    if doubling_cut:
        return good, tried, f"time budget ({sizes.capacity_budget_s:g} s) spent while doubling"
    if bad is None:
        return good, tried, f"held at the cap ({sizes.capacity_cap}); more may fit"
    if bad - good > 1:
        return good, tried, f"time budget spent: between {good} and {bad}"
    return good, tried, ""


def media_cores_per_session(fps: float) -> tuple[float | None, str]:
    """CPU cores one session's media plane needs at fps, from committed CPU benchmarks.

    H.264 encode (bench_encode: the live server's x264 preset, CPU ms per frame) plus
    the event-loop thread's WebRTC packetising and encryption (bench_sessions, 1
    session at 25 fps), both measured on the 2-core CPU machine, scaled to fps.
    """
    import json

    try:
        encode = json.loads((RESULTS / "bench_encode.json").read_text())
        live = [r for r in encode["records"] if "(live)" in str(r.get("preset"))][0]
        encode_ms = float(live["cpu_ms"]["mean"])
        sessions = json.loads((RESULTS / "bench_sessions.json").read_text())
        one = [r for r in sessions["results"] if r["sessions"] == 1][0]
        loop_cores = float(one["server_threads"]["main_thread"]) * fps / float(sessions["fps"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        return None, f"media-plane cost unknown ({type(error).__name__}: {error})"
    cores = encode_ms * fps / 1e3 + loop_cores
    source = (
        f"media plane {cores:.3f} cores/session at {fps:g} fps = H.264 {encode_ms:.2f} ms/frame "
        f"(bench_encode.json, {encode['machine']['date'][:10]}) + event loop {loop_cores:.3f} "
        f"cores (bench_sessions.json, {sessions['machine']['date'][:10]}), both on CPU"
    )
    return cores, source


def box_estimate(engines_n: int, engine_cores: float, box_cores: int) -> dict[str, Any]:
    """Sessions a box holds: the engines' GPU capacity and the CPU left for the media plane."""
    media, source = media_cores_per_session(SESSION_FPS)
    per_session = engine_cores / max(engines_n, 1)
    if media is None:
        return {"sessions": None, "source": source}
    cpu_bound = int(box_cores // (per_session + media))
    return {
        "sessions": min(engines_n, cpu_bound),
        "cpu_bound": cpu_bound,
        "engine_cores_per_session": per_session,
        "media_cores_per_session": media,
        "source": source,
    }


def check_sessions(
    report: Report, avatar: Avatar, speech: np.ndarray, backend: BackendConfig, sizes: StreamSizes
) -> None:
    pool = _Pool(avatar, speech, backend)
    n, tried, stop = _capacity(pool, sizes)
    cores = tried.get(n, {}).get("cpu_cores", 0.0)
    trials = "; ".join(
        f"{k}: {v['slowest_fps']:.1f} fps, {v['cpu_cores']:.2f} cores"
        for k, v in sorted(tried.items())
    )
    report.add(
        "sessions per box",
        f"engines only, {backend.label}, streams on threads",
        "measured",
        float(n),
        f"sessions >= {SESSION_FPS:g} fps",
        "",
        f"slowest stream per N: {trials}" + (f"; {stop}" if stop else ""),
        tried={str(k): v for k, v in tried.items()},
        engine_process_cores=cores,
    )
    box = box_estimate(n, cores, os.cpu_count() or 1)
    value = None if box["sessions"] is None else float(box["sessions"])
    status = "error" if value is None else against(value, SESSIONS_TARGET, True, backend.on_gpu)
    note = box["source"]
    if value is not None:
        note = (
            f"min(engines {n}, CPU {box['cpu_bound']} = {os.cpu_count()} cores / "
            f"({box['engine_cores_per_session']:.3f} engine + "
            f"{box['media_cores_per_session']:.3f} media) per session); {note}"
        )
    report.add(
        "sessions per box",
        f"engines + media plane estimate, {os.cpu_count()} cores",
        status,
        value,
        f"sessions at {SESSION_FPS:g} fps",
        f">= {SESSIONS_TARGET} on an H200 box",
        note,
        **box,
    )


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def check_memory(
    report: Report, avatar: Avatar, speech: np.ndarray, backend: BackendConfig, extra: int
) -> None:
    """Memory one more session's engines hold, after each made a few frames (graphs captured)."""
    cuda = backend.on_gpu
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def snapshot() -> tuple[float, float, float]:
        sync()
        if not cuda:
            return 0.0, 0.0, _rss_mib()
        return (
            torch.cuda.memory_allocated() / 2**20,
            torch.cuda.memory_reserved() / 2**20,
            _rss_mib(),
        )

    first = EngineStream(speech, backend, 0, SESSION_FPS, avatar)
    for _ in range(3):
        first.step()
    before = snapshot()
    more = [
        EngineStream(speech, backend, i + 1, SESSION_FPS, avatar, offset_chunks=7 * (i + 1))
        for i in range(extra)
    ]
    for s in more:
        for _ in range(3):
            s.step()
    after = snapshot()
    alloc, reserved, rss = ((a - b) / extra for a, b in zip(after, before, strict=True))
    if cuda:
        free, total = torch.cuda.mem_get_info()
        note = (
            f"reserved {reserved:.0f} MiB; host RSS {rss:.0f} MiB; "
            f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free after"
        )
        report.add(
            "memory per stream",
            f"GPU allocated, {extra} extra streams",
            "measured",
            alloc,
            "MiB/stream",
            "",
            note,
            reserved_mib=reserved,
            rss_mib=rss,
        )
    else:
        report.add("memory per stream", "GPU", "skipped", note="needs CUDA")
    note = "a lower bound: the allocator reuses memory that earlier checks freed"
    case = f"host RSS, {extra} extra streams"
    report.add("memory per stream", case, "measured", rss, "MiB/stream", note=note)
