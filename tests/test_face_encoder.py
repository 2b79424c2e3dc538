"""FaceEncoder: real portraits prepare and cache; every kind of bad image gets a clear error."""

from __future__ import annotations

import io
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from engines.errors import FaceTooSmallError, InvalidImageError, NoFaceError, NotAFaceError
from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from tests.portraits import SHARED_PORTRAITS, portrait_path


@pytest.fixture()
def encoder(tmp_path: Path) -> FaceEncoder:
    return FaceEncoder(FaceEncoderConfig(cache_dir=tmp_path / "cache"))


def _portrait() -> Image.Image:
    return Image.open(portrait_path()).convert("RGB")


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def test_builtin_portrait_prepares_everything_the_renderer_needs(encoder: FaceEncoder) -> None:
    avatar = encoder.encode(None)
    size = avatar.image_size
    assert avatar.image.shape == (size, size, 3) and avatar.background.shape == (size, size, 3)
    assert avatar.landmarks.shape == (478, 3)
    lm = avatar.landmarks
    # The face sits inside the crop, the irises inside their eyes.
    assert 0.25 * size < lm[1, 0] < 0.75 * size and 0.2 * size < lm[1, 1] < 0.8 * size
    assert lm[33, 0] < lm[468, 0] < lm[133, 0] and lm[362, 0] < lm[473, 0] < lm[263, 0]
    nose = lm[1, :2].astype(int)
    assert avatar.person_mask[nose[1], nose[0]] > 0.9 and avatar.person_mask[5, 5] < 0.5
    assert avatar.mesh.bind_weights.shape == (avatar.mesh.field_size**2, 3)
    assert np.allclose(avatar.mesh.bind_weights.sum(1), 1.0, atol=1e-4)
    # La Velata turns to her right (our -yaw) and has her mouth closed.
    assert avatar.pose[0] < -0.1
    assert avatar.expression["jawOpen"] < 0.1


def test_second_encode_is_a_cache_hit(encoder: FaceEncoder) -> None:
    first = encoder.encode(portrait_path())
    start = time.perf_counter()
    second = encoder.encode(portrait_path())
    assert time.perf_counter() - start < 0.5
    assert second.content_hash == first.content_hash
    assert np.array_equal(second.landmarks, first.landmarks)
    assert len(list(encoder.cache_dir.glob("*.npz"))) == 1


def test_corrupt_cache_entry_is_rebuilt(encoder: FaceEncoder) -> None:
    first = encoder.encode(None)
    entry = next(encoder.cache_dir.glob("*.npz"))
    entry.write_bytes(b"not a zip")
    again = encoder.encode(None)
    assert np.array_equal(again.landmarks, first.landmarks)


@pytest.mark.skipif(
    not (SHARED_PORTRAITS / "woman_black_dress.jpg").exists(), reason="shared portraits absent"
)
def test_second_shipped_portrait(encoder: FaceEncoder) -> None:
    avatar = encoder.encode(SHARED_PORTRAITS / "woman_black_dress.jpg")
    assert avatar.notes == ()
    assert avatar.landmarks.shape == (478, 3)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_other_colour_modes_work(encoder: FaceEncoder, tmp_path: Path, mode: str) -> None:
    image = _portrait().convert(mode)
    suffix = "jpg" if mode in ("L", "CMYK") else "png"
    avatar = encoder.encode(_save(image, tmp_path / f"p.{suffix}"))
    assert avatar.image.shape[2] == 3


def test_exif_rotated_photo_is_turned_upright(encoder: FaceEncoder, tmp_path: Path) -> None:
    image = _portrait().rotate(90, expand=True)  # stored sideways, as a phone camera does
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to view
    path = _save(image, tmp_path / "sideways.jpg", exif=exif.tobytes())
    upright = encoder.encode(portrait_path())
    rotated = encoder.encode(path)
    # Eyes level, as in the upright portrait, only possible if the EXIF turn was applied.
    assert abs(rotated.pose[2] - upright.pose[2]) < 0.1


def test_huge_image_is_downscaled(encoder: FaceEncoder, tmp_path: Path) -> None:
    huge = _portrait().resize((5620, 10000))
    avatar = encoder.encode(_save(huge, tmp_path / "huge.jpg", quality=80))
    assert any("downscaled" in note for note in avatar.notes)


def test_two_faces_takes_the_largest_and_says_so(encoder: FaceEncoder, tmp_path: Path) -> None:
    big = _portrait()
    small = big.resize((big.width // 2, big.height // 2))
    canvas = Image.new("RGB", (big.width + small.width, big.height), (40, 30, 20))
    canvas.paste(big, (0, 0))
    canvas.paste(small, (big.width, big.height // 4))
    avatar = encoder.encode(_save(canvas, tmp_path / "two.jpg"))
    assert any("2 faces" in note and "largest" in note for note in avatar.notes)
    x0, _, side = avatar.crop_box
    assert x0 + side / 2 < big.width, "the crop should be centred on the larger face"


def test_no_face_is_refused(encoder: FaceEncoder, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sky = np.linspace(0, 255, 512)[None, :, None] * np.ones((512, 1, 3))
    image = np.clip(sky + rng.normal(0, 8, sky.shape), 0, 255).astype(np.uint8)
    path = _save(Image.fromarray(image), tmp_path / "landscape.png")
    with pytest.raises(NoFaceError, match="no face found"):
        encoder.encode(path)


def test_cartoon_is_refused_as_not_a_human_face(encoder: FaceEncoder, tmp_path: Path) -> None:
    cartoon = np.full((512, 512, 3), 230, np.uint8)
    cv2.circle(cartoon, (256, 256), 150, (240, 200, 60), -1)
    cv2.circle(cartoon, (200, 220), 20, (0, 0, 0), -1)
    cv2.circle(cartoon, (312, 220), 20, (0, 0, 0), -1)
    cv2.ellipse(cartoon, (256, 300), (70, 40), 0, 0, 180, (0, 0, 0), 8)
    with pytest.raises((NotAFaceError, NoFaceError), match="face"):
        encoder.encode(_save(Image.fromarray(cartoon), tmp_path / "smiley.png"))


def test_tiny_face_is_refused_with_advice(encoder: FaceEncoder, tmp_path: Path) -> None:
    small = _portrait().resize((95, 169))
    canvas = Image.new("RGB", (400, 400), (60, 45, 30))
    canvas.paste(small, (150, 100))
    with pytest.raises((FaceTooSmallError, NoFaceError), match="larger|closer|clearly visible"):
        encoder.encode(_save(canvas, tmp_path / "far.png"))


def test_corrupt_and_non_image_files(encoder: FaceEncoder, tmp_path: Path) -> None:
    data = io.BytesIO()
    _portrait().save(data, "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data.getvalue()[: len(data.getvalue()) // 3])
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    for path in (truncated, text):
        with pytest.raises(InvalidImageError):
            encoder.encode(path)
    assert not list((tmp_path / "cache").glob("*.npz")) if (tmp_path / "cache").exists() else True
