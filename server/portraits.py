"""Portraits a session can use: the built-in one plus uploads kept on disk, bounded.

An upload is decoded (with the image loader's cost caps), re-encoded by the
server (PNG, or JPEG for JPEG sources) and analysed by the FaceEncoder before
it is stored, so a file that is not a usable face is rejected with the
encoder's message and never listed, and what is stored and served is always a
plain image under a name the server chose (`<id>.png` / `<id>.jpg`), never the
client's bytes or suffix.

The store is bounded in count and bytes: when a new upload does not fit, the
least recently used uploads that no live session shows are evicted; if every
stored portrait is in use, the upload is refused (429). Prepared avatars stay
in a small in-memory LRU (and in the encoder's disk cache), so a second
session with the same portrait starts without re-analysis.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from engines.face.avatar import Avatar
from engines.face.encoder import FaceEncoder
from engines.face.image_io import load_portrait
from engines.paths import default_portrait_path

from .errors import BuiltinPortraitError, PortraitStoreFullError, UnknownPortraitError

__all__ = ["PortraitInfo", "PortraitStore", "PortraitStoreLimits", "BUILTIN_PORTRAIT_ID"]

logger = logging.getLogger(__name__)

BUILTIN_PORTRAIT_ID = "la_velata"
_STORED_NAME = re.compile(r"^([0-9a-f]{16,64})\.(png|jpg)$")
_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}
_JPEG_QUALITY = 95
_ANALYSES_AT_ONCE = 2  # uploads decoded and analysed (or waiting to be) at one time


@dataclass(frozen=True)
class PortraitStoreLimits:
    max_portraits: int = 32
    max_bytes: int = 256 * 1024 * 1024
    avatar_cache_size: int = 8


@dataclass(frozen=True)
class PortraitInfo:
    id: str
    name: str
    builtin: bool
    path: Path
    notes: tuple[str, ...] = ()

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES.get(self.path.suffix, "image/jpeg")


def _display_name(filename: str, fallback: str) -> str:
    """The upload's file name without folders, suffix or control characters, for listing."""
    stem = Path(filename.replace("\\", "/")).stem
    printable = "".join(ch for ch in stem if ch.isprintable())
    return printable.strip()[:64] or fallback


def _reencode(data: bytes) -> tuple[bytes, str, tuple[str, ...]]:
    """Decode with the loader's caps, re-encode: (stored bytes, suffix, loader notes)."""
    portrait = load_portrait(data)
    is_jpeg = data[:2] == b"\xff\xd8"
    buffer = io.BytesIO()
    image = Image.fromarray(portrait.rgb)
    if is_jpeg:  # already lossy: a high-quality JPEG keeps its look at a fraction of PNG's size
        image.save(buffer, "JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(buffer, "PNG", optimize=False, compress_level=6)
    return buffer.getvalue(), ".jpg" if is_jpeg else ".png", portrait.notes


class PortraitStore:
    def __init__(
        self,
        encoder: FaceEncoder,
        upload_dir: Path,
        limits: PortraitStoreLimits | None = None,
        in_use: Callable[[], set[str]] = set,
    ) -> None:
        self._encoder = encoder
        self._upload_dir = upload_dir
        self._limits = limits or PortraitStoreLimits()
        self._in_use = in_use  # portrait ids live sessions show
        self._upload_dir.mkdir(parents=True, exist_ok=True)
        self._avatars: collections.OrderedDict[str, Avatar] = collections.OrderedDict()
        self._lock = threading.Lock()  # the encoder runs on executor threads
        self._analyses = asyncio.Semaphore(_ANALYSES_AT_ONCE)
        self._waiting_analyses = 0
        builtin = PortraitInfo(
            BUILTIN_PORTRAIT_ID, "La Velata (Raphael)", True, default_portrait_path()
        )
        self._portraits: dict[str, PortraitInfo] = {builtin.id: builtin}
        self._last_used: dict[str, float] = {}
        # sha256 of the bytes a client uploaded -> the portrait made of them: an upload
        # seen before is answered without decoding it again.
        self._by_source: dict[str, str] = {}
        self._load_stored()

    def _load_stored(self) -> None:
        for path in sorted(self._upload_dir.iterdir()):
            match = _STORED_NAME.match(path.name)
            if match is None:
                if path.is_file() and path.suffix != ".json" and not path.name.startswith("."):
                    logger.warning("ignoring %s: not stored by this version; upload it again", path)
                continue
            portrait_id = match.group(1)
            self._portraits[portrait_id], source = self._stored_info(portrait_id, path)
            self._last_used[portrait_id] = path.stat().st_mtime
            if source:
                self._by_source[source] = portrait_id

    @staticmethod
    def _stored_info(portrait_id: str, path: Path) -> tuple[PortraitInfo, str | None]:
        """The listing entry and the source hash, from the metadata beside the image."""
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            name, notes = str(meta["name"]), tuple(str(n) for n in meta["notes"])
            source = meta.get("source")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            name, notes, source = portrait_id, (), None
        info = PortraitInfo(portrait_id, name, False, path, notes)
        return info, source if isinstance(source, str) else None

    def list(self) -> list[PortraitInfo]:
        return list(self._portraits.values())

    def info(self, portrait_id: str) -> PortraitInfo:
        try:
            return self._portraits[portrait_id]
        except KeyError:
            raise UnknownPortraitError(portrait_id) from None

    @property
    def stored_bytes(self) -> int:
        return sum(_size(info.path) for info in self._portraits.values() if not info.builtin)

    async def avatar(self, portrait_id: str) -> Avatar:
        """The prepared avatar; analysed on first use (cached on disk by the encoder)."""
        info = self.info(portrait_id)
        self._touch(portrait_id)
        cached = self._avatars.get(portrait_id)
        if cached is not None:
            self._avatars.move_to_end(portrait_id)
            return cached
        loop = asyncio.get_running_loop()
        avatar = await loop.run_in_executor(None, self._encode, info.path)
        self._remember(portrait_id, avatar)
        return avatar

    async def add(self, data: bytes, filename: str) -> PortraitInfo:
        """Analyse an uploaded image and keep it; raises the encoder's FacecastError if unusable,
        PortraitStoreFullError if there is no room and nothing can be evicted, or when more
        uploads are being analysed than the server takes at once."""
        source = hashlib.sha256(data).hexdigest()
        known = self._by_source.get(source)
        if known is not None and known in self._portraits:
            self._touch(known)
            return self._portraits[known]
        if self._waiting_analyses >= 2 * _ANALYSES_AT_ONCE:
            raise PortraitStoreFullError(
                "the server is analysing other portraits; upload again in a few seconds"
            )
        self._check_room(len(data))
        self._waiting_analyses += 1
        try:
            async with self._analyses:
                loop = asyncio.get_running_loop()
                stored, suffix, notes = await loop.run_in_executor(None, _reencode, data)
                avatar = await loop.run_in_executor(None, self._encode, stored)
        finally:
            self._waiting_analyses -= 1
        portrait_id = hashlib.sha256(stored).hexdigest()[:32]
        if portrait_id in self._portraits:
            self._touch(portrait_id)
            return self._portraits[portrait_id]
        self._make_room(len(stored))
        name = _display_name(filename, portrait_id)
        info = self._write(portrait_id, stored, suffix, name, _merged(notes, avatar.notes), source)
        self._remember(portrait_id, avatar)
        logger.info("portrait %s added (%d bytes)", portrait_id, len(stored))
        return info

    def delete(self, portrait_id: str) -> None:
        """Remove an upload, its metadata and its cached avatar (sessions showing it keep
        the avatar they loaded until they end)."""
        info = self.info(portrait_id)
        if info.builtin:
            raise BuiltinPortraitError(
                f"{portrait_id!r} is the built-in portrait and cannot be deleted"
            )
        self._remove(info)
        logger.info("portrait %s deleted", portrait_id)

    def _write(
        self,
        portrait_id: str,
        stored: bytes,
        suffix: str,
        name: str,
        notes: tuple[str, ...],
        source: str,
    ) -> PortraitInfo:
        path = self._upload_dir / f"{portrait_id}{suffix}"
        partial = path.with_name("." + path.name)
        partial.write_bytes(stored)
        partial.replace(path)
        # The display name and notes survive a restart next to the image.
        meta = {"name": name, "notes": list(notes), "source": source}
        path.with_suffix(".json").write_text(json.dumps(meta))
        info = PortraitInfo(portrait_id, name, False, path, notes)
        self._portraits[portrait_id] = info
        self._by_source[source] = portrait_id
        self._touch(portrait_id)
        return info

    def _remove(self, info: PortraitInfo) -> None:
        # If the image is gone already, its cache entry simply ages out.
        with self._lock, contextlib.suppress(OSError):
            self._encoder.forget(info.path.read_bytes())
        info.path.unlink(missing_ok=True)
        info.path.with_suffix(".json").unlink(missing_ok=True)
        self._portraits.pop(info.id, None)
        self._avatars.pop(info.id, None)
        self._last_used.pop(info.id, None)
        for source in [s for s, known in self._by_source.items() if known == info.id]:
            del self._by_source[source]

    def _evictable(self) -> tuple[PortraitInfo, ...]:
        """Uploads no live session shows, least recently used first."""
        busy = self._in_use()
        candidates = [p for p in self._portraits.values() if not p.builtin and p.id not in busy]
        return tuple(sorted(candidates, key=lambda p: self._last_used.get(p.id, 0.0)))

    def _check_room(self, new_bytes: int) -> None:
        """Refuse before analysing when even evicting everything idle would not make room."""
        evictable = self._evictable()
        uploads = len(self._portraits) - 1
        kept_bytes = self.stored_bytes - sum(_size(p.path) for p in evictable)
        if uploads - len(evictable) >= self._limits.max_portraits or (
            kept_bytes + new_bytes > self._limits.max_bytes
        ):
            raise PortraitStoreFullError(
                f"the portrait store is full ({uploads} of {self._limits.max_portraits} "
                "portraits, all shown by live sessions); end a session or "
                "DELETE /api/portraits/{id} first"
            )

    def _make_room(self, new_bytes: int) -> None:
        self._check_room(new_bytes)
        for victim in self._evictable():
            uploads = len(self._portraits) - 1
            if uploads < self._limits.max_portraits and (
                self.stored_bytes + new_bytes <= self._limits.max_bytes
            ):
                return
            logger.info("portrait store full: evicting %s (least recently used)", victim.id)
            self._remove(victim)

    def _remember(self, portrait_id: str, avatar: Avatar) -> None:
        if portrait_id not in self._portraits:
            return  # deleted while it was being analysed
        self._avatars[portrait_id] = avatar
        self._avatars.move_to_end(portrait_id)
        while len(self._avatars) > self._limits.avatar_cache_size:
            self._avatars.popitem(last=False)

    def _touch(self, portrait_id: str) -> None:
        self._last_used[portrait_id] = time.time()
        info = self._portraits.get(portrait_id)
        if info is not None and not info.builtin:
            with contextlib.suppress(OSError):
                os.utime(info.path)  # the order survives a restart

    def _encode(self, source: Path | bytes) -> Avatar:
        with self._lock:  # mediapipe graphs are shared; one analysis at a time
            return self._encoder.encode(source)


def _merged(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    """first, then the notes of second that first lacks."""
    return (*first, *(note for note in second if note not in first))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
