"""Run every benchmark and write benchmarks/results/SUMMARY.md.

Usage: python -m benchmarks.run_all [--only bench_renderer ...] [--summary-only]
                                    [--drift-minutes 10]

Each benchmark runs in its own process (a fresh process is part of what
bench_prepare measures, and torch thread settings must not leak between them),
writes its NAME.json and NAME.md, and SUMMARY.md puts the headline numbers
against the DESIGN.md budgets above the full tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS_DIR, markdown_table, setup_logging

__all__ = ["BENCHMARKS", "main", "write_summary"]

OFFLINE = ("bench_renderer", "bench_prepare", "bench_offline", "bench_motion", "bench_engines")
# The live server end to end: each starts `facecast serve` and watches it over WebRTC.
LIVE = ("bench_first_frame", "bench_audio_to_frame", "bench_sessions", "bench_av_drift")
BENCHMARKS = OFFLINE + LIVE
# The renderer again with one core kept busy: how a shared 2-core machine behaves.
CONTENDED = "bench_renderer_busy1"
RUNS = {name: [name] for name in BENCHMARKS} | {CONTENDED: ["bench_renderer", "--busy-cores", "1"]}

logger = logging.getLogger(__name__)


def _run(name: str, out_dir: Path, drift_minutes: float | None = None) -> float:
    """Run the benchmark that writes NAME.* in a subprocess; returns its wall seconds."""
    start = time.perf_counter()
    module, *extra = RUNS[name]
    if name == "bench_av_drift" and drift_minutes is not None:
        extra = [*extra, "--minutes", f"{drift_minutes:g}"]
    command = [sys.executable, "-m", f"benchmarks.{module}", *extra, "--out-dir", str(out_dir)]
    logger.info("running %s", " ".join(command))
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _load(out_dir: Path, name: str) -> dict[str, Any] | None:
    path = out_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _p50_p95(stats: dict[str, float], digits: int = 0) -> str:
    return f"{stats['p50']:.{digits}f} (p95 {stats['p95']:.{digits}f})"


def _check(ok: bool, target: str) -> str:
    return f"{target}: {'yes' if ok else 'no'}"


def _contended_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    busy = f"{data.get('busy_cores', 1)} core busy"
    for r in data["cpu_render"]:
        measure = f"render FPS p50, CPU, batch {r['batch']}, {r['threads']} thread(s), {busy}"
        value = f"{r['fps_p50']:.1f} (p95 {r['fps_p95']:.1f})"
        rows.append([measure, value, "", r["other_load_cores"]])
    target = data["targets"]["cpu_render_encode_fps"]
    for r in data["render_encode"]:
        measure = f"render+encode FPS, CPU, batch {r['batch']}, {r['threads']} thread(s), {busy}"
        check = _check(r["fps"] >= target, f">= {target:g}")
        rows.append([measure, f"{r['fps']:.1f}", check, r["other_load_cores"]])
    return rows


def _renderer_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for r in data["cpu_render"]:
        measure = f"render FPS p50, CPU, batch {r['batch']}, {r['threads']} thread(s)"
        value = f"{r['fps_p50']:.1f} (p95 {r['fps_p95']:.1f})"
        rows.append([measure, value, "", r["other_load_cores"]])
    enc = data["encode"]
    value = f"{enc['amortized_ms_per_frame']:.1f}"
    rows.append(["H.264 encode ms/frame (amortized)", value, "", enc["other_load_cores"]])
    target = data["targets"]["cpu_render_encode_fps"]
    for r in data["render_encode"]:
        measure = f"render+encode FPS, CPU, batch {r['batch']}, {r['threads']} thread(s)"
        check = _check(r["fps"] >= target, f">= {target:g}")
        rows.append([measure, f"{r['fps']:.1f}", check, r["other_load_cores"]])
    gpu_target = data["targets"]["gpu_render_fps"]
    cuda = data["cuda"]
    if cuda["status"] != "measured":
        return rows + [["render FPS, CUDA", cuda["status"], f">= {gpu_target:g}", ""]]
    for r in cuda["render"]:
        check = _check(r["fps_p50"] >= gpu_target, f">= {gpu_target:g}")
        rows.append([f"render FPS p50, CUDA, batch {r['batch']}", f"{r['fps_p50']:.0f}", check, ""])
    return rows


def _prepare_rows(data: dict[str, Any]) -> list[list[Any]]:
    budget, first_budget = data["budgets_ms"]["prepare"], data["budgets_ms"]["first_frame"]
    first = data["first_in_process"]["ms"]
    measure = "prepare, first call in a fresh process (builds mediapipe graphs), ms"
    rows: list[list[Any]] = [
        [measure, f"{first:.0f}", _check(first <= budget, f"<= {budget:g}"), ""]
    ]
    for r in data["portraits"]:
        name, load = r["portrait"], r["other_load_cores"]
        cold, warm, ff = r["cold_ms"], r["warm_ms"], r["first_frame_ms"]
        cold_check = _check(cold["p95"] <= budget, f"<= {budget:g}")
        ff_check = _check(ff["p95"] <= first_budget, f"<= {first_budget:g} (GPU budget)")
        rows += [
            [f"prepare cold ms, {name}", _p50_p95(cold), cold_check, load],
            [f"prepare warm (cache hit) ms, {name}", _p50_p95(warm, 1), "", load],
            [f"first frame with cached avatar, CPU, ms, {name}", _p50_p95(ff), ff_check, load],
        ]
    return rows


def _offline_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for r in data["results"]:
        measure = (
            f"offline RTF, {r['audio']} ({r['audio_s']:.1f} s), {r['fps']} fps, "
            f"{r['threads']} thread(s)"
        )
        value = f"{r['rtf_p50']:.2f} (p95 {r['rtf_p95']:.2f})"
        rows.append([measure, value, _check(r["rtf_p95"] >= 1, ">= 1"), r["other_load_cores"]])
    return rows


def _engines_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    fps_target = data["targets"]["gpu_engines_fps"]
    for name, entry in data["backends"].items():
        gpu = name not in ("torch-cpu", "onnxruntime")
        render = entry["renderer_ms"]
        rows.append([f"engines on {name}: render ms, batch 1", _p50_p95(render, 1), "", ""])
        fps = entry["one_stream"]["fps"]
        target = _check(fps >= fps_target, f">= {fps_target}") if gpu else ""
        rows.append([f"engines on {name}: one stream FPS (with encode)", f"{fps:.1f}", target, ""])
        streams = ", ".join(
            f"{key.split('_')[-1]}: {value['streams']}"
            for key, value in entry.items()
            if key.startswith("streams_at_")
        )
        rows.append([f"engines on {name}: concurrent streams that hold", streams, "", ""])
    for name in data["unavailable"]:
        rows.append([f"engines on {name}", "not available on this machine", "", ""])
    return rows


def _motion_rows(data: dict[str, Any]) -> list[list[Any]]:
    live_name = "learned, 1 frame heard (live default)"
    live, base = data["sources"][live_name], data["sources"]["baseline"]
    rows: list[list[Any]] = []
    for key, label in (
        ("bilabial_closure_rate", "bilabial closure rate"),
        ("openness_r_mean", "jawOpen-openness r"),
    ):
        a, b = live["lip_sync_held_out"][key], base["lip_sync_held_out"][key]
        rows.append(
            [
                f"motion, held-out speech: {label}, learned / baseline",
                f"{a:.2f} / {b:.2f}",
                _check(a > b, "learned higher"),
                "",
            ]
        )
    verdict = "yes" if data["verdict"]["learned_beats_baseline"] else "no"
    rows.append(["motion: learned beats baseline on lip sync", verdict, "", ""])
    latency = data["latency_floor_ms"][live_name]
    rows.append(["motion: learned look-ahead (algorithmic floor), ms", f"{latency:.0f}", "", ""])
    return rows


def _quantiles(stats: dict[str, float], digits: int = 0) -> str:
    return _p50_p95(stats, digits) if stats.get("n") else "not measured"


def _first_frame_rows(data: dict[str, Any]) -> list[list[Any]]:
    s, u = data["session_summary"], data["upload_summary"]
    load = data["session_cpu"]["other_cores"]
    return [
        [
            "live: POST /api/sessions -> first decoded frame at the viewer, ms",
            _quantiles(s["first_decoded_ms"]),
            "",
            load,
        ],
        [
            "live: server stats first_frame_ms",
            _quantiles(s["server_first_frame_ms"]),
            "<= 100 (GPU budget)",
            load,
        ],
        [
            "live: new portrait upload (POST /api/portraits, cold), ms",
            _quantiles(u["cold_ms"]),
            "<= 1000",
            data["upload_cpu"]["other_cores"],
        ],
    ]


def _audio_to_frame_rows(data: dict[str, Any]) -> list[list[Any]]:
    s, load = data["summary"], data["cpu"]["other_cores"]
    delay = data["session"]["stats"]["playout_delay_ms"]
    return [
        [
            "live: send -> mouth open at the receiver, ms",
            _quantiles(s["mouth_ms"]),
            f"playout delay {delay:g} + network/decode",
            load,
        ],
        ["live: send -> sound heard at the receiver, ms", _quantiles(s["audio_ms"]), "", load],
        [
            "live: A/V offset at the receiver (mouth - sound), ms",
            _quantiles(s["av_offset_ms"]),
            "",
            load,
        ],
    ]


def _sessions_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for r in data["results"]:
        measure = f"live: {r['sessions']} session(s), received fps min / dropped % worst"
        value = f"{r['received_fps_min']:.1f} / {100 * r['dropped_share_max']:.0f} %"
        rows.append(
            [measure, value, _check(r["held"], "held in real time"), r["cpu"]["other_cores"]]
        )
    rows.append(["live: largest N held in real time, CPU", data["largest_held"], ">= 1 (CPU)", ""])
    return rows


def _av_drift_rows(data: dict[str, Any]) -> list[list[Any]]:
    first, last = data["first"]["summary"]["av_offset_ms"], data["last"]["summary"]["av_offset_ms"]
    load = data["cpu"]["other_cores"]
    return [
        [
            f"live: A/V offset, first / last window of {data['minutes']:g} min, ms",
            f"{_quantiles(first)} / {_quantiles(last)}",
            "",
            load,
        ],
        ["live: A/V drift (p50 last - first), ms", data["drift_ms"]["av_offset_ms"], "~0", load],
    ]


def write_summary(out_dir: Path = RESULTS_DIR, durations: dict[str, float] | None = None) -> Path:
    """SUMMARY.md: headline numbers from every NAME.json, then every NAME.md."""
    results = {name: _load(out_dir, name) for name in RUNS}
    rows: list[list[Any]] = []
    for name, builder in (
        ("bench_renderer", _renderer_rows),
        (CONTENDED, _contended_rows),
        ("bench_prepare", _prepare_rows),
        ("bench_offline", _offline_rows),
        ("bench_motion", _motion_rows),
        ("bench_engines", _engines_rows),
        ("bench_first_frame", _first_frame_rows),
        ("bench_audio_to_frame", _audio_to_frame_rows),
        ("bench_sessions", _sessions_rows),
        ("bench_av_drift", _av_drift_rows),
    ):
        data = results[name]
        rows += builder(data) if data else [[name, "not run", "", ""]]
    machine = next((d["machine"] for d in results.values() if d), {})
    parts = [
        "# facecast benchmarks: summary",
        "",
        f"CPU: {machine.get('cpu_model')} ({machine.get('cpu_cores')} cores); GPU: "
        f"{machine.get('gpu') or 'none'}; torch {machine.get('torch')}. Each benchmark's own "
        "section below gives its date and load average. 'other load' = cores kept busy by other "
        "processes during the measurement (0 = quiet machine).",
        "",
        markdown_table(["measure", "value", "target", "other load"], rows),
        "",
    ]
    if results[CONTENDED]:
        parts += [
            f"Rows marked 'core busy' come from {CONTENDED}.md: the renderer benchmark rerun "
            "with a spinning process on one of the two cores, as when other jobs share the "
            "machine.",
            "",
        ]
    if durations:
        parts += [
            "Benchmark run times: " + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items()),
            "",
        ]
    for name in BENCHMARKS:
        md = out_dir / f"{name}.md"
        if md.exists():
            body = md.read_text().replace("\n#", "\n##")
            parts += [f"#{body}" if body.startswith("#") else body, ""]
    path = out_dir / "SUMMARY.md"
    path.write_text("\n".join(parts).rstrip() + "\n")
    logger.info("wrote %s", path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--summary-only", action="store_true", help="rebuild SUMMARY.md only")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--drift-minutes", type=float, default=None, help="bench_av_drift length (default 10)"
    )
    args = parser.parse_args(argv)
    setup_logging()
    durations: dict[str, float] = {}
    failed = []
    if not args.summary_only:
        for name in args.only:
            try:
                durations[name] = _run(name, args.out_dir, args.drift_minutes)
            except subprocess.CalledProcessError as exc:
                logger.error("%s failed with exit status %d", name, exc.returncode)
                failed.append(name)
    print(write_summary(args.out_dir, durations).read_text())
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
