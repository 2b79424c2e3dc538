"""What a rendered frame costs between the renderer and the video encoder, per session.

Usage: python -m benchmarks.bench_frame_handoff [--frames 48] [--rounds 30]

Every live frame goes: the renderer's float (1, 3, 512, 512) -> uint8 (512, 512, 3)
-> the provenance mark (on by default) -> PyAV's VideoFrame.from_ndarray, which
aiortc's encoder then converts and encodes (bench_encode.md measures that part).
Measured on one thread, the four paths interleaved in one run, over frames the
renderer drew of the built-in portrait talking and turning:

- planar: the conversion before 2026-12-02, which left a channel-planar view
  (the strides of a (3, H, W) array); PyAV copies such an array pixel by pixel;
- packed: engines.render.renderer.to_uint8_frames now, C-contiguous;
each with the mark (FrameMarker.mark(in_place=True), as the session calls it)
and without (--no-watermark).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from benchmarks._common import finish_machine_info, machine_info, markdown_table, run_and_report

__all__ = ["main", "run"]

NAME = "bench_frame_handoff"


def planar_uint8_frames(frames: torch.Tensor) -> torch.Tensor:
    """The conversion before 2026-12-02: a channel-planar (B, S, S, 3) view."""
    return (frames.permute(0, 2, 3, 1) * 255.0 + 0.5).to(torch.uint8)


def _rendered(count: int) -> list[torch.Tensor]:
    """`count` float frames (1, 3, S, S) of the built-in portrait talking and turning."""
    from engines.face.encoder import FaceEncoder
    from engines.motion.space import index_of, neutral_motion
    from engines.render.renderer import FaceRenderer

    renderer = FaceRenderer(FaceEncoder().encode(None)).eval()
    frames = []
    with torch.inference_mode():
        for i in range(count):
            motion = neutral_motion()
            motion[index_of("jawOpen")] = 0.35 * (1 + np.sin(i / 3))
            motion[index_of("headYaw")] = 0.1 * np.sin(i / 11)
            frames.append(renderer(torch.from_numpy(motion[None])))
    return frames


def run(args: argparse.Namespace) -> dict[str, Any]:
    from av import VideoFrame

    from engines.provenance import FrameMarker, ProvenanceConfig
    from engines.render.renderer import to_uint8_frames

    torch.set_num_threads(1)
    info = machine_info()
    frames = _rendered(args.frames)
    marker = FrameMarker(ProvenanceConfig(instance_id=0xC0FFEE), "bench")

    def handoff(convert: Any, mark: bool) -> Any:
        def one(frame: torch.Tensor) -> Any:
            rgb = convert(frame).numpy()[0]
            if mark:
                rgb = marker.mark(rgb, in_place=True)
            return VideoFrame.from_ndarray(rgb, format="rgb24")

        return one

    paths = {
        "planar, unmarked": handoff(planar_uint8_frames, False),
        "planar, marked": handoff(planar_uint8_frames, True),
        "packed, unmarked": handoff(to_uint8_frames, False),
        "packed, marked": handoff(to_uint8_frames, True),
    }
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            for frame in frames[r % 4 :: 4]:
                began = time.perf_counter()
                paths[name](frame)
                seconds[name].append(time.perf_counter() - began)
    results = {
        name: {
            "ms_p50": round(1000 * float(np.median(s)), 3),
            "ms_p95": round(1000 * float(np.percentile(s, 95)), 3),
            "n": len(s),
        }
        for name, s in seconds.items()
    }
    return {"machine": finish_machine_info(info), "frames": args.frames, "results": results}


def markdown(data: dict[str, Any]) -> str:
    from benchmarks._common import machine_markdown

    r = data["results"]
    rows = [[name, v["ms_p50"], v["ms_p95"], v["n"]] for name, v in r.items()]
    mark_cost = round(r["packed, marked"]["ms_p50"] - r["packed, unmarked"]["ms_p50"], 3)
    saved = round(r["planar, unmarked"]["ms_p50"] - r["packed, unmarked"]["ms_p50"], 3)
    return "\n".join(
        [
            "# Renderer -> encoder hand-off per frame (uint8 conversion, mark, PyAV import)",
            "",
            machine_markdown(data["machine"]),
            "",
            f"{data['frames']} rendered 512x512 frames, one thread, the paths interleaved. "
            "ms per frame from the renderer's float output to a PyAV VideoFrame, which "
            "aiortc's encoder then converts (not included).",
            "",
            markdown_table(["path", "ms p50", "ms p95", "n"], rows),
            "",
            f"The mark's own cost on a packed frame: {mark_cost} ms p50 (target <= 1 ms). "
            f"Packing at the renderer saves {saved} ms per unmarked frame.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=30)
    run_and_report(NAME, parser, run, markdown, argv)


if __name__ == "__main__":
    main()
