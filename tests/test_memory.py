"""Giving a closed session's memory back: what only reference cycles hold is freed too."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from server.memory import freeze_startup_objects, release_freed_memory, thaw_startup_objects


class _Peer:
    """Stands for a peer connection: parts that point at each other, and a big buffer."""

    def __init__(self) -> None:
        self.sender = {"peer": self}
        self.buffer = np.zeros(4 * 1024 * 1024, np.uint8)


def test_release_frees_what_only_cycles_hold() -> None:
    gc.disable()  # no automatic collection may happen to free it first
    try:
        peer = _Peer()
        buffer = weakref.ref(peer)
        del peer
        assert buffer() is not None  # refcounting alone cannot free a cycle
        release_freed_memory()
        assert buffer() is None
    finally:
        gc.enable()


def test_frozen_startup_objects_are_skipped_then_thawed() -> None:
    long_lived = _Peer()
    freeze_startup_objects()
    try:
        assert gc.get_freeze_count() > 0
        kept = weakref.ref(long_lived)
        del long_lived
        gc.collect()
        assert kept() is not None  # frozen: not even a full collection looks at it
    finally:
        thaw_startup_objects()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert kept() is None
