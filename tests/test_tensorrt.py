"""The TensorRT backend: plan keys and the plan cache (anywhere), engine parity (GPU only)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.backends import tensorrt_backend
from engines.backends.tensorrt_backend import (
    TIMING_CACHE,
    TensorRTBackend,
    build_plan,
    cached_plan,
    plan_key,
)
from engines.errors import BackendUnavailableError

PROFILE = {
    "sample": ((1, 24, 8), (3, 24, 8), (8, 24, 8)),
    "timestep": ((1,), (3,), (8,)),
}
VERSION, GPU = "10.16.1.11", "NVIDIA H100 80GB HBM3"


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    """Stands in for an ONNX file: plan keys and the cache read its bytes only."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx graph bytes" * 100)
    return path


def _key(onnx_path: Path, **changes: object) -> str:
    args: dict = {"profile": PROFILE, "tensorrt_version": VERSION, "gpu_name": GPU, "fp16": True}
    return plan_key(onnx_path, **{**args, **changes})


def test_plan_key_is_a_stable_sha256(onnx_file: Path, tmp_path: Path) -> None:
    key = _key(onnx_file)
    assert len(key) == 64 and int(key, 16) >= 0
    assert _key(onnx_file) == key
    copy = tmp_path / "copy.onnx"  # same bytes under another name: same plan
    copy.write_bytes(onnx_file.read_bytes())
    assert _key(copy) == key
    # Order of the profile's entries and list-or-tuple shapes do not matter.
    reordered = {
        "timestep": ([1], [3], [8]),
        "sample": ([1, 24, 8], [3, 24, 8], [8, 24, 8]),
    }
    assert _key(onnx_file, profile=reordered) == key


@pytest.mark.parametrize(
    "changes",
    [
        {"tensorrt_version": "10.16.0.72"},
        {"gpu_name": "NVIDIA H200"},
        {"fp16": False},
        {"profile": {**PROFILE, "timestep": ((1,), (4,), (8,))}},  # another opt
        {"profile": {**PROFILE, "timestep": ((1,), (3,), (16,))}},  # another max
        {"profile": {"sample": PROFILE["sample"]}},  # one input fewer
        {"profile": {**PROFILE, "audio": ((1, 24, 4), (3, 24, 4), (8, 24, 4))}},
    ],
)
def test_plan_key_changes_with_each_input(onnx_file: Path, changes: dict) -> None:
    assert _key(onnx_file, **changes) != _key(onnx_file)


def test_plan_key_changes_with_the_onnx_bytes(onnx_file: Path) -> None:
    before = _key(onnx_file)
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"!")
    assert _key(onnx_file) != before


@pytest.mark.parametrize(
    "entry",
    [
        ((3,), (1,), (8,)),  # min > opt
        ((1,), (9,), (8,)),  # opt > max
        ((1, 24), (3,), (8,)),  # ranks differ
        ((1,), (3,)),  # no max
        ((-1,), (3,), (8,)),  # negative
    ],
)
def test_plan_key_rejects_a_bad_profile(onnx_file: Path, entry: tuple) -> None:
    with pytest.raises(ValueError, match="timestep"):
        _key(onnx_file, profile={**PROFILE, "timestep": entry})


def test_cached_plan_finds_only_the_plan_at_its_key(onnx_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "plans"
    assert cached_plan(onnx_file, PROFILE, cache, VERSION, GPU) is None  # no folder yet
    cache.mkdir()
    plan = cache / f"{_key(onnx_file)}.plan"
    plan.write_bytes(b"")
    assert cached_plan(onnx_file, PROFILE, cache, VERSION, GPU) is None  # empty: not a plan
    plan.write_bytes(b"serialized engine")
    assert cached_plan(onnx_file, PROFILE, cache, VERSION, GPU) == plan
    assert cached_plan(onnx_file, PROFILE, cache, VERSION, GPU, fp16=False) is None
    assert cached_plan(onnx_file, PROFILE, cache, "11.0.0.114", GPU) is None


@pytest.fixture
def fake_builder(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replaces TensorRT in build_plan: a fixed version and GPU, a build that records its call."""
    builds: list[Path] = []

    def serialize(trt, onnx_path: Path, profile, cache_dir: Path, fp16: bool) -> bytes:
        builds.append(onnx_path)
        return b"plan of " + onnx_path.read_bytes()[:10] + (b" fp16" if fp16 else b" fp32")

    monkeypatch.setattr(tensorrt_backend, "_target", lambda: (None, VERSION, GPU))
    monkeypatch.setattr(tensorrt_backend, "_serialize_network", serialize)
    return builds


def test_build_plan_builds_once_then_reads_the_cache(
    onnx_file: Path, tmp_path: Path, fake_builder: list[Path]
) -> None:
    cache = tmp_path / "plans"
    first = build_plan(onnx_file, PROFILE, cache)
    assert fake_builder == [onnx_file]
    assert first == cache / f"{_key(onnx_file)}.plan"
    assert first.read_bytes() == b"plan of onnx graph fp16"
    assert build_plan(onnx_file, PROFILE, cache) == first
    assert len(fake_builder) == 1  # the second call found the plan
    fp32 = build_plan(onnx_file, PROFILE, cache, fp16=False)
    assert fp32 != first and fp32.read_bytes().endswith(b"fp32") and len(fake_builder) == 2
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.name, fp32.name])


def test_build_plan_uses_a_plan_already_in_the_cache(
    onnx_file: Path, tmp_path: Path, fake_builder: list[Path]
) -> None:
    plan = tmp_path / f"{_key(onnx_file)}.plan"
    plan.write_bytes(b"built earlier")
    assert build_plan(onnx_file, PROFILE, tmp_path) == plan
    assert fake_builder == [] and plan.read_bytes() == b"built earlier"


def test_a_failed_write_leaves_no_partial_plan(
    onnx_file: Path, tmp_path: Path, fake_builder: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rename(source: str, target: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(tensorrt_backend.os, "replace", no_rename)
    cache = tmp_path / "plans"
    with pytest.raises(OSError, match="disk full"):
        build_plan(onnx_file, PROFILE, cache)
    assert list(cache.iterdir()) == []  # neither the plan nor its temporary file


def test_missing_tensorrt_says_which_extra_to_install(
    onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'facecast\[gpu\]'") as error:
        TensorRTBackend(onnx_file, PROFILE, tmp_path)
    assert isinstance(error.value.__cause__, ImportError)


def test_no_cuda_device_is_said_plainly(
    onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        TensorRTBackend(onnx_file, PROFILE, tmp_path)
    assert list(tmp_path.glob("*.plan")) == []


def test_unavailable_here_names_the_fix(onnx_file: Path, tmp_path: Path) -> None:
    """On this machine as it is: whichever part is missing, the message says what to do."""
    has_trt = importlib.util.find_spec("tensorrt") is not None
    if has_trt and torch.cuda.is_available():
        pytest.skip("TensorRT and CUDA are both here; the GPU tests below cover this machine")
    fix = "no CUDA device" if has_trt else r"pip install 'facecast\[gpu\]'"
    with pytest.raises(BackendUnavailableError, match=fix):
        TensorRTBackend(onnx_file, PROFILE, tmp_path)


# --- On a GPU with TensorRT: a real build, parity with onnxruntime, the fast path. ---


@pytest.fixture(scope="module")
def denoiser_onnx(tmp_path_factory: pytest.TempPathFactory):
    """(exported motion_denoiser.onnx, its input specs, a batch 1..8 profile); skips without GPU."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed: pip install 'facecast[gpu]'")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from engines.motion.learned import default_motion_model
    from export.onnx_export import DENOISER, export_motion_model, motion_specs

    model = default_motion_model()
    path = export_motion_model(model, tmp_path_factory.mktemp("onnx"))[DENOISER]
    inputs = motion_specs(model)[DENOISER][0]
    profile = {
        s.name: tuple(tuple(b if d is None else d for d in s.shape) for b in (1, 3, 8))
        for s in inputs
    }
    return path, inputs, profile


@pytest.mark.gpu
@pytest.mark.parametrize(("fp16", "tolerance"), [(False, 1e-2), (True, 5e-2)])
def test_engine_matches_onnxruntime(
    denoiser_onnx, tmp_path: Path, fp16: bool, tolerance: float
) -> None:
    from engines.backends import OnnxRuntimeBackend
    from export.onnx_export import example_feeds

    path, inputs, profile = denoiser_onnx
    engine = TensorRTBackend(path, profile, tmp_path, fp16=fp16)
    reference = OnnxRuntimeBackend(path)
    assert engine.input_spec == reference.input_spec
    assert [(s.name, s.dtype) for s in engine.output_spec] == [
        (s.name, s.dtype) for s in reference.output_spec
    ]
    for seed, batch in enumerate((1, 3, 8)):
        feeds = example_feeds(inputs, seed=seed, batch=batch)
        got, want = engine.run(feeds)["v"], reference.run(feeds)["v"]
        assert got.shape == want.shape and got.dtype == np.float32
        # TensorRT runs fp32 matmuls as TF32 on Ampere and later, hence the fp32 tolerance.
        scale = max(1.0, float(np.abs(want).max()))
        assert float(np.abs(got - want).max()) <= tolerance * scale, (fp16, batch)


@pytest.mark.gpu
def test_plan_is_cached_and_the_fast_path_matches(denoiser_onnx, tmp_path: Path) -> None:
    from export.onnx_export import example_feeds

    path, inputs, profile = denoiser_onnx
    first = TensorRTBackend(path, profile, tmp_path)
    plans = list(tmp_path.glob("*.plan"))
    assert plans == [first.plan_path] and (tmp_path / TIMING_CACHE).stat().st_size > 0
    built = first.plan_path.stat().st_mtime_ns
    again = TensorRTBackend(path, profile, tmp_path)
    assert again.plan_path == first.plan_path and again.plan_path.stat().st_mtime_ns == built

    feeds = example_feeds(inputs, seed=7, batch=3)
    on_host = again.run(feeds)["v"]
    on_gpu = {k: torch.from_numpy(v).to(again.device) for k, v in feeds.items()}
    out = again.run_torch(on_gpu)["v"]
    assert out.device == again.device
    np.testing.assert_allclose(out.cpu().numpy(), on_host, atol=1e-5)
    assert again.run_torch(on_gpu)["v"].data_ptr() == out.data_ptr()  # buffer reused
    with pytest.raises(ValueError, match="run_torch takes tensors on"):
        again.run_torch({k: v.cpu() for k, v in on_gpu.items()})
    too_big = example_feeds(inputs, seed=7, batch=9)
    with pytest.raises(ValueError, match="optimization profile"):
        again.run(too_big)
