"""The CPU's model name, for every benchmark's machine record (no imports beyond the
standard library: the GPU check reads it on a box without PyAV or aiortc)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
