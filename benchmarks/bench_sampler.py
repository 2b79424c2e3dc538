"""The live learned sampler's CPU cost per frame: the denoiser module eager vs traced.

Usage: python -m benchmarks.bench_sampler [--seconds 8] [--rounds 6]

torch-cpu ran the MotionDenoiser module as it is; it now runs it traced
(engines.backends.denoiser.TracedDenoiser). Both in one process on one thread
(as a live session runs), interleaved round by round so that this shared host's
drift falls on both: per round, one LearnedMotion stream over the speech in
40 ms chunks (ms per emitted frame: features, encoder, 4 guided sampler steps,
smoothing, blinks) and 200 denoiser calls at a session's shape (3 rows). The
motion of the two is compared too: the trace must not change it.
"""

from __future__ import annotations

import argparse
import tempfile
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
)
from benchmarks._streams import CHUNK, RATE
from engines.audio.decoding import read_audio
from engines.backends.base import MotionStages
from engines.backends.denoiser import TracedDenoiser
from engines.motion import MotionConfig
from engines.motion.learned import LearnedMotion, default_motion_model
from engines.types import AudioChunk

__all__ = ["main", "run"]

NAME = "bench_sampler"
CALLS = 200


def _stream(source: LearnedMotion, speech: np.ndarray) -> tuple[np.ndarray, float]:
    """(motion, ms per emitted frame) of one stream over speech."""
    windows = []
    began = time.perf_counter()
    for start in range(0, len(speech), CHUNK):
        windows.append(source.push(AudioChunk(speech[start : start + CHUNK], RATE, start)))
    windows.append(source.flush())
    elapsed = time.perf_counter() - began
    motion = np.concatenate([w.values for w in windows if len(w)])
    return motion, 1000 * elapsed / len(motion)


def _calls(denoiser: Any, feeds: tuple[torch.Tensor, ...]) -> float:
    """ms per denoiser call at feeds' shape."""
    with torch.inference_mode():
        began = time.perf_counter()
        for _ in range(CALLS):
            denoiser(*feeds)
    return 1000 * (time.perf_counter() - began) / CALLS


def _feeds(model: Any) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    c, w, k = model.config, model.window, model.prefix
    return (
        torch.randn(3, w, c.motion_dim, generator=g),
        torch.full((3,), 500),
        torch.randn(3, w, c.audio_channels, generator=g),
        torch.randn(3, k, c.motion_dim, generator=g),
        torch.randn(3, w, 9, generator=g),
        torch.tensor([False, False, True]),
        torch.zeros(3, dtype=torch.bool),
        torch.tensor([False, True, True]),
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        label, path = speech_file(Path(tmp))
        speech = read_audio(path, RATE).astype(np.float32)[: int(args.seconds * RATE)]
    model = default_motion_model()
    denoisers = {"eager module": model.denoiser, "traced": TracedDenoiser(model.denoiser)}
    sources = {}
    for name, denoiser in denoisers.items():
        source = LearnedMotion(MotionConfig(), 25.0, model=model)
        source.sampler.denoiser = denoiser  # the same stages otherwise
        source.stages = MotionStages(model.encoder, denoiser)
        sources[name] = source
    feeds = _feeds(model)
    for name in denoisers:  # warm up: the trace is made on the first call
        _stream(sources[name], speech[: RATE // 2])
        _calls(denoisers[name], feeds)
    frame_ms: dict[str, list[float]] = {name: [] for name in denoisers}
    call_ms: dict[str, list[float]] = {name: [] for name in denoisers}
    motions: dict[str, np.ndarray] = {}
    names = list(denoisers)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            motions[name], ms_per_frame = _stream(sources[name], speech)
            frame_ms[name].append(ms_per_frame)
            call_ms[name].append(_calls(denoisers[name], feeds))
    a, b = (motions[n] for n in names)
    return {
        "machine": finish_machine_info(info),
        "speech": label,
        "seconds": round(len(speech) / RATE, 2),
        "rounds": args.rounds,
        "results": {
            name: {
                "frame_ms_median": round(float(np.median(frame_ms[name])), 3),
                "frame_ms_runs": [round(v, 3) for v in frame_ms[name]],
                "call_ms_median": round(float(np.median(call_ms[name])), 3),
            }
            for name in names
        },
        "motion_max_abs_difference": float(np.abs(a - b).max()),
    }


def markdown(data: dict[str, Any]) -> str:
    r = data["results"]
    rows = [
        [name, v["frame_ms_median"], v["call_ms_median"], ", ".join(map(str, v["frame_ms_runs"]))]
        for name, v in r.items()
    ]
    eager, traced = (r[n]["frame_ms_median"] for n in ("eager module", "traced"))
    return "\n".join(
        [
            "# Live learned sampler, CPU ms per frame: denoiser eager vs traced",
            "",
            machine_markdown(data["machine"]),
            "",
            f"Speech: {data['speech']}, {data['seconds']} s in 40 ms chunks, 25 fps, one "
            f"thread, {data['rounds']} rounds interleaved. A frame: features, encoder, "
            "4 guided sampler steps (3 rows each), smoothing, blinks.",
            "",
            markdown_table(
                ["denoiser", "ms per frame (median)", "ms per call, 3 rows", "per round"], rows
            ),
            "",
            f"Traced / eager per frame: {traced / eager:.2f}. Largest difference between "
            f"the two streams' motion: {data['motion_max_abs_difference']:.2g}.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="speech per round")
    parser.add_argument("--rounds", type=int, default=6)
    run_and_report(NAME, parser, run, markdown, argv)


if __name__ == "__main__":
    main()
