"""Denoisers callable like MotionDenoiser, so MotionSampler can use any of them."""

from __future__ import annotations

import abc

import torch

from .base import InferenceBackend

__all__ = ["BackendDenoiser", "RowMaskDenoiser"]

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
