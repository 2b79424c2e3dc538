"""Shared helpers for the benchmark scripts: machine info, percentiles, result files.

Every benchmark writes benchmarks/results/NAME.json (raw numbers, machine info)
and benchmarks/results/NAME.md (the same as Markdown tables). The machine is
shared and noisy, so every figure is a p50/p95 over repeated runs and the
load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

# mediapipe's C++ side logs through glog/absl; keep benchmark output readable.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._machine import host_info  # noqa: E402
from tests.loopback import use_loopback_ice  # noqa: E402

# Benchmarks speak only to loopback: their peers offer 127.0.0.1 candidates only.
use_loopback_ice()

__all__ = [
    "RESULTS_DIR",
    "RADIO_SPEECH",
    "SHARED_PORTRAIT",
    "Stopwatch",
    "OtherLoad",
    "busy_cores",
    "machine_info",
    "summarize",
    "markdown_table",
    "records_table",
    "summary_table",
    "machine_markdown",
    "write_results",
    "portraits",
    "speech_file",
    "setup_logging",
    "timed_calls",
    "finish_machine_info",
    "audio_seconds",
]

logger = logging.getLogger(__name__)

RESULTS_DIR = Path(__file__).parent / "results"
SHARED_ASSETS = Path("/work/shared/assets")
RADIO_SPEECH = SHARED_ASSETS / "speech" / "en_male_radio.wav"
SHARED_PORTRAIT = SHARED_ASSETS / "portraits" / "woman_black_dress.jpg"
FLITE_SENTENCE = "Hello! I am a portrait that talks. Peter picked a bowl of blue berries."


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


def _video_encoder() -> str:
    """The H.264 encoder Mp4Writer picks on this machine (it opens a throwaway file)."""
    import tempfile

    from server.mp4_output import Mp4Writer

    with tempfile.TemporaryDirectory() as tmp:
        try:
            with Mp4Writer(Path(tmp) / "probe.mp4", 25) as writer:
                return writer.video_encoder
        except (RuntimeError, ValueError, OSError) as exc:
            return f"unknown ({exc})"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on; call at the start of a benchmark."""
    import av

    return {
        **host_info(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "pyav": av.__version__,
        "video_encoder": _video_encoder(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }


def finish_machine_info(info: dict[str, Any]) -> dict[str, Any]:
    """Add the load average at the end of the run (the machine is shared)."""
    info["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    return info


class OtherLoad:
    """CPU used by other processes while a measurement runs, in cores (0 = idle machine).

    Other jobs can share this machine from other PID namespaces, invisible to ps
    but not to /proc/stat: machine-wide busy time minus this process's own.
    """

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        try:
            fields = [
                float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            ]
            busy = (sum(fields[:8]) - fields[3] - fields[4]) / ticks  # minus idle and iowait
        except (OSError, ValueError, IndexError):
            busy = float("nan")
        own = os.times()
        return (
            time.perf_counter(),
            busy,
            own.user + own.system + own.children_user + own.children_system,
        )

    def cores(self) -> float:
        """Average number of cores other processes kept busy since construction."""
        end = self._snapshot()
        wall = max(end[0] - self._start[0], 1e-9)
        return round(max(0.0, (end[1] - self._start[1]) - (end[2] - self._start[2])) / wall, 2)


@contextlib.contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """Keep `count` cores busy with spinning child processes, to emulate a shared machine."""
    import subprocess
    import sys

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in spinners:
            proc.terminate()
        for proc in spinners:
            proc.wait(timeout=10)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95 (linear interpolation), mean, min, max and count of samples."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    return {
        "n": int(values.size),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


class Stopwatch:
    """Accumulates wall time per label; `wrap` times every call of a function."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.totals: dict[str, float] = {}
        self._sync = sync or (lambda: None)

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._sync()
                self.totals[label] = self.totals.get(label, 0.0) + time.perf_counter() - start

        return timed

    @contextlib.contextmanager
    def patched(self, owner: object, name: str, label: str) -> Iterator[None]:
        """Time every call of owner.name (module function or instance method) inside the block.

        Benchmarks only: the attribute is restored on exit. Missing names are skipped
        with a warning so a refactor of the engines does not break the benchmark.
        """
        original = getattr(owner, name, None)
        if original is None:
            logger.warning("stage %s: %r has no attribute %s; not split out", label, owner, name)
            yield
            return
        own = name in vars(owner)  # False for a method found on an instance's class
        setattr(owner, name, self.wrap(label, original))
        try:
            yield
        finally:
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)  # class lookup resumes


def timed_calls(
    fn: Callable[[int], Any], warmup: int, repeats: int, sync: Callable[[], None] | None = None
) -> list[float]:
    """Call fn(i) warmup times untimed, then repeats times; seconds per timed call."""
    sync = sync or (lambda: None)
    for i in range(warmup):
        fn(i)
    sync()
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(warmup + i)
        sync()
        times.append(time.perf_counter() - start)
    return times


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(first_header: str, rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """One row per (label, summarize() dict): n, p50, p95, min, max; blanks where unmeasured."""
    keys = ("p50", "p95", "min", "max")
    return markdown_table(
        [first_header, "n", *keys],
        [[label, stats.get("n", 0), *(stats.get(k, "") for k in keys)] for label, stats in rows],
    )


def records_table(records: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Markdown table of records; columns are (header, key) with dotted keys into nested dicts."""

    def get(record: dict[str, Any], key: str) -> Any:
        value: Any = record
        for part in key.split("."):
            value = value.get(part, "") if isinstance(value, dict) else ""
        return value

    return markdown_table(
        [h for h, _ in columns], [[get(r, k) for _, k in columns] for r in records]
    )


def machine_markdown(info: dict[str, Any]) -> str:
    gpu = info.get("gpu") or "none"
    return (
        f"Measured {info['date']} on {info['cpu_model']} ({info['cpu_cores']} cores), GPU: {gpu}; "
        f"torch {info['torch']} ({info['torch_threads']} intra-op threads by default), "
        f"PyAV {info['pyav']} with {info['video_encoder']}; load average "
        f"{info['loadavg_start']} at start, {info.get('loadavg_end')} at end (1, 5, 15 min). "
        "'other load' columns: cores kept busy by other processes during that measurement."
    )


def write_results(
    name: str, data: dict[str, Any], markdown: str, out_dir: Path | None = None
) -> Path:
    """Write NAME.json and NAME.md under out_dir (default benchmarks/results); return the .md."""
    out_dir = out_dir or RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path = out_dir / f"{name}.md"
    md_path.write_text(markdown.rstrip() + "\n")
    logger.info("wrote %s and %s", out_dir / f"{name}.json", md_path)
    return md_path


def portraits() -> list[tuple[str, Path | None]]:
    """(label, path) of the portraits to benchmark; None is the built-in portrait."""
    found: list[tuple[str, Path | None]] = [("la_velata (built-in)", None)]
    if SHARED_PORTRAIT.exists():
        found.append((SHARED_PORTRAIT.stem, SHARED_PORTRAIT))
    else:
        logger.warning("%s not found; benchmarking the built-in portrait only", SHARED_PORTRAIT)
    return found


def speech_file(tmp: Path, text: str = FLITE_SENTENCE) -> tuple[str, Path]:
    """A real speech recording when present, else flite speaking `text`."""
    if RADIO_SPEECH.exists():
        return RADIO_SPEECH.name, RADIO_SPEECH
    from engines.audio.speech import speak_to_file

    return "flite", speak_to_file(text, tmp / "speech.wav")


def audio_seconds(path: Path) -> float:
    """Duration of an audio file from its container (PyAV)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / 1e6


def run_and_report(
    name: str,
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
    argv: list[str] | None = None,
) -> None:
    """The tail of every benchmark's main(): parse, measure, write JSON + Markdown, print."""
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    setup_logging()
    data = run(args)
    print(write_results(name, data, markdown(data), args.out_dir).read_text())
