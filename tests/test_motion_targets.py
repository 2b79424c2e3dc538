"""Training targets: lips from the phones, head, brows and blinks from visual prosody."""

from __future__ import annotations

import numpy as np
import pytest

from engines.errors import SynthesisError
from engines.motion import space as ms
from engines.training.corpus import synthesize
from engines.training.prosody import PROSODY_CHANNELS, prosody_targets
from engines.training.targets import utterance_targets
from engines.training.visemes import MOUTH_CHANNELS, phone_targets

FPS = 25


@pytest.fixture(scope="module")
def utterance():
    try:
        return synthesize("Bob ate a blue apple, maybe with warm soup.", voice="slt")
    except SynthesisError as exc:
        pytest.skip(f"flite is needed to make speech: {exc}")


def test_lips_follow_the_phones_and_the_head_follows_prosody(utterance) -> None:
    example = utterance_targets(
        utterance.samples, utterance.sample_rate, utterance.phones, FPS, seed=1
    )
    frames = len(example.features)
    assert example.motion.shape == (frames, ms.MOTION_DIM)
    assert abs(frames / FPS - len(utterance.samples) / utterance.sample_rate) < 2 / FPS
    mouth = [ms.index_of(name) for name in MOUTH_CHANNELS]
    expected = phone_targets(utterance.phones, FPS, num_frames=frames)
    assert np.allclose(example.motion[:, mouth], ms.clip_motion(expected)[:, mouth])
    yaw = example.motion[:, ms.index_of("headYaw")]
    assert yaw.std() > 1e-3  # the head moves
    prosody = prosody_targets(utterance.phones, example.features, FPS, seed=1)
    head = [ms.index_of(name) for name in PROSODY_CHANNELS]
    assert np.allclose(example.motion[:, head], prosody[:, head])


def test_seeds_vary_the_head_not_the_lips(utterance) -> None:
    args = (utterance.samples, utterance.sample_rate, utterance.phones, FPS)
    one, again, other = (utterance_targets(*args, seed=s) for s in (3, 3, 4))
    assert np.array_equal(one.motion, again.motion)
    mouth = [ms.index_of(name) for name in MOUTH_CHANNELS]
    assert np.array_equal(one.motion[:, mouth], other.motion[:, mouth])
    yaw = ms.index_of("headYaw")
    assert not np.allclose(one.motion[:, yaw], other.motion[:, yaw])


def test_wrong_rate_is_refused(utterance) -> None:
    with pytest.raises(ValueError, match="resample"):
        utterance_targets(utterance.samples, 48000, utterance.phones, FPS, seed=0)
