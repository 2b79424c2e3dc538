"""engines.training.festival_speech: festival speech with its own phone timings."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from engines.errors import SynthesisError
from engines.training import festival_speech
from engines.training.festival_speech import (
    FESTIVAL_HELD_OUT_VOICES,
    parse_segments,
    synthesize_festival,
)
from engines.training.visemes import PHONES, parse_arpabet

RATE = 16000
TEXT = "Bob ate a blue apple, maybe with warm soup."
VOWELS = {"AA", "AE", "AO", "AW", "AY", "EH", "EY", "IY", "OW", "UW", "IH", "UH", "OY"}
HAS_FESTIVAL = shutil.which("festival") is not None
needs_festival = pytest.mark.skipif(
    not HAS_FESTIVAL, reason="festival is not installed (apt-get install festival)"
)
_RADIO = (  # festival's radio phoneset (radio_phones.scm)
    "aa ae ah ao aw ax axr ay b ch d dh dx eh el em en er ey f g hh hv ih iy jh k l m n nx ng"
    " ow oy p r s sh t th uh uw v w y z zh pau h# brth"
)
RADIO_PHONES = _RADIO.split()


def _installed() -> tuple[str, ...]:
    return festival_speech.festival_voices() if HAS_FESTIVAL else ()


def _db(samples: np.ndarray, start_s: float, end_s: float) -> float:
    segment = samples[int(start_s * RATE) : int(end_s * RATE)].astype(np.float64)
    return 10.0 * np.log10(np.mean(segment**2) + 1e-12)


def test_every_radio_phone_maps_to_a_project_symbol() -> None:
    symbols = {festival_speech.festival_symbol(p) for p in RADIO_PHONES}
    assert symbols <= set(PHONES)
    assert festival_speech.festival_symbol("hv") == "HH"
    assert festival_speech.festival_symbol("brth") == "SIL"
    with pytest.raises(SynthesisError, match="unknown phone"):
        festival_speech.festival_symbol("qq")


def test_segments_tile_from_zero_and_clamp_to_the_audio() -> None:
    stdout = "PITCH none\nSEG pau 0.20\nSEG b 0.25\nSEG aa 0.40\nSEG pau 0.70\n"
    phones = parse_segments(stdout, duration_s=0.6)
    assert [(p.symbol, p.start_s, p.end_s) for p in phones] == [
        ("SIL", 0.0, 0.2),
        ("B", 0.2, 0.25),
        ("AA", 0.25, 0.4),
        ("SIL", 0.4, 0.6),
    ]
    assert parse_segments("SEG pau 0.2\nSEG ax 0.3", duration_s=0.35)[-1].end_s == 0.35
    with pytest.raises(SynthesisError, match="after the audio"):
        parse_segments("SEG pau 0.2\nSEG aa 0.5", duration_s=0.3)


@needs_festival
@pytest.mark.parametrize("voice", ["festival:ked_diphone", *FESTIVAL_HELD_OUT_VOICES])
def test_festival_phones_tile_the_audio_and_line_up_with_energy(voice: str) -> None:
    if voice not in _installed():
        pytest.skip(f"festival voice {voice} is not installed (festvox-kdlpc16k, -us-slt-hts)")
    said = synthesize_festival(TEXT, voice, sample_rate=RATE)
    samples, phones = said.samples, said.phones
    assert samples.dtype == np.float32 and samples.ndim == 1 and said.sample_rate == RATE
    assert phones[0].start_s == 0.0 and phones[0].symbol == "SIL"
    assert all(a.end_s == b.start_s for a, b in zip(phones[:-1], phones[1:], strict=True))
    assert all(p.end_s > p.start_s for p in phones)
    assert phones[-1].end_s == pytest.approx(len(samples) / RATE)
    assert all(parse_arpabet(p.symbol) == p.symbol for p in phones)
    vowel_db = np.mean([_db(samples, p.start_s, p.end_s) for p in phones if p.symbol in VOWELS])
    pause_db = np.mean([_db(samples, p.start_s, p.end_s) for p in phones if p.symbol == "SIL"])
    assert vowel_db > pause_db + 25.0, (vowel_db, pause_db)
    # Every vowel is louder than the quietest pause: no segment is shifted onto silence.
    quietest_pause = min(_db(samples, p.start_s, p.end_s) for p in phones if p.symbol == "SIL")
    assert all(
        _db(samples, p.start_s, p.end_s) > quietest_pause + 15.0
        for p in phones
        if p.symbol in VOWELS
    )


@needs_festival
def test_stretch_slows_and_pitch_ratio_is_recorded() -> None:
    if "festival:ked_diphone" not in _installed():
        pytest.skip("festival voice ked_diphone is not installed (festvox-kdlpc16k)")
    fast = synthesize_festival(TEXT, "festival:ked_diphone", stretch=0.8)
    slow = synthesize_festival(TEXT, "festival:ked_diphone", stretch=1.25)
    assert len(slow.samples) > 1.3 * len(fast.samples)
    assert [p.symbol for p in slow.phones] == [p.symbol for p in fast.phones]
    high = synthesize_festival(TEXT, "festival:ked_diphone", pitch_ratio=1.3)
    assert high.pitch_hz == pytest.approx(105.0 * 1.3, abs=0.1)
    assert synthesize_festival(TEXT, "festival:ked_diphone").pitch_hz is None


@needs_festival
def test_hts_voice_takes_stretch_but_ignores_pitch() -> None:
    voice = FESTIVAL_HELD_OUT_VOICES[0]
    if voice not in _installed():
        pytest.skip(f"festival voice {voice} is not installed (festvox-us-slt-hts)")
    normal = synthesize_festival("Hello there.", voice)
    slow = synthesize_festival("Hello there.", voice, stretch=1.3, pitch_ratio=1.2)
    assert slow.pitch_hz is None
    assert len(slow.samples) > 1.15 * len(normal.samples)
    assert slow.phones[-2].end_s > 1.15 * normal.phones[-2].end_s


def test_missing_festival_or_voice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SynthesisError, match="empty"):
        synthesize_festival("  ")
    if HAS_FESTIVAL:
        with pytest.raises(SynthesisError, match="not installed"):
            synthesize_festival(TEXT, "festival:nobody_diphone")
    festival_speech.festival_voices.cache_clear()
    monkeypatch.setattr(festival_speech.shutil, "which", lambda name: None)
    try:
        with pytest.raises(SynthesisError, match="apt-get install festival"):
            synthesize_festival(TEXT)
    finally:
        festival_speech.festival_voices.cache_clear()
