"""The backend interfaces.

- InferenceBackend runs one graph: named tensor specs in and out, `run(feeds) -> outputs`.
- BackendProvider is one backend family (torch, onnxruntime, TensorRT): the names it
  answers to, whether each runs on a GPU, what it needs installed, and the session
  stages it builds (the motion model's encoder and denoiser, the face renderer).
  Each `*_backend.py` module in this package defines one as PROVIDER; the registry
  finds them there, so a new backend is one new file.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..motion.model import MotionModel
    from ..render.renderer import FaceRenderer
    from .registry import BackendConfig

__all__ = ["InferenceBackend", "TensorSpec", "BackendProvider", "MotionStages", "FrameRenderer"]


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor; None in shape is a dynamic dimension (e.g. the batch)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy dtype name: "float32", "int64", "bool"


class InferenceBackend(abc.ABC):
    """Runs one graph. Feeds and outputs are numpy arrays keyed by tensor name."""

    def __init__(self, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> None:
        self._inputs, self._outputs = inputs, outputs

    @property
    def input_spec(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def output_spec(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    @abc.abstractmethod
    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check feeds against input_spec (names, ranks, fixed sizes, dtypes), then run."""
        expected = {spec.name: spec for spec in self.input_spec}
        missing, unknown = set(expected) - set(feeds), set(feeds) - set(expected)
        if missing or unknown:
            raise ValueError(
                f"feeds must be exactly {sorted(expected)}; missing {sorted(missing)}, "
                f"unknown {sorted(unknown)}"
            )
        for name, spec in expected.items():
            value = np.asarray(feeds[name])
            fixed = all(e is None or e == g for e, g in zip(spec.shape, value.shape, strict=False))
            if value.ndim != len(spec.shape) or not fixed or value.dtype != np.dtype(spec.dtype):
                raise ValueError(
                    f"{name} must be {spec.dtype} of shape {spec.shape} (None: any), got "
                    f"{value.dtype} {value.shape}"
                )
        return self._run(feeds)


@dataclass(frozen=True)
class MotionStages:
    """encoder: features (1, T, F) -> embedding (1, T, C); denoiser: MotionDenoiser's call.

    Both take and return CPU tensors, whatever runs them.
    """

    encoder: Callable[[torch.Tensor], torch.Tensor]
    denoiser: Callable[..., torch.Tensor]


class FrameRenderer(Protocol):
    """render(motion (T, D) or (D,)) -> uint8 frames (T, S, S, 3), on whatever backend."""

    image_size: int

    def render(self, motion: np.ndarray) -> np.ndarray: ...


class BackendProvider(abc.ABC):
    """One backend family; see the module docstring. `order` sorts the names for listing."""

    names: tuple[str, ...] = ()
    gpu_names: frozenset[str] = frozenset()
    order: int = 100

    @abc.abstractmethod
    def check(self, name: str) -> None:
        """Raise BackendUnavailableError, saying what to install, when `name` cannot run here."""

    @abc.abstractmethod
    def motion_stages(self, model: MotionModel, config: BackendConfig) -> MotionStages:
        """The model's encoder and denoiser on `config.name` (called once per model and config)."""

    @abc.abstractmethod
    def frame_renderer(self, renderer: FaceRenderer, config: BackendConfig) -> FrameRenderer:
        """`renderer` (one portrait's, on the CPU) running on `config.name`."""
