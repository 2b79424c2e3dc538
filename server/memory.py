"""Giving freed memory back to the operating system after a session ends.

A session's renderer and motion model are tens of MB of tensors allocated on
its own executor thread. glibc keeps what such threads free in per-thread
arenas and above its trim threshold, so RSS stayed up to 140 MB high after
sessions ended when the machine was busy (more contention, more arenas), and
looked like a leak. malloc_trim(0) returns the free pages of every arena.

A watched session also leaves its peer connection behind in reference cycles
(aiortc's peer, transports and senders, about 3 700 objects), and with them the
native buffers of its video and audio encoders: only a full collection frees
them, and the trim came before one, so the server grew about 4 MB for every watched
session it ended (benchmarks/results/bench_session_memory.md). So a session's
end collects first. A full collection scans every object, 200 ms with the
engines loaded, holding the GIL that every other session's frames need; what
exists once the server has started (modules, models, the built-in avatar) is
frozen out of collections, which brings it to about 5 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache

__all__ = ["freeze_startup_objects", "release_freed_memory", "thaw_startup_objects"]


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def freeze_startup_objects() -> None:
    """Leave what exists now out of every later collection (call once, when started)."""
    gc.collect()
    gc.freeze()


def thaw_startup_objects() -> None:
    """Undo freeze_startup_objects when the server stops, so a process that runs several
    servers in turn (the tests) can still collect what the earlier ones left."""
    gc.unfreeze()


def release_freed_memory() -> None:
    """Free what only reference cycles still hold, then return freed heap pages to the
    OS (the trim on glibc only; elsewhere a no-op)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
