"""The independent lip-sync judge: pocketsphinx phones checked against flite's own timings."""

from __future__ import annotations

import difflib
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engines.training.visemes import Phone, parse_arpabet
from tests.speech import flite_voices, load_wav, tts_available

pytest.importorskip("pocketsphinx", reason="pip install pocketsphinx for the phone aligner")

from engines.training.phone_align import (  # noqa: E402
    OPENNESS,
    PhoneAligner,
    bilabial_closure_rate,
    openness_correlation,
    openness_curve,
)

RATE = 16000
TEXT = "Peter picked a bowl of blue berries, and she was surprised to see him."
MORE = "My mother bought a big basket of plums at the market by the bay."
BILABIALS = {"P", "B", "M"}

Clip = tuple[np.ndarray, list[Phone], str]  # samples (S,) at RATE, flite's phones, text


def _flite(text: str, voice: str, path: Path) -> Clip:
    """flite speech at 16 kHz and its own segment timings (-psdur prints each END time)."""
    out = subprocess.run(
        ["flite", "-voice", voice, "-psdur", "-t", text, "-o", str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    phones, start = [], 0.0
    for token in out.split():
        name, end = token.rsplit(":", 1)
        phones.append(Phone(parse_arpabet(name), start, float(end)))
        start = float(end)
    samples, _ = load_wav(path, RATE)
    return samples, phones, text


@pytest.fixture(scope="module")
def aligner() -> PhoneAligner:
    return PhoneAligner(RATE)  # decoders load once for the module


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    """Two sentences in two voices; the first is slt saying TEXT."""
    if not tts_available("flite"):
        pytest.skip("flite is not installed (apt-get install flite); tests make their own speech")
    voices = [v for v in ("slt", "kal16") if v in flite_voices()]
    if not voices:
        pytest.skip("flite has neither the slt nor the kal16 voice")
    directory = tmp_path_factory.mktemp("phone_align")
    return [
        _flite(text, voice, directory / f"{voice}{i}.wav")
        for voice in voices
        for i, text in enumerate((TEXT, MORE))
    ]


def _matched(ref: list[Phone], hyp: list[Phone]) -> tuple[float, list[tuple[Phone, Phone]]]:
    """Symbol-sequence similarity and the pairs of phones that match in the best alignment."""
    matcher = difflib.SequenceMatcher(
        a=[p.symbol for p in ref], b=[p.symbol for p in hyp], autojunk=False
    )
    pairs = [
        (ref[b.a + k], hyp[b.b + k]) for b in matcher.get_matching_blocks() for k in range(b.size)
    ]
    return matcher.ratio(), pairs


def test_align_gives_flite_phone_sequence_in_order(aligner: PhoneAligner, clips: list[Clip]):
    samples, ref, text = clips[0]
    phones = aligner.align(samples, text)
    ratio, _ = _matched(ref, phones)
    assert ratio > 0.85, [p.symbol for p in phones]  # measured 0.95 (AX/AA vs AH, one pau)
    assert phones[0].start_s >= 0.0 and phones[-1].end_s <= len(samples) / RATE + 1e-6
    for before, after in zip(phones[:-1], phones[1:], strict=True):
        assert before.start_s < before.end_s <= after.start_s
    assert phones[0].symbol == "SIL" and phones[-1].symbol == "SIL"  # flite's leading/trailing pau


def test_align_boundaries_agree_with_flite(aligner: PhoneAligner, clips: list[Clip]):
    errors = []
    for samples, ref, text in clips:
        _, pairs = _matched(ref, aligner.align(samples, text))
        errors += [abs(r.start_s - h.start_s) for r, h in pairs if r.symbol != "SIL"]
    # Measured over 4 clips: median ~10 ms, p90 ~35 ms.
    assert np.median(errors) < 0.025
    assert np.percentile(errors, 90) < 0.06


def test_recognize_finds_flite_bilabials(aligner: PhoneAligner, clips: list[Clip]):
    hits = total = 0
    tolerance = 0.06
    for samples, ref, _ in clips:
        found = [p for p in aligner.recognize(samples) if p.symbol in BILABIALS]
        for b in (p for p in ref if p.symbol in BILABIALS):
            total += 1
            hits += any(
                p.start_s < b.end_s + tolerance and p.end_s > b.start_s - tolerance for p in found
            )
    assert total >= 20
    assert hits / total > 0.7  # measured ~0.9 over slt/kal16/awb/rms


def test_recognize_returns_ordered_phones(aligner: PhoneAligner, clips: list[Clip]):
    samples, _, _ = clips[0]
    phones = aligner.recognize(samples)
    assert len(phones) > 20
    assert all(p.symbol == parse_arpabet(p.symbol) for p in phones)
    for before, after in zip(phones[:-1], phones[1:], strict=True):
        assert before.start_s < before.end_s <= after.start_s
        assert not before.symbol == after.symbol == "SIL"  # silence runs are merged


def test_other_sample_rates_are_resampled(clips: list[Clip]):
    samples, ref, text = clips[0]
    at_48k = np.repeat(samples, 3)  # crude, but the band below 8 kHz survives
    ratio, _ = _matched(ref, PhoneAligner(48000).align(at_48k, text))
    assert ratio > 0.8


def test_unknown_words_and_unalignable_text_are_refused(aligner: PhoneAligner):
    with pytest.raises(ValueError, match="xyzzyq, zzvb"):
        aligner.align(np.zeros(RATE, np.float32), "Bob zzvb a xyzzyq apple")
    with pytest.raises(ValueError, match="could not align"):  # 50 ms cannot hold 7 words
        aligner.align(np.zeros(800, np.float32), TEXT)
    assert aligner.recognize(np.zeros(160, np.float32)) == []  # 10 ms: nothing to decode
    with pytest.raises(ValueError, match="no words"):
        aligner.align(np.zeros(RATE, np.float32), " ,. ")


@pytest.mark.parametrize(
    "samples, message",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((RATE, 2), np.float32), "shape"),
        (np.zeros(RATE, np.int16), "floats"),
        (np.full(RATE, np.nan, np.float32), "finite"),
    ],
)
def test_bad_audio_is_refused(aligner: PhoneAligner, samples: np.ndarray, message: str):
    with pytest.raises(ValueError, match=message):
        aligner.recognize(samples)
    with pytest.raises(ValueError, match=message):
        aligner.align(samples, "bob")


def test_bad_rate_is_refused():
    for rate in (0, 4000, 16000.0):
        with pytest.raises(ValueError, match="sample_rate"):
            PhoneAligner(rate)  # type: ignore[arg-type]


PHONES = [  # "bob ate a blue apple"-like, with silence at both ends
    Phone("SIL", 0.0, 0.3),
    Phone("B", 0.3, 0.36),
    Phone("AA1", 0.36, 0.5),
    Phone("B", 0.5, 0.56),
    Phone("EY", 0.56, 0.7),
    Phone("P", 0.7, 0.72),  # shorter than 40 ms: not judged
    Phone("M", 0.72, 0.8),
    Phone("AE", 0.8, 1.0),
    Phone("SIL", 1.0, 1.4),
]
FPS = 25.0


def test_closure_rate_is_one_when_lips_close_on_every_bilabial():
    jaw = openness_curve(PHONES, FPS, 35)  # open on vowels, 0 on consonants
    assert bilabial_closure_rate(PHONES, np.zeros(35), jaw, FPS) == 1.0
    # An open jaw with mouthClose pressing the lips shut also counts as closed.
    assert bilabial_closure_rate(PHONES, np.full(35, 0.5), np.full(35, 0.5), FPS) == 1.0


def test_closure_rate_is_zero_when_lips_never_close():
    jaw = np.full(35, 0.4)
    assert bilabial_closure_rate(PHONES, np.zeros(35), jaw, FPS) == 0.0
    # Closing only on the 20 ms P, which is not judged, still scores 0 of 3 (at 100 fps
    # frame 71 lies in the P alone).
    jaw = np.full(140, 0.4)
    jaw[71] = 0.0
    assert bilabial_closure_rate(PHONES, np.zeros(140), jaw, 100.0, slack_s=0.0) == 0.0
    assert bilabial_closure_rate(PHONES, np.zeros(140), jaw, 100.0, 0.0, slack_s=0.0) == 0.25


def test_closure_rate_without_bilabials_is_nan():
    assert math.isnan(bilabial_closure_rate([Phone("AA", 0, 1)], np.zeros(5), np.zeros(5), FPS))
    with pytest.raises(ValueError, match="differ"):
        bilabial_closure_rate(PHONES, np.zeros(5), np.zeros(6), FPS)


def test_openness_correlation_finds_the_lag():
    curve = openness_curve(PHONES, FPS, 40)
    assert curve.max() == OPENNESS["AA"] and curve[0] == 0.0
    late = np.concatenate([np.zeros(2), curve[:-2]])  # the jaw follows 2 frames late
    r, lag = openness_correlation(PHONES, late, FPS, max_lag_frames=6)
    assert lag == 2 and r > 0.99
    early = np.concatenate([curve[3:], np.zeros(3)])
    assert openness_correlation(PHONES, early, FPS, max_lag_frames=6)[1] == -3


def test_openness_correlation_refuses_bad_input():
    with pytest.raises(ValueError, match="shape"):
        openness_correlation(PHONES, np.zeros((10, 2)), FPS)
    with pytest.raises(ValueError, match="fps"):
        openness_correlation(PHONES, np.zeros(40), 0.0)
    r, lag = openness_correlation(PHONES, np.zeros(40), FPS)  # a still jaw correlates with nothing
    assert math.isnan(r) and lag == 0
