"""How long does preparing a portrait take, cold (new image) and warm (avatar cache hit)?

Usage: python -m benchmarks.bench_prepare [--cold N] [--warm N]

For each portrait: FaceEncoder.encode with an empty cache directory (cold: detect,
landmarks, segmentation, warp mesh, cache write) and again with the entry on disk
(warm: hash + cache read), plus "first frame": warm encode, FaceRenderer
construction and one batch-1 render, what a session with a cached avatar pays
before its first frame. The very first encode in a process also builds the
mediapipe graphs; it is reported on its own. Stages of the cold path are timed
by wrapping the encoder's helpers for the duration of the run (engines unmodified).
Budgets (DESIGN.md): preparation of a new image <= 1 s; first frame <= 100 ms
server-side with a cached avatar (that budget is for a GPU; this is the CPU figure).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import (
    OtherLoad,
    Stopwatch,
    finish_machine_info,
    machine_info,
    machine_markdown,
    portraits,
    records_table,
    run_and_report,
    summarize,
)
from engines.face import encoder as face_encoder
from engines.face import landmarks as face_landmarks
from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.motion.space import neutral_motion
from engines.paths import default_portrait_path
from engines.render.renderer import FaceRenderer

__all__ = ["main", "run"]

NAME = "bench_prepare"
PREPARE_BUDGET_MS = 1000.0
FIRST_FRAME_BUDGET_MS = 100.0
# (module, function, label): the cold path's stages; the rest is cropping, pose, hashing.
COLD_STAGES = (
    (face_encoder, "load_portrait", "decode image"),
    (face_landmarks, "detect_faces", "face detection"),
    (face_landmarks, "face_mesh", "landmarks"),
    (face_landmarks, "person_mask", "segmentation"),
    (face_encoder, "build_warp_mesh", "warp mesh"),
    (face_encoder, "_background_plate", "background plate"),
    (face_encoder, "save_avatar", "cache write"),
    (face_encoder, "load_avatar", "cache read"),
)

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _staged(watch: Stopwatch) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for module, name, label in COLD_STAGES:
            stack.enter_context(watch.patched(module, name, label))
        yield


def _encode_ms(source: Path | None, cache_dir: Path, watch: Stopwatch | None = None) -> float:
    encoder = FaceEncoder(FaceEncoderConfig(cache_dir=cache_dir))
    with _staged(watch) if watch else contextlib.nullcontext():
        start = time.perf_counter()
        encoder.encode(source)
        return (time.perf_counter() - start) * 1000


def _first_frame_ms(source: Path | None, cache_dir: Path) -> float:
    start = time.perf_counter()
    avatar = FaceEncoder(FaceEncoderConfig(cache_dir=cache_dir)).encode(source)
    with torch.inference_mode():
        FaceRenderer(avatar).render(neutral_motion())
    return (time.perf_counter() - start) * 1000


def bench_portrait(label: str, source: Path | None, args: argparse.Namespace, tmp: Path) -> dict:
    """Cold, warm and first-frame timings of one portrait."""
    load = OtherLoad()
    watch = Stopwatch()
    cold = [_encode_ms(source, tmp / f"cold_{label}_{i}", watch) for i in range(args.cold)]
    stages = {k: v * 1000 / args.cold for k, v in watch.totals.items() if k != "cache read"}
    stages["other (crop, mask fill, pose, hash)"] = float(np.mean(cold)) - sum(stages.values())
    warm_dir = tmp / f"cold_{label}_0"
    _encode_ms(source, warm_dir)  # warm-up read
    warm = [_encode_ms(source, warm_dir) for _ in range(args.warm)]
    _first_frame_ms(source, warm_dir)  # warm-up
    first = [_first_frame_ms(source, warm_dir) for _ in range(args.warm)]
    return {
        "portrait": label,
        "file_bytes": (source or default_portrait_path()).stat().st_size,
        "cold_ms": summarize(cold),
        "warm_ms": summarize(warm),
        "first_frame_ms": summarize(first),
        "cold_stage_ms": stages,
        "other_load_cores": load.cores(),
    }


COLUMNS = (
    ("portrait", "portrait"),
    ("cold n", "cold_ms.n"),
    ("cold ms p50", "cold_ms.p50"),
    ("cold ms p95", "cold_ms.p95"),
    ("warm n", "warm_ms.n"),
    ("warm ms p50", "warm_ms.p50"),
    ("warm ms p95", "warm_ms.p95"),
    ("first frame ms p50", "first_frame_ms.p50"),
    ("first frame ms p95", "first_frame_ms.p95"),
    ("other load", "other_load_cores"),
)


def _markdown(data: dict[str, Any]) -> str:
    stage_rows = [{"portrait": r["portrait"], **r["cold_stage_ms"]} for r in data["portraits"]]
    stage_columns = [("portrait", "portrait")] + [
        (k, k) for k in data["portraits"][0]["cold_stage_ms"]
    ]
    first = data["first_in_process"]
    parts = [
        "# Portrait preparation",
        "",
        machine_markdown(data["machine"]),
        "",
        f"Budgets: new portrait <= {PREPARE_BUDGET_MS:g} ms; first frame with a cached avatar "
        f"<= {FIRST_FRAME_BUDGET_MS:g} ms (DESIGN.md; the first-frame budget assumes a GPU).",
        "",
        f"First encode in a fresh process ({first['portrait']}, cold cache, builds the mediapipe "
        f"graphs): {first['ms']:.0f} ms.",
        "",
        records_table(data["portraits"], COLUMNS),
        "",
        "## Cold preparation by stage (mean ms)",
        "",
        records_table(stage_rows, stage_columns),
        "",
        "## Notes",
        "",
        "- cold: FaceEncoder.encode with an empty cache dir (one per repetition); warm: the same "
        "file again (sha256 of the bytes + npz read); first frame: warm encode + FaceRenderer(...) "
        "+ one batch-1 render of the neutral pose.",
        f"- torch threads: {data['machine']['torch_threads']}; mediapipe runs its own threads.",
    ]
    return "\n".join(parts)


def run(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {
        "machine": machine_info(),
        "budgets_ms": {"prepare": PREPARE_BUDGET_MS, "first_frame": FIRST_FRAME_BUDGET_MS},
    }
    found = portraits()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        label, source = found[0]
        data["first_in_process"] = {"portrait": label, "ms": _encode_ms(source, tmp / "first")}
        data["portraits"] = []
        for label, source in found:
            logger.info("portrait %s: %d cold, %d warm", label, args.cold, args.warm)
            data["portraits"].append(bench_portrait(label.split(" ")[0], source, args, tmp))
    finish_machine_info(data["machine"])
    data["headline"] = {
        "first_encode_in_process_ms": round(data["first_in_process"]["ms"]),
        **{f"cold_ms_p50_{r['portrait']}": round(r["cold_ms"]["p50"]) for r in data["portraits"]},
        **{
            f"warm_ms_p50_{r['portrait']}": round(r["warm_ms"]["p50"], 1) for r in data["portraits"]
        },
        **{
            f"first_frame_ms_p50_{r['portrait']}": round(r["first_frame_ms"]["p50"], 1)
            for r in data["portraits"]
        },
    }
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=10, help="cold repetitions per portrait")
    parser.add_argument("--warm", type=int, default=20, help="warm repetitions per portrait")
    run_and_report(NAME, parser, run, _markdown, argv)


if __name__ == "__main__":
    main()
