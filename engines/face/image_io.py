"""Robust portrait loading: any file a user uploads -> an upright 8-bit RGB array.

One verb, `load_portrait`. It reads the header first and refuses decompression
bombs before any pixel is decoded, asks the JPEG decoder for a reduced-scale
decode when the image is far larger than needed, forces a full decode so a
truncated upload fails here rather than later as a grey face, applies the EXIF
orientation, converts every Pillow mode to RGB (alpha flattened over a
background, 16-bit and float data rescaled instead of clipped) and downscales
so the longest side fits `max_side`. Every change is recorded as a
human-readable note so the UI can tell the user what happened to their image.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from ..errors import InvalidImageError

__all__ = [
    "PortraitImage",
    "load_portrait",
    "MIN_SIDE",
    "MAX_PIXELS",
    "MAX_JPEG_PIXELS",
    "DEFAULT_BACKGROUND",
    "LUMA_WEIGHTS",
]

logger = logging.getLogger(__name__)

# Rec. 601 luminance of RGB: what "brightness" means wherever a portrait is measured.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
MIN_SIDE = 64  # below this on the shorter side there is no room for a usable face
# Declared width * height above which we refuse to decode. A portrait needs about
# 2048 px on its long side; JPEG decodes at 1/2-1/8 scale (draft), so a 64 MP phone
# photo costs ~0.3 s and ~150 MB. Other formats decode at full size: 24 MP (a DSLR
# frame) costs ~1 s and 200-400 MB, a 99 MP 16-bit PNG would take 10 s and 3.4 GB
# (benchmarks/results/bench_abuse.md).
MAX_PIXELS = 24_000_000
MAX_JPEG_PIXELS = 64_000_000
_SCALE_ROWS = 512  # rows per block when rescaling high-bit-depth data: bounded temporaries
DEFAULT_BACKGROUND = (255, 255, 255)  # what transparent areas become

# What Pillow raises while parsing or decoding a damaged file. Listed explicitly
# (no bare except) so programming errors still surface as themselves.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)

# EXIF orientations that swap width and height (transpose/rotate 90/transverse/rotate 270).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class PortraitImage:
    """A decoded, upright portrait.

    rgb: uint8 array of shape (H, W, 3), longest side <= the max_side it was loaded with.
    notes: what was done to the file on the way, in order, for the user to read.
    source_size: (width, height) of the full-resolution image after EXIF
        rotation, before any downscaling.
    """

    rgb: np.ndarray
    notes: tuple[str, ...]
    source_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of `rgb`."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


def load_portrait(
    source: str | Path | bytes,
    max_side: int = 2048,
    *,
    max_pixels: int | None = None,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
) -> PortraitImage:
    """Decode a portrait from a path or the file's bytes.

    Returns a PortraitImage whose rgb is uint8 (H, W, 3), upright, with
    max(H, W) <= max_side. Raises InvalidImageError when the file is missing,
    empty, not an image, damaged, too large to decode safely (more than
    max_pixels declared; by default MAX_JPEG_PIXELS for JPEG, MAX_PIXELS for
    every other format) or too small to hold a face (shorter side < MIN_SIDE).
    """
    if max_side < MIN_SIDE:
        raise ValueError(f"max_side must be >= {MIN_SIDE}, got {max_side}")
    name, stream = _open_source(source)
    with stream, _open_image(stream, name, max_pixels) as im:
        notes: list[str] = []
        if getattr(im, "is_animated", False):
            # Image.open leaves the reader on frame 0; the rest is never decoded.
            frames = getattr(im, "n_frames", "several")
            notes.append(f"animated image with {frames} frames; using the first frame")
        declared_size = im.size  # before draft() shrinks it
        _request_draft(im, max_side, notes)
        _decode_fully(im, name)
        orientation = _exif_orientation(im)
        source_size = _upright(declared_size, orientation)
        upright = _apply_exif_orientation(im, orientation, notes)
        rgb_im = _to_rgb(upright, background, notes)
    rgb_im = _fit_within(rgb_im, max_side, source_size, notes)
    _check_min_side(rgb_im, source_size, name)
    rgb = np.asarray(rgb_im, dtype=np.uint8).copy()  # HxWx3, owns its memory
    for note in notes:
        logger.info("%s: %s", name, note)
    return PortraitImage(rgb=rgb, notes=tuple(notes), source_size=source_size)


def _open_source(source: str | Path | bytes) -> tuple[str, BinaryIO]:
    """Turn the caller's source into (display name, open binary stream)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise InvalidImageError("The image data is empty (0 bytes). Upload the file again.")
        return "uploaded image", io.BytesIO(data)
    path = Path(source)
    name = path.name or str(path)
    if not path.exists():
        raise InvalidImageError(f"Image file not found: {path}. Check the path and try again.")
    if not path.is_file():
        raise InvalidImageError(f"{path} is not a file. Give the path of a JPEG, PNG or WebP.")
    if path.stat().st_size == 0:
        raise InvalidImageError(f"{name} is empty (0 bytes). Upload the file again.")
    try:
        return name, path.open("rb")
    except OSError as e:
        raise InvalidImageError(f"Cannot read {path}: {e.strerror}. Check its permissions.") from e


def _open_image(stream: BinaryIO, name: str, max_pixels: int | None) -> Image.Image:
    """Parse the header only and refuse bombs before any pixel is decoded."""
    try:
        # We enforce our own limit just below, so Pillow's warning for
        # 89-179 MP would only be noise. catch_warnings is process-global; a
        # race with another thread can at worst leave this one warning muted.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(stream)
    except Image.DecompressionBombError as e:
        raise InvalidImageError(
            f"{name} declares more pixels than can be decoded safely ({e}). "
            f"Downscale it to at most {(max_pixels or MAX_PIXELS) // 1_000_000} megapixels "
            "and try again."
        ) from e
    except _DECODE_ERRORS as e:
        raise InvalidImageError(
            f"{name} is not an image we can read ({_sniff(stream)}). "
            "Use a JPEG, PNG, WebP, GIF, BMP or TIFF photo of a face."
        ) from e
    width, height = im.size
    if max_pixels is None:
        max_pixels = MAX_JPEG_PIXELS if im.format == "JPEG" else MAX_PIXELS
    if width * height > max_pixels:
        kind = "" if im.format == "JPEG" else f"{im.format or 'this'} images "
        im.close()
        raise InvalidImageError(
            f"{name} declares {width}x{height} = {width * height / 1e6:.0f} megapixels, "
            f"over the limit of {max_pixels / 1e6:.0f} megapixels for {kind or 'JPEG'}"
            " (it could be a decompression bomb). A portrait needs about 2048 px on its "
            "long side: downscale the image (or save it as JPEG) and try again."
        )
    return im


def _sniff(stream: BinaryIO) -> str:
    """Best guess at what a non-image file is, for the error message."""
    stream.seek(0)
    head = stream.read(64)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "it looks like WAV audio"
    if head[:3] == b"ID3" or head[:4] in (b"fLaC", b"OggS"):
        return "it looks like audio"
    if head[4:8] == b"ftyp":
        return "it looks like an MP4/MOV video"
    if head[:5] == b"%PDF-":
        return "it looks like a PDF document"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised format"
    return "it looks like a text file"


def _exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1..8), 1 when absent or unreadable."""
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS as e:  # a malformed EXIF block must not sink a good image
        logger.warning("ignoring unreadable EXIF block: %s", e)
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _upright(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) once the EXIF orientation is applied."""
    width, height = size
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def _request_draft(im: Image.Image, max_side: int, notes: list[str]) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers max_side.

    A 9000x6000 JPEG then decodes to ~1125x750 blocks of DCT work instead of
    54 MP; the exact LANCZOS resize to max_side happens afterwards.
    """
    width, height = im.size
    if im.format != "JPEG" or max(width, height) <= max_side:
        return
    scale = max_side / max(width, height)
    wanted = (max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale))))
    before = im.size
    im.draft(None, wanted)  # mode None: keep the file's colour model (CMYK stays CMYK)
    if im.size != before:
        notes.append(
            f"decoded JPEG at reduced scale {im.size[0]}x{im.size[1]} "
            f"(from {before[0]}x{before[1]}) to save time and memory"
        )


def _decode_fully(im: Image.Image, name: str) -> None:
    """Decode every pixel now; Pillow is lazy and would hide truncation until later."""
    try:
        im.load()
    except _DECODE_ERRORS as e:
        raise InvalidImageError(
            f"{name} is damaged or incomplete ({e}). "
            "Upload the file again or re-export it from an image editor."
        ) from e


def _apply_exif_orientation(im: Image.Image, orientation: int, notes: list[str]) -> Image.Image:
    """Rotate/flip the pixels as the camera's EXIF orientation tag says."""
    if orientation == 1:
        return im
    upright = ImageOps.exif_transpose(im)
    notes.append(f"rotated per EXIF orientation {orientation}")
    return upright


def _to_rgb(im: Image.Image, background: tuple[int, int, int], notes: list[str]) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, noting what was converted."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's convert() clips these to 0..255 (a white image); rescale instead.
        gray, how = _scale_to_8bit(np.asarray(im))
        notes.append(f"converted {mode} ({how}) to 8-bit RGB")
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        notes.append("converted from palette")
    elif mode == "CMYK":
        notes.append("converted from CMYK")
        return im.convert("RGB")
    elif mode in ("1", "L"):
        what = "1-bit black and white" if mode == "1" else "grayscale"
        notes.append(f"converted from {what}")
        return im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        return _flatten_alpha(im.convert("RGBA"), background, notes)
    if im.mode != "RGB":
        notes.append(f"converted from {im.mode}")
        im = im.convert("RGB")
    return im


def _scale_to_8bit(values: np.ndarray) -> tuple[np.ndarray, str]:
    """Map high-bit-depth or float samples of shape (H, W) to uint8 (H, W).

    The file does not say which range was meant, so pick the first one the
    data fits: [0, 1] floats, 8-bit, 16-bit, otherwise its own min..max.
    Works in blocks of rows so the float temporaries stay a few MB whatever
    the image size (a whole-image float64 copy was 8 bytes per pixel).
    """
    is_float = values.dtype.kind == "f"
    lo, hi = _finite_range(values)
    if is_float and lo >= 0.0 and hi <= 1.0:
        offset, gain, how = 0.0, 255.0, "float 0..1"
    elif is_float and lo >= 0.0 and hi <= 255.0:
        offset, gain, how = 0.0, 1.0, "float 0..255"
    elif lo >= 0.0 and hi <= 65535.0:
        offset, gain, how = 0.0, 1.0 / 257.0, "16-bit"  # 65535 / 255 == 257: full to full
    else:
        offset, gain, how = lo, 255.0 / max(hi - lo, 1e-12), f"range {lo:g}..{hi:g}"
    out = np.empty(values.shape, dtype=np.uint8)
    for top in range(0, values.shape[0], _SCALE_ROWS):
        block = values[top : top + _SCALE_ROWS].astype(np.float64)
        block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
        out[top : top + _SCALE_ROWS] = np.clip(np.rint((block - offset) * gain), 0, 255)
    return out, how


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) over the finite samples, 0 for non-finite ones, block by block."""
    lo, hi = np.inf, -np.inf
    for top in range(0, values.shape[0], _SCALE_ROWS):
        block = values[top : top + _SCALE_ROWS]
        if block.dtype.kind == "f":
            block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return lo, hi


def _flatten_alpha(
    rgba: Image.Image, background: tuple[int, int, int], notes: list[str]
) -> Image.Image:
    """Composite an RGBA image over a solid background; opaque images pass unchanged."""
    alpha_min, _ = rgba.getchannel("A").getextrema()
    if alpha_min == 255:
        return rgba.convert("RGB")
    base = Image.new("RGBA", rgba.size, (*background, 255))
    notes.append(f"flattened alpha over {_colour_name(background)}")
    return Image.alpha_composite(base, rgba).convert("RGB")


def _colour_name(rgb: tuple[int, int, int]) -> str:
    names = {(255, 255, 255): "white", (0, 0, 0): "black"}
    return names.get((rgb[0], rgb[1], rgb[2]), f"rgb{tuple(rgb)}")


def _fit_within(
    im: Image.Image, max_side: int, source_size: tuple[int, int], notes: list[str]
) -> Image.Image:
    """Downscale so the longest side is max_side; never upscale."""
    width, height = im.size
    if max(width, height) <= max_side:
        return im
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # reducing_gap: integer box-reduce first, LANCZOS for the last factor < 2;
    # same look as a full LANCZOS at a fraction of the cost.
    out = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    notes.append(f"downscaled from {source_size[0]}x{source_size[1]} to {size[0]}x{size[1]}")
    return out


def _check_min_side(im: Image.Image, source_size: tuple[int, int], name: str) -> None:
    width, height = im.size
    if min(width, height) < MIN_SIDE:
        raise InvalidImageError(
            f"{name} is too small to hold a face: {width}x{height} "
            f"(from {source_size[0]}x{source_size[1]}); the shorter side must be at least "
            f"{MIN_SIDE} px. Use a larger photo, ideally 512 px or more."
        )
