"""engines.training.corpus: flite speech with its own phone timings, augmentation, corpus files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engines.audio import speech
from engines.training import corpus
from engines.training.aligned_speech import ESPEAK_TRAIN_VOICES
from engines.training.corpus import (
    AugmentConfig,
    CorpusConfig,
    SynthesisError,
    augment,
    build_corpus,
    load_corpus,
    make_sentences,
    synthesize,
)
from engines.training.festival_speech import (
    FESTIVAL_HELD_OUT_VOICES,
    FESTIVAL_TRAIN_VOICES,
    festival_voices,
)
from engines.training.visemes import PHONES, parse_arpabet

HAS_FLITE = shutil.which("flite") is not None
needs_flite = pytest.mark.skipif(
    not HAS_FLITE, reason="flite is not installed (apt-get install flite)"
)
RATE = 16000
TEXT = "Bob ate a blue apple, maybe with warm soup."
VOWELS = {"AA", "AE", "AO", "AW", "AY", "EH", "EY", "IY", "OW", "UW", "IH", "UH", "OY"}
STOPS = {"P", "B", "T", "K"}


def _voices() -> tuple[str, ...]:
    return corpus.flite_voices() if HAS_FLITE else ()


def _segment_db(samples: np.ndarray, start_s: float, end_s: float) -> float:
    segment = samples[int(start_s * RATE) : int(end_s * RATE)].astype(np.float64)
    return 10.0 * np.log10(np.mean(segment**2) + 1e-12)


def _flite_phones(text: str) -> set[str]:
    args = ["flite", "-voice", "kal", "-ps", "-t", text, "-o", "none"]
    return set(subprocess.run(args, capture_output=True, text=True, check=True).stdout.split())


def test_make_sentences_is_deterministic_by_seed_and_varied() -> None:
    first = make_sentences(50, seed=3)
    assert first == make_sentences(50, seed=3)
    assert first != make_sentences(50, seed=4)
    assert make_sentences(10, seed=3) == first[:10]
    assert len(set(first)) >= 48
    assert all(s[0].isupper() and s[-1] in ".?" and "{" not in s for s in first)


@needs_flite
def test_sentences_are_phonetically_rich() -> None:
    sentences = make_sentences(40, seed=0)
    phone_sets = [_flite_phones(s) for s in sentences]

    def share(wanted: set[str]) -> float:
        return float(np.mean([bool(p & wanted) for p in phone_sets]))

    bilabial_and_rounded = np.mean(
        [bool(p & {"p", "b", "m"} and p & {"w", "uw", "ow"}) for p in phone_sets]
    )
    assert bilabial_and_rounded >= 0.85
    assert share({"aa", "ae"}) >= 0.8
    assert share({"f", "v", "s", "sh"}) >= 0.85
    assert share({"th", "dh"}) >= 0.5


def test_psdur_parsing_clamps_to_the_audio_and_tiles_from_zero() -> None:
    # kal's last pause ends after its audio; awb's audio runs past the last end.
    phones = corpus._parse_psdur("pau:0.20 b:0.25 aa:0.40 pau:0.70\n", duration_s=0.6)
    assert [(p.symbol, p.start_s, p.end_s) for p in phones] == [
        ("SIL", 0.0, 0.2),
        ("B", 0.2, 0.25),
        ("AA", 0.25, 0.4),
        ("SIL", 0.4, 0.6),
    ]
    assert corpus._parse_psdur("pau:0.20 ax:0.30", duration_s=0.35)[-1].end_s == 0.35
    with pytest.raises(SynthesisError, match="after the audio"):
        corpus._parse_psdur("pau:0.20 b:0.25 aa:0.40 pau:0.70", duration_s=0.3)
    with pytest.raises(SynthesisError, match="restarted"):
        corpus._parse_psdur("pau:0.20 b:0.25 pau:0.1 b:0.2", duration_s=1.0)


@needs_flite
@pytest.mark.parametrize("voice", corpus.VOICES)
def test_phones_tile_the_audio_and_are_real(voice: str) -> None:
    if voice not in _voices():
        pytest.skip(f"flite voice {voice} is not installed")
    utterance = synthesize(TEXT, voice, sample_rate=RATE)
    samples, phones = utterance.samples, utterance.phones
    assert samples.dtype == np.float32 and samples.ndim == 1 and utterance.sample_rate == RATE
    assert phones[0].start_s == 0.0
    assert all(a.end_s == b.start_s for a, b in zip(phones[:-1], phones[1:], strict=True))
    assert all(p.end_s > p.start_s for p in phones)
    assert abs(phones[-1].end_s - len(samples) / RATE) < 0.02
    assert {p.symbol for p in phones} <= set(PHONES) and phones[0].symbol == "SIL"
    # The timings locate the sounds: vowels are loud, pauses silent, stop closures quiet.
    vowel_db = np.mean(
        [_segment_db(samples, p.start_s, p.end_s) for p in phones if p.symbol in VOWELS]
    )
    pause_db = np.mean(
        [_segment_db(samples, p.start_s, p.end_s) for p in phones if p.symbol == "SIL"]
    )
    closures = [p for p in phones if p.symbol in STOPS]
    closure_db = np.mean(
        [_segment_db(samples, p.start_s, (p.start_s + p.end_s) / 2) for p in closures]
    )
    assert vowel_db > pause_db + 30.0, (vowel_db, pause_db)
    assert vowel_db > closure_db + 6.0, (vowel_db, closure_db)


@needs_flite
def test_stretch_slows_speech_and_pitch_moves_f0() -> None:
    fast = synthesize(TEXT, "slt", stretch=0.8)
    slow = synthesize(TEXT, "slt", stretch=1.25)
    assert len(slow.samples) > 1.3 * len(fast.samples)
    assert [p.symbol for p in slow.phones] == [p.symbol for p in fast.phones]
    low, high = (synthesize(TEXT, "slt", pitch_hz=f) for f in (130.0, 230.0))
    assert _median_f0(high.samples) > 1.4 * _median_f0(low.samples)
    assert low.pitch_hz == 130.0
    if "rms" in _voices():  # rms ignores flite's pitch target: recorded as None
        assert synthesize("hello", "rms", pitch_hz=150.0).pitch_hz is None


def _median_f0(samples: np.ndarray) -> float:
    """Autocorrelation f0 over loud, periodic 40 ms frames."""
    win, hop, found = int(0.04 * RATE), int(0.01 * RATE), []
    for start in range(0, len(samples) - win, hop):
        frame = samples[start : start + win].astype(np.float64)
        frame -= frame.mean()
        if np.sqrt(np.mean(frame**2)) < 0.02:
            continue
        ac = np.correlate(frame, frame, "full")[win - 1 :]
        lo, hi = RATE // 400, RATE // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            found.append(RATE / lag)
    return float(np.median(found))


def test_synthesis_errors_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    if HAS_FLITE:
        with pytest.raises(SynthesisError, match="not available"):
            synthesize(TEXT, "nobody")  # flite itself would silently speak with kal
    with pytest.raises(SynthesisError, match="empty"):
        synthesize("  ", "slt")
    speech.available_voices.cache_clear()
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    try:
        with pytest.raises(SynthesisError, match="apt-get install flite"):
            synthesize(TEXT, "slt")
    finally:
        speech.available_voices.cache_clear()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_augment_hits_the_drawn_snr_and_keeps_the_length(seed: int) -> None:
    t = np.arange(2 * RATE) / RATE
    clean = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    config = CorpusConfig(reverb_probability=0.0)
    out = augment(clean, np.random.default_rng(seed), config)
    assert out.samples.shape == clean.shape and out.samples.dtype == np.float32
    assert config.snr_db_range[0] <= out.snr_db <= config.snr_db_range[1] and out.rt60_s is None
    assert np.isclose(np.abs(out.samples).max(), 0.9, atol=1e-4)
    x = clean.astype(np.float64)
    gain = float(out.samples @ x / (x @ x))  # the noise is independent of the speech
    noise = out.samples - gain * x
    measured = 10.0 * np.log10(np.mean((gain * x) ** 2) / np.mean(noise**2))
    assert abs(measured - out.snr_db) < 1.0, (measured, out.snr_db)


def test_reverb_is_causal_and_decays() -> None:
    impulse = np.zeros(RATE, dtype=np.float32)
    impulse[4000] = 1.0
    config = CorpusConfig(reverb_probability=1.0, snr_db_range=(120.0, 120.0))
    out = augment(impulse, np.random.default_rng(0), config)
    assert out.rt60_s is not None and out.samples.shape == impulse.shape
    energy = out.samples.astype(np.float64) ** 2
    assert energy[:4000].sum() < 1e-6 * energy.sum()
    tail = 4001 + int(out.rt60_s * RATE / 2)  # the envelope is 30 dB down here
    assert energy[tail:].sum() < 0.05 * energy[4001:tail].sum()
    assert energy[4001:].sum() > 0.0


@needs_flite
def test_build_and_load_round_trip_is_deterministic(tmp_path: Path) -> None:
    config = CorpusConfig(reverb_probability=0.5)
    first = build_corpus(tmp_path / "a", count=3, seed=11, config=config)
    second = build_corpus(tmp_path / "b", count=3, seed=11, config=config)
    assert first.read_bytes() == second.read_bytes()
    for name in ("utt_00001.wav", "utt_00003.wav"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = build_corpus(tmp_path / "c", count=3, seed=12, config=config)
    assert other.read_bytes() != first.read_bytes()
    items = list(load_corpus(first))
    assert [item.meta["text"] for item in items] == make_sentences(3, seed=11)
    for item in items:
        assert item.samples.dtype == np.float32 and len(item.samples) == item.meta["num_samples"]
        assert item.phones[0].start_s == 0.0
        assert abs(item.phones[-1].end_s - len(item.samples) / item.sample_rate) < 1e-3
        voice = item.meta["voice"]
        assert voice in (*corpus.TRAIN_VOICES, *ESPEAK_TRAIN_VOICES, *FESTIVAL_TRAIN_VOICES)
        if voice in corpus.TRAIN_VOICES or voice in FESTIVAL_TRAIN_VOICES:
            assert 0.8 <= item.meta["stretch"] <= 1.25
        else:
            assert 140 <= item.meta["words_per_minute"] <= 210
        assert 15.0 <= item.meta["snr_db"] <= 40.0 and np.abs(item.samples).max() <= 0.91


HAS_FESTIVAL = shutil.which("festival") is not None
HAS_TOOLS = (
    HAS_FLITE and HAS_FESTIVAL and bool(shutil.which("sox")) and bool(shutil.which("ffmpeg"))
)


@pytest.mark.skipif(not HAS_TOOLS, reason="needs flite, festival, sox and ffmpeg (.ci/install)")
def test_corpus_with_festival_and_augmentations_is_deterministic(tmp_path: Path) -> None:
    every = AugmentConfig(
        share=1.0, tempo_probability=0.7, pitch_probability=0.5, band_probability=0.5
    )
    config = CorpusConfig(espeak_share=0.0, festival_share=0.5, augmentation=every)
    if not set(config.festival_voices) & set(festival_voices()):
        pytest.skip("no training festival voice is installed (apt-get install festvox-kdlpc16k)")
    first = build_corpus(tmp_path / "a", count=6, seed=2, config=config)
    second = build_corpus(tmp_path / "b", count=6, seed=2, config=config)
    assert first.read_bytes() == second.read_bytes()
    for i in range(1, 7):
        name = f"utt_{i:05d}.wav"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    items = list(load_corpus(first))
    voices = {str(item.meta["voice"]) for item in items}
    assert any(v.startswith("festival:") for v in voices) and voices - set(FESTIVAL_HELD_OUT_VOICES)
    applied = [item.meta["augment"] for item in items]
    assert all(isinstance(a, dict) for a in applied)
    assert any("tempo" in a for a in applied) and any("codec" in a for a in applied)  # type: ignore[operator]
    for item in items:
        assert all(parse_arpabet(p.symbol) == p.symbol for p in item.phones)
        assert item.phones[0].start_s == 0.0
        assert item.phones[-1].end_s == pytest.approx(len(item.samples) / RATE, abs=1e-3)


def test_held_out_voices_stay_out_of_the_default_config() -> None:
    config = CorpusConfig()
    assert "slt" not in config.voices
    assert not set(FESTIVAL_HELD_OUT_VOICES) & set(config.festival_voices)
    assert config.festival_share > 0 and config.augmentation.share > 0
