"""A few-step DDIM scheduler with a cosine noise schedule and v-prediction.

Diffusers style: the scheduler knows nothing about the model. Training uses
`add_noise` and `training_target`; sampling calls `set_timesteps(n)` once and
then `step(model_output, t, sample)` for each t in `timesteps`.

The model predicts v = sqrt(a) * noise - sqrt(1 - a) * x0 (a = alphas_cumprod[t]).
v-prediction rather than x0 or noise because it stays well conditioned at both
ends of the schedule: the cosine schedule reaches (almost) zero signal at the
last training step, where noise prediction says nothing about x0, and few-step
sampling starts exactly there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["MAX_INFERENCE_STEPS", "DDIMScheduler"]

MAX_INFERENCE_STEPS = 10


def _cosine_alphas_cumprod(num_train_timesteps: int) -> torch.Tensor:
    """Nichol & Dhariwal cosine schedule as betas capped at 0.999: tensor of shape (T,)."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(
            1.0 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps),
            0.999,
        )
        for i in range(num_train_timesteps)
    ]
    return torch.cumprod(1.0 - torch.tensor(betas, dtype=torch.float64), dim=0)


class DDIMScheduler:
    """DDIM over a cosine schedule, v-prediction, <= 10 steps.

    eta = 0 is deterministic DDIM; eta = 1 adds fresh noise at every step as
    ancestral (DDPM-like) sampling does, which keeps rare modes (a blink
    starting) that deterministic few-step sampling averages away.
    """

    prediction_type = "v_prediction"

    def __init__(self, num_train_timesteps: int = 1000, eta: float = 0.0) -> None:
        if num_train_timesteps < MAX_INFERENCE_STEPS:
            raise ValueError(f"num_train_timesteps must be >= {MAX_INFERENCE_STEPS}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        self.eta = eta
        self.num_train_timesteps = num_train_timesteps
        # float64: at the noisy end sqrt(1 - a) and sqrt(a) differ by orders of magnitude.
        self.alphas_cumprod = _cosine_alphas_cumprod(num_train_timesteps)
        self.num_inference_steps = 0
        self.timesteps = torch.zeros(0, dtype=torch.long)
        self._cache: dict[tuple[object, ...], _StepCoefficients] = {}

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Choose n evenly spaced timesteps, descending, starting at T - 1 ("trailing").

        Trailing spacing makes the first step start from pure noise, which is what
        sampling actually begins with; leading spacing would leave a train/test gap.
        """
        n = int(num_inference_steps)
        if not 1 <= n <= MAX_INFERENCE_STEPS:
            raise ValueError(
                f"num_inference_steps must be in [1, {MAX_INFERENCE_STEPS}] for this few-step "
                f"sampler, got {num_inference_steps}"
            )
        stride = self.num_train_timesteps / n
        steps = torch.arange(self.num_train_timesteps, 0, -stride, dtype=torch.float64)
        self.timesteps = (steps.round() - 1).long()
        self.num_inference_steps = n
        self._cache = {}  # step coefficients depend on the schedule's next timestep

    def _alpha(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """alphas_cumprod[t] broadcast against like: t scalar or shape (B,)."""
        t = torch.as_tensor(t, dtype=torch.long).cpu()
        alpha = self.alphas_cumprod[t].to(device=like.device, dtype=like.dtype)
        return alpha.reshape(alpha.shape + (1,) * (like.dim() - alpha.dim()))

    def add_noise(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int
    ) -> torch.Tensor:
        """Forward process q(x_t | x0).

        x0, noise: Tensor of shape (B, W, D); t: int or Tensor of shape (B,).
        Returns x_t, Tensor of shape (B, W, D).
        """
        a = self._alpha(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def training_target(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int
    ) -> torch.Tensor:
        """What the model must predict at (x_t, t): v, Tensor of shape (B, W, D).

        x0, noise: Tensor of shape (B, W, D); t: int or Tensor of shape (B,).
        """
        a = self._alpha(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def predict_x0(
        self, model_output: torch.Tensor, t: torch.Tensor | int, sample: torch.Tensor
    ) -> torch.Tensor:
        """x0 implied by a v prediction; all tensors of shape (B, W, D)."""
        a = self._alpha(t, sample)
        return a.sqrt() * sample - (1 - a).sqrt() * model_output

    def _prev_timestep(self, t: int) -> int:
        """The next (smaller) timestep in the schedule; -1 means 'clean' (alpha = 1)."""
        hits = (self.timesteps == t).nonzero()
        if len(hits) == 0:
            raise ValueError(f"timestep {t} is not in the schedule; call set_timesteps first")
        index = int(hits[0, 0]) + 1
        return int(self.timesteps[index]) if index < len(self.timesteps) else -1

    def step(
        self,
        model_output: torch.Tensor,
        t: torch.Tensor | int,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One DDIM step x_t -> x_prev.

        model_output: v prediction, Tensor of shape (B, W, D); t: a timestep from
        `timesteps`; sample: x_t, Tensor of shape (B, W, D). generator draws the
        step's fresh noise when eta > 0 (unused at eta = 0).
        Returns x_prev, Tensor of shape (B, W, D); after the last step it is x0.
        """
        c = self._coefficients(int(t), sample)
        x0 = c.sqrt_a * sample - c.sqrt_one_minus_a * model_output
        if c.last:
            return x0
        eps = c.sqrt_a * model_output + c.sqrt_one_minus_a * sample
        out = c.sqrt_a_prev * x0 + c.eps_scale * eps
        if self.eta > 0:
            noise = torch.randn(sample.shape, generator=generator, dtype=sample.dtype)
            out = out + c.sigma * noise.to(sample.device)
        return out

    def _coefficients(self, t: int, like: torch.Tensor) -> _StepCoefficients:
        """The step's scalars at t as tensors broadcasting against like, made once per
        timestep, dtype and device: a live sampler steps 100 times a second, and
        indexing the schedule and taking square roots each time cost a tenth of it."""
        key = (t, like.dtype, like.device, like.dim())
        found = self._cache.get(key)
        if found is not None:
            return found
        a = self._alpha(t, like)
        prev = self._prev_timestep(t)
        a_prev = self._alpha(max(prev, 0), like)
        # DDIM's sigma: eta = 1 is the ancestral step's posterior std.
        sigma = self.eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp(min=0).sqrt()
        found = _StepCoefficients(
            sqrt_a=a.sqrt(),
            sqrt_one_minus_a=(1 - a).sqrt(),
            last=prev < 0,
            sqrt_a_prev=a_prev.sqrt(),
            eps_scale=(1 - a_prev - sigma**2).clamp(min=0).sqrt(),
            sigma=sigma,
        )
        self._cache[key] = found
        return found


@dataclass(frozen=True)
class _StepCoefficients:
    sqrt_a: torch.Tensor
    sqrt_one_minus_a: torch.Tensor
    last: bool  # the step to clean (alpha = 1): x0 is the result
    sqrt_a_prev: torch.Tensor
    eps_scale: torch.Tensor
    sigma: torch.Tensor
