"""Denoisers callable like MotionDenoiser, so MotionSampler can use any of them."""

from __future__ import annotations

import abc
import threading
import warnings

import torch

from .base import InferenceBackend

__all__ = ["BackendDenoiser", "RowMaskDenoiser", "TracedDenoiser", "frozen_trace"]

_INPUTS = ("sample", "timestep", "audio", "prev", "controls")
_MASKS = ("drop_audio", "drop_prev", "drop_controls")


class RowMaskDenoiser(abc.ABC):
    """MotionDenoiser's forward signature, with row masks (B,) only; None drops nothing.

    Per-frame audio masks are a training feature; the sampler at run time passes
    row masks, and the exported graph takes row masks only.
    """

    def __call__(
        self,
        sample: torch.Tensor,
        t: torch.Tensor,
        audio: torch.Tensor,
        prev: torch.Tensor,
        controls: torch.Tensor,
        drop_audio: torch.Tensor | None = None,
        drop_prev: torch.Tensor | None = None,
        drop_controls: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Same tensors and shapes as MotionDenoiser.forward; returns v (B, W, D)."""
        rows = sample.shape[0]
        masks = []
        for name, mask in zip(_MASKS, (drop_audio, drop_prev, drop_controls), strict=True):
            mask = torch.zeros(rows, dtype=torch.bool) if mask is None else mask
            if mask.dim() != 1:
                raise ValueError(f"{name} must be a row mask of shape (B,) here")
            masks.append(mask)
        return self._denoise(sample, t, audio, prev, controls, *masks)

    @abc.abstractmethod
    def _denoise(self, *tensors: torch.Tensor) -> torch.Tensor:
        """The eight tensors in MotionDenoiser.forward's order, masks filled in."""


class BackendDenoiser(RowMaskDenoiser):
    """The denoiser over a backend that runs motion_denoiser.onnx."""

    def __init__(self, backend: InferenceBackend) -> None:
        self.backend = backend

    def _denoise(self, *tensors: torch.Tensor) -> torch.Tensor:
        sample, t, *rest = tensors
        values = (sample, t.long(), *rest)
        feeds = {
            name: value.detach().cpu().numpy()
            for name, value in zip(_INPUTS + _MASKS, values, strict=True)
        }
        return torch.from_numpy(self.backend.run(feeds)["v"]).to(sample.device)


class TracedDenoiser(RowMaskDenoiser):
    """A MotionDenoiser module traced by TorchScript, one graph per input shape; torch-cpu's.

    The graph runs the module's own ops on its own weights (the same numbers:
    tests/test_backends.py), without nn.Module's per-call Python: on the CPU that
    Python, mostly the transformer layers checking on every call whether their
    fused path applies, took a third of a sampler step at one session's 3 rows
    (1.6 -> 1.0 ms per call on one thread; bench_engines' "sampler step"). A
    session samples at one shape, so it traces once; shapes past max_shapes run
    the module itself rather than grow the cache.
    """

    def __init__(self, module: torch.nn.Module, max_shapes: int = 8) -> None:
        self.module = module.eval()
        self.max_shapes = max_shapes
        self._graphs: dict[tuple[tuple[int, ...], ...], torch.jit.ScriptModule] = {}
        self._lock = threading.Lock()

    @torch.inference_mode()
    def _denoise(self, *tensors: torch.Tensor) -> torch.Tensor:
        shapes = tuple(tuple(t.shape) for t in tensors)
        graph = self._graphs.get(shapes)
        if graph is None:
            graph = self._trace(shapes, tensors)
        return graph(*tensors) if graph is not None else self.module(*tensors)

    def _trace(
        self, shapes: tuple[tuple[int, ...], ...], tensors: tuple[torch.Tensor, ...]
    ) -> torch.jit.ScriptModule | None:
        with self._lock:  # sessions share one denoiser: trace each shape once
            if shapes in self._graphs or len(self._graphs) >= self.max_shapes:
                return self._graphs.get(shapes)
            graph = frozen_trace(self.module, tensors)  # the masks stay inputs
            self._graphs[shapes] = graph
            return graph


def frozen_trace(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]
) -> torch.jit.ScriptModule:
    """module (in eval mode) traced on inputs and frozen (weights as constants).

    The trace fixes the input shapes: the module's shape checks become constants,
    which is what the TracerWarnings it would print say.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.freeze(torch.jit.trace(module, inputs, check_trace=False))
