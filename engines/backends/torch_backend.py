"""The torch backends: the modules themselves, on the CPU (torch-cpu) or a CUDA GPU (torch-cuda).

torch-cpu is the default and what CI runs: each session calls the modules on its
own thread, the denoiser traced (TracedDenoiser: the same ops without
nn.Module's per-call Python). torch-cuda keeps every frame on the device (no host round trip
until the finished uint8 frame), replays a CUDA graph per batch size, copies
frames out through pinned memory, and batches the denoiser calls of all sessions
(CoalescingDenoiser) so N sessions cost about one launch per sampler step.

TorchBackend is also the InferenceBackend over a module, the reference that the
other backends' contract tests and the export parity checks compare against.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import BackendUnavailableError
from ..render.renderer import FaceRenderer, to_uint8_frames
from .base import BackendProvider, FrameRenderer, InferenceBackend, MotionStages, TensorSpec
from .batching import CoalescingDenoiser
from .denoiser import TracedDenoiser

if TYPE_CHECKING:
    from ..motion.model import MotionModel
    from .registry import BackendConfig

__all__ = ["TorchBackend", "TorchProvider", "CudaFrameRenderer", "PROVIDER", "GPU_EXTRA"]

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
            return renderer
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
