"""Renderer realism on portraits the project was not tuned on (issue 13).

Portraits are derived on the fly from the built-in painting (crops that put
the face near an edge or give the picture an extreme aspect, grayscale),
and every check reads the frames themselves.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.face.avatar import Avatar
from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.face.landmarks import detect_faces
from tests.portraits import portrait_path, streak_fraction


def _png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def painting() -> np.ndarray:
    return cv2.imread(str(portrait_path()))[..., ::-1].copy()


@pytest.fixture(scope="module")
def face_box(painting: np.ndarray) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = detect_faces(painting)[0].box
    return int(x0), int(y0), int(x1), int(y1)


def _awkward_crops(painting: np.ndarray, box: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    """The painting cut so that a centred square crop would leave the picture."""
    x0, y0, x1, y1 = box
    cx, cy, width = (x0 + x1) // 2, (y0 + y1) // 2, x1 - x0
    return {
        "face_at_left_edge": painting[:, max(0, cx - int(0.7 * width)) :],
        "wide_strip": painting[max(0, cy - width) : cy + width, :],
        "tall_strip": painting[:, max(0, cx - int(0.9 * width)) : cx + int(0.9 * width)],
        "face_fills_picture": painting[
            max(0, cy - int(0.8 * width)) : cy + int(0.8 * width),
            max(0, cx - int(0.8 * width)) : cx + int(0.8 * width),
        ],
    }


@pytest.fixture(scope="module")
def awkward_avatars(
    painting: np.ndarray, face_box: tuple[int, int, int, int], tmp_path_factory
) -> dict[str, tuple[np.ndarray, Avatar]]:
    encoder = FaceEncoder(FaceEncoderConfig(cache_dir=tmp_path_factory.mktemp("cache")))
    crops = _awkward_crops(painting, face_box)
    grey = cv2.cvtColor(crops["face_fills_picture"], cv2.COLOR_RGB2GRAY)
    crops["grey_face_fills_picture"] = np.repeat(grey[..., None], 3, axis=2)
    return {name: (rgb, encoder.encode(_png(rgb))) for name, rgb in crops.items()}


def test_streak_detector_sees_replicated_edges(painting: np.ndarray) -> None:
    """The measurement itself: replicated borders score high, the painting scores zero."""
    padded = cv2.copyMakeBorder(painting[:400, :300], 0, 0, 120, 120, cv2.BORDER_REPLICATE)
    assert streak_fraction(padded) > 0.1
    assert streak_fraction(painting) < 0.005


@pytest.mark.parametrize(
    "name",
    [
        "face_at_left_edge",
        "wide_strip",
        "tall_strip",
        "face_fills_picture",
        "grey_face_fills_picture",
    ],
)
def test_crops_near_the_edge_have_no_streaks(awkward_avatars, name: str) -> None:
    source, avatar = awkward_avatars[name]
    assert streak_fraction(avatar.image) < 0.005
    # The whole head is in the crop, with room around it.
    lm, size = avatar.landmarks, avatar.image_size
    assert lm[:, 0].min() > 0.08 * size and lm[:, 0].max() < 0.92 * size
    assert lm[:, 1].min() > 0.05 * size and lm[:, 1].max() < 0.95 * size
    # The crop slides and shrinks to stay inside the picture; it leaves it only where
    # the head needs room the picture does not have.
    if name in ("face_at_left_edge", "wide_strip", "tall_strip"):
        assert _share_outside(avatar.crop_box, source.shape) < 0.1


def _share_outside(crop_box: tuple[float, float, float], shape: tuple[int, ...]) -> float:
    left, top, side = crop_box
    height, width = shape[:2]
    inside_x = max(0.0, min(left + side, width) - max(left, 0.0))
    inside_y = max(0.0, min(top + side, height) - max(top, 0.0))
    return 1.0 - inside_x * inside_y / side**2


def test_the_fill_keeps_a_grey_portrait_grey(awkward_avatars) -> None:
    _, avatar = awkward_avatars["grey_face_fills_picture"]
    image = avatar.image.astype(np.int16)
    assert np.abs(image[..., 0] - image[..., 1]).max() <= 1
    assert np.abs(image[..., 1] - image[..., 2]).max() <= 1


def test_the_fill_has_the_picture_grain(awkward_avatars) -> None:
    """Outside the picture: neither streaks nor a flat airbrushed plate."""
    _, avatar = awkward_avatars["face_fills_picture"]
    corner = avatar.image[:40, :40].astype(np.float32).mean(-1)
    residual = corner - cv2.GaussianBlur(corner, (0, 0), 1.0)
    assert residual.std() > 0.3
