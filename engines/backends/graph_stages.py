"""The motion stages over exported graphs: what onnxruntime and TensorRT share.

The motion model is exported once per process and checkpoint (engines.backends.graphs,
cached on disk by fingerprint); its two graphs then run on the backend a provider
builds for them. Every session in the process shares them: the encoder behind a
lock, the denoiser behind one CoalescingDenoiser, so calls that arrive while a
batch runs go together in the next one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..motion.model import MotionModel
from .base import InferenceBackend, MotionStages
from .batching import CoalescingDenoiser
from .denoiser import BackendDenoiser
from .graphs import DENOISER, ENCODER, motion_graphs

__all__ = ["graph_motion_stages"]


def graph_motion_stages(
    model: MotionModel,
    graph_dir: Path,
    backend_for: Callable[[Path, str], InferenceBackend],
    max_rows: int | None = None,
) -> MotionStages:
    """The model's graphs (exported to graph_dir if needed) on backend_for(path, stage).

    max_rows caps a denoiser batch (a TensorRT profile's largest batch)."""
    paths = motion_graphs(model, graph_dir)
    graphs = {stage: backend_for(path, stage) for stage, path in paths.items()}
    return MotionStages(
        _BackendEncoder(graphs[ENCODER]),
        CoalescingDenoiser(BackendDenoiser(graphs[DENOISER]), max_rows),
    )


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
