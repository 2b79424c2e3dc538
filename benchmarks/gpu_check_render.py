"""The GPU check's renderer checks: torch-cuda against the CPU renderer, and frames per second.

- correctness: FaceRenderer on the device (eager forward, and CudaFrameRenderer
  with and without CUDA graphs, as torch-cuda sessions use it) against the CPU
  renderer in float64 on fresh random motions: relative error of the float frames, max
  abs uint8 difference, share of pixels off by more than 2 levels. In CPU mode
  the float32 CPU renderer (batched, and one frame at a time) is the candidate.
  The reference is always FaceRenderer in float64 on the CPU.
- one stream (batch 1) and batched: device time per call with CUDA events
  (eager launches, and replay of the graph CudaFrameRenderer captures), and
  CudaFrameRenderer.render() by the host clock (motion up through pinned
  memory, uint8 frames back: what a session waits for).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.gpu_check_report import Report, against, device_ms, stats, wall_ms
from engines.backends.torch_backend import CudaFrameRenderer
from engines.face.avatar import Avatar
from engines.motion.space import MOTION_NAMES, MOTION_RANGES
from engines.render.renderer import FaceRenderer, to_uint8_frames

__all__ = ["RenderSizes", "random_motions", "check_correctness", "check_renderer_fps"]

ONE_STREAM_FPS = 400.0  # issue 15: one stream at 512x512 on an H200, torch-cuda + CUDA graphs
BATCHED_FPS = 2000.0  # issue 15: batched
INPUT_SETS = 4  # rotated between calls, so no call reads what the previous one left cached


@dataclass(frozen=True)
class RenderSizes:
    batches: tuple[int, ...]  # batched sizes; batch 1 is the one-stream row
    frames: int  # random motions in the correctness check
    warmup: int
    repeats: int


def random_motions(rng: np.random.Generator, n: int) -> np.ndarray:
    """float32 (n, D): every channel uniform over its MOTION_RANGES span."""
    low = np.array([MOTION_RANGES[k].low for k in MOTION_NAMES], np.float32)
    high = np.array([MOTION_RANGES[k].high for k in MOTION_NAMES], np.float32)
    return (low + rng.random((n, len(MOTION_NAMES)), dtype=np.float32) * (high - low)).astype(
        np.float32
    )


def _compare(report: Report, case: str, out: torch.Tensor, ref: torch.Tensor) -> None:
    """Row for frames out vs ref, both float (B, 3, S, S) in [0, 1] on the CPU."""
    out64, ref64 = out.double(), ref.double()
    finite = bool(torch.isfinite(out64).all())
    rel = float(torch.linalg.vector_norm(out64 - ref64) / torch.linalg.vector_norm(ref64))
    diff = (to_uint8_frames(out).int() - to_uint8_frames(ref).int()).abs()
    max_u8, off = int(diff.max()), float((diff > 2).double().mean())
    ok = finite and rel < 1e-3 and max_u8 <= 2
    note = f"max abs uint8 diff {max_u8}, share of values off by > 2: {off:.2e}"
    report.add(
        "correctness",
        case,
        "ok" if ok else "fail",
        rel,
        "rel. error",
        "< 1e-3 and max uint8 diff <= 2",
        note if finite else "NaN or inf in the output",
        max_abs_uint8=max_u8,
        share_off_by_more_than_2=off,
        frames=int(out.shape[0]),
    )


def _uint8_as_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, S, S, 3) -> float (B, 3, S, S): to compare host frames in _compare."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


@torch.inference_mode()
def check_correctness(report: Report, avatar: Avatar, device: torch.device, frames: int) -> None:
    """The device's frames against FaceRenderer in float64 on the CPU, on fresh random motions."""
    rng = np.random.default_rng(1507)
    reference = FaceRenderer(avatar).double()

    def ref(motions: np.ndarray) -> torch.Tensor:
        return reference(torch.from_numpy(motions).double()).float()

    motions = random_motions(rng, frames)
    if device.type != "cuda":
        cpu = FaceRenderer(avatar)
        _compare(
            report, f"CPU float32, batch {frames}", cpu(torch.from_numpy(motions)), ref(motions)
        )
        one = torch.cat([cpu(torch.from_numpy(m[None])) for m in motions])
        _compare(report, f"CPU float32, {frames} x batch 1", one, ref(motions))
        report.add("correctness", "torch-cuda vs CPU", "skipped", note="needs CUDA")
        return
    gpu = FaceRenderer(avatar).to(device)
    out = gpu(torch.from_numpy(motions).to(device)).cpu()
    _compare(report, f"torch-cuda eager forward, batch {frames}", out, ref(motions))
    for graphs in (True, False):
        renderer = CudaFrameRenderer(FaceRenderer(avatar).to(device), graphs)
        renderer.render(random_motions(rng, frames))  # captures; this output is not compared
        fresh = random_motions(rng, frames)  # a replay must not return the capture's frames
        got = _uint8_as_float(renderer.render(fresh))
        want = _uint8_as_float(to_uint8_frames(ref(fresh)).numpy())
        label = "CudaFrameRenderer, CUDA graph replay" if graphs else "CudaFrameRenderer, eager"
        if graphs and not renderer.cuda_graphs:
            label += " (capture FAILED: fell back to eager)"
        _compare(report, f"{label}, batch {frames}, uint8", got, want)


def _fps_row(
    report: Report,
    check: str,
    case: str,
    batch: int,
    ms: list[float],
    target: float | None,
    on_gpu: bool,
    **detail: object,
) -> float:
    s = stats(ms)
    fps = 1e3 * batch / s["p50"]
    goal = f">= {target:g} FPS on the H200" if target else ""
    note = f"{s['p50']:.3g} ms per call p50 ({s['p95']:.3g} p95), {s['n']} calls"
    report.add(
        check,
        case,
        against(fps, target, True, on_gpu),
        fps,
        "FPS",
        goal,
        note,
        batch=batch,
        call_ms=s,
        **detail,
    )
    return fps


def _inputs(rng: np.random.Generator, batch: int, device: torch.device) -> list[torch.Tensor]:
    return [torch.from_numpy(random_motions(rng, batch)).to(device) for _ in range(INPUT_SETS)]


def _measure_batch(
    report: Report, avatar: Avatar, device: torch.device, batch: int, sizes: RenderSizes
) -> None:
    """Eager, graph replay and render() rows for one batch size."""
    rng = np.random.default_rng(batch)
    check = "renderer one stream" if batch == 1 else "renderer batched"
    target = ONE_STREAM_FPS if batch == 1 else BATCHED_FPS
    on_gpu = device.type == "cuda"
    renderer = FaceRenderer(avatar).to(device)
    x = _inputs(rng, batch, device)
    run: Callable[[int], object] = lambda i: to_uint8_frames(renderer(x[i % INPUT_SETS]))  # noqa: E731
    ms = device_ms(run, device, sizes.warmup, sizes.repeats)
    _fps_row(
        report,
        check,
        f"batch {batch}, eager" + (", CUDA events" if on_gpu else ""),
        batch,
        ms,
        None if on_gpu else target,
        on_gpu,
    )
    hosts = [random_motions(rng, batch) for _ in range(INPUT_SETS)]
    if not on_gpu:
        ms = wall_ms(
            lambda i: renderer.render(hosts[i % INPUT_SETS]), device, sizes.warmup, sizes.repeats
        )
        _fps_row(report, check, f"batch {batch}, render() to uint8 numpy", batch, ms, None, on_gpu)
        report.add(check, f"batch {batch}, CUDA graph replay", "skipped", note="needs CUDA")
        return
    frames = CudaFrameRenderer(renderer, cuda_graphs=True)
    frames._forward(x[0])  # captures the graph for this batch size (or falls back, logged)
    captured = frames.cuda_graphs
    ms = device_ms(
        lambda i: frames._forward(x[i % INPUT_SETS]), device, sizes.warmup, sizes.repeats
    )
    case = f"batch {batch}, CUDA graph replay, CUDA events" + (
        "" if captured else " (capture failed: eager)"
    )
    _fps_row(report, check, case, batch, ms, target, on_gpu, graph_captured=captured)
    ms = wall_ms(
        lambda i: frames.render(hosts[i % INPUT_SETS]), device, sizes.warmup, sizes.repeats
    )
    _fps_row(
        report,
        check,
        f"batch {batch}, CudaFrameRenderer.render() host round trip",
        batch,
        ms,
        None,
        on_gpu,
    )


@torch.inference_mode()
def check_renderer_fps(
    report: Report, avatar: Avatar, device: torch.device, sizes: RenderSizes
) -> None:
    for batch in (1, *sizes.batches):
        try:
            _measure_batch(report, avatar, device, batch, sizes)  # its graphs die with it
            if device.type == "cuda":
                torch.cuda.empty_cache()
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            check = "renderer one stream" if batch == 1 else "renderer batched"
            report.add(check, f"batch {batch}", "error", note=f"out of memory: {error}"[:300])
