"""The three neural stages -> ONNX, then a parity check of onnxruntime against torch.

Usage: python -m export.onnx_export [--checkpoint PATH] [--portrait PATH] [-o DIR]
[--tolerance 1e-4]

Writes DIR/audio_encoder.onnx, DIR/motion_denoiser.onnx and DIR/face_renderer.onnx
(the graphs and their tensors are described in engines/backends/graphs.py; the
renderer bakes in the portrait, the built-in one unless --portrait), runs each
on onnxruntime and torch with the same random feeds and reports the largest
absolute difference; exits 1 when one exceeds the tolerance.

The server does the same export on demand for the onnxruntime and tensorrt
backends, cached by fingerprint; this command is for inspecting the graphs
and for building engines elsewhere.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from engines.backends import InferenceBackend, OnnxRuntimeBackend, TorchBackend
from engines.backends.graphs import (
    DENOISER,
    ENCODER,
    RENDERER,
    Specs,
    example_feeds,
    export_graph,
    export_motion_model,
    motion_specs,
    renderer_specs,
)
from engines.face.encoder import FaceEncoder
from engines.motion.learned import default_motion_model
from engines.motion.model import MotionModel
from engines.paths import DEFAULT_CHECKPOINT
from engines.render.renderer import FaceRenderer

__all__ = ["export_all", "parity", "stage_backends", "stage_specs"]

logger = logging.getLogger(__name__)

_SEEDS = 3


def export_all(model: MotionModel, renderer: FaceRenderer, out_dir: Path) -> dict[str, Path]:
    """The three stages as ONNX files in out_dir; returns their paths by stage name."""
    paths = export_motion_model(model, out_dir)
    paths[RENDERER] = export_graph(
        renderer, renderer_specs(renderer), Path(out_dir) / f"{RENDERER}.onnx", batch=2
    )
    return paths


def stage_specs(model: MotionModel, renderer: FaceRenderer) -> dict[str, Specs]:
    return {**motion_specs(model), RENDERER: renderer_specs(renderer)}


def stage_backends(
    model: MotionModel, renderer: FaceRenderer, paths: dict[str, Path]
) -> dict[str, dict[str, InferenceBackend]]:
    """{backend name: {stage: backend}} for torch and onnxruntime on this machine's CPU."""
    specs = stage_specs(model, renderer)
    modules = {ENCODER: model.encoder, DENOISER: model.denoiser, RENDERER: renderer}
    return {
        "torch-cpu": {s: TorchBackend(modules[s], *specs[s]) for s in specs},
        "onnxruntime-cpu": {s: OnnxRuntimeBackend(paths[s]) for s in specs},
    }


def parity(
    model: MotionModel, renderer: FaceRenderer, paths: dict[str, Path], seeds: int = _SEEDS
) -> dict[str, float]:
    """Largest |onnxruntime - torch| per stage over `seeds` random feeds."""
    backends = stage_backends(model, renderer, paths)
    reference, candidate = backends["torch-cpu"], backends["onnxruntime-cpu"]
    errors = {}
    for stage, (inputs, outputs) in stage_specs(model, renderer).items():
        worst = 0.0
        for seed in range(seeds):
            batch = {ENCODER: 1, DENOISER: 3 + seed, RENDERER: 1 + seed}[stage]
            feeds = example_feeds(inputs, seed, batch=batch)
            a, b = reference[stage].run(feeds), candidate[stage].run(feeds)
            worst = max(worst, *(float(np.abs(a[o.name] - b[o.name]).max()) for o in outputs))
        errors[stage] = worst
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--portrait", type=Path, help="portrait the renderer graph bakes in")
    parser.add_argument("-o", "--out-dir", type=Path, default=Path("build/onnx"))
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = default_motion_model(args.checkpoint)
    renderer = FaceRenderer(FaceEncoder().encode(args.portrait))
    paths = export_all(model, renderer, args.out_dir)
    errors = parity(model, renderer, paths)
    for stage, error in errors.items():
        verdict = "ok" if error <= args.tolerance else "OVER TOLERANCE"
        print(f"{paths[stage]}: max abs error vs torch {error:.2e} ({verdict})")
    return 0 if all(e <= args.tolerance for e in errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
