"""The One Euro filter (Casiez et al., CHI 2012): adaptive low-pass for jittery signals.

Slow signals get a low cutoff (jitter removed), fast ones a higher cutoff (little
lag), so a head turn or a saccade passes while the tremor between frames goes.
Streaming, one frame at a time, on any number of channels at once.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["OneEuroFilter"]


def _alpha(cutoff_hz: np.ndarray | float, rate_hz: float) -> np.ndarray | float:
    """Smoothing factor of a one-pole low-pass at cutoff_hz sampled at rate_hz."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau * rate_hz)


class OneEuroFilter:
    """Filter frames of C channels at rate_hz; values in units where beta is meaningful.

    min_cutoff_hz: cutoff when still (lower = smoother, more lag at rest);
    beta: how fast the cutoff rises with speed (per unit/s of the signal);
    derivative_cutoff_hz: low-pass on the speed estimate itself.
    """

    def __init__(
        self,
        rate_hz: float,
        min_cutoff_hz: float = 1.5,
        beta: float = 0.3,
        derivative_cutoff_hz: float = 1.0,
    ) -> None:
        if rate_hz <= 0 or min_cutoff_hz <= 0 or beta < 0 or derivative_cutoff_hz <= 0:
            raise ValueError("rate and cutoffs must be > 0 and beta >= 0")
        self.rate_hz = rate_hz
        self.min_cutoff_hz, self.beta = min_cutoff_hz, beta
        self._d_alpha = _alpha(derivative_cutoff_hz, rate_hz)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def reset(self) -> None:
        self._x = self._dx = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """frame: array of shape (C,) -> the filtered frame, shape (C,)."""
        value = np.asarray(frame, dtype=np.float64)
        if self._x is None or self._dx is None:
            self._x, self._dx = value.copy(), np.zeros_like(value)
            return value
        speed = (value - self._x) * self.rate_hz
        self._dx = self._dx + self._d_alpha * (speed - self._dx)
        cutoff = self.min_cutoff_hz + self.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, self.rate_hz) * (value - self._x)
        return self._x.copy()
