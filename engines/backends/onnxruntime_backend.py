"""The onnxruntime backends: the exported graphs on onnxruntime's CPU, CUDA or TensorRT
execution provider (onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt).

The renderer graph is exported once per portrait and bakes the portrait in; the
motion graphs once per checkpoint (engines.backends.graphs). On a CPU,
onnxruntime samples motion about twice as fast as torch while torch renders
faster, so `--backend torch-cpu --motion-backend onnxruntime` is the quickest
CPU setup (benchmarks/results/bench_engines.md).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import BackendUnavailableError
from ..render.renderer import FaceRenderer, to_uint8_frames
from .base import BackendProvider, FrameRenderer, InferenceBackend, MotionStages, TensorSpec
from .graph_stages import graph_motion_stages
from .graphs import renderer_graph
from .torch_backend import GPU_EXTRA

if TYPE_CHECKING:
    from ..motion.model import MotionModel
    from .registry import BackendConfig

__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeProvider", "GraphFrameRenderer", "PROVIDER"]

_EXECUTION_PROVIDERS = {
    "onnxruntime": ("CPUExecutionProvider",),
    "onnxruntime-cuda": ("CUDAExecutionProvider",),
    "onnxruntime-tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider"),
}

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(bool)": "bool"}


class OnnxRuntimeBackend(InferenceBackend):
    """Runs path on the first available of providers (default: CPU only).

    threads: onnxruntime's intra-op threads (None: its default, one per core).
    Its pool spins between calls by default; here it does not, because the
    server runs one thread per session and spinning pools starve each other.
    """

    def __init__(
        self,
        path: Path,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as cause:
            raise BackendUnavailableError(
                "the onnxruntime backend needs onnxruntime: pip install 'facecast[onnx]'"
            ) from cause
        available = set(ort.get_available_providers())
        chosen = [p for p in providers if p in available]
        if not chosen:
            raise BackendUnavailableError(
                f"none of the onnxruntime providers {list(providers)} is available here "
                f"(available: {sorted(available)})"
            )
        self.path = Path(path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), options, providers=chosen)
        super().__init__(
            tuple(_spec(arg) for arg in self.session.get_inputs()),
            tuple(_spec(arg) for arg in self.session.get_outputs()),
        )

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(None, {k: np.asarray(v) for k, v in feeds.items()})
        return {s.name: v for s, v in zip(self._outputs, values, strict=True)}


def _spec(arg) -> TensorSpec:  # type: ignore[no-untyped-def]
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))


class OnnxRuntimeProvider(BackendProvider):
    names = tuple(_EXECUTION_PROVIDERS)
    gpu_names = frozenset({"onnxruntime-cuda", "onnxruntime-tensorrt"})
    order = 1

    def check(self, name: str) -> None:
        try:
            import onnxruntime as ort
        except ImportError as cause:
            extra = "facecast[onnx]" if name == "onnxruntime" else "facecast[gpu]"
            raise BackendUnavailableError(
                f"the {name} backend needs onnxruntime: pip install '{extra}'"
            ) from cause
        available = ort.get_available_providers()
        wanted = _EXECUTION_PROVIDERS[name]
        if not any(p in available for p in wanted):
            raise BackendUnavailableError(
                f"the {name} backend needs onnxruntime's {wanted[0]}; this onnxruntime has "
                f"{', '.join(available)}. {GPU_EXTRA} (onnxruntime-gpu replaces onnxruntime)"
            )

    def motion_stages(self, model: MotionModel, config: BackendConfig) -> MotionStages:
        providers = _EXECUTION_PROVIDERS[config.name]
        return graph_motion_stages(
            model, config.graph_dir, lambda path, stage: shared_session(path, providers)
        )

    def frame_renderer(self, renderer: FaceRenderer, config: BackendConfig) -> FrameRenderer:
        path = renderer_graph(renderer, config.graph_dir)
        session = shared_session(path, _EXECUTION_PROVIDERS[config.name])
        return GraphFrameRenderer(session, renderer.image_size)


@functools.lru_cache(maxsize=32)
def shared_session(path: Path, providers: tuple[str, ...]) -> OnnxRuntimeBackend:
    """One onnxruntime session per graph file, shared by streams: its run() is thread-safe,
    and loading the renderer's graph takes ~0.2 s that a new stream need not wait for.

    As many intra-op threads as torch has: the server sets both per session (one by
    default), so that sessions on a small CPU do not fight over cores."""
    return OnnxRuntimeBackend(path, providers=providers, threads=torch.get_num_threads())


class GraphFrameRenderer:
    """The exported renderer graph on a numpy-in, numpy-out backend."""

    def __init__(self, backend: InferenceBackend, image_size: int) -> None:
        self.backend = backend
        self.image_size = image_size

    def render(self, motion: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(np.atleast_2d(motion), dtype=np.float32)
        frames = self.backend.run({"motion": batch})["frames"]
        return to_uint8_frames(torch.from_numpy(frames)).numpy()


PROVIDER = OnnxRuntimeProvider()
