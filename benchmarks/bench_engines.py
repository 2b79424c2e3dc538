"""The engines on every backend, side by side: per stage, one stream, many streams.

Usage: python -m benchmarks.bench_engines [--backends torch-cpu onnxruntime ...]
                                          [--max-streams 32] [--seconds 4]

Default: every backend that can run on this machine (engines.backends.registry.check_backend
decides; the others are listed with the reason), and torch-cpu/onnxruntime:
torch renders, onnxruntime runs the motion stages (--motion-backend). For each:

- per stage p50/p95: audio encoder (one frame's receptive field), one sampler
  step (the denoiser over 3 guidance rows), one sampled frame (4 steps plus
  the streaming bookkeeping), the renderer (batch 1, uint8 frame on the host),
  and H.264 encode (libx264 via Mp4Writer; the same on every backend);
- one stream: speech pushed in 40 ms chunks through motion + renderer + encoder
  as fast as it goes; frames per wall second and CPU cores used per stream at
  real time (process CPU seconds / audio seconds);
- first frame: a new stream (motion source + renderer for a cached portrait,
  graphs already exported) to its first rendered frame;
- audio to frame, engines only: the motion source's algorithmic look-ahead
  plus one render at p95 (the live server adds pacing and network on top;
  bench_audio_to_frame measures that end to end);
- streams per device: N streams on N threads, each rendering its own frames
  (cross-session batching on the GPU backends); the largest N whose slowest
  stream still makes 25, 30 and 40 fps, doubling N then bisecting;
- GPU memory per stream (CUDA backends): allocated by one more stream.

Engines only: no pacing, no WebRTC. The render step for 25 fps speech yields
whatever frame rate the stream asks for, so the FPS figures are capacity.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import (
    finish_machine_info,
    machine_info,
    machine_markdown,
    markdown_table,
    run_and_report,
    speech_file,
    summarize,
    timed_calls,
)
from benchmarks._streams import CHUNK, RATE, EngineStream, largest_holding
from engines.audio.decoding import read_audio
from engines.backends.registry import BACKEND_NAMES, BackendConfig, check_backends
from engines.errors import BackendUnavailableError
from engines.face.encoder import FaceEncoder
from server.mp4_output import Mp4Writer

__all__ = ["main"]

logger = logging.getLogger(__name__)

# Every backend, plus the split CPU setup: torch renders, onnxruntime samples motion.
DEFAULT_SETUPS = (*BACKEND_NAMES, "torch-cpu/onnxruntime")
STREAM_RATES = (25, 30, 40)  # 25: the CPU budget's rate; 30 and 40: the GPU's
TARGETS = {"gpu_engines_fps": 200, "gpu_sessions_30fps": 16, "audio_to_frame_ms": 150}


def _sync(backend: BackendConfig) -> None:
    if backend.on_gpu or backend.motion.on_gpu:
        torch.cuda.synchronize()


def _stage_times(avatar: Any, speech: np.ndarray, backend: BackendConfig, repeats: int) -> dict:
    stream = EngineStream(speech, backend, seed=0, avatar=avatar)
    motion = stream.motion
    for _ in range(10):  # a receptive field of features, and warm caches
        stream.step()
    sync = lambda: _sync(backend)  # noqa: E731
    encoder_in = torch.from_numpy(motion._rows[-(motion._context + 2) :])[None]
    with torch.inference_mode():  # as the streaming source runs it
        encoder = timed_calls(lambda i: motion.stages.encoder(encoder_in), 5, repeats, sync)
    sampler = motion.sampler
    w, k = motion.model.window, motion.model.prefix
    embedding = motion.stages.encoder(encoder_in)[:, -1:]
    audio = torch.cat([embedding, embedding[:, -1:].expand(-1, w - 1, -1)], 1)
    states = torch.zeros(1, w, 9)
    prev = torch.zeros(1, k, motion.model.config.motion_dim)
    x = torch.randn(1, w, motion.model.config.motion_dim)
    cond = (audio, prev, states)
    with torch.inference_mode():  # as sample_window runs it
        step = timed_calls(lambda i: sampler._guided(x, 500, cond), 5, repeats, sync)
    frame = timed_calls(lambda i: stream.push(), 5, repeats)
    motion_values = motion.rest_frame()[None]
    render = timed_calls(lambda i: stream.renderer.render(motion_values), 5, repeats, sync)
    rgb = stream.renderer.render(motion_values)[0]
    with tempfile.TemporaryDirectory() as tmp:
        size = stream.renderer.image_size
        with Mp4Writer(Path(tmp) / "bench.mp4", 25, width=size, height=size) as writer:
            encode = timed_calls(lambda i: writer.write_frame(rgb), 5, repeats)
    ms = lambda values: summarize([v * 1e3 for v in values])  # noqa: E731
    return {
        "audio_encoder_ms": ms(encoder),
        "sampler_step_ms": ms(step),
        "sampled_frame_ms": ms(frame),
        "renderer_ms": ms(render),
        "video_encode_ms": ms(encode),
        "motion_latency_ms": motion.latency_s * 1e3,
    }


def _one_stream(avatar: Any, speech: np.ndarray, backend: BackendConfig, seconds: float) -> dict:
    stream = EngineStream(speech, backend, seed=1, avatar=avatar)
    size = stream.renderer.image_size
    with (
        tempfile.TemporaryDirectory() as tmp,
        Mp4Writer(Path(tmp) / "one.mp4", 25, width=size, height=size) as writer,
    ):
        for _ in range(5):
            stream.step(writer.write_frame)
        chunks = int(seconds * RATE / CHUNK)
        cpu_start, wall_start, frames = os.times(), time.perf_counter(), 0
        for _ in range(chunks):
            frames += stream.step(writer.write_frame)
        _sync(backend)
        wall = time.perf_counter() - wall_start
        cpu_end = os.times()
    cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    audio_s = chunks * CHUNK / RATE
    return {"fps": frames / wall, "frames": frames, "cpu_cores_per_realtime_stream": cpu / audio_s}


def _first_frame(avatar: Any, speech: np.ndarray, backend: BackendConfig, runs: int) -> dict:
    times = []
    for seed in range(runs):
        start = time.perf_counter()
        stream = EngineStream(speech, backend, seed=seed, avatar=avatar)
        while stream.step() == 0:
            pass
        _sync(backend)
        times.append((time.perf_counter() - start) * 1e3)
    return summarize(times)


def _streams_fps(avatar: Any, speech: np.ndarray, backend: BackendConfig, n: int, frames: int):
    """Slowest stream's fps with n streams rendering `frames` frames each, concurrently."""
    streams = [EngineStream(speech, backend, seed=i, avatar=avatar) for i in range(n)]
    for stream in streams:
        for _ in range(3):
            stream.step()
    barrier = threading.Barrier(n)
    fps: list[float] = []

    def run(stream: EngineStream) -> None:
        barrier.wait()
        start, done = time.perf_counter(), 0
        while done < frames:
            done += stream.step()
        fps.append(done / (time.perf_counter() - start))

    threads = [threading.Thread(target=run, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return min(fps)


def _capacity(
    avatar: Any, speech: np.ndarray, backend: BackendConfig, target: float, cap: int
) -> dict:
    """Largest stream count whose slowest stream holds `target` fps (doubling, then bisecting)."""
    frames = 40
    tried: dict[int, float] = {}

    def holds(n: int) -> bool:
        if n not in tried:
            tried[n] = _streams_fps(avatar, speech, backend, n, frames)
            logger.info("%s: %d streams -> slowest %.1f fps", backend.label, n, tried[n])
        return tried[n] >= target

    good, _, _ = largest_holding(holds, cap)
    if good == 0:
        return {"streams": 0, "tried": {"1": round(tried[1], 1)}}
    return {"streams": good, "tried": {str(k): round(v, 1) for k, v in sorted(tried.items())}}


def _gpu_memory_per_stream(avatar: Any, speech: np.ndarray, backend: BackendConfig) -> float | None:
    if not torch.cuda.is_available() or backend.name != "torch-cuda":
        return None
    first = EngineStream(speech, backend, seed=0, avatar=avatar)
    first.step()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    second = EngineStream(speech, backend, seed=1, avatar=avatar)
    for _ in range(3):
        second.step()
    torch.cuda.synchronize()
    return (torch.cuda.memory_allocated() - before) / 2**20


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.torch_threads)
    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        label, path = speech_file(Path(tmp))
        speech = read_audio(path, RATE).astype(np.float32)
    avatar = FaceEncoder().encode(None)
    results: dict[str, Any] = {"speech": label, "backends": {}, "unavailable": {}}
    for name in args.backends or DEFAULT_SETUPS:
        renderer_name, _, motion_name = name.partition("/")
        backend = BackendConfig(renderer_name, motion_name=motion_name or None)
        try:
            check_backends(backend)
        except BackendUnavailableError as error:
            results["unavailable"][name] = str(error)
            continue
        logger.info("benchmarking %s", name)
        entry: dict[str, Any] = _stage_times(avatar, speech, backend, args.repeats)
        entry["one_stream"] = _one_stream(avatar, speech, backend, args.seconds)
        entry["first_frame_ms"] = _first_frame(avatar, speech, backend, 5)
        entry["audio_to_frame_ms"] = entry["motion_latency_ms"] + entry["renderer_ms"]["p95"]
        for fps in STREAM_RATES:
            entry[f"streams_at_{fps}fps"] = _capacity(
                avatar, speech, backend, fps, args.max_streams
            )
        entry["gpu_mib_per_stream"] = _gpu_memory_per_stream(avatar, speech, backend)
        results["backends"][name] = entry
    results["machine"] = finish_machine_info(info)
    results["targets"] = TARGETS
    return results


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['p50']:.2f} / {stats['p95']:.2f}"


def markdown(data: dict[str, Any]) -> str:
    backends = data["backends"]
    names = list(backends)
    rows = [
        ["audio encoder, ms p50 / p95", *(_cell(backends[n]["audio_encoder_ms"]) for n in names)],
        ["sampler step (3 rows), ms", *(_cell(backends[n]["sampler_step_ms"]) for n in names)],
        ["sampled frame (4 steps), ms", *(_cell(backends[n]["sampled_frame_ms"]) for n in names)],
        ["renderer (batch 1), ms", *(_cell(backends[n]["renderer_ms"]) for n in names)],
        ["H.264 encode, ms", *(_cell(backends[n]["video_encode_ms"]) for n in names)],
        ["one stream end to end, FPS", *(f"{backends[n]['one_stream']['fps']:.1f}" for n in names)],
        [
            "CPU cores per real-time stream",
            *(f"{backends[n]['one_stream']['cpu_cores_per_realtime_stream']:.2f}" for n in names),
        ],
        ["first frame, ms p50 / p95", *(_cell(backends[n]["first_frame_ms"]) for n in names)],
        [
            "audio to frame (engines), ms",
            *(f"{backends[n]['audio_to_frame_ms']:.0f}" for n in names),
        ],
        *(
            [
                f"streams at {fps} fps",
                *(str(backends[n][f"streams_at_{fps}fps"]["streams"]) for n in names),
            ]
            for fps in STREAM_RATES
        ),
        [
            "GPU MiB per stream",
            *(
                "-" if backends[n]["gpu_mib_per_stream"] is None
                else f"{backends[n]['gpu_mib_per_stream']:.0f}"
                for n in names
            ),
        ],
    ]  # fmt: skip
    unavailable = "\n".join(f"- {n}: {why}" for n, why in data["unavailable"].items())
    tried = "\n".join(
        f"- {n}, {fps} fps: {backends[n][f'streams_at_{fps}fps']['tried']}"
        for n in names
        for fps in STREAM_RATES
    )
    targets = data["targets"]
    return "\n\n".join(
        [
            "# Engines by backend",
            machine_markdown(data["machine"]),
            f"Speech: {data['speech']}; 512x512; learned motion (4 steps, guidance), 25 fps "
            f"model; torch intra-op threads: {data['machine']['torch_threads']} (the server's "
            "default).",
            markdown_table(["measure", *names], rows),
            "## Streams tried (stream count: slowest stream's FPS)\n\n" + tried,
            "## Not measured here\n\n" + (unavailable or "- none"),
            "## Notes\n\n"
            f"- DESIGN.md targets on a GPU: engines >= {targets['gpu_engines_fps']} FPS for one "
            f"stream, >= {targets['gpu_sessions_30fps']} concurrent 30 fps sessions, audio to "
            f"frame <= {targets['audio_to_frame_ms']} ms.\n"
            "- 'one stream' includes H.264 encode; streams-per-device does not (on a GPU box "
            "encode runs on the CPU cores beside it).\n"
            "- Audio to frame (engines) = the motion source's look-ahead + a p95 render; the live "
            "figure with pacing and WebRTC is bench_audio_to_frame.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        nargs="*",
        help=f"backend names, or RENDERER/MOTION pairs (default: {' '.join(DEFAULT_SETUPS)})",
    )
    parser.add_argument("--repeats", type=int, default=60, help="timed calls per stage")
    parser.add_argument("--seconds", type=float, default=4.0, help="speech for the one-stream run")
    parser.add_argument("--max-streams", type=int, default=32, help="stop doubling here")
    parser.add_argument("--torch-threads", type=int, default=1, help="as the server's default (1)")
    run_and_report("bench_engines", parser, run, markdown, argv)


if __name__ == "__main__":
    main()
