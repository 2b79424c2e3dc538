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

from .denoiser import RowMaskDenoiser

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


class CoalescingDenoiser(RowMaskDenoiser):
    """MotionDenoiser's call signature over `denoiser`, batching concurrent calls by rows.

    Rows of different calls never mix: the denoiser treats every row on its own.
    """

    def __init__(self, denoiser: Callable[..., torch.Tensor]) -> None:
        self.denoiser = denoiser
        self._state = threading.Condition()
        self._waiting: list[_Call] = []
        self._running = False
        self.batches = 0  # batches run, for tests and metrics
        self.calls = 0

    def _denoise(self, *tensors: torch.Tensor) -> torch.Tensor:
        call = _Call(tensors)
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
