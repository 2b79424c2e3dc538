"""Loopback-only ICE for every peer the tests and benchmarks make (test harness, not product).

In-process peers (the test's own viewers) get it from `use_loopback_ice()`, called
by conftest and the benchmarks; subprocess servers get it from
`loopback_site/sitecustomize.py`, which tests.live puts on their PYTHONPATH.
"""

from __future__ import annotations

import runpy
from pathlib import Path

__all__ = ["SITE_DIR", "use_loopback_ice"]

SITE_DIR = Path(__file__).resolve().parent / "loopback_site"


def use_loopback_ice() -> None:
    """Make aioice in this process gather only 127.0.0.1 host candidates."""
    runpy.run_path(str(SITE_DIR / "sitecustomize.py"))
