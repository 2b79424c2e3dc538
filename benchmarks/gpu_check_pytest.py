"""pytest plugin for `pytest -m gpu` on the lent GPU machine, which has no mediapipe.

Loaded by benchmarks.gpu_check as `-p benchmarks.gpu_check_pytest` with
FACECAST_GPU_CHECK_AVATAR naming the avatar.npz that `--prepare` wrote on a CPU
machine with the real FaceEncoder. A FaceEncoder asked for that same portrait
(the same cache key: image bytes plus encoder settings) then gets that avatar,
exactly as a cache hit would; any other portrait still goes to the encoder
(and fails there without mediapipe, as it would anyway). Nothing changes when
the variable is unset or mediapipe is importable.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

__all__ = ["pytest_configure"]

VARIABLE = "FACECAST_GPU_CHECK_AVATAR"


def _mediapipe_missing() -> bool:
    try:
        return importlib.util.find_spec("mediapipe") is None
    except (ImportError, ValueError):  # None in sys.modules (a simulated device) raises
        return True


def pytest_configure(config: Any) -> None:
    path = os.environ.get(VARIABLE)
    if not path or not _mediapipe_missing():
        return
    from engines.face.avatar import load_avatar
    from engines.face.encoder import FaceEncoder

    prepared = load_avatar(Path(path))
    original = FaceEncoder._encode_uncached

    def encode_uncached(self: FaceEncoder, data: bytes, source: object, key: str) -> Any:
        if key == prepared.content_hash:
            return prepared
        return original(self, data, source, key)

    FaceEncoder._encode_uncached = encode_uncached  # type: ignore[method-assign]
