"""ONNX export of the three stages: parity with torch, and one contract over every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.backends import BackendDenoiser, OnnxRuntimeBackend
from engines.backends.graphs import DENOISER, ENCODER, RENDERER, example_feeds
from engines.errors import BackendUnavailableError
from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.motion.learned import default_motion_model
from engines.motion.model import MotionSampler
from engines.render.renderer import FaceRenderer
from export.onnx_export import export_all, main, parity, stage_backends, stage_specs

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
pytest.importorskip("onnx", reason="the onnx extra is not installed")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def model():
    return default_motion_model()


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> FaceRenderer:
    cache = tmp_path_factory.mktemp("avatars")
    return FaceRenderer(FaceEncoder(FaceEncoderConfig(cache_dir=cache)).encode(None))


@pytest.fixture(scope="module")
def onnx_paths(model, renderer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_all(model, renderer, tmp_path_factory.mktemp("onnx"))


def test_onnxruntime_matches_torch_within_tolerance(model, renderer, onnx_paths) -> None:
    errors = parity(model, renderer, onnx_paths)
    assert set(errors) == {ENCODER, DENOISER, RENDERER}
    assert all(0.0 <= e <= TOLERANCE for e in errors.values()), errors


@pytest.mark.parametrize("backend_name", ["torch-cpu", "onnxruntime-cpu"])
def test_backend_contract(model, renderer, onnx_paths, backend_name: str) -> None:
    """The same checks over every backend: specs, dynamic sizes, validation, determinism."""
    backends = stage_backends(model, renderer, onnx_paths)[backend_name]
    for stage, (inputs, outputs) in stage_specs(model, renderer).items():
        backend = backends[stage]
        assert [s.name for s in backend.input_spec] == [s.name for s in inputs]
        assert [s.name for s in backend.output_spec] == [s.name for s in outputs]
        for size in (1, 4):  # a dynamic batch (denoiser, renderer) or length (encoder)
            kwargs = {"frames": 10 * size} if stage == ENCODER else {"batch": size}
            feeds = example_feeds(inputs, seed=size, **kwargs)
            out = backend.run(feeds)
            again = backend.run(feeds)
            for spec in outputs:
                value = out[spec.name]
                assert value.dtype == np.float32 and np.isfinite(value).all()
                assert value.ndim == len(spec.shape)
                assert all(
                    e is None or e == g for e, g in zip(spec.shape, value.shape, strict=True)
                )
                assert np.array_equal(value, again[spec.name])
        feeds = example_feeds(inputs)
        with pytest.raises(ValueError, match="missing"):
            backend.run({k: v for k, v in list(feeds.items())[1:]})
        first = inputs[0].name
        with pytest.raises(ValueError, match=first):
            backend.run({**feeds, first: feeds[first].astype(np.float64)})


def test_sampler_runs_on_the_onnxruntime_denoiser(model, onnx_paths) -> None:
    embedding = torch.from_numpy(
        np.random.default_rng(0).standard_normal((1, 3, model.config.audio_channels))
    ).float()
    on_ort = BackendDenoiser(OnnxRuntimeBackend(onnx_paths[DENOISER]))
    runs = []
    for denoiser in (model.denoiser, on_ort):
        sampler = MotionSampler(denoiser, normalizer=model.normalizer, seed=5)
        runs.append(
            np.concatenate([sampler.sample_window(embedding[:, i : i + 1]) for i in range(3)])
        )
    assert np.abs(runs[0] - runs[1]).max() < 1e-3


def test_unavailable_provider_says_what_is_there(onnx_paths) -> None:
    with pytest.raises(BackendUnavailableError, match="available"):
        OnnxRuntimeBackend(onnx_paths[DENOISER], providers=("NoSuchExecutionProvider",))


def test_export_command_reports_parity(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACECAST_CACHE_DIR", str(tmp_path / "avatars"))
    assert main(["-o", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for stage in (ENCODER, DENOISER, RENDERER):
        assert f"{stage}.onnx: max abs error vs torch" in printed
        assert (tmp_path / f"{stage}.onnx").stat().st_size > 100_000
    assert printed.count("(ok)") == 3
