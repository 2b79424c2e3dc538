"""Motion model -> ONNX, then a parity check of onnxruntime against torch.

Usage: python -m export.onnx_export [--checkpoint PATH] [-o DIR] [--tolerance 1e-4]

Writes DIR/audio_encoder.onnx (features (1, T, F) -> embedding (1, T, C), T
dynamic) and DIR/motion_denoiser.onnx (one guided sampler step's forward:
batch B dynamic, 3 rows when guidance batches full / audio-only / unconditional),
runs both on onnxruntime and torch with the same random feeds and reports the
largest absolute difference; exits 1 when one exceeds the tolerance.

Why onnx 1.17 (the `onnx` extra): later onnx releases need protobuf >= 6,
and mediapipe 0.10.21, whose wheel carries the face models, needs protobuf < 5.
onnx 1.17 works with both; torch's TorchScript-based exporter (opset 17) then
needs nothing newer.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from engines.backends import InferenceBackend, OnnxRuntimeBackend, TensorSpec, TorchBackend
from engines.checkpoint import MotionModel
from engines.controls import CONTROL_DIM
from engines.learned_motion import DEFAULT_CHECKPOINT, default_motion_model

__all__ = ["OPSET", "export_motion_model", "motion_backends", "motion_specs", "parity"]

logger = logging.getLogger(__name__)

OPSET = 17
ENCODER, DENOISER = "audio_encoder", "motion_denoiser"


def motion_specs(model: MotionModel) -> dict[str, tuple[tuple[TensorSpec, ...], ...]]:
    """(inputs, outputs) of each stage, named as in the ONNX files."""
    c = model.config
    w, k = model.window, model.prefix
    encoder = (
        (TensorSpec("features", (1, None, c.feature_dim), "float32"),),
        (TensorSpec("embedding", (1, None, c.audio_channels), "float32"),),
    )
    denoiser = (
        (
            TensorSpec("sample", (None, w, c.motion_dim), "float32"),
            TensorSpec("timestep", (None,), "int64"),
            TensorSpec("audio", (None, w, c.audio_channels), "float32"),
            TensorSpec("prev", (None, k, c.motion_dim), "float32"),
            TensorSpec("controls", (None, w, CONTROL_DIM), "float32"),
            TensorSpec("drop_audio", (None,), "bool"),
            TensorSpec("drop_prev", (None,), "bool"),
            TensorSpec("drop_controls", (None,), "bool"),
        ),
        (TensorSpec("v", (None, w, c.motion_dim), "float32"),),
    )
    return {ENCODER: encoder, DENOISER: denoiser}


def example_feeds(
    specs: tuple[TensorSpec, ...], seed: int = 0, batch: int = 3, frames: int = 24
) -> dict[str, np.ndarray]:
    """Random feeds for specs; dynamic sizes take `batch` (first axis) or `frames`."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = tuple(
            d if d is not None else (batch if axis == 0 else frames)
            for axis, d in enumerate(spec.shape)
        )
        if spec.dtype == "float32":
            feeds[spec.name] = rng.standard_normal(shape).astype(np.float32)
        elif spec.dtype == "int64":
            feeds[spec.name] = rng.integers(0, 1000, shape).astype(np.int64)
        else:
            feeds[spec.name] = rng.random(shape) < 0.5
    return feeds


def export_motion_model(model: MotionModel, out_dir: Path) -> dict[str, Path]:
    """Write both stages as ONNX files in out_dir; returns their paths by stage name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    modules = {ENCODER: model.encoder, DENOISER: model.denoiser}
    paths = {}
    for stage, (inputs, outputs) in motion_specs(model).items():
        feeds = example_feeds(inputs, batch=1 if stage == ENCODER else 3)
        args = tuple(torch.from_numpy(feeds[s.name]) for s in inputs)
        dynamic = {
            s.name: {axis: f"{s.name}_{axis}" for axis, d in enumerate(s.shape) if d is None}
            for s in (*inputs, *outputs)
        }
        path = out_dir / f"{stage}.onnx"
        # Traced with autograd on: under no_grad, eval-mode transformer layers take
        # torch's fused fast path (_transformer_encoder_layer_fwd), which has no ONNX form.
        # The tracer warns about the shape checks at stage boundaries: they hold for
        # every shape the specs allow, so the traced constants are right.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                modules[stage].eval(),
                args,
                str(path),
                input_names=[s.name for s in inputs],
                output_names=[s.name for s in outputs],
                dynamic_axes={k: v for k, v in dynamic.items() if v},
                opset_version=OPSET,
                dynamo=False,
            )
        paths[stage] = path
        logger.info("exported %s to %s", stage, path)
    return paths


def motion_backends(
    model: MotionModel, paths: dict[str, Path]
) -> dict[str, dict[str, InferenceBackend]]:
    """{backend name: {stage: backend}} for torch and onnxruntime on this machine's CPU."""
    specs = motion_specs(model)
    modules = {ENCODER: model.encoder, DENOISER: model.denoiser}
    return {
        "torch-cpu": {s: TorchBackend(modules[s], *specs[s]) for s in specs},
        "onnxruntime-cpu": {s: OnnxRuntimeBackend(paths[s]) for s in specs},
    }


def parity(model: MotionModel, paths: dict[str, Path], seeds: int = 3) -> dict[str, float]:
    """Largest |onnxruntime - torch| per stage over `seeds` random feeds."""
    backends = motion_backends(model, paths)
    reference, candidate = backends["torch-cpu"], backends["onnxruntime-cpu"]
    errors = {}
    for stage, (inputs, outputs) in motion_specs(model).items():
        worst = 0.0
        for seed in range(seeds):
            feeds = example_feeds(inputs, seed, batch=1 if stage == ENCODER else 3 + seed)
            a, b = reference[stage].run(feeds), candidate[stage].run(feeds)
            worst = max(worst, *(float(np.abs(a[o.name] - b[o.name]).max()) for o in outputs))
        errors[stage] = worst
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("-o", "--out-dir", type=Path, default=Path("build/onnx"))
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = default_motion_model(args.checkpoint)
    paths = export_motion_model(model, args.out_dir)
    errors = parity(model, paths)
    for stage, error in errors.items():
        verdict = "ok" if error <= args.tolerance else "OVER TOLERANCE"
        print(f"{paths[stage]}: max abs error vs torch {error:.2e} ({verdict})")
    return 0 if all(e <= args.tolerance for e in errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
