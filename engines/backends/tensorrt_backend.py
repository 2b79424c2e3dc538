"""The TensorRT backend: an ONNX file built into a cached engine plan, run on CUDA through torch.

Plans are cached in a folder by `plan_key`, a hash of everything that makes one
plan differ from another: the ONNX bytes, the TensorRT version, the GPU, the
optimization profile and the precision. A build loads and saves the builder's
timing cache (`timing.cache` in the same folder), so a rebuild after a model
change reuses the kernel timings of the layers that did not change.

Needs TensorRT 10 (`pip install 'facecast[gpu]'`) and a CUDA device; tensorrt is
imported inside functions, so this module imports on CPU-only machines. TensorRT
11 dropped the FP16 builder flag: an fp16 build there raises BackendUnavailableError.

Dtypes: the specs are the engine's own. TensorRT 10 has int64 and bool network
inputs, so motion_denoiser's specs match onnxruntime's (`timestep` int64, the
drop masks bool). Should an engine report int32 for an input (parsers before
TensorRT 10 cast int64 inputs down), its spec says int32 and `run` rejects int64
feeds instead of casting them silently: the caller casts, e.g. `t.astype(np.int32)`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import BackendUnavailableError
from ..motion.space import MOTION_DIM
from ..render.renderer import FaceRenderer, to_uint8_frames
from .base import BackendProvider, FrameRenderer, InferenceBackend, MotionStages, TensorSpec
from .graph_stages import graph_motion_stages
from .graphs import DENOISER, ENCODER, RENDERER, motion_specs, renderer_graph
from .torch_backend import GPU_EXTRA, require_cuda

if TYPE_CHECKING:
    from ..motion.model import MotionModel
    from .registry import BackendConfig

__all__ = [
    "Profile",
    "TensorRTBackend",
    "TensorRTProvider",
    "PROVIDER",
    "build_plan",
    "cached_plan",
    "plan_key",
    "stage_profile",
]

logger = logging.getLogger(__name__)

Shape = tuple[int, ...]
# Per input name: (min, opt, max) shapes, e.g. {"sample": ((1, 24, 60), (3, 24, 60), ...)}.
Profile = Mapping[str, tuple[Shape, Shape, Shape]]

TIMING_CACHE = "timing.cache"
# The one definition of what a plan covers: the largest renderer batch (offline
# rendering's frames per call, or several sessions' frames at once) and the
# sessions whose guided denoiser rows (3 each) one denoiser call may carry.
MAX_RENDER_BATCH = 16
MAX_DENOISER_SESSIONS = 32
# Bumped when the build settings change in a way the key's other parts do not show.
_PLAN_FORMAT = "facecast-trt-plan-1"
_INSTALL = "pip install 'facecast[gpu]'"

# TensorRT DataType member names -> numpy dtype names (and torch dtypes for buffers).
_TRT_TYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}
_TORCH_TYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
_LOG_LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.DEBUG,  # TensorRT's INFO is build chatter
    "VERBOSE": logging.DEBUG,
}


def plan_key(
    onnx_path: Path, profile: Profile, tensorrt_version: str, gpu_name: str, fp16: bool
) -> str:
    """sha256 hex digest naming the plan built from these inputs; ValueError on a bad profile."""
    digest = hashlib.sha256()
    with open(onnx_path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    settings = {
        "format": _PLAN_FORMAT,
        "tensorrt": tensorrt_version,
        "gpu": gpu_name,
        "fp16": bool(fp16),
        "profile": _canonical_profile(profile),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def cached_plan(
    onnx_path: Path,
    profile: Profile,
    cache_dir: Path,
    tensorrt_version: str,
    gpu_name: str,
    fp16: bool = True,
) -> Path | None:
    """cache_dir/<plan_key>.plan when a plan for exactly these inputs is there, else None."""
    key = plan_key(onnx_path, profile, tensorrt_version, gpu_name, fp16)
    path = Path(cache_dir) / f"{key}.plan"
    return path if _is_plan(path) else None


def build_plan(onnx_path: Path, profile: Profile, cache_dir: Path, fp16: bool = True) -> Path:
    """The plan for onnx_path on the current CUDA device: from cache_dir, or built and saved there.

    profile: per input name, (min, opt, max) shapes; every dynamic input needs one.
    The new plan is written to a temporary file and renamed, so a reader never
    sees half a plan and two processes building the same key do not clash.
    """
    trt, version, gpu = _target()
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{plan_key(onnx_path, profile, version, gpu, fp16)}.plan"
    if _is_plan(path):
        logger.debug("TensorRT plan for %s found in cache: %s", onnx_path, path)
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    plan = _serialize_network(trt, Path(onnx_path), profile, cache_dir, fp16)
    _write_atomic(path, plan)
    logger.info(
        "built TensorRT plan for %s on %s (TensorRT %s, fp16=%s) in %.1f s: %s",
        onnx_path,
        gpu,
        version,
        fp16,
        time.perf_counter() - started,
        path,
    )
    return path


class TensorRTBackend(InferenceBackend):
    """Runs onnx_path as a TensorRT engine on one CUDA device.

    Not thread-safe: one execution context, so one caller at a time (the engines
    run model work on a one-thread executor). `run` takes and returns numpy;
    `run_torch` is the GPU fast path on CUDA tensors.
    """

    def __init__(
        self,
        onnx_path: Path,
        profile: Profile,
        cache_dir: Path,
        device: str = "cuda",
        fp16: bool = True,
    ) -> None:
        trt = _tensorrt()
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "the tensorrt backend needs a CUDA GPU, and there is no CUDA device here "
                "(torch.cuda.is_available() is False); use the torch-cpu or onnxruntime backend"
            )
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"the tensorrt backend runs on a CUDA device, not {device!r}")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.onnx_path, self.profile = Path(onnx_path), dict(profile)
        with torch.cuda.device(self.device):
            self.plan_path = build_plan(self.onnx_path, profile, Path(cache_dir), fp16)
            self._runtime = trt.Runtime(_trt_logger(trt))
            self.engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
            if self.engine is None:
                raise BackendUnavailableError(
                    f"TensorRT could not load the plan {self.plan_path}; delete it to rebuild"
                )
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        super().__init__(
            tuple(_spec(self.engine, n) for n in names if is_input[n]),
            tuple(_spec(self.engine, n) for n in names if not is_input[n]),
        )
        self._buffers: dict[str, torch.Tensor] = {}  # output name -> last buffer

    @torch.inference_mode()
    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {
            spec.name: torch.from_numpy(np.ascontiguousarray(feeds[spec.name])).to(self.device)
            for spec in self._inputs
        }
        outputs = self._execute(tensors, reuse=False)
        return {name: value.cpu().numpy() for name, value in outputs.items()}

    @torch.inference_mode()
    def run_torch(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run on CUDA tensors already on this backend's device: no host copies.

        Feeds are checked like `run` (names, ranks, fixed sizes, dtypes) and must
        be on self.device. Work is queued on torch's current stream, so torch ops
        on that stream see the results in order. The returned tensors are this
        backend's own output buffers, kept per output and reused while the shape
        stays the same: the next call overwrites them, so clone what you keep.
        """
        self._check_torch_feeds(feeds)
        tensors = {spec.name: feeds[spec.name].contiguous() for spec in self._inputs}
        return self._execute(tensors, reuse=True)

    def _check_torch_feeds(self, feeds: Mapping[str, torch.Tensor]) -> None:
        expected = {spec.name: spec for spec in self._inputs}
        if set(feeds) != set(expected):
            raise ValueError(f"feeds must be exactly {sorted(expected)}, got {sorted(feeds)}")
        for name, spec in expected.items():
            value = feeds[name]
            fixed = all(e is None or e == g for e, g in zip(spec.shape, value.shape, strict=False))
            dtype_ok = value.dtype == _TORCH_TYPES.get(spec.dtype)
            if value.dim() != len(spec.shape) or not fixed or not dtype_ok:
                raise ValueError(
                    f"{name} must be {spec.dtype} of shape {spec.shape} (None: any), got "
                    f"{value.dtype} {tuple(value.shape)}"
                )
            if value.device != self.device:
                raise ValueError(
                    f"{name} is on {value.device}, run_torch takes tensors on {self.device}; "
                    "use run() for numpy feeds"
                )

    def _execute(self, tensors: Mapping[str, torch.Tensor], reuse: bool) -> dict[str, torch.Tensor]:
        """Bind inputs (contiguous, on self.device), allocate or reuse outputs, run, return them."""
        for spec in self._inputs:
            value = tensors[spec.name]
            if not self.context.set_input_shape(spec.name, tuple(value.shape)):
                raise ValueError(
                    f"{spec.name} has shape {tuple(value.shape)}, outside the engine's "
                    f"optimization profile {self.profile.get(spec.name)}; rebuild with a wider one"
                )
            self.context.set_tensor_address(spec.name, value.data_ptr())
        outputs = {}
        for spec in self._outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            outputs[spec.name] = self._output_buffer(spec, shape, reuse)
            self.context.set_tensor_address(spec.name, outputs[spec.name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run {self.onnx_path.name}; see its log above")
        return outputs

    def _output_buffer(self, spec: TensorSpec, shape: Shape, reuse: bool) -> torch.Tensor:
        buffer = self._buffers.get(spec.name) if reuse else None
        if buffer is None or tuple(buffer.shape) != shape:
            buffer = torch.empty(shape, dtype=_TORCH_TYPES[spec.dtype], device=self.device)
            if reuse:
                self._buffers[spec.name] = buffer
        return buffer


def _canonical_profile(profile: Profile) -> dict[str, list[list[int]]]:
    """The profile as sorted plain lists; ValueError unless each entry is (min, opt, max)
    shapes of one rank with 0 <= min <= opt <= max in every dimension."""
    canonical = {}
    for name, shapes in sorted(profile.items()):
        dims = [[int(d) for d in shape] for shape in shapes]
        valid = len(dims) == 3 and len(dims[0]) == len(dims[1]) == len(dims[2])
        if not valid or not all(0 <= a <= b <= c for a, b, c in zip(*dims, strict=True)):
            raise ValueError(
                f"profile[{name!r}] must be (min, opt, max) shapes of one rank with "
                f"0 <= min <= opt <= max, got {shapes}"
            )
        canonical[name] = dims
    return canonical


def _is_plan(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as cause:
        raise BackendUnavailableError(
            f"the tensorrt backend needs TensorRT 10, which is not installed: {_INSTALL}"
        ) from cause
    return tensorrt


def _target() -> tuple[Any, str, str]:
    """(tensorrt module, its version, name of the current CUDA device)."""
    trt = _tensorrt()
    if not torch.cuda.is_available():
        raise BackendUnavailableError("building a TensorRT plan needs a CUDA device; none is here")
    return trt, str(trt.__version__), torch.cuda.get_device_name()


def _serialize_network(
    trt: Any, onnx_path: Path, profile: Profile, cache_dir: Path, fp16: bool
) -> bytes:
    """Parse onnx_path, build it with one optimization profile, return the serialized plan."""
    trt_log = _trt_logger(trt)
    builder = trt.Builder(trt_log)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, trt_log)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendUnavailableError(
            f"TensorRT cannot parse {onnx_path}: {errors}; use the onnxruntime-cuda backend"
        )
    config = builder.create_builder_config()
    if fp16:
        flag = getattr(trt.BuilderFlag, "FP16", None)
        if flag is None:
            raise BackendUnavailableError(
                f"TensorRT {trt.__version__} has no FP16 builder flag (removed in 11): "
                f"install TensorRT 10 ({_INSTALL}) or build with fp16=False"
            )
        config.set_flag(flag)
    config.add_optimization_profile(_optimization_profile(builder, network, profile))
    timing_path = cache_dir / TIMING_CACHE
    _load_timing_cache(config, timing_path)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendUnavailableError(
            f"TensorRT failed to build {onnx_path} (its log above says why); "
            "use the onnxruntime-cuda or torch-cuda backend"
        )
    _write_atomic(timing_path, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def _optimization_profile(builder: Any, network: Any, profile: Profile) -> Any:
    """One TensorRT optimization profile; ValueError on a missing dynamic input or unknown name."""
    _canonical_profile(profile)  # checks order and ranks
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    dynamic = {name for name, t in inputs.items() if any(d < 0 for d in tuple(t.shape))}
    unknown, missing = set(profile) - set(inputs), dynamic - set(profile)
    if unknown or missing:
        raise ValueError(
            f"the profile must cover the dynamic inputs {sorted(dynamic)} of the network "
            f"(inputs: {sorted(inputs)}); missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    optimization = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        optimization.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
    return optimization


def _load_timing_cache(config: Any, path: Path) -> None:
    """Attach the timing cache saved at path to config, or an empty one when it does not fit."""
    data = path.read_bytes() if path.is_file() else b""
    timing = config.create_timing_cache(data)
    # set_timing_cache returns False when the cache was made by another TensorRT or GPU.
    if timing is not None and config.set_timing_cache(timing, ignore_mismatch=False) is not False:
        return
    logger.warning("starting a new timing cache: %s was made by another TensorRT or GPU", path)
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write data to path through a temporary file in the same folder and a rename."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@functools.cache
def _trt_logger(trt: Any) -> Any:
    """The one TensorRT ILogger of this process: it forwards to this module's logger."""

    class _Forward(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            level = _LOG_LEVELS.get(getattr(severity, "name", ""), logging.WARNING)
            logger.log(level, "tensorrt: %s", msg)

    return _Forward()


def _spec(engine: Any, name: str) -> TensorSpec:
    shape = tuple(None if d < 0 else int(d) for d in tuple(engine.get_tensor_shape(name)))
    dtype = engine.get_tensor_dtype(name)
    return TensorSpec(name, shape, _TRT_TYPES.get(getattr(dtype, "name", ""), str(dtype)))


def stage_profile(stage: str, model: MotionModel | None) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shape per input of a stage's graph, from its specs and how it is called."""
    if stage == ENCODER:
        assert model is not None
        longest = model.encoder.context_frames + model.window + model.encoder.lookahead_frames
        dim = model.config.feature_dim
        return {"features": ((1, 1, dim), (1, longest - 1, dim), (1, longest, dim))}
    if stage == DENOISER:
        assert model is not None
        rows = (1, 3 * 4, 3 * MAX_DENOISER_SESSIONS)  # opt: four sessions' guidance rows
        inputs, _ = motion_specs(model)[DENOISER]
        return {s.name: tuple((b, *s.shape[1:]) for b in rows) for s in inputs}  # type: ignore[misc]
    return {"motion": ((1, MOTION_DIM), (1, MOTION_DIM), (MAX_RENDER_BATCH, MOTION_DIM))}


class TensorRTProvider(BackendProvider):
    """fp16 engines built from the exported graphs, plans cached by plan_key."""

    names = ("tensorrt",)
    gpu_names = frozenset(names)
    order = 2

    def check(self, name: str) -> None:
        require_cuda(name)
        try:
            import tensorrt  # noqa: F401
        except ImportError as cause:
            raise BackendUnavailableError(
                f"the tensorrt backend needs the TensorRT Python package: {GPU_EXTRA}"
            ) from cause

    def motion_stages(self, model: MotionModel, config: BackendConfig) -> MotionStages:
        plans = config.graph_dir / "tensorrt"
        return graph_motion_stages(
            model,
            config.graph_dir,
            lambda path, stage: TensorRTBackend(path, stage_profile(stage, model), plans),
            max_rows=3 * MAX_DENOISER_SESSIONS,
        )

    def frame_renderer(self, renderer: FaceRenderer, config: BackendConfig) -> FrameRenderer:
        path = renderer_graph(renderer, config.graph_dir)
        engine = TensorRTBackend(path, stage_profile(RENDERER, None), config.graph_dir / "tensorrt")
        return TensorRTFrameRenderer(engine, renderer.image_size)


class TensorRTFrameRenderer:
    """The renderer engine: frames stay on the GPU until they are uint8, then one copy."""

    def __init__(self, engine: TensorRTBackend, image_size: int) -> None:
        self.engine = engine
        self.image_size = image_size

    def render(self, motion: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(np.atleast_2d(motion), dtype=np.float32)
        with torch.inference_mode():
            feeds = {"motion": torch.from_numpy(batch).to(self.engine.device)}
            frames = self.engine.run_torch(feeds)["frames"]
            return to_uint8_frames(frames).cpu().numpy()


PROVIDER = TensorRTProvider()
