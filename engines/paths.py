"""Where facecast's files live: the assets shipped in the package, and the user's caches.

Kept apart from the stages so that finding a checkpoint or a cache folder
imports nothing heavy (no cv2, no mediapipe, no torch).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "ASSETS_DIR",
    "DEFAULT_CHECKPOINT",
    "default_portrait_path",
    "user_cache_dir",
    "avatar_cache_dir",
    "engine_cache_dir",
    "provenance_dir",
]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# The motion model `facecast train` made for this release.
DEFAULT_CHECKPOINT = ASSETS_DIR / "motion.safetensors"


def default_portrait_path() -> Path:
    """The built-in portrait: Raphael's La Velata (public domain)."""
    return ASSETS_DIR / "la_velata.jpg"


def user_cache_dir(variable: str, folder: str) -> Path:
    """$variable if set, else facecast/folder in the user's cache ($XDG_CACHE_HOME or ~/.cache)."""
    env = os.environ.get(variable)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facecast" / folder


def avatar_cache_dir() -> Path:
    """Prepared avatars: FACECAST_CACHE_DIR, else the user cache."""
    return user_cache_dir("FACECAST_CACHE_DIR", "avatars")


def engine_cache_dir() -> Path:
    """Exported graphs and TensorRT plans: FACECAST_ENGINE_CACHE_DIR, else the user cache."""
    return user_cache_dir("FACECAST_ENGINE_CACHE_DIR", "engines")


def provenance_dir() -> Path:
    """The install's provenance state (instance id, development C2PA certificate):
    FACECAST_PROVENANCE_DIR, else provenance/ in FACECAST_DATA_DIR (the server's data
    folder), else the user cache. Kept, not a cache: a new folder means a new instance id."""
    env = os.environ.get("FACECAST_PROVENANCE_DIR")
    if env:
        return Path(env)
    data = os.environ.get("FACECAST_DATA_DIR")
    if data:
        return Path(data) / "provenance"
    return user_cache_dir("FACECAST_PROVENANCE_DIR", "provenance")
