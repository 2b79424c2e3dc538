"""Built-in text to speech through Debian's flite or espeak-ng: no model download."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from engines.errors import FacecastError

__all__ = ["TtsError", "synthesize_speech", "available_engines"]

MAX_TEXT_CHARS = 5000


class TtsError(FacecastError):
    """Text could not be spoken (no TTS engine installed, empty text, engine failure)."""


def available_engines() -> list[str]:
    return [name for name in ("flite", "espeak-ng") if shutil.which(name)]


def synthesize_speech(
    text: str, path: Path, voice: str | None = None, engine: str | None = None
) -> Path:
    """Speak `text` into a wav file at `path` with flite (default) or espeak-ng."""
    text = " ".join(text.split())
    if not text:
        raise TtsError("the text to speak is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise TtsError(
            f"the text is {len(text)} characters; split it into parts of at most {MAX_TEXT_CHARS}"
        )
    engines = available_engines()
    engine = engine or (engines[0] if engines else None)
    if engine is None or engine not in engines:
        raise TtsError(
            "no text-to-speech engine found; install one: apt-get install flite espeak-ng"
        )
    if engine == "flite":
        command = ["flite", "-voice", voice or "kal", "-t", text, "-o", str(path)]
    else:
        command = ["espeak-ng", *(["-v", voice] if voice else []), "-w", str(path), text]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0 or not path.exists() or path.stat().st_size < 100:
        raise TtsError(f"{engine} failed to speak the text: {result.stderr.strip() or 'no output'}")
    return path
