"""One command for a lent GPU machine: the engines on torch-cuda, checked and timed.

Usage (benchmarks/gpu_check.sh wraps it):
    python -m benchmarks.gpu_check --prepare [DIR]        # here, on CPU, with mediapipe
    python -m benchmarks.gpu_check [--cpu] [--quick] [--inputs DIR] [--out-dir DIR]

The GPU machine (Python 3.12, torch 2.11 + CUDA 13, Triton) has no mediapipe,
PyAV, aiortc or TensorRT and no network, so the avatar and speech are prepared
on a CPU machine (benchmarks.gpu_check_inputs) and carried; nothing here
imports those packages. Checks, each leaving rows even when it fails:

environment; correctness (torch-cuda renderer vs the CPU renderer); renderer
one stream and batched (benchmarks.gpu_check_render); sampler over 1..32
sessions, sessions per box at 30 fps, memory per stream
(benchmarks.gpu_check_streams); `pytest -m gpu`; the other GPU backends
(onnxruntime-cuda, TensorRT) where installed.

--cpu runs the same checks on the CPU with small sizes, to test this script
without a GPU. Results: OUT_DIR/gpu_check.{json,md} (gpu_check_cpu.* with
--cpu); a short table is printed last.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import gpu_check_inputs as inputs
from benchmarks._machine import host_info
from benchmarks.gpu_check_render import RenderSizes, check_correctness, check_renderer_fps
from benchmarks.gpu_check_report import Report, table
from benchmarks.gpu_check_streams import StreamSizes, check_memory, check_sampler, check_sessions
from engines.backends.registry import BACKEND_NAMES, BackendConfig, check_backend, provider
from engines.errors import BackendUnavailableError

__all__ = ["main"]

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CHECKS = (
    "environment",
    "correctness",
    "renderer one stream",
    "renderer batched",
    "sampler",
    "sessions per box",
    "memory per stream",
    "pytest -m gpu",
    "other backends",
)
PYTEST_TIMEOUT_S = 240


@dataclass(frozen=True)
class Sizes:
    render: RenderSizes
    streams: StreamSizes


def sizes_for(cpu: bool, quick: bool) -> Sizes:
    """GPU: batches 8..128, 1/8/32 sessions; CPU: batch 4, 1 and 4 sessions; quick: less."""
    if cpu:
        render = RenderSizes(
            batches=(4,), frames=2 if quick else 4, warmup=1, repeats=2 if quick else 8
        )
        streams = StreamSizes(
            sessions=(1, 2) if quick else (1, 4),
            chunks=4 if quick else 25,
            capacity_cap=2 if quick else 4,
            capacity_frames=4 if quick else 20,
            capacity_budget_s=30 if quick else 90,
            memory_streams=1 if quick else 2,
        )
    else:
        render = RenderSizes(
            batches=(8, 32) if quick else (8, 32, 64, 128),
            frames=4 if quick else 16,
            warmup=3 if quick else 10,
            repeats=10 if quick else 50,
        )
        streams = StreamSizes(
            sessions=(1, 8) if quick else (1, 8, 32),
            chunks=10 if quick else 50,
            capacity_cap=8 if quick else 64,
            capacity_frames=20 if quick else 60,
            capacity_budget_s=40 if quick else 150,
            memory_streams=2 if quick else 4,
        )
    return Sizes(render, streams)


def _nvidia_smi() -> dict[str, str]:
    query = "name,driver_version,memory.total,memory.free,clocks.sm,clocks.max.sm"
    try:
        out = (
            subprocess.run(
                ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            )
            .stdout.strip()
            .splitlines()[0]
        )
    except (OSError, subprocess.SubprocessError, IndexError) as error:
        return {"nvidia_smi": f"unavailable ({type(error).__name__})"}
    return dict(zip(query.split(","), (v.strip() for v in out.split(",")), strict=False))


def machine() -> dict[str, Any]:
    """What the numbers were measured on (benchmarks._common.machine_info needs PyAV)."""
    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {
        **host_info(),
        "torch_cuda": torch.version.cuda,
        "numpy": np.__version__,
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info()
        info.update(
            capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            gpu_memory_gib=round(total / 2**30, 1),
            gpu_free_gib=round(free / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
            **_nvidia_smi(),
        )
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def check_environment(report: Report, cpu: bool) -> None:
    m = report.header["machine"]
    blocked = [name for name in ("mediapipe", "av", "aiortc") if _importable(name)]
    note = (
        "importable here: " + ", ".join(blocked)
        if blocked
        else "mediapipe, av, aiortc: none importable (as on the device)"
    )
    report.add(
        "environment",
        "python / torch / CUDA",
        "measured",
        note=f"Python {m['python']}, torch {m['torch']}, CUDA {m['torch_cuda']}, "
        f"numpy {m['numpy']}, triton {m['triton']}; {note}",
    )
    if cpu:
        report.add(
            "environment", "GPU", "skipped", note=f"--cpu: {m['cpu_model']}, {m['cpu_cores']} cores"
        )
        return
    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device: run with --cpu on a machine without a GPU")
    gpu = (
        f"{m['gpu']} (sm {m['capability']}, {m['multiprocessors']} SMs), "
        f"driver {m.get('driver_version', '?')}, cuDNN {m['cudnn']}"
    )
    report.add(
        "environment",
        "GPU",
        "ok",
        m["gpu_free_gib"],
        "GiB free",
        note=f"{gpu}; {m['gpu_memory_gib']} GiB",
    )
    x = torch.randn(4096, 4096, device="cuda")  # the card computes: fp32 against fp64 on it
    ref = x.double() @ x.double()
    err = float((x @ x - ref).norm() / ref.norm())
    report.add(
        "environment",
        "4096^2 fp32 matmul vs float64",
        "ok" if err < 1e-3 else "fail",
        err,
        "rel. error",
        "< 1e-3",
        f"TF32 matmul: {torch.backends.cuda.matmul.allow_tf32}",
    )


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _pytest_files() -> list[str]:
    """The test files that mark GPU tests (what `pytest -m gpu` would run)."""
    marker = "@pytest.mark." + "gpu"  # split so this file is not one of them
    return sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").glob("test_*.py")
        if marker in p.read_text()
    )


def check_pytest(report: Report, inputs_dir: Path, out_dir: Path) -> None:
    if not _importable("pytest"):
        report.add("pytest -m gpu", "-", "skipped", note="pytest is not importable here")
        return
    files = _pytest_files()
    log_name = f"{report.name}_pytest.log"
    env = {**os.environ, "FACECAST_GPU_CHECK_AVATAR": str(inputs_dir / "avatar.npz")}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "-p",
        "benchmarks.gpu_check_pytest",
        "--continue-on-collection-errors",
        *files,
    ]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=PYTEST_TIMEOUT_S
        )
        log, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as error:
        partial = error.stdout or b""
        text = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        log, rc = f"{text}\ntimed out after {PYTEST_TIMEOUT_S} s", -1
    (out_dir / log_name).write_text(log)
    lines = [
        ln
        for ln in log.splitlines()
        if re.search(r"\d+ (passed|failed|skipped|error|deselected)", ln)
    ]
    summary = lines[-1].strip("= ") if lines else log.strip().splitlines()[-1:] or "no output"
    errors = sorted(set(re.findall(r"ERROR collecting (\S+)", log)))
    causes = sorted(set(re.findall(r"^E +(\w+Error: .*)$", log, re.M)))[:3]
    status = {0: "ok", 5: "skipped"}.get(rc, "fail")
    note = (
        f"{summary}; files: {', '.join(files)}"
        + (f"; not collected: {', '.join(errors)} ({'; '.join(causes)})" if errors else "")
        + f"; log: {log_name}"
    )
    report.add(
        "pytest -m gpu",
        "gpu-marked tests",
        status,
        round(time.perf_counter() - start, 1),
        "s",
        "all pass",
        note,
        returncode=rc,
    )


def check_other_backends(report: Report, on_gpu: bool) -> None:
    for name in sorted(
        n for n in BACKEND_NAMES if n in provider(n).gpu_names and n != "torch-cuda"
    ):
        try:
            check_backend(name)
        except BackendUnavailableError as error:
            report.add(
                "other backends", name, "skipped", note=f"not installed / not usable: {error}"[:300]
            )
            continue
        report.add(
            "other backends",
            name,
            "measured" if on_gpu else "skipped",
            note="importable and usable; not timed here: "
            f"python -m benchmarks.bench_engines --backends {name}",
        )


def notes(cpu: bool) -> list[str]:
    out = [
        "Device times are CUDA events around each call after warm-up (median of the calls); "
        "host round trips and streams use the host clock with the device synchronized.",
        "Renderer inputs: fresh uniform random motions over every channel's range, rotated "
        "between 4 input sets; correctness compares against FaceRenderer on the CPU in float64.",
        "Sessions per box: engines-only streams on threads in one process (features, sampler, "
        "renderer per frame, each session rendering its own frames), so one GIL bounds it; "
        "the media plane (H.264 encode, RTP/SRTP) is not run here: its cost per session comes "
        "from the CPU benchmarks committed in benchmarks/results, and the estimate divides the "
        "box's cores by engine + media cores per session. There is no NVENC on Hopper.",
        "Inputs: avatar and speech prepared on a CPU machine (python -m benchmarks.gpu_check "
        "--prepare); the device has no mediapipe, PyAV, aiortc or TensorRT.",
    ]
    if cpu:
        out.insert(
            0,
            "CPU mode (--cpu): the same checks with small sizes, 1 torch thread; GPU "
            "targets are shown but not applied (status 'measured').",
        )
    return out


def _inputs_label(meta: dict[str, Any]) -> str:
    return (
        f"{meta['portrait']} prepared {meta['prepared']}, "
        f"speech {meta['speech']} ({meta['speech_seconds']} s)"
    )


def run_checks(args: argparse.Namespace) -> Report:
    cpu = args.cpu
    torch.set_num_threads(1)  # as the server: one torch thread per session
    sizes = sizes_for(cpu, args.quick)
    name = "gpu_check_cpu" if cpu else "gpu_check"
    prepared = inputs.load(args.inputs)
    header = {
        "mode": ("cpu" if cpu else "gpu") + (" quick" if args.quick else ""),
        "command": "python -m benchmarks.gpu_check " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "inputs": _inputs_label(prepared.meta),
        "sizes": {"render": vars(sizes.render), "streams": vars(sizes.streams)},
        "checks": list(CHECKS),
        "notes": notes(cpu),
    }
    report = Report(name, args.out_dir, header)
    device = torch.device("cpu" if cpu else "cuda")
    backend = BackendConfig("torch-cpu" if cpu else "torch-cuda")
    avatar, speech = prepared.avatar, prepared.speech
    report.run("environment", lambda r: check_environment(r, cpu))
    report.run("correctness", lambda r: check_correctness(r, avatar, device, sizes.render.frames))
    report.run("renderer", lambda r: check_renderer_fps(r, avatar, device, sizes.render))
    report.run("sampler", lambda r: check_sampler(r, speech, backend, sizes.streams))
    report.run(
        "sessions per box", lambda r: check_sessions(r, avatar, speech, backend, sizes.streams)
    )
    report.run(
        "memory per stream",
        lambda r: check_memory(r, avatar, speech, backend, sizes.streams.memory_streams),
    )
    report.run("pytest -m gpu", lambda r: check_pytest(r, args.inputs, args.out_dir))
    report.run("other backends", lambda r: check_other_backends(r, not cpu))
    report.header["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    return report


def _default_out() -> Path:
    return (
        Path(os.environ["OUT"])
        if os.environ.get("OUT")
        else ROOT / "benchmarks" / "results" / "gpu_check"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prepare",
        type=Path,
        nargs="?",
        const=inputs.DEFAULT_INPUTS,
        help="write the inputs to DIR (default out/gpu_check_inputs) and stop",
    )
    parser.add_argument(
        "--cpu", action="store_true", help="run every check on the CPU, small sizes"
    )
    parser.add_argument("--quick", action="store_true", help="shrink every size (a smoke test)")
    parser.add_argument(
        "--inputs", type=Path, default=inputs.DEFAULT_INPUTS, help="prepared inputs"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="default $OUT, else benchmarks/results/gpu_check"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.prepare is not None:
        print(f"prepared {inputs.prepare(args.prepare)}")
        return
    args.out_dir = args.out_dir or _default_out()
    report = run_checks(args)
    md = report.write()
    data = report.data()
    print(f"\n== {report.name}: {md} ({data['wall_s']:g} s) ==")
    print(table(report.rows, notes=False))
    problems = [r for r in report.rows if r["status"] in ("error", "fail")]
    for r in problems:
        print(f"- {r['check']} / {r['case']}: {r['status']}: {r['note']}")


if __name__ == "__main__":
    main()
