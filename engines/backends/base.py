"""The backend interface: named tensor specs in and out, `run(feeds) -> outputs`."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["InferenceBackend", "TensorSpec"]


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
