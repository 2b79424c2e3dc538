"""The torch backends: the modules themselves, on the CPU (torch-cpu) or a CUDA GPU (torch-cuda).

torch-cpu is the default and what CI runs: each session calls the modules on its
own thread, the denoiser traced (TracedDenoiser: the same ops without
nn.Module's per-call Python) and the renderer replayed from per-portrait traced
graphs once they are made (TracedFrameRenderer: they run without the GIL, so
sessions render in parallel). torch-cuda keeps every frame on the device (no host round trip
until the finished uint8 frame), replays a CUDA graph per batch size, copies
frames out through pinned memory, and batches the denoiser calls of all sessions
(CoalescingDenoiser) so N sessions cost about one launch per sampler step.

TorchBackend is also the InferenceBackend over a module, the reference that the
other backends' contract tests and the export parity checks compare against.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import BackendUnavailableError
from ..motion.space import neutral_motion
from ..render.renderer import FaceRenderer, to_uint8_frames
from .base import BackendProvider, FrameRenderer, InferenceBackend, MotionStages, TensorSpec
from .batching import CoalescingDenoiser
from .denoiser import TracedDenoiser, frozen_trace

if TYPE_CHECKING:
    from ..motion.model import MotionModel
    from .registry import BackendConfig

__all__ = [
    "TorchBackend",
    "TorchProvider",
    "CudaFrameRenderer",
    "TracedFrameRenderer",
    "PROVIDER",
    "GPU_EXTRA",
]

logger = logging.getLogger(__name__)

GPU_EXTRA = "pip install 'facecast[gpu]' on a machine with an NVIDIA GPU and driver"


class TorchBackend(InferenceBackend):
    """module(*inputs in input_spec order) -> outputs in output_spec order."""

    def __init__(
        self,
        module: torch.nn.Module,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        device: str = "cpu",
    ) -> None:
        super().__init__(inputs, outputs)
        self.module = module.eval().to(device)
        self.device = torch.device(device)

    @torch.inference_mode()
    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.asarray(feeds[s.name])).to(self.device) for s in self._inputs]
        result = self.module(*args)
        values = result if isinstance(result, tuple) else (result,)
        return {s.name: v.cpu().numpy() for s, v in zip(self._outputs, values, strict=True)}


def require_cuda(name: str) -> None:
    """BackendUnavailableError saying what to do when this torch sees no CUDA device."""
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"the {name} backend needs a CUDA GPU, and torch {torch.__version__} sees none "
            f"(torch.cuda.is_available() is False). A CPU-only torch build cannot use a GPU: "
            f"{GPU_EXTRA}, or choose --backend torch-cpu"
        )


class TorchProvider(BackendProvider):
    names = ("torch-cpu", "torch-cuda")
    gpu_names = frozenset({"torch-cuda"})
    order = 0

    def check(self, name: str) -> None:
        if name == "torch-cuda":
            require_cuda(name)

    def motion_stages(self, model: MotionModel, config: BackendConfig) -> MotionStages:
        if config.name == "torch-cpu":
            return MotionStages(model.encoder, TracedDenoiser(model.denoiser))
        encoder = _OnDevice(copy.deepcopy(model.encoder).eval().cuda())
        denoiser = _OnDevice(copy.deepcopy(model.denoiser).eval().cuda())
        return MotionStages(encoder, CoalescingDenoiser(denoiser))

    def frame_renderer(self, renderer: FaceRenderer, config: BackendConfig) -> FrameRenderer:
        if config.name == "torch-cpu":
            return TracedFrameRenderer(renderer)
        return CudaFrameRenderer(renderer.cuda(), config.cuda_graphs)


PROVIDER = TorchProvider()


class _OnDevice:
    """A module on a GPU called with CPU tensors; returns CPU tensors."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.device = next(module.parameters()).device

    @torch.inference_mode()
    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        moved = [a.to(self.device, non_blocking=True) for a in args]
        return self.module(*moved).cpu()


class TracedFrameRenderer:
    """FaceRenderer on the CPU, replayed from TorchScript graphs once they are made.

    A traced graph draws the same pixels (checked when it is made) and runs without
    the GIL: eager, the renderer's few hundred small ops each take the GIL, so two
    sessions' renders on two cores ran at 80 frames a second together, traced at 136
    (one alone 17.4 -> 13.5 ms a frame; bench_render_threads). Two graphs per portrait,
    with the lid pass and without, chosen per frame as the eager renderer chooses.

    Graphs are kept per portrait and renderer config for the whole process (the last
    _KEPT_PORTRAITS), so a portrait is traced once, not per session. Tracing one costs
    ~0.35 s of CPU and holds the GIL: a session rendering eagerly beside it misses
    frames (measured: ~20 late frames in a row when it began 2 s into a stream). So
    it runs on a background thread as soon as a renderer for an untraced portrait is
    made (a session being created, before its viewer has connected), and at start-up
    for the server's default portrait (warm()); until the graphs are in, and for
    batches other than 1, the renderer runs eagerly. Other live sessions share the
    cores with that trace: one such stretch per new portrait per process.
    """

    def __init__(self, renderer: FaceRenderer, trace: bool = True) -> None:
        self.renderer = renderer.eval()
        self.image_size = renderer.image_size
        self._key: str | None = None  # the graphs' key, hashed off the render thread (~20 ms)
        self._preparing: threading.Thread | None = None
        if trace:
            self._start_tracing()

    @torch.inference_mode()
    def render(self, motion: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.atleast_2d(motion).astype(np.float32))
        lids = self.renderer.needs_lid_pass(batch)
        graphs = _GRAPHS.get(self._key) if self._key is not None and len(batch) == 1 else None
        graph = graphs.get(lids) if graphs is not None else None
        frames = graph(batch) if graph is not None else self.renderer.draw(batch, lids)
        return to_uint8_frames(frames).numpy()

    def warm(self, timeout_s: float | None = None) -> bool:
        """Make (or find) this portrait's graphs now, blocking; True once both are in use."""
        self._start_tracing().join(timeout_s)
        return self._key is not None and len(_GRAPHS.get(self._key, {})) == 2

    def _start_tracing(self) -> threading.Thread:
        if self._preparing is None:
            # Not a daemon: a trace cut off by the interpreter's exit aborts the process
            # (a C++ terminate); exit waits for it instead, under a second.
            self._preparing = threading.Thread(target=self._prepare, name="facecast-trace")
            self._preparing.start()
        return self._preparing

    def _prepare(self) -> None:
        """Off the render thread: hash the renderer, then find, wait for or trace its graphs."""
        key = self._graph_key()
        with _GRAPHS_LOCK:
            if key in _GRAPHS:
                return
            other = _TRACING.get(key)
            if other is None:
                _TRACING[key] = threading.current_thread()
        if other is not None:  # another session of this portrait is tracing it
            other.join()
            return
        self._trace_all(key)

    def _graph_key(self) -> str:
        """What the graphs bake in: every buffer of the renderer, and its config."""
        digest = hashlib.blake2b(repr(self.renderer.config).encode(), digest_size=16)
        for name, buffer in self.renderer.state_dict().items():
            digest.update(name.encode())
            digest.update(buffer.detach().contiguous().numpy().tobytes())
        self._key = digest.hexdigest()
        return self._key

    @torch.inference_mode()
    def _trace_all(self, key: str) -> None:
        example = torch.from_numpy(neutral_motion(1))
        graphs: dict[bool, torch.jit.ScriptModule] = {}
        try:
            for lids in (False, True):
                graph = self._trace(example, lids)
                if graph is None:
                    return
                graphs[lids] = graph
        except RuntimeError as error:
            logger.warning("tracing the renderer failed, rendering eagerly: %s", error)
        finally:
            with _GRAPHS_LOCK:
                _TRACING.pop(key, None)
                if len(graphs) == 2:
                    _GRAPHS[key] = graphs
                    while len(_GRAPHS) > _KEPT_PORTRAITS:
                        _GRAPHS.pop(next(iter(_GRAPHS)))

    def _trace(self, example: torch.Tensor, lids: bool) -> torch.jit.ScriptModule | None:
        graph = frozen_trace(_Drawn(self.renderer, lids).eval(), (example,))
        for _ in range(2):  # the executor optimises the graph over its first two runs
            got = graph(example)
        error = float((got - self.renderer.draw(example, lids)).abs().max())
        if not error <= 1e-5:  # never expected: the trace would have baked in a value
            logger.warning("traced renderer differs from eager by %.2g; rendering eagerly", error)
            return None
        return graph


# Traced graphs per (portrait, renderer config), oldest first; read without the lock
# (a dict lookup is atomic), written under it.
_KEPT_PORTRAITS = 8
_GRAPHS: dict[str, dict[bool, torch.jit.ScriptModule]] = {}
_TRACING: dict[str, threading.Thread] = {}
_GRAPHS_LOCK = threading.Lock()


class _Drawn(torch.nn.Module):
    """renderer.draw(motion, lids) with lids fixed: the module a graph is traced from."""

    def __init__(self, renderer: FaceRenderer, lids: bool) -> None:
        super().__init__()
        self.renderer = renderer
        self.lids = lids

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        return self.renderer.draw(motion, self.lids)


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
        self.device: torch.device = renderer.layer.device
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
