"""Training speech whose phone timings come from forced alignment: espeak-ng and real recordings.

flite reports the segment times it synthesized from (engines.training.corpus); espeak-ng
and a person's recordings do not, so their phones come from pocketsphinx
(engines.training.phone_align.PhoneAligner.align, against the known transcript). That
widens the corpus with voices flite lacks (espeak-ng's accents and its voice
variants: other formants, pitch and breathiness) and lets a user add real speech.

Caveat: the lip-sync judge in benchmarks/ is the same aligner. Alignment is
only used for these two sources, the phone classes the judge scores (bilabials,
open vowels) are the most reliable part of an alignment, and the held-out
evaluation voices are never in the training corpus, so the model cannot learn
the judge's answers for the test audio; but it may learn its boundary habits.

espeak-ng voices are written "espeak:<voice>+<variant>", e.g. "espeak:en-us+m3".
A recordings folder holds audio files in any format FFmpeg decodes; a file with
a same-stem .txt beside it is aligned to that transcript, one without is
skipped with a logged reason (free phone recognition is too loose to train on).
"""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.speech import available_voices, run_engine
from ..errors import InvalidAudioError, SynthesisError
from .phone_align import PhoneAligner
from .visemes import Phone

__all__ = [
    "ESPEAK_PREFIX",
    "ESPEAK_TRAIN_VOICES",
    "ESPEAK_HELD_OUT_VOICES",
    "AlignedSpeech",
    "espeak_voices",
    "synthesize_espeak",
    "iter_recordings",
]

logger = logging.getLogger(__name__)

ESPEAK_PREFIX = "espeak:"
# Accents x variants for training; the held-out ones (other accents, other
# variants) are for evaluation only, so the judge hears voices the model never did.
ESPEAK_TRAIN_VOICES: tuple[str, ...] = tuple(
    f"{ESPEAK_PREFIX}{accent}+{variant}"
    for accent in ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp")
    for variant in ("m1", "m3", "f2", "f4")
)
ESPEAK_HELD_OUT_VOICES: tuple[str, ...] = (
    f"{ESPEAK_PREFIX}en-029+m2",
    f"{ESPEAK_PREFIX}en-us-nyc+f3",
)
_AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm"}


@dataclass(frozen=True)
class AlignedSpeech:
    """samples: float32 (S,) mono at sample_rate; phones from forced alignment, in order."""

    text: str
    source: str  # "espeak:<voice>" or the recording's file name
    samples: np.ndarray
    sample_rate: int
    phones: tuple[Phone, ...]


@functools.lru_cache(maxsize=1)
def espeak_voices() -> frozenset[str]:
    """Language names espeak-ng offers (e.g. "en-us"); SynthesisError without espeak-ng."""
    return frozenset(available_voices("espeak-ng"))


def synthesize_espeak(
    text: str,
    voice: str,
    aligner: PhoneAligner,
    words_per_minute: int = 175,
    pitch: int = 50,
    sample_rate: int = 16000,
) -> AlignedSpeech:
    """Speak text with an espeak-ng voice ("espeak:en-us+m3"); phones by forced alignment.

    pitch is espeak-ng's -p (0-99, 50 is the voice's own). Raises SynthesisError
    when espeak-ng fails or the speech cannot be aligned to the text.
    """
    name = voice.removeprefix(ESPEAK_PREFIX)
    accent = name.split("+")[0]
    if accent not in espeak_voices():
        raise SynthesisError(
            f"espeak-ng has no voice {accent!r}; `espeak-ng --voices=en` lists them"
        )
    if not 80 <= words_per_minute <= 450 or not 0 <= pitch <= 99:
        raise ValueError("words_per_minute must be in [80, 450] and pitch in [0, 99]")
    with tempfile.TemporaryDirectory(prefix="facecast-espeak-") as tmp:
        path = Path(tmp) / "speech.wav"
        command = ["espeak-ng", "-v", name, "-s", str(words_per_minute), "-p", str(pitch)]
        run_engine([*command, "-w", str(path), text], f"speak {text!r}")
        if not path.is_file():
            raise SynthesisError(f"espeak-ng wrote no wav for {text!r}")
        samples = _read_audio(path, sample_rate)
    return AlignedSpeech(text, voice, samples, sample_rate, _align(aligner, samples, text))


def iter_recordings(
    folder: Path, aligner: PhoneAligner, sample_rate: int = 16000
) -> Iterator[AlignedSpeech]:
    """Each audio file in folder with a same-stem .txt transcript, aligned, in name order.

    Files without a transcript, undecodable files and failed alignments are
    skipped with a warning that names the file and the reason.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no recordings folder at {folder}")
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in _AUDIO_SUFFIXES):
        transcript = path.with_suffix(".txt")
        if not transcript.is_file():
            logger.warning("skipping %s: no transcript %s beside it", path.name, transcript.name)
            continue
        text = " ".join(transcript.read_text(encoding="utf-8").split())
        try:
            samples = _read_audio(path, sample_rate)
            phones = _align(aligner, samples, text)
        except (InvalidAudioError, SynthesisError) as exc:
            logger.warning("skipping %s: %s", path.name, exc)
            continue
        yield AlignedSpeech(text, path.name, samples, sample_rate, phones)


def _align(aligner: PhoneAligner, samples: np.ndarray, text: str) -> tuple[Phone, ...]:
    """Phones tiling [0, duration]: SIL fills the gaps the aligner leaves at either end."""
    try:
        phones = aligner.align(samples, text)
    except ValueError as exc:
        raise SynthesisError(f"could not align {text!r}: {exc}") from exc
    duration = len(samples) / aligner.sample_rate
    tiled: list[Phone] = []
    cursor = 0.0
    for phone in phones:
        start, end = max(phone.start_s, cursor), min(phone.end_s, duration)
        if start > cursor + 1e-6:
            tiled.append(Phone("SIL", cursor, start))
        if end > start:
            tiled.append(Phone(phone.symbol, start, end))
            cursor = end
    if cursor < duration - 1e-6:
        tiled.append(Phone("SIL", cursor, duration))
    if not any(p.symbol != "SIL" for p in tiled):
        raise SynthesisError(f"the alignment of {text!r} holds no phones")
    return tuple(tiled)


def _read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """engines.audio.decoding.read_audio, imported when a file is read: it loads PyAV
    (FFmpeg), which a GPU box running only the engines and their tests may lack."""
    from ..audio.decoding import read_audio

    return read_audio(path, sample_rate)
