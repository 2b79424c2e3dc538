"""Contract tests for the diffusion scheduler, the motion model and the streaming sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from engines.audio.features import FEATURE_NAMES
from engines.motion import space as ms
from engines.motion.controls import CONTROL_DIM, Controls, control_state
from engines.motion.diffusion import DDIMScheduler
from engines.motion.model import (
    AudioEncoder,
    MotionDenoiser,
    MotionNormalizer,
    MotionSampler,
    diffusion_loss,
)

F, D = len(FEATURE_NAMES), ms.MOTION_DIM
W, K, C = 8, 4, 64
NEUTRAL = control_state(Controls()).astype(np.float32)


@pytest.fixture(scope="module")
def denoiser() -> MotionDenoiser:
    torch.manual_seed(0)
    return MotionDenoiser().eval()


def _inputs(b: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "sample": torch.randn(b, W, D, generator=g),
        "t": torch.randint(0, 1000, (b,), generator=g),
        "audio": torch.randn(b, W, C, generator=g),
        "prev": torch.randn(b, K, D, generator=g),
        "controls": torch.randn(b, W, CONTROL_DIM, generator=g),
    }


# --- scheduler ---------------------------------------------------------------------------


def test_add_noise_at_t0_is_close_to_x0() -> None:
    s = DDIMScheduler()
    x0, noise = torch.randn(2, W, D), torch.randn(2, W, D)
    assert torch.allclose(s.add_noise(x0, noise, 0), x0, atol=0.05)
    assert s.add_noise(x0, noise, torch.tensor([0, 999])).shape == (2, W, D)


@pytest.mark.parametrize("n", [1, 2, 4, 10])
def test_timesteps_descend_from_the_last_training_step(n: int) -> None:
    s = DDIMScheduler()
    s.set_timesteps(n)
    assert len(s.timesteps) == n and int(s.timesteps[0]) == 999
    assert bool((s.timesteps[1:] < s.timesteps[:-1]).all()) and int(s.timesteps[-1]) >= 0


@pytest.mark.parametrize("n", [0, 11, 50])
def test_set_timesteps_rejects_more_than_ten_steps(n: int) -> None:
    with pytest.raises(ValueError, match="few-step"):
        DDIMScheduler().set_timesteps(n)


@pytest.mark.parametrize("n", [1, 3, 10])
def test_perfect_model_recovers_x0(n: int) -> None:
    s = DDIMScheduler()
    s.set_timesteps(n)
    x0, noise = torch.randn(2, W, D), torch.randn(2, W, D)
    x = s.add_noise(x0, noise, int(s.timesteps[0]))
    for t in s.timesteps:
        x = s.step(s.training_target(x0, noise, t), t, x)
    assert torch.allclose(x, x0, atol=1e-5)


def test_step_rejects_a_timestep_outside_the_schedule() -> None:
    s = DDIMScheduler()
    s.set_timesteps(4)
    with pytest.raises(ValueError, match="set_timesteps"):
        s.step(torch.zeros(1, W, D), 500, torch.zeros(1, W, D))


# --- networks ----------------------------------------------------------------------------


def test_audio_encoder_shapes_and_fixed_lookahead() -> None:
    torch.manual_seed(0)
    enc = AudioEncoder().eval()
    x = torch.randn(2, 30, F)
    y = enc(x)
    assert y.shape == (2, 30, C) and enc.lookahead_frames == 1
    k = 12
    for offset, changes in ((1, True), (2, False), (5, False)):
        x2 = x.clone()
        x2[:, k + offset] += 1.0
        assert bool((enc(x2)[:, k] != y[:, k]).any()) == changes, offset
    x3 = x.clone()
    x3[:, k - enc.context_frames - 1] += 1.0  # outside the receptive field
    assert torch.equal(enc(x3)[:, k], y[:, k])
    with pytest.raises(ValueError):
        enc(torch.randn(2, 30, F + 1))


def test_denoiser_output_shape_and_validation(denoiser: MotionDenoiser) -> None:
    inputs = _inputs(3)
    assert denoiser(**inputs).shape == (3, W, D)
    with pytest.raises(ValueError):
        denoiser(**{**inputs, "audio": torch.randn(3, W + 1, C)})
    with pytest.raises(ValueError):
        denoiser(**{**inputs, "prev": torch.randn(3, 99, D)})
    with pytest.raises(ValueError, match="controls"):
        denoiser(**{**inputs, "controls": torch.randn(3, CONTROL_DIM)})


@pytest.mark.parametrize("mask", ["drop_audio", "drop_prev", "drop_controls"])
def test_null_masks_change_only_the_masked_rows(denoiser: MotionDenoiser, mask: str) -> None:
    inputs = _inputs(2)
    with torch.no_grad():
        base = denoiser(**inputs)
        dropped = denoiser(**inputs, **{mask: torch.tensor([True, False])})
    assert not torch.allclose(base[0], dropped[0], atol=1e-5)
    assert torch.allclose(base[1], dropped[1], atol=1e-5)


def test_per_frame_audio_mask_changes_only_later_frames_causally(
    denoiser: MotionDenoiser,
) -> None:
    """Masking the audio of frames >= 5 (not heard yet) changes the prediction."""
    inputs = _inputs(1)
    unheard = (torch.arange(W) >= 5)[None]
    with torch.no_grad():
        base = denoiser(**inputs)
        masked = denoiser(**inputs, drop_audio=unheard)
        # What an unheard frame holds must not matter: the null replaces it.
        other = denoiser(
            **{**inputs, "audio": inputs["audio"] + unheard[..., None] * 5.0}, drop_audio=unheard
        )
    assert not torch.allclose(base, masked, atol=1e-5)
    assert torch.allclose(masked, other, atol=1e-6)


def test_parameter_count_is_a_few_megabytes(denoiser: MotionDenoiser) -> None:
    count = sum(p.numel() for m in (denoiser, AudioEncoder()) for p in m.parameters())
    assert 500_000 <= count <= 2_000_000  # 2 to 8 MB in float32


def test_normalizer_round_trip() -> None:
    motion = np.random.default_rng(0).normal(size=(50, D)).astype(np.float32)
    motion[:, 0] = 0.5  # a constant channel stays finite
    norm = MotionNormalizer.from_data(motion)
    assert np.isfinite(norm.normalize(motion)).all()
    assert np.allclose(norm.denormalize(norm.normalize(motion)), motion, atol=1e-5)


# --- sampler -----------------------------------------------------------------------------


def _audio(seed: int) -> torch.Tensor:
    return torch.randn(1, W, C, generator=torch.Generator().manual_seed(seed))


def _run(sampler: MotionSampler, windows: int = 2) -> list[np.ndarray]:
    return [sampler.sample_window(_audio(i), np.tile(NEUTRAL, (W, 1))) for i in range(windows)]


def test_sampler_shapes_and_ranges(denoiser: MotionDenoiser) -> None:
    out = MotionSampler(denoiser, window=W, prefix=K).sample_window(_audio(0))
    assert out.shape == (W, D) and out.dtype == np.float32
    low = np.array([ms.MOTION_RANGES[n].low for n in ms.MOTION_NAMES], np.float32)
    high = np.array([ms.MOTION_RANGES[n].high for n in ms.MOTION_NAMES], np.float32)
    assert (out >= low).all() and (out <= high).all()
    with pytest.raises(ValueError, match="1 to 8"):
        MotionSampler(denoiser, window=W).sample_window(torch.zeros(1, W + 1, C))
    with pytest.raises(ValueError, match="controls"):
        MotionSampler(denoiser, window=W).sample_window(_audio(0), np.zeros((W, 2)))


@pytest.mark.parametrize("heard", [1, 3, W])
def test_sampler_emits_exactly_the_frames_heard(denoiser: MotionDenoiser, heard: int) -> None:
    sampler = MotionSampler(denoiser, window=W, prefix=K, seed=0)
    frames = [sampler.sample_window(_audio(i)[:, :heard]) for i in range(3)]
    assert all(f.shape == (heard, D) for f in frames)
    assert sampler._history is not None and sampler._history.shape == (1, K, D)


def test_sampler_is_deterministic_per_seed(denoiser: MotionDenoiser) -> None:
    a = _run(MotionSampler(denoiser, seed=1))
    sampler = MotionSampler(denoiser, seed=1)
    b = _run(sampler)
    sampler.reset(1)
    c = _run(sampler)
    d = _run(MotionSampler(denoiser, seed=2))
    for x, y, z in zip(a, b, c, strict=True):
        assert np.array_equal(x, y) and np.array_equal(x, z)
    assert not np.array_equal(a[0], d[0])


def test_sampler_uses_the_previous_window(denoiser: MotionDenoiser) -> None:
    one, two = MotionSampler(denoiser, seed=0), MotionSampler(denoiser, seed=0)
    one.sample_window(_audio(10))
    two.sample_window(_audio(11))  # same noise stream, different history
    assert not np.array_equal(one.sample_window(_audio(3)), two.sample_window(_audio(3)))


class _Oracle(nn.Module):
    """Predicts the v whose x0 is the previous window's last frame held (or 0.1 at start)."""

    def __init__(self, scheduler: DDIMScheduler) -> None:
        super().__init__()
        self.scheduler = scheduler

    def forward(
        self, sample: torch.Tensor, t: torch.Tensor, *conditions: torch.Tensor
    ) -> torch.Tensor:
        _audio, prev, _controls, _drop_audio, drop_p, _drop_controls = conditions
        x0 = prev[:, -1:].expand_as(sample).clone()
        x0[drop_p] = 0.1
        a = self.scheduler.alphas_cumprod[t].float()[:, None, None]
        return (a.sqrt() * sample - x0) / (1 - a).sqrt()


def test_continuity_oracle_holds_the_last_frame() -> None:
    scheduler = DDIMScheduler()
    sampler = MotionSampler(_Oracle(scheduler), scheduler, window=W, prefix=K, num_steps=3)
    first, second = _run(sampler)
    assert np.allclose(first, ms.clip_motion(np.full((W, D), 0.1, np.float32)), atol=1e-4)
    assert np.allclose(second, np.repeat(first[-1:], W, axis=0), atol=1e-4)
    # Streaming one frame at a time: the history is the last K frames emitted.
    sampler.reset(0)
    single = [sampler.sample_window(_audio(i)[:, :1]) for i in range(K + 2)]
    assert all(np.allclose(s, single[0], atol=1e-4) for s in single)


def test_guidance_scale_zero_differs_from_positive(denoiser: MotionDenoiser) -> None:
    zero = MotionSampler(denoiser, audio_scale=0.0, controls_scale=0.0)
    two = MotionSampler(denoiser, audio_scale=2.0, controls_scale=2.0)
    assert not np.allclose(_run(zero, 1)[0], _run(two, 1)[0], atol=1e-4)


# --- training ----------------------------------------------------------------------------


def test_tiny_overfit_lowers_the_diffusion_loss() -> None:
    torch.manual_seed(0)
    encoder, model, scheduler = AudioEncoder(), MotionDenoiser(), DDIMScheduler()
    frames = np.arange(W + K)[:, None] * (1 + np.arange(D))[None] * 0.1
    motion = (0.3 * np.sin(frames)).astype(np.float32)  # (K + W, D)
    norm = MotionNormalizer.from_data(motion)
    unit = torch.from_numpy(norm.normalize(motion))[None].expand(16, -1, -1)
    features = torch.randn(1, W + K, F).expand(16, -1, -1)
    controls = torch.from_numpy(NEUTRAL).expand(16, W, -1)

    def loss(g: torch.Generator | None, p_drop: float) -> torch.Tensor:
        audio = encoder(features)[:, K:]
        x0, prev = unit[:, K:], unit[:, :K]
        return diffusion_loss(model, scheduler, x0, audio, prev, controls, g, p_drop, 0.5)

    def evaluate() -> float:
        with torch.no_grad():
            return float(loss(torch.Generator().manual_seed(123), 0.0))

    params = [*encoder.parameters(), *model.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    before = evaluate()
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        optimizer.zero_grad()
        loss(g, 0.1).backward()
        optimizer.step()
    after = evaluate()
    assert after < 0.5 * before, (before, after)  # about 1.37 -> 0.30 when written
