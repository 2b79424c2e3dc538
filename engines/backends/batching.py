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
    max_rows caps a batch (a TensorRT engine's profile has a largest batch);
    calls past it wait for the next batch, first come first served.
    """

    def __init__(self, denoiser: Callable[..., torch.Tensor], max_rows: int | None = None) -> None:
        self.denoiser = denoiser
        self.max_rows = max_rows
        self._state = threading.Condition()
        self._waiting: list[_Call] = []
        self._running = False
        self.batches = 0  # batches run, for tests and metrics
        self.calls = 0

    def _denoise(self, *tensors: torch.Tensor) -> torch.Tensor:
        call = _Call(tensors)
        with self._state:
            self._waiting.append(call)
            while not call.done:
                if self._running:
                    self._state.wait()
                    continue
                self._running = True
                batch = self._take_batch()
                self._state.release()  # the batch runs without the lock: others queue meanwhile
                try:
                    self._run(batch)
                finally:
                    self._state.acquire()
                self.batches += 1
                self.calls += len(batch)
                for c in batch:
                    c.done = True
                self._running = False
                self._state.notify_all()
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def _take_batch(self) -> list[_Call]:
        """The oldest waiting calls, as many as fit in max_rows (at least one)."""
        batch = [self._waiting.pop(0)]
        rows = batch[0].rows
        while self._waiting and (
            self.max_rows is None or rows + self._waiting[0].rows <= self.max_rows
        ):
            batch.append(self._waiting.pop(0))
            rows += batch[-1].rows
        return batch

    def _run(self, batch: list[_Call]) -> None:
        try:
            joined = [torch.cat(column) for column in zip(*(c.args for c in batch), strict=True)]
            out = self.denoiser(*joined)
            for c, part in zip(batch, torch.split(out, [c.rows for c in batch]), strict=True):
                c.result = part
        except BaseException as error:  # every caller in the batch gets it, not only this one
            for c in batch:
                c.error = error
