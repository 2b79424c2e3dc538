"""Speech synthesis with Debian's flite and espeak-ng: no model download.

The one place facecast runs a speech engine: the live server's /speak,
`facecast render --text`, the benchmarks and the training corpus (which also
asks flite for its phone timings) all come through here. Voices are checked
against what the installed engine lists before it runs (flite loads any path
or URL it is given as a voice, and falls back to kal silently); every run has a
timeout; every failure is a SynthesisError whose message says what to do.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from ..errors import SynthesisError

__all__ = [
    "ENGINES",
    "MAX_TEXT_CHARS",
    "available_engines",
    "available_voices",
    "check_request",
    "read_engine_wav",
    "run_engine",
    "speak_to_file",
]

ENGINES = ("flite", "espeak-ng")
# About 3.5 minutes of speech at flite's slowest voice (0.07 s per character).
MAX_TEXT_CHARS = 3000
_TIMEOUT_S = 60


def available_engines() -> list[str]:
    """The speech engines installed here, flite first."""
    return [name for name in ENGINES if shutil.which(name)]


@cache
def available_voices(engine: str) -> tuple[str, ...]:
    """The voices `engine` lists: `flite -lv`, or the language names of `espeak-ng --voices`."""
    if engine not in available_engines():
        raise SynthesisError(f"{engine} is not installed; install it: apt-get install {engine}")
    if engine == "flite":
        listing = run_engine(["flite", "-lv"], "list its voices", timeout_s=10).stdout
        names = listing.split(":", 1)[1].split() if ":" in listing else []
    else:
        rows = run_engine(["espeak-ng", "--voices"], "list its voices", timeout_s=10).stdout
        names = [row.split()[1] for row in rows.splitlines()[1:] if len(row.split()) > 1]
    return tuple(names)


def run_engine(
    command: list[str], what: str, timeout_s: float = _TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run a speech engine's command; SynthesisError when it cannot run, fails or times out."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise SynthesisError(
            f"{command[0]} did not {what} within {timeout_s:g} s; send shorter text"
        ) from exc
    except OSError as exc:
        raise SynthesisError(f"{command[0]} could not run to {what}: {exc}") from exc
    if result.returncode != 0:
        raise SynthesisError(
            f"{command[0]} failed to {what}: {result.stderr.strip()[:200] or 'no message'}"
        )
    return result


def check_request(text: str, voice: str | None, engine: str | None = None) -> tuple[str, str]:
    """The normalized text and the engine that will speak it, or SynthesisError saying what
    to change (empty or over-long text, no engine, a voice the engine does not list)."""
    text = " ".join(text.split())
    if not text:
        raise SynthesisError("the text to speak is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise SynthesisError(
            f"the text is {len(text)} characters; split it into parts of at most {MAX_TEXT_CHARS}"
        )
    installed = available_engines()
    engine = engine or (installed[0] if installed else None)
    if engine is None or engine not in installed:
        raise SynthesisError(
            "no text-to-speech engine found; install one: apt-get install flite espeak-ng"
        )
    if voice is not None and voice not in available_voices(engine):
        voices = available_voices(engine)
        listed = ", ".join(voices[:12]) + (", ..." if len(voices) > 12 else "")
        raise SynthesisError(f"unknown {engine} voice {voice[:40]!r}; choose one of {listed}")
    return text, engine


def speak_to_file(
    text: str, path: Path, voice: str | None = None, engine: str | None = None
) -> Path:
    """Speak `text` into a wav file at `path` with flite (default) or espeak-ng."""
    text, engine = check_request(text, voice, engine)
    if engine == "flite":
        command = ["flite", "-voice", voice or "kal", "-t", text, "-o", str(path)]
    else:
        command = ["espeak-ng", *(["-v", voice] if voice else []), "-w", str(path), text]
    run_engine(command, "speak the text")
    if not path.exists() or path.stat().st_size < 100:
        raise SynthesisError(f"{engine} wrote no speech for the text; try other words")
    return path


def read_engine_wav(path: Path, sample_rate: int) -> np.ndarray:
    """A speech engine's 16-bit wav as mono float32 (S,) at sample_rate."""
    rate, data = wavfile.read(str(path))
    samples = data.astype(np.float32) / 32768.0
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if rate != sample_rate:
        g = int(np.gcd(rate, sample_rate))
        samples = resample_poly(samples, sample_rate // g, rate // g).astype(np.float32)
    return samples
