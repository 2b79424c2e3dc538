"""engines.training.train: checkpoint round trip and errors, a tiny training run, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engines.audio.features import FEATURE_NAMES
from engines.motion import space as ms
from engines.motion.controls import Controls, control_state
from engines.motion.diffusion import DDIMScheduler
from engines.motion.model import (
    AudioEncoder,
    MotionDenoiser,
    MotionModelConfig,
    MotionNormalizer,
    MotionSampler,
    diffusion_loss,
)
from engines.training.train import (
    CheckpointError,
    TrainConfig,
    load_checkpoint,
    save_checkpoint,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
needs_flite = pytest.mark.skipif(
    shutil.which("flite") is None, reason="flite is not installed (apt-get install flite)"
)
TINY = TrainConfig(corpus_size=3, steps=150, batch_size=16, lr=2e-3, seed=0)
SMALL = MotionModelConfig(d_model=32, num_layers=1, num_heads=2, audio_channels=16)


def _modules(config: MotionModelConfig = SMALL) -> tuple[AudioEncoder, MotionDenoiser]:
    torch.manual_seed(0)
    return AudioEncoder(config.feature_dim, config.audio_channels), MotionDenoiser(config)


def _normalizer() -> MotionNormalizer:
    rng = np.random.default_rng(0)
    return MotionNormalizer.from_data(rng.normal(0.1, 0.3, (50, ms.MOTION_DIM)))


def _sample(encoder: AudioEncoder, denoiser: MotionDenoiser, norm: MotionNormalizer) -> np.ndarray:
    features = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 20, len(FEATURE_NAMES))))
    with torch.no_grad():
        embedding = encoder(features.float())  # 1xTxC
    sampler = MotionSampler(denoiser, normalizer=norm, window=8, prefix=4, seed=3)
    return np.concatenate([sampler.sample_window(embedding[:, i : i + 8]) for i in (0, 8)])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (apt-get install flite)")
    path = tmp_path_factory.mktemp("train") / "motion.safetensors"
    return train(TINY, path, log_every=10)


def test_checkpoint_round_trip_gives_identical_samples(tmp_path: Path) -> None:
    encoder, denoiser = _modules()
    norm = _normalizer()
    encoder.eval(), denoiser.eval()
    path = save_checkpoint(tmp_path / "m.safetensors", encoder, denoiser, norm, SMALL, {"a": 1})
    encoder2, denoiser2, norm2, config2, meta = load_checkpoint(path)
    assert config2 == SMALL and meta == {"a": 1}
    np.testing.assert_array_equal(norm2.mean, norm.mean.astype(np.float32))
    np.testing.assert_array_equal(norm2.std, norm.std.astype(np.float32))
    np.testing.assert_array_equal(
        _sample(encoder, denoiser, norm), _sample(encoder2, denoiser2, norm2)
    )


def test_load_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="facecast train"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_load_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="not a facecast motion checkpoint"):
        load_checkpoint(path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(junk)


def _rewrite_config(path: Path, **changes: object) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
    config = json.loads(metadata["config"])
    config.update(changes)
    metadata["config"] = json.dumps(config)
    save_file(load_file(str(path)), str(path), metadata=metadata)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"d_model": 64}, r"denoiser\..* is \(.*\), expected"),
        ({"motion_dim": ms.MOTION_DIM + 1}, "motion_dim is"),
        ({"flux": 3}, r"fields \['flux'\] are unknown"),
    ],
)
def test_load_names_config_mismatch(tmp_path: Path, changes: dict, message: str) -> None:
    encoder, denoiser = _modules()
    path = save_checkpoint(tmp_path / "m.safetensors", encoder, denoiser, _normalizer(), SMALL)
    _rewrite_config(path, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


@needs_flite
def test_tiny_training_lowers_the_loss_and_saves(tiny_run) -> None:
    losses = np.array(tiny_run.losses)
    assert len(losses) == TINY.steps and np.isfinite(losses).all()
    assert losses[-10:].mean() < 0.7 * losses[:10].mean()
    encoder, denoiser, norm, config, meta = load_checkpoint(tiny_run.checkpoint)
    assert config == MotionModelConfig() and meta["window"] == TINY.window
    assert meta["train"]["seed"] == TINY.seed
    motion = _sample(encoder, denoiser, norm)
    assert motion.shape == (16, ms.MOTION_DIM) and np.isfinite(motion).all()


@needs_flite
def test_training_is_deterministic_per_seed(tiny_run, tmp_path: Path) -> None:
    short = TrainConfig(**{**TINY.__dict__, "steps": 5})
    again = train(short, tmp_path / "a.safetensors")
    assert again.losses == tiny_run.losses[:5]
    other = train(TrainConfig(**{**short.__dict__, "seed": 1}), tmp_path / "b.safetensors")
    assert other.losses != again.losses


@needs_flite
def test_cli_train_writes_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "train", "--steps", "5", "--corpus-size", "2"]
        + ["--log-every", "2", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "step 4/5 loss" in result.stdout and str(out) in result.stdout
    load_checkpoint(out)


@needs_flite
def test_warm_start_begins_from_the_checkpoint_weights(tiny_run, tmp_path: Path) -> None:
    """--init: after one warm-up step the weights are the checkpoint's, not fresh ones."""
    one = TrainConfig(**{**TINY.__dict__, "steps": 1, "seed": 5})
    warm = TrainConfig(**{**one.__dict__, "init_checkpoint": str(tiny_run.checkpoint)})
    start = load_checkpoint(tiny_run.checkpoint)[1].state_dict()
    for run_config, close in ((warm, True), (one, False)):
        out = train(run_config, tmp_path / "out.safetensors").checkpoint
        weights = load_checkpoint(out)[1].state_dict()
        gap = max(float((weights[k] - start[k]).abs().max()) for k in start)
        assert (gap < 1e-3) is close, gap


def test_warm_start_refuses_another_model_size(tmp_path: Path) -> None:
    encoder, denoiser = _modules()
    path = save_checkpoint(tmp_path / "small.safetensors", encoder, denoiser, _normalizer(), SMALL)
    config = TrainConfig(**{**TINY.__dict__, "steps": 1, "init_checkpoint": str(path)})
    with pytest.raises(CheckpointError, match="model config"):
        train(config, tmp_path / "out.safetensors")


def test_channel_weights_tilt_the_loss_towards_their_channel() -> None:
    """Weights equal on every channel leave the loss as it is; one channel weighted up moves
    the loss towards that channel's own error, whatever the scale of the rest."""
    encoder, denoiser = _modules()
    scheduler = DDIMScheduler()
    rng = np.random.default_rng(0)
    x0 = torch.from_numpy(rng.normal(size=(8, 8, ms.MOTION_DIM)).astype(np.float32))
    prev = torch.from_numpy(rng.normal(size=(8, 8, ms.MOTION_DIM)).astype(np.float32))
    features = torch.from_numpy(rng.normal(size=(8, 8, len(FEATURE_NAMES))).astype(np.float32))
    controls = torch.from_numpy(control_state(Controls()).astype(np.float32)).expand(8, 8, -1)

    def loss(weights: torch.Tensor | None) -> float:
        with torch.no_grad():
            audio = encoder(features)
            generator = torch.Generator().manual_seed(4)
            return float(
                diffusion_loss(
                    denoiser, scheduler, x0, audio, prev, controls, generator, 0.0, 0.0, weights
                )
            )

    pitch = ms.index_of("headPitch")
    plain = loss(None)
    assert loss(torch.full((ms.MOTION_DIM,), 2.0)) == pytest.approx(plain, rel=1e-6)
    only_pitch = torch.full((ms.MOTION_DIM,), 1e-6)
    only_pitch[pitch] = 1.0
    pitch_error = loss(only_pitch) / ms.MOTION_DIM  # the mean over D divided by the mean weight
    tilted = torch.ones(ms.MOTION_DIM)
    tilted[pitch] = 50.0
    assert abs(loss(tilted) - pitch_error * ms.MOTION_DIM) < abs(
        plain - pitch_error * ms.MOTION_DIM
    )
    assert (
        TrainConfig(channel_weights=(("headPitch", 50.0),)).loss_weights().tolist()
        == tilted.tolist()
    )


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        ("headPitch", "CHANNEL=W"),
        ("headPitch=x", "CHANNEL=W"),
        ("nodding=2", "valid names"),
        ("headPitch=0", "positive"),
        ("headPitch=nan", "positive"),
    ],
)
def test_cli_train_refuses_a_bad_weight_before_any_work(
    tmp_path: Path, weight: str, message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "train", "--steps", "5", "--weight", weight]
        + ["-o", str(tmp_path / "x.safetensors")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "training" not in result.stdout and not (tmp_path / "x.safetensors").exists()


@needs_flite
def test_training_applies_and_records_the_channel_weights(tiny_run, tmp_path: Path) -> None:
    weighted = TrainConfig(
        **{**TINY.__dict__, "steps": 5, "channel_weights": (("headPitch", 4.0),)}
    )
    report = train(weighted, tmp_path / "w.safetensors")
    assert report.losses != tiny_run.losses[:5]  # same seed, same draws: only the weights differ
    meta = load_checkpoint(report.checkpoint)[4]
    assert [list(pair) for pair in meta["train"]["channel_weights"]] == [["headPitch", 4.0]]
