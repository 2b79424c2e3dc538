"""A denoiser stage on any backend, callable like MotionDenoiser, so MotionSampler can use it."""

from __future__ import annotations

import torch

from .base import InferenceBackend

__all__ = ["BackendDenoiser"]

_INPUTS = ("sample", "timestep", "audio", "prev", "controls")
_MASKS = ("drop_audio", "drop_prev", "drop_controls")


class BackendDenoiser:
    """MotionDenoiser's forward signature over a backend that runs motion_denoiser.onnx.

    The exported graph takes row masks (B,) only: per-frame audio masks are a
    training feature, and the sampler at run time passes row masks.
    """

    def __init__(self, backend: InferenceBackend) -> None:
        self.backend = backend

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
        feeds = {
            name: value.detach().cpu().numpy()
            for name, value in zip(_INPUTS, (sample, t.long(), audio, prev, controls), strict=True)
        }
        for name, mask in zip(_MASKS, (drop_audio, drop_prev, drop_controls), strict=True):
            mask = torch.zeros(rows, dtype=torch.bool) if mask is None else mask
            if mask.dim() != 1:
                raise ValueError(f"{name} must be a row mask of shape (B,) on this backend")
            feeds[name] = mask.cpu().numpy()
        return torch.from_numpy(self.backend.run(feeds)["v"]).to(sample.device)
