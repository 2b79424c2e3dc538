"""engines.training.visemes: phone timings -> mouth targets with dominance coarticulation."""

from __future__ import annotations

import numpy as np
import pytest

from engines.motion import space as ms
from engines.training.visemes import PHONES, VISEME_TARGETS, Phone, parse_arpabet, phone_targets

FPS = 25
JAW, CLOSE = ms.index_of("jawOpen"), ms.index_of("mouthClose")
FUNNEL, PUCKER = ms.index_of("mouthFunnel"), ms.index_of("mouthPucker")
STRETCH = ms.index_of("mouthStretchLeft")
MOUTH = [i for i, n in enumerate(ms.MOTION_NAMES) if n.startswith(("jaw", "mouth"))]


def _phones(spec: list[tuple[str, float]], start: float = 0.0) -> list[Phone]:
    """Back-to-back phones from (symbol, duration) pairs."""
    out, t = [], start
    for symbol, duration in spec:
        out.append(Phone(symbol, t, t + duration))
        t += duration
    return out


def _frame_at(phone: Phone, fps: float = FPS) -> int:
    """The frame nearest the phone's centre."""
    return round(0.5 * (phone.start_s + phone.end_s) * fps)


SENTENCE = _phones(  # "bob ate a blue apple", with pauses around it
    [("SIL", 0.2), ("B", 0.08), ("AA", 0.14), ("B", 0.07), ("EY", 0.15), ("T", 0.06)]
    + [("AH", 0.07), ("B", 0.07), ("L", 0.06), ("UW", 0.13), ("AE", 0.15), ("P", 0.1)]
    + [("AH", 0.05), ("L", 0.09), ("SIL", 0.3)]
)


def test_shape_dtype_range_and_untouched_channels() -> None:
    motion = phone_targets(SENTENCE, FPS)
    assert motion.dtype == np.float32
    assert motion.shape == (round(SENTENCE[-1].end_s * FPS), ms.MOTION_DIM)
    assert np.array_equal(ms.clip_motion(motion.copy()), motion)
    others = [i for i in range(ms.MOTION_DIM) if i not in MOUTH]
    assert np.array_equal(motion[:, others], ms.neutral_motion(len(motion))[:, others])


def test_targets_table_uses_only_motion_space_names() -> None:
    assert set(VISEME_TARGETS) == set(PHONES)
    for targets in VISEME_TARGETS.values():
        assert set(targets) <= set(ms.EXPRESSION_NAMES)
        assert all(0.0 <= v <= 1.0 for v in targets.values())


@pytest.mark.parametrize("symbol", ["P", "B", "M"])
@pytest.mark.parametrize("duration", [0.05, 0.06, 0.08, 0.1, 0.12])
@pytest.mark.parametrize("offset", [0.0, 0.013, 0.027])  # centre off the frame grid
def test_bilabial_closes_between_open_vowels(symbol: str, duration: float, offset: float) -> None:
    phones = _phones([("AA", 0.12), (symbol, duration), ("AA", 0.12)], start=0.2 + offset)
    motion = phone_targets(phones, FPS)
    closure = motion[_frame_at(phones[1])]
    assert closure[CLOSE] > 0.35 and closure[JAW] < 0.15
    for vowel in (phones[0], phones[2]):
        assert motion[_frame_at(vowel), JAW] > 0.35


def test_rounding_anticipated_before_and_during_rounded_vowels() -> None:
    for vowel in ("UW", "OW"):
        rounded = phone_targets(
            _phones([("SIL", 0.2), ("B", 0.07), ("L", 0.06), (vowel, 0.13)]), 100
        )
        spread = phone_targets(_phones([("SIL", 0.2), ("B", 0.07), ("L", 0.06), ("IY", 0.13)]), 100)
        before = round(0.235 * 100)  # centre of the /b/, two phones ahead of the vowel
        during = round(0.395 * 100)
        lips = FUNNEL, PUCKER
        assert rounded[before, list(lips)].sum() > 0.2 + spread[before, list(lips)].sum()
        assert rounded[during, list(lips)].sum() > 0.5
        assert spread[during, STRETCH] > 0.3 > rounded[during, STRETCH]


def test_jaw_follows_vowel_openness() -> None:
    jaw = {}
    for vowel in ("AA", "EH", "IY"):
        phones = _phones([("SIL", 0.2), ("T", 0.06), (vowel, 0.14), ("T", 0.06), ("SIL", 0.2)])
        jaw[vowel] = phone_targets(phones, FPS)[_frame_at(phones[2]), JAW]
    assert jaw["AA"] > jaw["EH"] + 0.1 > jaw["IY"] + 0.2


def test_silence_relaxes_to_rest_without_snapping() -> None:
    phones = _phones([("SIL", 0.3), ("AA", 0.15), ("SIL", 0.6)])
    motion = phone_targets(phones, 100)
    rest = VISEME_TARGETS["SIL"]
    end = round(phones[1].end_s * 100)
    assert motion[end, JAW] > 0.1  # still open as the pause starts: no snap shut
    assert np.abs(np.diff(motion[:, JAW])).max() < 0.1  # per 10 ms
    settled = motion[end + 30 :]
    assert np.allclose(settled[:, JAW], 0.0, atol=0.02)
    assert np.allclose(settled[:, CLOSE], rest["mouthClose"], atol=0.02)
    assert np.allclose(motion[:5, CLOSE], rest["mouthClose"], atol=0.02)


def test_continuity_at_25_fps() -> None:
    motion = phone_targets(SENTENCE, FPS)
    assert np.abs(np.diff(motion, axis=0)).max() < 0.5


def test_deterministic_and_padded() -> None:
    first = phone_targets(SENTENCE, FPS)
    assert np.array_equal(first, phone_targets(SENTENCE, FPS))
    longer = phone_targets(SENTENCE, FPS, num_frames=len(first) + 20)
    assert np.array_equal(longer[: len(first)], first)
    assert np.allclose(longer[-5:, MOUTH], phone_targets([], FPS, num_frames=5)[:, MOUTH])
    assert np.array_equal(phone_targets(SENTENCE, FPS, num_frames=10), first[:10])
    assert phone_targets([], FPS).shape == (0, ms.MOTION_DIM)


def test_frame_rates_agree_at_shared_times() -> None:
    at_25 = phone_targets(SENTENCE, 25)
    at_50 = phone_targets(SENTENCE, 50)
    np.testing.assert_allclose(at_50[::2][: len(at_25)], at_25, atol=1e-6)


def test_symbols_are_parsed() -> None:
    assert parse_arpabet("AH0") == "AH" and parse_arpabet("uw1") == "UW"
    for alias in ("sil", "sp", "pau", "h#", "", "+NOISE+", "SIL"):
        assert parse_arpabet(alias) == "SIL"
    assert parse_arpabet("ax") == "AH"  # flite's schwa
    stressed = phone_targets([Phone("AA1", 0.0, 0.2)], FPS)
    assert np.array_equal(stressed, phone_targets([Phone("AA", 0.0, 0.2)], FPS))


@pytest.mark.parametrize(
    "phones",
    [
        [Phone("AA", 0.0, 0.2), Phone("B", 0.1, 0.3)],  # overlap
        [Phone("AA", 0.2, 0.3), Phone("B", 0.0, 0.1)],  # out of order
        [Phone("AA", -0.1, 0.2)],
        [Phone("AA", 0.2, 0.2)],
        [Phone("AA", 0.0, float("nan"))],
        [Phone("XX", 0.0, 0.1)],
    ],
)
def test_bad_input_raises(phones: list[Phone]) -> None:
    with pytest.raises(ValueError):
        phone_targets(phones, FPS)


def test_unknown_symbol_names_the_valid_set() -> None:
    with pytest.raises(ValueError, match="valid: .*AA"):
        parse_arpabet("XX")
    with pytest.raises(ValueError):
        phone_targets(SENTENCE, 0.0)


def test_the_viseme_table_names_exactly_the_motion_spaces_mouth() -> None:
    from engines.training.visemes import _CHANNELS

    assert _CHANNELS == ms.MOUTH_CHANNELS
