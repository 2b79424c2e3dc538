"""The torch backend: the module itself, on CPU or CUDA."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .base import InferenceBackend, TensorSpec

__all__ = ["TorchBackend"]


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
