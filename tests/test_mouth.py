"""The painted mouth interior, judged on rendered frames (MediaPipe traces the lips).

Upper teeth are separate teeth that narrow towards the corners, lower teeth
show only once the jaw drops, the cavity is darkest deep in its middle,
nothing tooth-bright leaks outside the lips while they open or close, and a
grey portrait gets a grey mouth.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.face import landmarks as fl
from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.motion.space import motion_from_dict, neutral_motion
from engines.render.renderer import FaceRenderer
from tests.portraits import landmarks_of
from tests.portraits import luma as luminance


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> FaceEncoder:
    return FaceEncoder(FaceEncoderConfig(cache_dir=tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def renderer(encoder: FaceEncoder) -> FaceRenderer:
    return FaceRenderer(encoder.encode(None))


def _motion(**channels: float) -> np.ndarray:
    return motion_from_dict(channels)


def _render(renderer: FaceRenderer, **channels: float) -> tuple[np.ndarray, np.ndarray]:
    """(frame uint8 S x S x 3, its landmarks as MediaPipe traces them)."""
    frame = renderer.render(_motion(**channels))[0]
    return frame, landmarks_of(frame)


def _inner_lips(frame: np.ndarray, lm: np.ndarray) -> np.ndarray:
    inside = np.zeros(frame.shape[:2], np.uint8)
    contour = lm[list(fl.LIPS_INNER_UPPER) + list(fl.LIPS_INNER_LOWER[::-1]), :2]
    cv2.fillPoly(inside, [np.round(contour).astype(np.int32)], 1)
    return inside > 0


def _gaps(profile: np.ndarray) -> list[int]:
    """Indices where a luminance profile dips between two brighter neighbours (teeth)."""
    found = []
    for i in range(2, len(profile) - 2):
        left, right = profile[max(0, i - 6) : i].max(), profile[i + 1 : i + 7].max()
        if profile[i] == profile[i - 2 : i + 3].min() and profile[i] < 0.85 * min(left, right):
            found.append(i)
    return found


@pytest.mark.parametrize("jaw", [0.6, 1.0])
def test_upper_teeth_are_separate_teeth_narrowing_to_the_corners(renderer, jaw: float) -> None:
    frame, lm = _render(renderer, jawOpen=jaw)
    luma = luminance(frame)
    x0, x1 = lm[78, 0], lm[308, 0]
    width = x1 - x0
    top, bottom = lm[13, 1], lm[14, 1]
    rows = slice(int(top) + 1, int(top + 0.2 * (bottom - top)) + 2)  # just below the upper lip
    cols = np.arange(int(x0 + 0.1 * width), int(x1 - 0.1 * width))
    gaps = np.array(_gaps(luma[rows][:, cols].mean(0)))
    assert len(gaps) >= 3, gaps
    # The central incisors meet under the middle of the lip, not wherever a grid falls.
    midline = 0.5 * (lm[13, 0] + lm[14, 0]) - cols[0]
    centre = int(np.argmin(np.abs(gaps - midline)))
    assert abs(gaps[centre] - midline) <= 2.5, (gaps, midline)
    sides = [np.diff(gaps[centre:]), -np.diff(gaps[: centre + 1][::-1])]
    sides = [s for s in sides if len(s) >= 2]
    assert sides, gaps
    for teeth in sides:
        # A central incisor spans a fifth of the mouth; the next tooth round is narrower.
        assert 0.15 * width <= teeth[0] <= 0.32 * width, (teeth, width)
        assert teeth[1] < teeth[0], teeth
    # Rounded incisal corners: the bright edge rises at the gap between the central incisors.
    tooth = int(gaps[centre] + 0.5 * sides[0][0] * np.sign(sides[0][0]))

    def edge(col: int) -> int:
        column = luma[int(top) : int(top + 0.6 * (bottom - top)), cols[col]]
        return int(np.nonzero(column > 0.8 * column.max())[0].max())

    assert edge(tooth) >= edge(int(gaps[centre])) + 1


def _tooth_like_below(frame: np.ndarray, lm: np.ndarray) -> int:
    """Bright, unsaturated pixels in the lower 40 % of the opening."""
    inside = _inner_lips(frame, lm)
    top, bottom = lm[13, 1], lm[14, 1]
    rows = np.arange(frame.shape[0])[:, None] + 0.5
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV).astype(np.float32)
    upper = inside & (rows < top + 0.3 * (bottom - top))
    teeth_value = np.percentile(hsv[..., 2][upper], 90)
    lower = inside & (rows > top + 0.6 * (bottom - top))
    return int((lower & (hsv[..., 1] < 110) & (hsv[..., 2] > 0.6 * teeth_value)).sum())


def test_lower_teeth_show_once_the_jaw_drops(renderer) -> None:
    assert _tooth_like_below(*_render(renderer, jawOpen=1.0)) >= 15
    assert _tooth_like_below(*_render(renderer, jawOpen=0.3)) <= 3


def test_the_cavity_is_darkest_deep_in_its_middle(renderer) -> None:
    frame, lm = _render(renderer, jawOpen=1.0)
    luma = luminance(frame)
    top, bottom = lm[13, 1], lm[14, 1]
    column = luma[int(top) : int(bottom) + 1, int(round(0.5 * (lm[13, 0] + lm[14, 0])))]
    darkest = np.nonzero(column <= column.min() + 3.0)[0]
    # Lit near the lips, deepest half way in (a flat or top-lit cavity puts it by the teeth).
    assert 0.35 <= darkest.mean() / (len(column) - 1) <= 0.65, column
    assert column.min() > 12.0  # dark, never pitch black


def test_no_tooth_shards_outside_the_lips_while_opening(renderer) -> None:
    shards = 0
    cases = [{"jawOpen": j} for j in (0.05, 0.1, 0.15)] + [
        {"jawOpen": 0.1, "mouthFunnel": 0.8},
        {"jawOpen": 0.1, "mouthSmileLeft": 0.8, "mouthSmileRight": 0.8},
        {"jawOpen": 0.1, "mouthPucker": 0.8},
    ]
    for channels in cases:
        frame, lm = _render(renderer, **channels)
        near = cv2.dilate(_inner_lips(frame, lm).astype(np.uint8), np.ones((5, 5), np.uint8))
        lips = np.zeros(frame.shape[:2], np.uint8)
        outer = lm[list(fl.LIPS_OUTER_UPPER) + list(fl.LIPS_OUTER_LOWER[::-1]), :2]
        cv2.fillPoly(lips, [np.round(outer).astype(np.int32)], 1)
        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
        toothy = (hsv[..., 1] < 90) & (hsv[..., 2] > 120) & (lips > 0)
        shards += int((toothy & (near == 0)).sum())
    assert shards <= 3


def test_a_grey_portrait_gets_a_grey_mouth(renderer, encoder: FaceEncoder) -> None:
    colour = renderer.render(neutral_motion())[0]
    grey = np.repeat(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    ok, png = cv2.imencode(".png", grey)
    assert ok
    frame, lm = _render(FaceRenderer(encoder.encode(png.tobytes())), jawOpen=0.8)
    inside = _inner_lips(frame, lm)
    assert inside.sum() > 200
    pixels = frame[inside].astype(np.int16)
    assert np.abs(pixels[:, 0] - pixels[:, 1]).max() <= 1
    assert np.abs(pixels[:, 1] - pixels[:, 2]).max() <= 1
