"""CPU renderer, eager vs traced, on one thread and on two at once (two sessions).

Usage: python -m benchmarks.bench_render_threads [--frames 40] [--rounds 4]

torch-cpu rendered with the FaceRenderer module itself; it now replays traced
graphs once a stream is under way (engines.backends.torch_backend.
TracedFrameRenderer). Eager, each of the renderer's few hundred small ops takes
the GIL, so two sessions' threads wait on each other; a traced graph runs
without it. Per round, for each path: one thread rendering `frames` frames of the
built-in portrait talking, turning and blinking, then two threads each with its
own renderer (as two sessions), one torch thread each; rounds alternate the
order. Reports ms per frame per thread and the frames per second of all threads
together, and checks that both paths drew the same pixels.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import numpy as np
import torch

from benchmarks._common import (
    finish_machine_info,
    machine_info,
    machine_markdown,
    markdown_table,
    run_and_report,
)

__all__ = ["main", "run"]

NAME = "bench_render_threads"


def _motions(count: int) -> list[np.ndarray]:
    from engines.motion.space import index_of, neutral_motion

    out = []
    for i in range(count):
        m = neutral_motion()
        m[index_of("jawOpen")] = 0.35 * (1 + np.sin(i / 3))
        m[index_of("headYaw")] = 0.1 * np.sin(i / 11)
        m[index_of("eyeBlinkLeft")] = m[index_of("eyeBlinkRight")] = max(0.0, np.sin(i / 5))
        out.append(m)
    return out


def _wall_s(renderers: list[Any], motions: list[np.ndarray]) -> float:
    """Seconds for every renderer to draw every motion, each on its own thread."""

    def work(renderer: Any) -> None:
        for m in motions:
            renderer.render(m)

    threads = [threading.Thread(target=work, args=(r,)) for r in renderers]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


def run(args: argparse.Namespace) -> dict[str, Any]:
    from engines.backends.torch_backend import TracedFrameRenderer
    from engines.face.encoder import FaceEncoder
    from engines.render.renderer import FaceRenderer

    torch.set_num_threads(1)
    info = machine_info()
    avatar = FaceEncoder().encode(None)
    motions = _motions(args.frames)
    paths: dict[str, list[Any]] = {"eager": [], "traced": []}
    for _ in range(2):
        paths["eager"].append(FaceRenderer(avatar).eval())
        traced = TracedFrameRenderer(FaceRenderer(avatar))
        if not traced.wait_traced(timeout_s=120):
            raise SystemExit("the renderer could not be traced: see the warning above")
        paths["traced"].append(traced)
    same = all(
        np.array_equal(paths["eager"][0].render(m), paths["traced"][0].render(m)) for m in motions
    )
    for renderers in paths.values():  # warm-up
        _wall_s(renderers[:1], motions[:4])
    seconds: dict[str, dict[int, list[float]]] = {p: {1: [], 2: []} for p in paths}
    names = list(paths)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            for n in (1, 2):
                seconds[name][n].append(_wall_s(paths[name][:n], motions))
    results = {
        name: {
            f"threads_{n}": {
                "ms_per_frame_per_thread": round(1000 * float(np.median(s)) / args.frames, 2),
                "fps_all_threads": round(n * args.frames / float(np.median(s)), 1),
            }
            for n, s in by_n.items()
        }
        for name, by_n in seconds.items()
    }
    return {
        "machine": finish_machine_info(info),
        "frames": args.frames,
        "rounds": args.rounds,
        "same_pixels": bool(same),
        "results": results,
    }


def markdown(data: dict[str, Any]) -> str:
    rows = [
        [
            name,
            n.split("_")[1],
            v["ms_per_frame_per_thread"],
            v["fps_all_threads"],
        ]
        for name, by_n in data["results"].items()
        for n, v in by_n.items()
    ]
    return "\n".join(
        [
            "# CPU renderer: eager vs traced, one thread and two at once",
            "",
            machine_markdown(data["machine"]),
            "",
            f"{data['frames']} frames of the built-in portrait (talking, turning, blinking) per "
            f"thread, 512x512, one torch thread each, {data['rounds']} rounds alternated; "
            "medians. Two threads = two sessions, each with its own renderer.",
            "",
            markdown_table(
                ["path", "threads", "ms per frame per thread", "frames/s, all threads"], rows
            ),
            "",
            f"Same pixels from both paths: {'yes' if data['same_pixels'] else 'NO'}.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    run_and_report(NAME, parser, run, markdown, argv)


if __name__ == "__main__":
    main()
