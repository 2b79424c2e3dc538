"""The onnxruntime backend: an exported ONNX file on onnxruntime's execution providers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError
from .base import InferenceBackend, TensorSpec

__all__ = ["OnnxRuntimeBackend"]

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(bool)": "bool"}


class OnnxRuntimeBackend(InferenceBackend):
    """Runs path on the first available of providers (default: CPU only).

    threads: onnxruntime's intra-op threads (None: its default, one per core).
    Its pool spins between calls by default; here it does not, because the
    server runs one thread per session and spinning pools starve each other.
    """

    def __init__(
        self,
        path: Path,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as cause:
            raise BackendUnavailableError(
                "the onnxruntime backend needs onnxruntime: pip install 'facecast[onnx]'"
            ) from cause
        available = set(ort.get_available_providers())
        chosen = [p for p in providers if p in available]
        if not chosen:
            raise BackendUnavailableError(
                f"none of the onnxruntime providers {list(providers)} is available here "
                f"(available: {sorted(available)})"
            )
        self.path = Path(path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), options, providers=chosen)
        super().__init__(
            tuple(_spec(arg) for arg in self.session.get_inputs()),
            tuple(_spec(arg) for arg in self.session.get_outputs()),
        )

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(None, {k: np.asarray(v) for k, v in feeds.items()})
        return {s.name: v for s, v in zip(self._outputs, values, strict=True)}


def _spec(arg) -> TensorSpec:  # type: ignore[no-untyped-def]
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))
