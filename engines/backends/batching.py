"""Cross-session batching of denoiser calls: flat combining, no timer, no extra thread.

Each session's thread calls the shared CoalescingDenoiser as it would the
denoiser. If no batch is running, the caller runs one made of every call
waiting at that moment (its own included) and hands out the results; calls
that arrive meanwhile wait and go together in the next batch. Idle, a call
runs alone at once (no added latency); under load, batches grow by
themselves to the number of sessions waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["CoalescingDenoiser"]


@dataclass
class _Call:
    args: tuple[torch.Tensor, ...]
    result: torch.Tensor | None = None
    error: BaseException | None = None
    done: bool = False
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = self.args[0].shape[0]


class CoalescingDenoiser:
    """MotionDenoiser's call signature over `denoiser`, batching concurrent calls by rows.

    Masks must be row masks (B,) or None; rows of different calls never mix,
    because the denoiser treats every row on its own.
    """

    def __init__(self, denoiser: Callable[..., torch.Tensor]) -> None:
        self.denoiser = denoiser
        self._state = threading.Condition()
        self._waiting: list[_Call] = []
        self._running = False
        self.batches = 0  # batches run, for tests and metrics
        self.calls = 0

    def __call__(
        self,
        sample: torch.Tensor,
        t: torch.Tensor,
        audio: torch.Tensor,
        prev: torch.Tensor,
        controls: torch.Tensor,
        drop_audio: torch.Tensor | None = None,
        drop_prev: torch.Tensor | None = None,
        drop_controls: torch.Tensor | None = None,
    ) -> torch.Tensor:
        rows = sample.shape[0]
        masks = []
        for mask in (drop_audio, drop_prev, drop_controls):
            mask = torch.zeros(rows, dtype=torch.bool) if mask is None else mask
            if mask.dim() != 1:
                raise ValueError("batched denoiser calls take row masks of shape (B,) only")
            masks.append(mask)
        call = _Call((sample, t, audio, prev, controls, *masks))
        with self._state:
            self._waiting.append(call)
            while self._running and not call.done:
                self._state.wait()
            if not call.done:
                self._running = True
                batch, self._waiting = self._waiting, []
        if not call.done:
            self._run(batch)
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def _run(self, batch: list[_Call]) -> None:
        try:
            joined = [torch.cat(column) for column in zip(*(c.args for c in batch), strict=True)]
            out = self.denoiser(*joined)
            parts = torch.split(out, [c.rows for c in batch])
            for c, part in zip(batch, parts, strict=True):
                c.result = part
        except BaseException as error:  # every waiting caller gets it, not only this one
            for c in batch:
                c.error = error
        with self._state:
            self.batches += 1
            self.calls += len(batch)
            for c in batch:
                c.done = True
            self._running = False
            self._state.notify_all()
