"""How fast does FaceRenderer draw 512x512 frames, alone and with H.264 encoding?

Usage: python -m benchmarks.bench_renderer [--quick] [--threads 1 2] [--batches 1 8]

Measures, with baseline motion driven by real speech:
- render FPS on CPU for each (torch threads, batch size), p50/p95 per call;
- where the time goes inside one call (stages timed by wrapping the renderer's
  methods on the instance; the engines are not modified) and the top torch ops;
- Mp4Writer.write_frame cost per frame (RGB -> YUV 4:2:0 and H.264 encode);
- render+encode FPS: the loop `facecast render` runs, without audio;
- the same render figures on CUDA when a GPU is present (synchronized).
Configurations are measured in interleaved rounds so that a burst of load from
other jobs hits all of them alike. Targets: CPU >= 25 FPS render+encode
(DESIGN.md, 2 cores), GPU >= 300 FPS for the renderer alone.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks._common import (
    OtherLoad,
    Stopwatch,
    busy_cores,
    finish_machine_info,
    machine_info,
    machine_markdown,
    records_table,
    setup_logging,
    speech_file,
    summarize,
    timed_calls,
    write_results,
)
from benchmarks.contact_sheet import baseline_motion
from engines.face.avatar import Avatar
from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.render.renderer import FaceRenderer
from server.mp4_output import Mp4Writer

__all__ = ["main", "run"]

NAME = "bench_renderer"
FPS = 25
CPU_TARGET_FPS = 25.0
GPU_TARGET_FPS = 300.0
NO_GPU = "not measured: no GPU on this machine"
# (FaceRenderer method, label); forward minus these is "pose, resample, composite".
STAGES = (
    ("_backward_map", "warp field inversion"),
    ("_eye_offsets", "eyelids + gaze"),
    ("_paint_mouth", "mouth interior"),
)

logger = logging.getLogger(__name__)


def _motion_batches(motion: np.ndarray, batch: int) -> Callable[[int], np.ndarray]:
    """i -> the i-th batch of shape (batch, D) of the utterance, wrapping at its end."""
    frames = len(motion)

    def get(i: int) -> np.ndarray:
        rows = (np.arange(batch) + i * batch) % frames
        return np.ascontiguousarray(motion[rows], dtype=np.float32)

    return get


def render_call_seconds(
    renderer: FaceRenderer, motion: np.ndarray, batch: int, repeats: int, device: str
) -> list[float]:
    """Seconds per renderer(motion (B, D)) -> (B, 3, S, S) call on `device`, after warm-up."""
    sync = torch.cuda.synchronize if device == "cuda" else None
    batches = _motion_batches(motion, batch)
    tensors = [torch.from_numpy(batches(i)).to(device) for i in range(8)]
    with torch.inference_mode():
        return timed_calls(lambda i: renderer(tensors[i % len(tensors)]), 3, repeats, sync)


def render_record(
    times: list[float], batch: int, threads: int, load: list[float]
) -> dict[str, Any]:
    stats = summarize([t * 1000 for t in times])
    return {
        "threads": threads,
        "batch": batch,
        "call_ms": stats,
        "frame_ms_p50": stats["p50"] / batch,
        "fps_p50": 1000 * batch / stats["p50"],
        "fps_p95": 1000 * batch / stats["p95"],
        "other_load_cores": round(float(np.mean(load)), 2) if load else None,
    }


def stage_ms(
    renderer: FaceRenderer, motion: np.ndarray, batch: int, repeats: int
) -> dict[str, float]:
    """Mean ms per render() call of each renderer stage and of the uint8 conversion."""
    batches = _motion_batches(motion, batch)
    watch = Stopwatch()
    with torch.inference_mode(), contextlib.ExitStack() as stack:
        renderer.render(batches(0))  # warm-up
        for name, label in (*STAGES, ("forward", "forward")):
            stack.enter_context(watch.patched(renderer, name, label))
        start = time.perf_counter()
        for i in range(repeats):
            renderer.render(batches(i + 1))
        total = time.perf_counter() - start
    per_call = {label: s * 1000 / repeats for label, s in watch.totals.items()}
    forward = per_call.pop("forward", total * 1000 / repeats)
    per_call["pose, resample, composite"] = forward - sum(per_call.values())
    per_call["to uint8 numpy"] = total * 1000 / repeats - forward
    per_call["total"] = total * 1000 / repeats
    return per_call


def top_ops(
    renderer: FaceRenderer, motion: np.ndarray, batch: int, limit: int = 8
) -> list[dict[str, Any]]:
    """The torch ops with the most self CPU time in one call (torch.profiler)."""
    x = torch.from_numpy(_motion_batches(motion, batch)(0))
    with torch.inference_mode():
        renderer(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            renderer(x)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1000}
        for e in events[:limit]
    ]


def bench_encode(
    renderer: FaceRenderer, motion: np.ndarray, frames: int, tmp: Path
) -> dict[str, Any]:
    """Mp4Writer.write_frame ms per frame over distinct rendered frames, plus the final flush."""
    with torch.inference_mode():
        rendered = np.concatenate(
            [renderer.render(motion[i : i + 8]) for i in range(0, min(frames, len(motion)), 8)]
        )
    writes = []
    load = OtherLoad()
    with Mp4Writer(tmp / "encode.mp4", FPS) as writer:
        for rgb in rendered[:10]:  # warm-up: encoder start-up and lookahead fill
            writer.write_frame(rgb)
        for i in range(frames):
            start = time.perf_counter()
            writer.write_frame(rendered[i % len(rendered)])
            writes.append(time.perf_counter() - start)
        start = time.perf_counter()
        writer.close()
        close_s = time.perf_counter() - start
    amortized = (sum(writes) + close_s) / frames
    return {
        "encoder": writer.video_encoder,
        "frames": frames,
        "write_frame_ms": summarize([t * 1000 for t in writes]),
        "close_ms": close_s * 1000,
        "amortized_ms_per_frame": amortized * 1000,
        "encode_only_fps": 1 / amortized,
        "other_load_cores": load.cores(),
    }


def render_encode_run(
    renderer: FaceRenderer, motion: np.ndarray, batch: int, frames: int, path: Path
) -> dict:
    """The offline loop without audio: render a batch, write its frames; wall incl. close."""
    batches = _motion_batches(motion, batch)
    chunk_ms = []
    load = OtherLoad()
    with torch.inference_mode():
        renderer.render(batches(0))  # warm-up outside the timed file
        start = time.perf_counter()
        with Mp4Writer(path, FPS) as writer:
            for i in range(0, frames, batch):
                t0 = time.perf_counter()
                for rgb in renderer.render(batches(i // batch + 1)):
                    writer.write_frame(rgb)
                chunk_ms.append((time.perf_counter() - t0) * 1000 / batch)
        wall = time.perf_counter() - start
    return {
        "frames": len(chunk_ms) * batch,
        "wall_s": wall,
        "frame_ms": chunk_ms,
        "load": load.cores(),
    }


def _merge_render_encode(runs: list[dict], batch: int, threads: int) -> dict[str, Any]:
    frames, wall = sum(r["frames"] for r in runs), sum(r["wall_s"] for r in runs)
    return {
        "threads": threads,
        "batch": batch,
        "frames": frames,
        "wall_s": wall,
        "fps": frames / wall,
        "frame_ms": summarize([ms for r in runs for ms in r["frame_ms"]]),
        "meets_target": "yes" if frames / wall >= CPU_TARGET_FPS else "no",
        "other_load_cores": round(float(np.mean([r["load"] for r in runs])), 2),
    }


def measure_cpu(
    renderer: FaceRenderer, motion: np.ndarray, args: argparse.Namespace, tmp: Path
) -> dict:
    """Render, stage split and render+encode for every (threads, batch), in interleaved rounds."""
    configs = [(t, b) for t in args.threads for b in args.batches]
    times: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    loads: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    stages: dict[tuple[int, int], list[dict[str, float]]] = {c: [] for c in configs}
    runs: dict[tuple[int, int], list[dict]] = {c: [] for c in configs}
    for rnd in range(args.rounds):
        for threads, batch in configs:
            torch.set_num_threads(threads)
            calls = max(args.min_calls, args.frames // batch) // args.rounds
            logger.info("round %d: %d threads, batch %d, %d calls", rnd + 1, threads, batch, calls)
            load = OtherLoad()
            times[threads, batch] += render_call_seconds(renderer, motion, batch, calls, "cpu")
            loads[threads, batch].append(load.cores())
            stages[threads, batch].append(stage_ms(renderer, motion, batch, max(2, calls // 3)))
            path = tmp / f"re_t{threads}_b{batch}_{rnd}.mp4"
            runs[threads, batch].append(
                render_encode_run(renderer, motion, batch, args.frames // args.rounds, path)
            )
            path.unlink(missing_ok=True)
    return {
        "cpu_render": [render_record(times[c], c[1], c[0], loads[c]) for c in configs],
        "stages": [
            {
                "threads": t,
                "batch": b,
                "stage_ms": {
                    k: float(np.mean([s[k] for s in stages[t, b]])) for k in stages[t, b][0]
                },
            }
            for t, b in configs
        ],
        "render_encode": [_merge_render_encode(runs[c], c[1], c[0]) for c in configs],
    }


def bench_cuda(
    avatar: Avatar, motion: np.ndarray, batches: list[int], repeats: int
) -> dict[str, Any]:
    """Render FPS on the GPU (synchronized per call), and batch 8 with the uint8 copy to host."""
    if not torch.cuda.is_available():
        return {"status": NO_GPU}
    renderer = FaceRenderer(avatar).to("cuda")
    records = []
    for batch in sorted({*batches, 32}):
        times = render_call_seconds(renderer, motion, batch, repeats, "cuda")
        records.append(render_record(times, batch, torch.get_num_threads(), []))
    with torch.inference_mode():
        host = timed_calls(
            lambda i: renderer.render(_motion_batches(motion, 8)(i)),
            3,
            repeats,
            torch.cuda.synchronize,
        )
    return {
        "status": "measured",
        "gpu": torch.cuda.get_device_name(0),
        "render": records,
        "render_uint8_host_b8_fps_p50": 8 / summarize(host)["p50"],
    }


RENDER_COLUMNS = (
    ("threads", "threads"),
    ("batch", "batch"),
    ("calls", "call_ms.n"),
    ("call ms p50", "call_ms.p50"),
    ("call ms p95", "call_ms.p95"),
    ("ms/frame p50", "frame_ms_p50"),
    ("FPS p50", "fps_p50"),
    ("FPS p95", "fps_p95"),
    ("other load", "other_load_cores"),
)
RENDER_ENCODE_COLUMNS = (
    ("threads", "threads"),
    ("batch", "batch"),
    ("frames", "frames"),
    ("wall s", "wall_s"),
    ("FPS", "fps"),
    ("ms/frame p50", "frame_ms.p50"),
    ("ms/frame p95", "frame_ms.p95"),
    (f">= {CPU_TARGET_FPS:g} FPS", "meets_target"),
    ("other load", "other_load_cores"),
)
ENCODE_COLUMNS = (
    ("frames", "frames"),
    ("write_frame ms p50", "write_frame_ms.p50"),
    ("p95", "write_frame_ms.p95"),
    ("close ms", "close_ms"),
    ("amortized ms/frame", "amortized_ms_per_frame"),
    ("encode-only FPS", "encode_only_fps"),
    ("other load", "other_load_cores"),
)


def _markdown(data: dict[str, Any]) -> str:
    size = data["image_size"]
    stage_rows = [
        {"threads": s["threads"], "batch": s["batch"], **s["stage_ms"]} for s in data["stages"]
    ]
    stage_columns = [("threads", "threads"), ("batch", "batch")] + [
        (k, k) for k in data["stages"][0]["stage_ms"]
    ]
    ops = data["top_ops"]
    enc = data["encode"]
    cuda = data["cuda"]
    busy = data.get("busy_cores", 0)
    parts = [
        f"# Renderer speed ({size}x{size})"
        + (f", {busy} core(s) kept busy by spinners" if busy else ""),
        "",
        machine_markdown(data["machine"]),
        "",
        f"Motion: procedural baseline driven by {data['speech']} ({data['motion_frames']} frames), "
        f"{data['rounds']} interleaved rounds per configuration.",
        "",
        "## Render, CPU",
        "",
        records_table(data["cpu_render"], RENDER_COLUMNS),
        "",
        "## Where a render() call goes (CPU, mean ms per call)",
        "",
        records_table(stage_rows, stage_columns),
        "",
        f"Top torch ops by self CPU time ({ops['threads']} threads, batch {ops['batch']}):",
        "",
        records_table(ops["ops"], (("op", "op"), ("calls", "calls"), ("self ms", "self_ms"))),
        "",
        f"## H.264 encode ({enc['encoder']}, Mp4Writer.write_frame)",
        "",
        records_table([enc], ENCODE_COLUMNS),
        "",
        f"## Render + encode, CPU (target >= {CPU_TARGET_FPS:g} FPS)",
        "",
        records_table(data["render_encode"], RENDER_ENCODE_COLUMNS),
        "",
        f"## Render, CUDA (target >= {GPU_TARGET_FPS:g} FPS; DESIGN.md budget >= 200 FPS)",
        "",
    ]
    if cuda["status"] != "measured":
        parts += [cuda["status"]]
    else:
        parts += [records_table(cuda["render"], RENDER_COLUMNS[1:-1]), ""]
        host_fps = cuda["render_uint8_host_b8_fps_p50"]
        parts += [f"Batch 8 with the uint8 copy to host: {host_fps:.0f} FPS p50."]
    parts += ["", "## Notes", "", *(f"- {n}" for n in data["notes"])]
    return "\n".join(parts)


def _notes(data: dict[str, Any]) -> list[str]:
    notes = [
        "FPS p95 is batch / p95 call latency (the slow end). Render+encode FPS is frames / wall "
        "time including the encoder flush; x264 runs its own threads whatever torch's setting.",
        "Stages are timed by wrapping FaceRenderer methods on the instance; 'pose, resample, "
        "composite' is forward minus the named stages; 'to uint8 numpy' is render() minus forward.",
        "'other load' is the cores other processes kept busy meanwhile (from /proc/stat); "
        "other jobs share this machine's 2 cores from outside this process's view.",
    ]
    fps = {(r["threads"], r["batch"]): r["fps_p50"] for r in data["cpu_render"]}
    slower = [b for (t, b), v in fps.items() if t == 2 and (1, b) in fps and v < 0.8 * fps[1, b]]
    if slower:
        notes.append(
            f"2 torch threads were slower than 1 (batch {', '.join(map(str, slower))}). "
            "With another job on one of the 2 cores, every parallel op waits for the "
            "descheduled OpenMP thread, and a render call is ~1000 small ops; "
            "1 thread does not have that failure mode."
        )
    return notes


def run(args: argparse.Namespace) -> dict[str, Any]:
    default_threads = torch.get_num_threads()
    data: dict[str, Any] = {
        "machine": machine_info(),
        "targets": {"cpu_render_encode_fps": CPU_TARGET_FPS, "gpu_render_fps": GPU_TARGET_FPS},
        "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        avatar = FaceEncoder(FaceEncoderConfig(cache_dir=tmp / "cache")).encode(None)
        data["speech"], speech = speech_file(tmp)
        motion = baseline_motion(speech, FPS)
        data["motion_frames"], data["image_size"] = len(motion), avatar.image_size
        renderer = FaceRenderer(avatar)
        data.update(measure_cpu(renderer, motion, args, tmp))
        best = max(data["cpu_render"], key=lambda r: r["fps_p50"])
        torch.set_num_threads(best["threads"])
        data["top_ops"] = {
            "threads": best["threads"],
            "batch": best["batch"],
            "ops": top_ops(renderer, motion, best["batch"]),
        }
        logger.info("encode: %d frames", args.frames)
        data["encode"] = bench_encode(renderer, motion, args.frames, tmp)
        torch.set_num_threads(default_threads)
        data["cuda"] = bench_cuda(avatar, motion, args.batches, args.frames)
    finish_machine_info(data["machine"])
    best_re = max(data["render_encode"], key=lambda r: r["fps"])
    data["headline"] = {
        **{
            f"render_fps_p50_b{r['batch']}_t{r['threads']}": round(r["fps_p50"], 1)
            for r in data["cpu_render"]
        },
        "encode_ms_per_frame": round(data["encode"]["amortized_ms_per_frame"], 2),
        **{
            f"render_encode_fps_b{r['batch']}_t{r['threads']}": round(r["fps"], 1)
            for r in data["render_encode"]
        },
        "render_encode_fps_best": round(best_re["fps"], 1),
        "render_encode_best_config": f"threads={best_re['threads']} batch={best_re['batch']}",
        "cuda": data["cuda"]["status"],
    }
    data["notes"] = _notes(data)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--frames", type=int, default=96, help="frames per configuration and measurement"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds over the configurations"
    )
    parser.add_argument("--min-calls", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="few frames, for a smoke test")
    parser.add_argument(
        "--busy-cores",
        type=int,
        default=0,
        help="spin N other processes meanwhile (a shared machine); results go to NAME_busyN.*",
    )
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.min_calls, args.rounds = 16, 2, 1
    setup_logging()
    with busy_cores(args.busy_cores):
        data = run(args)
    data["busy_cores"] = args.busy_cores
    name = f"{NAME}_busy{args.busy_cores}" if args.busy_cores else NAME
    md = write_results(name, data, _markdown(data), args.out_dir)
    print(md.read_text())


if __name__ == "__main__":
    main()
