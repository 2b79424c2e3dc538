"""The GPU check's rows, timers and result files (benchmarks.gpu_check runs the checks).

Every check adds rows to one Report; a check that raises still leaves a row
(status "error" and the message), and the JSON + Markdown are rewritten after
every row, so a run cut short by its time limit keeps what it measured.

Row statuses: ok (met the target / passed), miss (measured, short of the
target), measured (no target applies here, e.g. GPU targets in CPU mode),
fail (a correctness check failed), error (the check raised), skipped.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Report", "device_ms", "wall_ms", "stats", "against"]

logger = logging.getLogger(__name__)


def stats(samples: list[float]) -> dict[str, float]:
    """median, p95, min, max and count of samples (ms)."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    return {
        "n": int(values.size),
        "p50": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def device_ms(
    fn: Callable[[int], object], device: torch.device, warmup: int, repeats: int
) -> list[float]:
    """ms per fn(i) call: CUDA events around each call on a GPU, the host clock on a CPU.

    Events time the device's work for calls that only enqueue it; the warm-up
    calls keep compilation, capture and allocation out of the numbers.
    """
    for i in range(warmup):
        fn(i)
    if device.type != "cuda":
        return wall_ms(fn, device, 0, repeats, offset=warmup)
    torch.cuda.synchronize(device)
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(repeats)
    ]
    for i, (start, end) in enumerate(events):
        start.record()
        fn(warmup + i)
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in events]


def wall_ms(
    fn: Callable[[int], object],
    device: torch.device,
    warmup: int,
    repeats: int,
    offset: int = 0,
) -> list[float]:
    """ms per fn(i) call by the host clock, the device synchronized after each call."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for i in range(warmup):
        fn(offset + i)
    sync()
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(offset + warmup + i)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def against(value: float, target: float | None, higher_is_better: bool, applies: bool) -> str:
    """ok / miss against target where the target applies here, else measured."""
    if target is None or not applies:
        return "measured"
    met = value >= target if higher_is_better else value <= target
    return "ok" if met else "miss"


class Report:
    """Rows of every check, written to out_dir/name.{json,md} after each row."""

    def __init__(self, name: str, out_dir: Path, header: dict[str, Any]) -> None:
        self.name, self.out_dir, self.header = name, out_dir, header
        self.rows: list[dict[str, Any]] = []
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    def add(
        self,
        check: str,
        case: str,
        status: str,
        value: float | None = None,
        unit: str = "",
        target: str = "",
        note: str = "",
        **detail: Any,
    ) -> None:
        row: dict[str, Any] = {"check": check, "case": case, "status": status, "value": value}
        row.update({"unit": unit, "target": target, "note": note, "detail": detail})
        self.rows.append(row)
        logger.info("%s / %s: %s %s %s %s", check, case, status, _fmt(value), unit, note)
        self.write()

    def run(self, check: str, fn: Callable[[Report], None]) -> None:
        """Run one check; an exception becomes its error row and the next check runs."""
        start = time.perf_counter()
        logger.info("check %s", check)
        try:
            fn(self)
        except Exception as error:  # every check leaves a row; the run goes on
            logger.error("%s failed:\n%s", check, traceback.format_exc())
            self.add(check, "-", "error", note=f"{type(error).__name__}: {error}"[:400])
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        finally:
            self.seconds[check] = round(time.perf_counter() - start, 2)
            self.write()

    def data(self) -> dict[str, Any]:
        wall = round(time.perf_counter() - self.started, 1)
        return {**self.header, "wall_s": wall, "check_seconds": self.seconds, "rows": self.rows}

    def write(self) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        data = self.data()
        (self.out_dir / f"{self.name}.json").write_text(json.dumps(data, indent=2) + "\n")
        md = self.out_dir / f"{self.name}.md"
        md.write_text(markdown(data))
        return md


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _cell(text: Any) -> str:
    return _fmt(text).replace("|", "/").replace("\n", " ")


def table(rows: list[dict[str, Any]], notes: bool = True) -> str:
    """Markdown table: check, case, status, value, unit, target (and note)."""
    headers = ["check", "case", "status", "value", "unit", "target"] + (["note"] if notes else [])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        cells = [r["check"], r["case"], r["status"], r["value"], r["unit"], r["target"]]
        cells += [r["note"]] if notes else []
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    machine = data["machine"]
    seconds = ", ".join(f"{k} {v:g} s" for k, v in data["check_seconds"].items())
    parts = [
        f"# GPU check ({data['mode']})",
        "",
        f"Measured {machine['date']} on {machine['gpu'] or 'no GPU'}; {machine['cpu_model']} "
        f"({machine['cpu_cores']} cores); Python {machine['python']}, torch {machine['torch']} "
        f"(CUDA {machine['torch_cuda']}), numpy {machine['numpy']}; load average "
        f"{machine['loadavg_start']} at start, {machine.get('loadavg_end')} at end. "
        f"Inputs: {data['inputs']}.",
        "",
        f"Command: `{data['command']}`; {data['wall_s']:g} s in all ({seconds}).",
        "",
        table(data["rows"]),
        "",
        "## Notes",
        "",
        *(f"- {n}" for n in data["notes"]),
    ]
    return "\n".join(parts) + "\n"
