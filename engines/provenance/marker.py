"""What every output frame gets after rendering and before encoding: the mark, and the label.

    instance_id (24 bits, one per install) + stream_mark(session or job id) (40 bits)
        -> make_payload -> WatermarkEmbedder
    rendered (H, W, 3) uint8 --[label, if asked]--> --[invisible mark, unless off]--> encoder

The instance id is random, made once and kept in the provenance state folder
(`instance_id` there), unless the operator sets one: a hostname hash would put
a guessable name into every video. The stream part is a hash of the session or
job id, never the id itself: a live session id is a capability, and with the
public key the mark can be read by anyone. The server logs which session or job
had which mark.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engines.types import Frame

from .label import LABEL_TEXT, LabelOverlay
from .watermark import INSTANCE_BITS, SESSION_BITS, WatermarkConfig, WatermarkEmbedder, make_payload

__all__ = [
    "FrameMarker",
    "ProvenanceConfig",
    "format_mark",
    "instance_id_of",
    "parse_instance_id",
    "stream_mark",
    "with_instance_id",
]

logger = logging.getLogger(__name__)

_INSTANCE_FILE = "instance_id"


@dataclass(frozen=True)
class ProvenanceConfig:
    """watermark: the invisible mark on every frame (turn it off only on purpose);
    visible_label: an "AI-generated" label in the bottom-right corner;
    instance_id: this install's 24-bit id, None to use (or make) the one kept in
    the state folder; signing_cert / signing_key: PEM files that sign the C2PA
    manifest of MP4s, None for the development certificate made on first use;
    mark: the invisible mark's key and strength (the public key unless the operator
    sets a private one: `mark.key_kind`)."""

    watermark: bool = True
    visible_label: bool = False
    label_text: str = LABEL_TEXT
    instance_id: int | None = None
    signing_cert: Path | None = None
    signing_key: Path | None = None
    mark: WatermarkConfig = field(default_factory=WatermarkConfig)

    def __post_init__(self) -> None:
        if self.instance_id is not None and not 0 <= self.instance_id < 1 << INSTANCE_BITS:
            raise ValueError(
                f"instance_id must be 0-{(1 << INSTANCE_BITS) - 1:x} (6 hex digits), "
                f"got {self.instance_id:x}"
            )
        if (self.signing_cert is None) != (self.signing_key is None):
            raise ValueError(
                "give both the C2PA signing certificate and its key, or neither "
                "(neither: a development certificate is made)"
            )


def parse_instance_id(text: str) -> int:
    """'3fa2c1' (hex, as health and verify print it) -> the 24-bit instance id."""
    try:
        value = int(text.strip(), 16)
    except ValueError:
        raise ValueError(f"the instance id is up to 6 hex digits, got {text!r}") from None
    if not 0 <= value < 1 << INSTANCE_BITS:
        raise ValueError(f"the instance id is up to 6 hex digits, got {text!r}")
    return value


def stream_mark(stream_id: str) -> int:
    """The 40 bits of a session or job id that its frames carry: a hash, not the id."""
    digest = hashlib.sha256(b"facecast-stream|" + stream_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SESSION_BITS)


def format_mark(instance_id: int, mark: int) -> str:
    """'3fa2c1-0a1b2c3d4e': how logs, the API and `facecast verify` write a payload."""
    return f"{instance_id:06x}-{mark:010x}"


def with_instance_id(config: ProvenanceConfig, state_dir: Path) -> ProvenanceConfig:
    """`config` with its instance id resolved (see instance_id_of)."""
    return replace(config, instance_id=instance_id_of(config, state_dir))


def instance_id_of(config: ProvenanceConfig, state_dir: Path) -> int:
    """The configured instance id, else the one kept in `state_dir`, made on first use."""
    if config.instance_id is not None:
        return config.instance_id
    path = state_dir / _INSTANCE_FILE
    try:
        return parse_instance_id(path.read_text())
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise ValueError(f"{path} is damaged ({exc}); delete it to make a new id") from None
    value = secrets.randbits(INSTANCE_BITS)
    state_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{_INSTANCE_FILE}.{os.getpid()}")
    partial.write_text(f"{value:06x}\n")
    try:
        # A second process that got there first wins; both then read its id.
        os.link(partial, path)
    except FileExistsError:
        value = parse_instance_id(path.read_text())
    finally:
        partial.unlink(missing_ok=True)
    logger.info("made provenance instance id %06x in %s", value, path)
    return value


class FrameMarker:
    """Marks the frames of one session or job (`stream_id`); mark() runs on the render thread.

    `config.instance_id` must be resolved (with_instance_id)."""

    def __init__(self, config: ProvenanceConfig, stream_id: str) -> None:
        if config.instance_id is None:
            raise ValueError(
                "ProvenanceConfig.instance_id is unset: resolve it with instance_id_of() first"
            )
        self.config = config
        self.instance_id = config.instance_id
        self.mark_value = stream_mark(stream_id)
        self.payload = make_payload(config.instance_id, self.mark_value)
        self._embedder = WatermarkEmbedder(self.payload, config.mark) if config.watermark else None
        self._label = LabelOverlay(config.label_text) if config.visible_label else None

    @property
    def mark_id(self) -> str:
        """The payload as `facecast verify` prints it, whether or not frames carry it."""
        return format_mark(self.instance_id, self.mark_value)

    @property
    def active(self) -> bool:
        return self._embedder is not None or self._label is not None

    def mark(self, rgb: np.ndarray, in_place: bool = False) -> np.ndarray:
        """(H, W, 3) uint8 rendered frame -> the frame to encode. `in_place`: the caller owns
        `rgb` and it may be overwritten (then it is, when it is C-contiguous; the renderer's
        frames are channel-planar views, which the mark turns into a packed new array that
        the encoder would otherwise make). Use the returned array either way."""
        if self._label is not None:
            rgb = self._label.draw(rgb, in_place)
            in_place = True  # the label made a copy if one was needed
        if self._embedder is not None:
            reuse = in_place and rgb.flags.c_contiguous and rgb.flags.writeable
            rgb = self._embedder.embed(rgb, out=rgb if reuse else None)
        return rgb

    def mark_frames(self, frames: list[Frame]) -> list[Frame]:
        """The Pipeline's frames, marked (each owns its pixels: marked in place where it
        can be); frames not drawn (rgb None) pass as they are."""
        if not self.active:
            return frames
        return [
            f if f.rgb is None else replace(f, rgb=self.mark(f.rgb, in_place=True)) for f in frames
        ]
