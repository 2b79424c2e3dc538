"""The neural stages on the backend a config names: torch (CPU or CUDA), onnxruntime, TensorRT.

One choice drives all three stages of a session (audio encoder, motion
denoiser, face renderer):

- torch-cpu: the modules themselves; the default, and what CI runs.
- torch-cuda: the modules on the GPU. The renderer keeps every frame on the
  device (no host round trip until the finished uint8 frame), replays a CUDA
  graph per batch size, and copies frames out through pinned memory.
- onnxruntime / onnxruntime-cuda / onnxruntime-tensorrt: the exported graphs on
  onnxruntime's CPU, CUDA or TensorRT execution provider.
- tensorrt: fp16 engines built from the exported graphs with the TensorRT
  Python API, plans cached by a hash of graph, TensorRT version, GPU and profile.

The graph backends export on demand: the motion model once per process and
checkpoint, the renderer once per portrait; both are cached on disk by
fingerprint (engines.backends.graphs), so a second session starts without export.

On every GPU backend, the denoiser calls of all sessions in the process go
through one CoalescingDenoiser: calls that arrive while a batch runs go
together in the next one, so N sessions cost about one launch per sampler step,
not N. On torch-cpu each session keeps its own thread and calls it directly.

A backend that cannot run here raises BackendUnavailableError naming what is
missing, before any session starts.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..backends import BackendDenoiser, InferenceBackend, OnnxRuntimeBackend
from ..errors import BackendUnavailableError
from ..face.avatar import Avatar
from ..motion.model import MotionModel
from ..motion.space import MOTION_DIM
from ..paths import engine_cache_dir
from ..render.renderer import FaceRenderer, RendererConfig, to_uint8_frames
from .batching import CoalescingDenoiser
from .graphs import DENOISER, ENCODER, RENDERER, motion_graphs, motion_specs, renderer_graph

__all__ = [
    "BACKEND_NAMES",
    "BackendConfig",
    "CudaFrameRenderer",
    "FrameRenderer",
    "GraphFrameRenderer",
    "MotionStages",
    "check_backend",
    "check_backends",
    "frame_renderer",
    "motion_stages",
]

logger = logging.getLogger(__name__)

BACKEND_NAMES = (
    "torch-cpu",
    "torch-cuda",
    "onnxruntime",
    "onnxruntime-cuda",
    "onnxruntime-tensorrt",
    "tensorrt",
)
_ORT_PROVIDERS = {
    "onnxruntime": ("CPUExecutionProvider",),
    "onnxruntime-cuda": ("CUDAExecutionProvider",),
    "onnxruntime-tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider"),
}
_GPU_EXTRA = "pip install 'facecast[gpu]' on a machine with an NVIDIA GPU and driver"
# The largest renderer batch a TensorRT profile covers: offline rendering's
# frames per call, or several sessions' frames at once.
_MAX_RENDER_BATCH = 16
# Sessions whose guided denoiser rows (3 each) one TensorRT profile covers.
_MAX_DENOISER_SESSIONS = 32
_ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class BackendConfig:
    """name: one of BACKEND_NAMES. cache_dir: graphs and plans (None: the user cache).

    motion_name: the motion stages' backend, when it differs from the renderer's
    (None: the same). On a CPU, onnxruntime runs the denoiser 2.3x faster than
    torch while torch renders as fast as onnxruntime on fewer cores
    (benchmarks/results/bench_engines.md), so torch-cpu with onnxruntime motion
    is the quickest CPU setup.

    cuda_graphs: on torch-cuda, replay a captured CUDA graph per renderer batch
    size instead of launching each kernel (a frame is ~100 small kernels).
    """

    name: str = "torch-cpu"
    cache_dir: Path | None = None
    cuda_graphs: bool = True
    motion_name: str | None = None

    def __post_init__(self) -> None:
        for name in (self.name, self.motion_name or self.name):
            if name not in BACKEND_NAMES:
                raise ValueError(f"backend must be one of {', '.join(BACKEND_NAMES)}, got {name!r}")

    @property
    def motion(self) -> BackendConfig:
        """The config the motion stages run on."""
        if self.motion_name is None or self.motion_name == self.name:
            return self
        return replace(self, name=self.motion_name, motion_name=None)

    @property
    def label(self) -> str:
        """name, or name/motion_name when they differ (logs, health, benchmarks)."""
        return self.name if self.motion is self else f"{self.name}/{self.motion_name}"

    @property
    def on_gpu(self) -> bool:
        return self.name not in ("torch-cpu", "onnxruntime")

    @property
    def graph_dir(self) -> Path:
        return Path(self.cache_dir or engine_cache_dir())


def check_backend(name: str) -> None:
    """Raise BackendUnavailableError saying what is missing when backend `name` cannot run here."""
    BackendConfig(name)  # validates the name
    if name in ("torch-cuda", "tensorrt") and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"the {name} backend needs a CUDA GPU, and torch {torch.__version__} sees none "
            f"(torch.cuda.is_available() is False). A CPU-only torch build cannot use a GPU: "
            f"{_GPU_EXTRA}, or choose --backend torch-cpu"
        )
    if name == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError as cause:
            raise BackendUnavailableError(
                f"the tensorrt backend needs the TensorRT Python package: {_GPU_EXTRA}"
            ) from cause
    if name in _ORT_PROVIDERS:
        try:
            import onnxruntime as ort
        except ImportError as cause:
            extra = "facecast[onnx]" if name == "onnxruntime" else "facecast[gpu]"
            raise BackendUnavailableError(
                f"the {name} backend needs onnxruntime: pip install '{extra}'"
            ) from cause
        available = ort.get_available_providers()
        wanted = _ORT_PROVIDERS[name]
        if not any(p in available for p in wanted):
            raise BackendUnavailableError(
                f"the {name} backend needs onnxruntime's {wanted[0]}; this onnxruntime has "
                f"{', '.join(available)}. {_GPU_EXTRA} (onnxruntime-gpu replaces onnxruntime)"
            )


def check_backends(backend: BackendConfig) -> None:
    """check_backend for the renderer's backend and, when it differs, the motion stages'."""
    check_backend(backend.name)
    check_backend(backend.motion.name)


# ---- motion: audio encoder + denoiser ---------------------------------------------------


@dataclass(frozen=True)
class MotionStages:
    """encoder: features (1, T, F) -> embedding (1, T, C); denoiser: MotionDenoiser's call.

    Both take and return CPU tensors, whatever runs them.
    """

    encoder: Callable[[torch.Tensor], torch.Tensor]
    denoiser: Callable[..., torch.Tensor]


def motion_stages(model: MotionModel, backend: BackendConfig) -> MotionStages:
    """The model's stages on backend.motion; shared by every stream in the process."""
    backend = backend.motion
    check_backend(backend.name)
    key = (id(model), backend)
    with _STAGES_LOCK:  # one set per model and backend, so all sessions share its batcher
        if key not in _STAGES:
            _STAGES[key] = (model, _build_motion_stages(model, backend))  # model kept: id stays
        return _STAGES[key][1]


_STAGES: dict[tuple[int, BackendConfig], tuple[MotionModel, MotionStages]] = {}
_STAGES_LOCK = threading.Lock()


def _build_motion_stages(model: MotionModel, backend: BackendConfig) -> MotionStages:
    if backend.name == "torch-cpu":
        return MotionStages(model.encoder, model.denoiser)
    if backend.name == "torch-cuda":
        encoder = _OnDevice(copy.deepcopy(model.encoder).eval().cuda())
        denoiser = _OnDevice(copy.deepcopy(model.denoiser).eval().cuda())
        return MotionStages(encoder, CoalescingDenoiser(denoiser))
    paths = motion_graphs(model, backend.graph_dir)
    graphs = {stage: _graph_backend(path, stage, model, backend) for stage, path in paths.items()}
    max_rows = 3 * _MAX_DENOISER_SESSIONS if backend.name == "tensorrt" else None
    return MotionStages(
        _BackendEncoder(graphs[ENCODER]),
        CoalescingDenoiser(BackendDenoiser(graphs[DENOISER]), max_rows),
    )


class _OnDevice:
    """A module on a GPU called with CPU tensors; returns CPU tensors."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.device = next(module.parameters()).device

    @torch.inference_mode()
    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        moved = [a.to(self.device, non_blocking=True) for a in args]
        return self.module(*moved).cpu()


class _BackendEncoder:
    """The encoder graph, shared by every stream's thread; one call at a time (a TensorRT
    execution context is not thread-safe, and the calls are short)."""

    def __init__(self, backend: InferenceBackend) -> None:
        self.backend = backend
        self._lock = threading.Lock()

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        feeds = {"features": features.detach().cpu().numpy().astype(np.float32)}
        with self._lock:
            return torch.from_numpy(self.backend.run(feeds)["embedding"])


def _graph_backend(
    path: Path, stage: str, model: MotionModel | None, backend: BackendConfig
) -> InferenceBackend:
    """An exported graph on an onnxruntime provider or as a TensorRT engine."""
    if backend.name in _ORT_PROVIDERS:
        return _ort_session(path, _ORT_PROVIDERS[backend.name])
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, _tensorrt_profile(stage, model), backend.graph_dir / "tensorrt")


@functools.lru_cache(maxsize=32)
def _ort_session(path: Path, providers: tuple[str, ...]) -> OnnxRuntimeBackend:
    """One onnxruntime session per graph file, shared by streams: its run() is thread-safe,
    and loading the renderer's graph takes ~0.2 s that a new stream need not wait for.

    As many intra-op threads as torch has: the server sets both per session (one by
    default), so that sessions on a small CPU do not fight over cores."""
    return OnnxRuntimeBackend(path, providers=providers, threads=torch.get_num_threads())


def _tensorrt_profile(stage: str, model: MotionModel | None) -> dict[str, _ShapeRange]:
    """(min, opt, max) shape per input, from the stage's specs and how it is called."""
    if stage == ENCODER:
        assert model is not None
        longest = model.encoder.context_frames + model.window + model.encoder.lookahead_frames
        dim = model.config.feature_dim
        return {"features": ((1, 1, dim), (1, longest - 1, dim), (1, longest, dim))}
    if stage == DENOISER:
        assert model is not None
        rows = (1, 3 * 4, 3 * _MAX_DENOISER_SESSIONS)  # opt: four sessions' guidance rows
        inputs, _ = motion_specs(model)[DENOISER]
        return {s.name: tuple((b, *s.shape[1:]) for b in rows) for s in inputs}  # type: ignore[misc]
    return {"motion": ((1, MOTION_DIM), (1, MOTION_DIM), (_MAX_RENDER_BATCH, MOTION_DIM))}


# ---- renderer ----------------------------------------------------------------------------


class FrameRenderer(Protocol):
    """render(motion (T, D) or (D,)) -> uint8 frames (T, S, S, 3), on whatever backend."""

    image_size: int

    def render(self, motion: np.ndarray) -> np.ndarray: ...


def frame_renderer(avatar: Avatar, config: RendererConfig, backend: BackendConfig) -> FrameRenderer:
    """A renderer for avatar on backend (exports and builds its graph on first use per portrait)."""
    check_backend(backend.name)
    renderer = FaceRenderer(avatar, config)
    if backend.name == "torch-cpu":
        return renderer
    if backend.name == "torch-cuda":
        return CudaFrameRenderer(renderer.cuda(), backend.cuda_graphs)
    path = renderer_graph(renderer, backend.graph_dir)
    return GraphFrameRenderer(_graph_backend(path, RENDERER, None, backend), avatar.image_size)


class GraphFrameRenderer:
    """The exported renderer graph on an onnxruntime or TensorRT backend."""

    def __init__(self, backend: InferenceBackend, image_size: int) -> None:
        self.backend = backend
        self.image_size = image_size

    def render(self, motion: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(np.atleast_2d(motion), dtype=np.float32)
        run_on_device = getattr(self.backend, "run_torch", None)
        if run_on_device is not None:  # TensorRT: frames stay on the GPU until they are uint8
            device = self.backend.device  # type: ignore[attr-defined]
            with torch.inference_mode():
                frames = run_on_device({"motion": torch.from_numpy(batch).to(device)})["frames"]
                return to_uint8_frames(frames).cpu().numpy()
        frames = self.backend.run({"motion": batch})["frames"]
        return to_uint8_frames(torch.from_numpy(frames)).numpy()


class CudaFrameRenderer:
    """FaceRenderer on a CUDA device: one host copy per call, of the finished uint8 frames.

    Motion goes up through pinned memory, the frame is converted to uint8 on the
    GPU (4x less to copy than float) and comes back through a pinned buffer.
    With cuda_graphs, the forward pass for each batch size is captured once and
    replayed: a frame is about a hundred small kernels, whose launch overhead
    would otherwise dominate at 512x512. A capture that fails (an old driver,
    a torch op that syncs) falls back to eager launches, logged once.
    """

    def __init__(self, renderer: FaceRenderer, cuda_graphs: bool = True) -> None:
        self.renderer = renderer
        self.image_size = renderer.image_size
        self.device = renderer.layer.device
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._pinned_in: dict[int, torch.Tensor] = {}
        self._pinned_out: dict[int, torch.Tensor] = {}
        self._lock = threading.Lock()  # buffers are per renderer; sessions own one each

    @torch.inference_mode()
    def render(self, motion: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(np.atleast_2d(motion), dtype=np.float32)
        b = len(batch)
        with self._lock:
            host_in = self._pinned(self._pinned_in, b, (b, batch.shape[1]), torch.float32)
            host_in.numpy()[:] = batch
            frames = self._forward(host_in.to(self.device, non_blocking=True))
            host_out = self._pinned(
                self._pinned_out, b, (b, self.image_size, self.image_size, 3), torch.uint8
            )
            host_out.copy_(frames, non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
            return host_out.numpy().copy()  # the pinned buffer is reused by the next call

    def _forward(self, motion: torch.Tensor) -> torch.Tensor:
        b = motion.shape[0]
        if not self.cuda_graphs:
            return to_uint8_frames(self.renderer(motion))
        if b not in self._graphs:
            captured = self._capture(motion)
            if captured is None:
                return to_uint8_frames(self.renderer(motion))
            self._graphs[b] = captured
        graph, static_in, static_out = self._graphs[b]
        static_in.copy_(motion)
        graph.replay()
        return static_out

    def _capture(
        self, motion: torch.Tensor
    ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor] | None:
        static_in = motion.clone()
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up off the capture, as the CUDA graph docs ask
                for _ in range(2):
                    to_uint8_frames(self.renderer(static_in))
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: other sessions' threads keep launching work while this one
            # captures; the default ("global") mode would fail their calls.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                static_out = to_uint8_frames(self.renderer(static_in))
        except RuntimeError as error:
            logger.warning("CUDA graph capture failed, rendering eagerly: %s", error)
            self.cuda_graphs = False
            return None
        return graph, static_in, static_out

    @staticmethod
    def _pinned(
        cache: dict[int, torch.Tensor], key: int, shape: tuple[int, ...], dtype: torch.dtype
    ) -> torch.Tensor:
        if key not in cache:
            cache[key] = torch.empty(shape, dtype=dtype, pin_memory=True)
        return cache[key]
