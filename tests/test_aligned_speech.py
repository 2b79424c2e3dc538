"""engines.training.aligned_speech: espeak-ng voices and recordings, phones by forced alignment."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from engines.errors import SynthesisError
from engines.training.aligned_speech import (
    ESPEAK_HELD_OUT_VOICES,
    ESPEAK_TRAIN_VOICES,
    iter_recordings,
    synthesize_espeak,
)
from engines.training.corpus import build_corpus, load_corpus, synthesize
from engines.training.phone_align import PhoneAligner

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None,
    reason="needs espeak-ng and flite (apt-get install espeak-ng flite)",
)
RATE = 16000


@pytest.fixture(scope="module")
def aligner() -> PhoneAligner:
    return PhoneAligner(RATE)


def _check_tiling(phones, samples: np.ndarray) -> None:
    assert phones[0].start_s == 0.0
    assert abs(phones[-1].end_s - len(samples) / RATE) < 1e-6
    for a, b in zip(phones, phones[1:], strict=False):
        assert abs(a.end_s - b.start_s) < 1e-9 and b.end_s > b.start_s


def test_held_out_voices_are_not_trained_on() -> None:
    assert not set(ESPEAK_HELD_OUT_VOICES) & set(ESPEAK_TRAIN_VOICES)
    accents = {v.split(":")[1].split("+")[0] for v in ESPEAK_TRAIN_VOICES}
    assert all(v.split(":")[1].split("+")[0] not in accents for v in ESPEAK_HELD_OUT_VOICES)


@pytest.mark.parametrize("voice", [ESPEAK_TRAIN_VOICES[0], ESPEAK_HELD_OUT_VOICES[0]])
def test_espeak_speech_is_aligned_to_its_text(aligner: PhoneAligner, voice: str) -> None:
    # Not every sentence aligns for every espeak-ng voice (build_corpus falls back
    # to flite then); this one does for these voices.
    speech = synthesize_espeak("Please pass me the blue bowl.", voice, aligner, 150, 50)
    _check_tiling(speech.phones, speech.samples)
    symbols = [p.symbol for p in speech.phones if p.symbol != "SIL"]
    assert symbols[:4] == ["P", "L", "IY", "Z"]  # "please"
    assert [s for s in symbols if s in "PBM"] == ["P", "P", "M", "B", "B"]
    # Speech where the aligner put phones, near-silence where it put the leading pause.
    lead = speech.phones[0]
    if lead.symbol == "SIL" and lead.end_s > 0.05:
        quiet = np.abs(speech.samples[: int(lead.end_s * RATE) - 400]).max()
        assert quiet < 0.1 * np.abs(speech.samples).max()


def test_espeak_refuses_unknown_voices_and_odd_settings(aligner: PhoneAligner) -> None:
    with pytest.raises(SynthesisError, match="voices=en"):
        synthesize_espeak("hello", "espeak:xx-nowhere+m1", aligner)
    with pytest.raises(ValueError, match="words_per_minute"):
        synthesize_espeak("hello", ESPEAK_TRAIN_VOICES[0], aligner, words_per_minute=5)


def _recordings(folder: Path) -> None:
    """Two usable recordings (wav + txt), one without transcript, one corrupt file."""
    folder.mkdir()
    for name, text in (("a", "Paul moved the boat."), ("b", "Maybe we will buy a map.")):
        speech = synthesize(text, "slt", 1.0, None, RATE)
        pcm = (speech.samples * 32767).astype(np.int16)
        wavfile.write(str(folder / f"{name}.wav"), RATE, pcm)
        (folder / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    wavfile.write(str(folder / "c.wav"), RATE, np.zeros(RATE, np.int16))  # no transcript
    (folder / "d.wav").write_bytes(b"RIFF not really a wav")
    (folder / "d.txt").write_text("nothing here", encoding="utf-8")


def test_recordings_folder_aligns_what_it_can_and_names_what_it_skips(
    aligner: PhoneAligner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _recordings(tmp_path / "rec")
    with caplog.at_level(logging.WARNING):
        found = list(iter_recordings(tmp_path / "rec", aligner))
    assert [s.source for s in found] == ["a.wav", "b.wav"]
    for speech in found:
        _check_tiling(speech.phones, speech.samples)
    assert [p.symbol for p in found[0].phones if p.symbol != "SIL"][:2] == ["P", "AO"]
    assert "c.wav: no transcript" in caplog.text and "skipping d.wav" in caplog.text
    with pytest.raises(FileNotFoundError):
        list(iter_recordings(tmp_path / "missing", aligner))


def test_build_corpus_appends_recordings(tmp_path: Path) -> None:
    _recordings(tmp_path / "rec")
    manifest = build_corpus(tmp_path / "corpus", count=2, seed=3, recordings=tmp_path / "rec")
    items = list(load_corpus(manifest))
    assert len(items) == 4
    assert [item.meta["voice"] for item in items[2:]] == ["a.wav", "b.wav"]
    assert items[2].meta["text"] == "Paul moved the boat."
