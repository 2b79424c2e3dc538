"""Giving freed memory back to the operating system after a session ends.

A session's renderer and motion model are tens of MB of tensors allocated on
its own executor thread. glibc keeps what such threads free in per-thread
arenas and above its trim threshold, so RSS stayed up to 140 MB high after
sessions ended when the machine was busy (more contention, more arenas), and
looked like a leak. malloc_trim(0) returns the free pages of every arena.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

__all__ = ["release_freed_memory"]


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


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc only; a no-op elsewhere)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
