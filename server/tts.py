"""Built-in text to speech through Debian's flite or espeak-ng: no model download.

Only voices the installed engine lists are accepted: the voice is passed to
the engine's command line, and flite loads any path or URL it is given there.
`SpeechSynthesizer` is how the live server speaks: bounded and fair across
sessions (one job per session at a time, a few at once in all, long text in
sentence-sized parts so a short "hi" from another session slips in between).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np

from engines.audio.ingest import decode_audio_bytes
from engines.errors import FacecastError

__all__ = [
    "TtsError",
    "TtsBusyError",
    "SpeechSynthesizer",
    "synthesize_speech",
    "available_engines",
    "available_voices",
    "MAX_TEXT_CHARS",
]

# About 3.5 minutes of speech at flite's slowest voice (0.07 s per character),
# inside the 5-minute speech queue.
MAX_TEXT_CHARS = 3000
# Upper bound of speech per character (flite rms: 0.071 s), for refusing text
# whose speech cannot fit the queue before synthesizing it.
SECONDS_PER_CHAR = 0.09
_PART_CHARS = 300  # one synthesis job: ~20 s of speech, ~0.3 s of CPU
_WAITING_PER_SESSION = 4  # /speak calls of one session queued behind its current one
_ENGINE_TIMEOUT_S = 60
_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+/-]{0,39}$")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


class TtsError(FacecastError):
    """Text could not be spoken (no TTS engine installed, empty text, engine failure)."""


class TtsBusyError(OverflowError):
    """This session already has its share of speech synthesis queued."""


def available_engines() -> list[str]:
    return [name for name in ("flite", "espeak-ng") if shutil.which(name)]


@cache
def available_voices(engine: str) -> tuple[str, ...]:
    """The voices `engine` lists: flite -lv, or the language codes of espeak-ng --voices."""
    if engine == "flite":
        out = _run_listing(["flite", "-lv"])
        names = out.split(":", 1)[1].split() if ":" in out else []
    else:
        rows = _run_listing(["espeak-ng", "--voices"]).splitlines()[1:]
        names = [row.split()[1] for row in rows if len(row.split()) > 1]
    return tuple(name for name in names if _VOICE_NAME.match(name))


def _run_listing(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout + result.stderr


def _choose_engine(engine: str | None) -> str:
    engines = available_engines()
    engine = engine or (engines[0] if engines else None)
    if engine is None or engine not in engines:
        raise TtsError(
            "no text-to-speech engine found; install one: apt-get install flite espeak-ng"
        )
    return engine


def check_request(text: str, voice: str | None, engine: str | None = None) -> tuple[str, str]:
    """The normalized text and the engine, or TtsError saying what to change. No synthesis."""
    text = " ".join(text.split())
    if not text:
        raise TtsError("the text to speak is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise TtsError(
            f"the text is {len(text)} characters; split it into parts of at most {MAX_TEXT_CHARS}"
        )
    engine = _choose_engine(engine)
    if voice is not None:
        voices = available_voices(engine)
        if voice not in voices:
            listed = ", ".join(voices[:12]) + (", ..." if len(voices) > 12 else "")
            raise TtsError(f"unknown {engine} voice {voice[:40]!r}; choose one of {listed}")
    return text, engine


def synthesize_speech(
    text: str, path: Path, voice: str | None = None, engine: str | None = None
) -> Path:
    """Speak `text` into a wav file at `path` with flite (default) or espeak-ng."""
    text, engine = check_request(text, voice, engine)
    if engine == "flite":
        command = ["flite", "-voice", voice or "kal", "-t", text, "-o", str(path)]
    else:
        command = ["espeak-ng", *(["-v", voice] if voice else []), "-w", str(path), text]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_ENGINE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TtsError(f"{engine} took over {_ENGINE_TIMEOUT_S} s; send shorter text") from exc
    if result.returncode != 0 or not path.exists() or path.stat().st_size < 100:
        raise TtsError(f"{engine} failed to speak the text: {result.stderr.strip() or 'no output'}")
    return path


def split_text(text: str, max_chars: int = _PART_CHARS) -> list[str]:
    """Whole sentences packed into parts of at most max_chars; a longer sentence is cut
    between words (and a longer word, a URL say, into pieces)."""
    pieces: list[str] = []  # sentences, or word runs of an over-long sentence
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        words = [
            w[i : i + max_chars] for w in sentence.split() for i in range(0, len(w), max_chars)
        ]
        pieces.extend(_pack(words, max_chars))
    return _pack(pieces, max_chars)


def _pack(items: list[str], max_chars: int) -> list[str]:
    """Join items with spaces into as few strings of at most max_chars as order allows."""
    packed: list[str] = []
    for item in items:
        if packed and len(packed[-1]) + 1 + len(item) <= max_chars:
            packed[-1] += " " + item
        elif item:
            packed.append(item)
    return packed


def _speak_part(text: str, voice: str | None, engine: str) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="facecast-tts-") as tmp:
        path = synthesize_speech(text, Path(tmp) / "speech.wav", voice=voice, engine=engine)
        return decode_audio_bytes(path.read_bytes(), "speech.wav")


def _check_fits(text: str, free_seconds: float) -> None:
    estimate = len(text) * SECONDS_PER_CHAR
    if estimate > free_seconds:
        raise OverflowError(
            f"the speech queue has {free_seconds:.0f} s free and this text would take up "
            f"to {estimate:.0f} s; wait for playback, interrupt, or send less text"
        )


class SpeechSynthesizer:
    """Text -> float32 (S,) speech at 48 kHz for the live server, bounded and fair.

    `workers` jobs run at once on their own threads (not the shared executor,
    which other requests need). A session runs one job at a time: its further
    /speak calls wait their turn (at most _WAITING_PER_SESSION, then 429), and
    long text goes in sentence-sized parts, so sessions take turns part by part.
    """

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="facecast-tts")
        self._waiting: dict[int, int] = {}  # per session lock: its jobs, running or waiting

    async def speak(
        self,
        lock: asyncio.Lock,
        free_seconds: Callable[[], float],
        text: str,
        voice: str | None,
    ) -> np.ndarray:
        """Synthesize under the session's `lock`; refuses, before any work, text whose
        speech cannot fit the queue's `free_seconds()` (OverflowError: checked on arrival
        and again when its turn comes) or bad requests (TtsError)."""
        text, engine = check_request(text, voice)
        _check_fits(text, free_seconds())
        key = id(lock)
        if self._waiting.get(key, 0) > _WAITING_PER_SESSION:  # one running, the rest waiting
            raise TtsBusyError(
                f"this session already has {_WAITING_PER_SESSION} texts waiting to be spoken; "
                "wait for them (playback_started events) before sending more"
            )
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                _check_fits(text, free_seconds())  # what queued up meanwhile counts too
                return await self._synthesize(text, voice, engine)
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]

    async def _synthesize(self, text: str, voice: str | None, engine: str) -> np.ndarray:
        loop = asyncio.get_running_loop()
        blocks = []
        for part in split_text(text):
            blocks.append(
                await loop.run_in_executor(self._executor, _speak_part, part, voice, engine)
            )
        # flite ends every part with its own short silence, so the seams sound like pauses.
        return np.concatenate(blocks).astype(np.float32, copy=False)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
