"""load_portrait on every kind of file a user might upload, all made from the shipped portrait."""

from __future__ import annotations

import io
import struct
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engines.errors import InvalidImageError
from engines.face.image_io import MIN_SIDE, PortraitImage, load_portrait

ASSET = Path(__file__).resolve().parents[1] / "engines" / "assets" / "la_velata.jpg"


@pytest.fixture(scope="module")
def original() -> Image.Image:
    with Image.open(ASSET) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def original_rgb(original: Image.Image) -> np.ndarray:
    return np.asarray(original)


def _encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature, an IHDR declaring width x height and IEND: no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _assert_rgb(p: PortraitImage, width: int, height: int) -> None:
    assert p.rgb.dtype == np.uint8
    assert p.rgb.shape == (height, width, 3)


# --- images that load -------------------------------------------------------


def test_plain_jpeg_path_and_bytes_agree_and_match_pillow(original_rgb: np.ndarray) -> None:
    from_path = load_portrait(ASSET)
    from_str = load_portrait(str(ASSET))
    from_bytes = load_portrait(ASSET.read_bytes())
    _assert_rgb(from_path, 562, 1000)
    np.testing.assert_array_equal(from_path.rgb, original_rgb)
    np.testing.assert_array_equal(from_bytes.rgb, original_rgb)
    np.testing.assert_array_equal(from_str.rgb, original_rgb)
    assert from_path.notes == ()
    assert from_path.source_size == (562, 1000)
    assert from_path.size == (562, 1000)


def test_grayscale_becomes_three_equal_channels(original: Image.Image) -> None:
    gray = original.convert("L")
    p = load_portrait(_encode(gray, "PNG"))
    _assert_rgb(p, 562, 1000)
    for c in range(3):
        np.testing.assert_array_equal(p.rgb[..., c], np.asarray(gray))
    assert "converted from grayscale" in p.notes


def test_one_bit_image_is_black_and_white(original: Image.Image) -> None:
    p = load_portrait(_encode(original.convert("1"), "PNG"))
    _assert_rgb(p, 562, 1000)
    assert set(np.unique(p.rgb)) <= {0, 255}
    assert len(np.unique(p.rgb)) == 2
    assert "converted from 1-bit black and white" in p.notes


@pytest.mark.parametrize(("background", "name"), [((255, 255, 255), "white"), ((0, 0, 0), "black")])
def test_rgba_transparent_areas_flattened_over_background(
    original: Image.Image, original_rgb: np.ndarray, background: tuple[int, int, int], name: str
) -> None:
    rgba = original.convert("RGBA")
    alpha = np.full((1000, 562), 255, np.uint8)
    alpha[:, :200] = 0  # fully transparent left band
    alpha[:, 200:300] = 128  # half transparent band
    rgba.putalpha(Image.fromarray(alpha))
    p = load_portrait(_encode(rgba, "PNG"), background=background)
    _assert_rgb(p, 562, 1000)
    assert (p.rgb[:, :200] == np.array(background, np.uint8)).all()
    np.testing.assert_array_equal(p.rgb[:, 300:], original_rgb[:, 300:])
    half = (original_rgb[:, 200:300].astype(np.float64) + np.array(background)) / 2
    assert _mean_abs_diff(p.rgb[:, 200:300], half) < 1.0
    assert f"flattened alpha over {name}" in p.notes


def test_opaque_rgba_and_la_are_not_reported_as_flattened(original: Image.Image) -> None:
    p = load_portrait(_encode(original.convert("RGBA"), "PNG"))
    assert not any("alpha" in n for n in p.notes)
    la = load_portrait(_encode(original.convert("LA"), "PNG"))
    _assert_rgb(la, 562, 1000)
    np.testing.assert_array_equal(la.rgb[..., 0], np.asarray(original.convert("L")))


def test_palette_image_with_transparency(original: Image.Image, original_rgb: np.ndarray) -> None:
    pal = original.quantize(colors=64)
    plain = load_portrait(_encode(pal, "PNG"))
    _assert_rgb(plain, 562, 1000)
    assert _mean_abs_diff(plain.rgb, original_rgb) < 8.0
    assert "converted from palette" in plain.notes

    indices = np.asarray(pal).copy()
    indices[:100, :] = 63  # top band all one palette entry, declared transparent below
    pal_t = Image.fromarray(indices, mode="P")
    pal_t.putpalette(pal.getpalette())
    p = load_portrait(_encode(pal_t, "PNG", transparency=63))
    assert (p.rgb[:100] == 255).all()
    assert "flattened alpha over white" in p.notes


def test_cmyk_jpeg_converted_to_matching_rgb(
    original: Image.Image, original_rgb: np.ndarray
) -> None:
    data = _encode(original.convert("CMYK"), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "CMYK"
    p = load_portrait(data)
    _assert_rgb(p, 562, 1000)
    assert _mean_abs_diff(p.rgb, original_rgb) < 3.0
    assert "converted from CMYK" in p.notes


def test_exif_orientation_6_rotated_back(original: Image.Image, original_rgb: np.ndarray) -> None:
    # Orientation 6 means "rotate 90 degrees clockwise to display", so a camera
    # stores the upright picture turned 90 degrees counter-clockwise.
    stored = original.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = load_portrait(_encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    _assert_rgb(p, 562, 1000)
    assert _mean_abs_diff(p.rgb, original_rgb) < 3.0
    # The same comparison tells a wrong rotation apart.
    assert _mean_abs_diff(p.rgb[::-1, ::-1], original_rgb) > 20.0
    assert "rotated per EXIF orientation 6" in p.notes
    assert p.source_size == (562, 1000)


def test_16bit_png_scaled_not_clipped(original: Image.Image) -> None:
    gray8 = np.asarray(original.convert("L"))
    gray16 = gray8.astype(np.uint16) * 257
    data = _encode(Image.fromarray(gray16), "PNG")
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode.startswith("I")
    p = load_portrait(data)
    _assert_rgb(p, 562, 1000)
    np.testing.assert_array_equal(p.rgb[..., 1], gray8)
    assert any("16-bit" in n for n in p.notes)


def test_float_tiff_in_unit_range(original: Image.Image) -> None:
    gray8 = np.asarray(original.convert("L"))
    data = _encode(Image.fromarray(gray8.astype(np.float32) / 255.0), "TIFF")
    p = load_portrait(data)
    _assert_rgb(p, 562, 1000)
    assert np.abs(p.rgb[..., 0].astype(int) - gray8).max() <= 1
    assert any("float 0..1" in n for n in p.notes)


def test_huge_jpeg_drafted_and_downscaled(original: Image.Image) -> None:
    huge = original.resize((9000, 6000), Image.Resampling.BILINEAR)
    p = load_portrait(_encode(huge, "JPEG", quality=85))
    _assert_rgb(p, 2048, 1365)
    assert p.source_size == (9000, 6000)
    assert "downscaled from 9000x6000 to 2048x1365" in p.notes
    assert any(n.startswith("decoded JPEG at reduced scale") for n in p.notes)
    reference = np.asarray(original.resize((2048, 1365), Image.Resampling.LANCZOS))
    assert _mean_abs_diff(p.rgb, reference) < 4.0


def test_large_png_downscaled_to_max_side(original: Image.Image) -> None:
    big = original.resize((1124, 2000), Image.Resampling.BILINEAR)
    p = load_portrait(_encode(big, "PNG", compress_level=1), max_side=500)
    _assert_rgb(p, 281, 500)
    assert p.notes == ("downscaled from 1124x2000 to 281x500",)


def test_animated_gif_first_frame(original: Image.Image, original_rgb: np.ndarray) -> None:
    frames = [original.quantize(colors=255).convert("RGB")]
    frames += [Image.new("RGB", original.size, c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    p = load_portrait(buf.getvalue())
    _assert_rgb(p, 562, 1000)
    assert _mean_abs_diff(p.rgb, original_rgb) < 10.0
    assert "animated image with 3 frames; using the first frame" in p.notes


def test_animated_webp_first_frame(original: Image.Image, original_rgb: np.ndarray) -> None:
    frames = [original, Image.new("RGB", original.size, (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], quality=90)
    p = load_portrait(buf.getvalue())
    assert _mean_abs_diff(p.rgb, original_rgb) < 6.0
    assert "animated image with 2 frames; using the first frame" in p.notes


def test_min_side_boundary_loads(original: Image.Image) -> None:
    p = load_portrait(_encode(original.resize((MIN_SIDE, 100)), "PNG"))
    _assert_rgb(p, MIN_SIDE, 100)


# --- images that must be refused ---------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="not found"):
        load_portrait(tmp_path / "nope.jpg")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="is not a file"):
        load_portrait(tmp_path)


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImageError, match=r"empty \(0 bytes\)"):
        load_portrait(empty)
    with pytest.raises(InvalidImageError, match=r"empty \(0 bytes\)"):
        load_portrait(b"")


def test_text_file(tmp_path: Path) -> None:
    text = tmp_path / "face.jpg"
    text.write_text("this is not a picture of a face\n" * 10)
    with pytest.raises(InvalidImageError, match="not an image.*text file") as info:
        load_portrait(text)
    assert "face.jpg" in str(info.value)
    assert "JPEG, PNG" in str(info.value)


def test_wav_file() -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(1600, np.int16).tobytes())
    with pytest.raises(InvalidImageError, match="not an image.*WAV audio"):
        load_portrait(buf.getvalue())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(original: Image.Image, fmt: str, tmp_path: Path) -> None:
    data = _encode(original, fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InvalidImageError, match="damaged or incomplete"):
        load_portrait(cut)


def test_bomb_over_pillows_hard_limit_refused_before_decoding() -> None:
    # 400 MP: Pillow itself raises DecompressionBombError while parsing the header.
    with pytest.raises(InvalidImageError, match="more pixels than can be decoded safely"):
        load_portrait(_png_header(20_000, 20_000))


def test_bomb_over_our_limit_refused_before_decoding() -> None:
    # 120 MP: under Pillow's hard limit, over ours. The file has no pixel data
    # at all, so reaching the decoder would give "damaged", not this message.
    with pytest.raises(InvalidImageError, match="12000x10000 = 120 megapixels") as info:
        load_portrait(_png_header(12_000, 10_000))
    assert "decompression bomb" in str(info.value)


def test_max_pixels_parameter() -> None:
    with pytest.raises(InvalidImageError, match="over the limit of 0 megapixels"):
        load_portrait(ASSET, max_pixels=100_000)


@pytest.mark.parametrize("size", [(40, 40), (63, 500), (500, 63)])
def test_too_small_for_a_face(original: Image.Image, size: tuple[int, int]) -> None:
    with pytest.raises(InvalidImageError, match="too small to hold a face") as info:
        load_portrait(_encode(original.resize(size), "PNG"))
    assert f"{size[0]}x{size[1]}" in str(info.value)


def test_extreme_aspect_too_small_after_downscale(original: Image.Image) -> None:
    strip = original.resize((5000, 100))
    with pytest.raises(InvalidImageError, match="2048x41 \\(from 5000x100\\)"):
        load_portrait(_encode(strip, "PNG", compress_level=1))


def test_max_side_below_min_side_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_side"):
        load_portrait(ASSET, max_side=32)


def test_high_bit_depth_is_rescaled_in_blocks_exactly_as_a_whole() -> None:
    from engines.face.image_io import _scale_to_8bit

    rng = np.random.default_rng(0)
    sixteen = rng.integers(0, 65536, size=(1100, 37), dtype=np.uint16)
    scaled, how = _scale_to_8bit(sixteen)
    assert how == "16-bit"
    expected = np.clip(np.rint(sixteen.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(scaled, expected)
    floats = rng.normal(size=(1030, 5)).astype(np.float32) * 1000
    floats[3, 2], floats[700, 1] = np.nan, np.inf
    scaled, how = _scale_to_8bit(floats)
    assert how.startswith("range")
    clean = np.nan_to_num(floats.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = clean.min(), clean.max()
    expected = np.clip(np.rint((clean - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(scaled, expected)


def test_formats_that_decode_at_full_size_have_a_lower_pixel_cap() -> None:
    # 30 MP: a JPEG of that size decodes at reduced scale; a PNG would be decoded whole.
    with pytest.raises(InvalidImageError, match="over the limit of 24 megapixels for PNG"):
        load_portrait(_png_header(6000, 5000))
