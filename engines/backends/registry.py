"""Which backend runs a session's neural stages: the config, the registry, and the stage makers.

One BackendConfig drives all three stages of a session (audio encoder, motion
denoiser, face renderer), optionally with the motion stages on another backend
than the renderer. The names come from the providers: every `*_backend.py`
module of this package defines PROVIDER (engines.backends.base.BackendProvider),
found here by name, so adding a backend is adding that one file:

- torch-cpu, torch-cuda (torch_backend): the modules themselves;
- onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt (onnxruntime_backend):
  the exported graphs on onnxruntime's execution providers;
- tensorrt (tensorrt_backend): fp16 engines built from the exported graphs.

A backend that cannot run here raises BackendUnavailableError naming what is
missing, before any session starts.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from ..face.avatar import Avatar
from ..motion.model import MotionModel
from ..paths import engine_cache_dir
from ..render.renderer import FaceRenderer, RendererConfig
from .base import BackendProvider, FrameRenderer, MotionStages

__all__ = [
    "BACKEND_NAMES",
    "BackendConfig",
    "FrameRenderer",
    "MotionStages",
    "check_backend",
    "check_backends",
    "frame_renderer",
    "motion_stages",
    "provider",
]


@functools.cache
def _providers() -> dict[str, BackendProvider]:
    """Backend name -> its provider, from every *_backend module of this package."""
    found: list[BackendProvider] = []
    for module in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]):
        if module.name.endswith("_backend"):
            found.append(importlib.import_module(f"{__package__}.{module.name}").PROVIDER)
    found.sort(key=lambda p: p.order)
    return {name: p for p in found for name in p.names}


BACKEND_NAMES: tuple[str, ...] = tuple(_providers())


def provider(name: str) -> BackendProvider:
    """The provider of backend `name`; ValueError listing the names for an unknown one."""
    try:
        return _providers()[name]
    except KeyError:
        raise ValueError(
            f"backend must be one of {', '.join(BACKEND_NAMES)}, got {name!r}"
        ) from None


@dataclass(frozen=True)
class BackendConfig:
    """name: one of BACKEND_NAMES. cache_dir: graphs and plans (None: the user cache).

    motion_name: the motion stages' backend, when it differs from the renderer's
    (None: the same). On a CPU, onnxruntime runs the denoiser 2.3x faster than
    torch while torch renders as fast as onnxruntime on fewer cores
    (benchmarks/results/bench_engines.md), so torch-cpu with onnxruntime motion
    is the quickest CPU setup.

    cuda_graphs: on torch-cuda, replay a captured CUDA graph per renderer batch
    size instead of launching each kernel (a frame is ~100 small kernels).
    """

    name: str = "torch-cpu"
    cache_dir: Path | None = None
    cuda_graphs: bool = True
    motion_name: str | None = None

    def __post_init__(self) -> None:
        provider(self.name)
        provider(self.motion_name or self.name)

    @property
    def motion(self) -> BackendConfig:
        """The config the motion stages run on."""
        if self.motion_name is None or self.motion_name == self.name:
            return self
        return replace(self, name=self.motion_name, motion_name=None)

    @property
    def label(self) -> str:
        """name, or name/motion_name when they differ (logs, health, benchmarks)."""
        return self.name if self.motion is self else f"{self.name}/{self.motion_name}"

    @property
    def on_gpu(self) -> bool:
        return self.name in provider(self.name).gpu_names

    @property
    def graph_dir(self) -> Path:
        return Path(self.cache_dir or engine_cache_dir())


def check_backend(name: str) -> None:
    """Raise BackendUnavailableError saying what is missing when backend `name` cannot run here."""
    provider(name).check(name)


def check_backends(backend: BackendConfig) -> None:
    """check_backend for the renderer's backend and, when it differs, the motion stages'."""
    check_backend(backend.name)
    check_backend(backend.motion.name)


def motion_stages(model: MotionModel, backend: BackendConfig) -> MotionStages:
    """The model's stages on backend.motion; shared by every stream in the process."""
    backend = backend.motion
    check_backend(backend.name)
    key = (id(model), backend)
    with _STAGES_LOCK:  # one set per model and backend, so all sessions share its batcher
        if key not in _STAGES:
            stages = provider(backend.name).motion_stages(model, backend)
            _STAGES[key] = (model, stages)  # the model is kept so its id stays unique
        return _STAGES[key][1]


_STAGES: dict[tuple[int, BackendConfig], tuple[MotionModel, MotionStages]] = {}
_STAGES_LOCK = threading.Lock()


def frame_renderer(avatar: Avatar, config: RendererConfig, backend: BackendConfig) -> FrameRenderer:
    """A renderer for avatar on backend (graph backends export and build on first use per
    portrait)."""
    check_backend(backend.name)
    return provider(backend.name).frame_renderer(FaceRenderer(avatar, config), backend)
