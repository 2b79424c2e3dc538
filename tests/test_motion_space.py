"""The motion-space contract: one layout, named channels, documented ranges."""

from __future__ import annotations

import numpy as np
import pytest

from engines.motion import space as ms


def test_layout_is_pose_then_expression_then_gaze() -> None:
    assert ms.MOTION_NAMES[: len(ms.POSE_NAMES)] == ms.POSE_NAMES
    assert ms.MOTION_NAMES[-len(ms.GAZE_NAMES) :] == ms.GAZE_NAMES
    assert len(set(ms.MOTION_NAMES)) == ms.MOTION_DIM
    assert {"jawOpen", "mouthClose", "eyeBlinkLeft", "browInnerUp"} <= set(ms.EXPRESSION_NAMES)


def test_neutral_is_identity_pose_and_rest_face() -> None:
    neutral = ms.neutral_motion()
    assert neutral[ms.index_of("headScale")] == 1.0
    assert np.count_nonzero(neutral) == 1
    assert ms.neutral_motion(4).shape == (4, ms.MOTION_DIM)


def test_dict_round_trip_and_clipping() -> None:
    values = {"jawOpen": 0.4, "headYaw": -0.2, "gazePitch": 0.1}
    motion = ms.motion_from_dict(values)
    as_dict = ms.motion_to_dict(motion)
    for name, value in values.items():
        assert as_dict[name] == pytest.approx(value)
    clipped = ms.clip_motion(ms.motion_from_dict({"jawOpen": 3.0, "headYaw": -9.0}))
    assert clipped[ms.index_of("jawOpen")] == 1.0
    assert clipped[ms.index_of("headYaw")] == pytest.approx(ms.MOTION_RANGES["headYaw"].low)


def test_unknown_channel_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="jawOpen"):
        ms.index_of("mouthOpen")
    with pytest.raises(ValueError):
        ms.clip_motion(np.zeros(3))
