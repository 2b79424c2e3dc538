"""Portraits a session can use: the built-in one plus uploads kept on disk by content hash.

Uploads are analysed by the FaceEncoder before they are stored, so a file that
is not a usable face is rejected with the encoder's message and never listed.
Avatars stay in memory once built (and on disk in the encoder's cache), so a
second session with the same portrait starts without re-analysis.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from engines.avatar import Avatar
from engines.face_encoder import FaceEncoder, default_portrait_path

__all__ = ["PortraitInfo", "PortraitStore", "UnknownPortraitError", "BUILTIN_PORTRAIT_ID"]

logger = logging.getLogger(__name__)

BUILTIN_PORTRAIT_ID = "la_velata"
_IMAGE_SUFFIXES = {b"\xff\xd8": ".jpg", b"\x89P": ".png", b"RI": ".webp", b"GI": ".gif"}


class UnknownPortraitError(KeyError):
    def __str__(self) -> str:
        return f"no portrait with id {self.args[0]!r}; GET /api/portraits lists them"


@dataclass(frozen=True)
class PortraitInfo:
    id: str
    name: str
    builtin: bool
    path: Path
    notes: tuple[str, ...] = ()


def _stored_info(path: Path) -> PortraitInfo:
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        return PortraitInfo(path.stem, str(meta["name"]), False, path, tuple(meta["notes"]))
    except (OSError, ValueError, KeyError, TypeError):
        return PortraitInfo(path.stem, path.stem, False, path)


class PortraitStore:
    def __init__(self, encoder: FaceEncoder, upload_dir: Path) -> None:
        self._encoder = encoder
        self._upload_dir = upload_dir
        self._upload_dir.mkdir(parents=True, exist_ok=True)
        self._avatars: dict[str, Avatar] = {}
        self._lock = threading.Lock()  # the encoder runs on executor threads
        builtin = PortraitInfo(
            BUILTIN_PORTRAIT_ID, "La Velata (Raphael)", True, default_portrait_path()
        )
        self._portraits: dict[str, PortraitInfo] = {builtin.id: builtin}
        for path in sorted(self._upload_dir.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".json":
                self._portraits[path.stem] = _stored_info(path)

    def list(self) -> list[PortraitInfo]:
        return list(self._portraits.values())

    def info(self, portrait_id: str) -> PortraitInfo:
        try:
            return self._portraits[portrait_id]
        except KeyError:
            raise UnknownPortraitError(portrait_id) from None

    async def avatar(self, portrait_id: str) -> Avatar:
        """The prepared avatar; analysed on first use (cached on disk by the encoder)."""
        info = self.info(portrait_id)
        cached = self._avatars.get(portrait_id)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        avatar = await loop.run_in_executor(None, self._encode, info.path)
        self._avatars[portrait_id] = avatar
        return avatar

    async def add(self, data: bytes, filename: str) -> PortraitInfo:
        """Analyse an uploaded image and keep it; raises the encoder's FacecastError if unusable."""
        loop = asyncio.get_running_loop()
        avatar = await loop.run_in_executor(None, self._encode, data)
        portrait_id = hashlib.sha256(data).hexdigest()[:16]
        suffix = _IMAGE_SUFFIXES.get(data[:2], Path(filename).suffix.lower() or ".img")
        path = self._upload_dir / f"{portrait_id}{suffix}"
        if not path.exists():
            partial = path.with_name("." + path.name)
            partial.write_bytes(data)
            partial.replace(path)
        name = Path(filename).stem[:64] or portrait_id
        info = PortraitInfo(portrait_id, name, False, path, tuple(avatar.notes))
        # The display name and notes survive a restart next to the image.
        meta = {"name": info.name, "notes": list(info.notes)}
        path.with_suffix(".json").write_text(json.dumps(meta))
        self._portraits[portrait_id] = info
        self._avatars[portrait_id] = avatar
        logger.info("portrait %s added from %s", portrait_id, filename)
        return info

    def _encode(self, source: Path | bytes) -> Avatar:
        with self._lock:  # mediapipe graphs are shared; one analysis at a time
            return self._encoder.encode(source)
