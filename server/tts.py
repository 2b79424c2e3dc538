"""How the live server speaks text: bounded and fair across sessions.

The speech itself comes from engines.audio.speech (flite or espeak-ng, listed
voices only). SpeechSynthesizer schedules it: a few jobs at once in all, one per
session at a time, long text in sentence-sized parts so that a short "hi" from
another session slips in between, and text refused before any work when its
speech could not fit the session's queue.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from engines.audio.ingest import decode_audio_bytes
from engines.audio.speech import MAX_TEXT_CHARS, check_request, speak_to_file

from .errors import SpeechQueueFullError, SynthesisBusyError

__all__ = ["SpeechSynthesizer", "MAX_TEXT_CHARS", "SECONDS_PER_CHAR", "split_text"]

# Upper bound of speech per character (flite rms: 0.071 s), for refusing text
# whose speech cannot fit the queue before synthesizing it.
SECONDS_PER_CHAR = 0.09
_PART_CHARS = 300  # one synthesis job: ~20 s of speech, ~0.3 s of CPU
_WAITING_PER_SESSION = 4  # /speak calls of one session queued behind its current one
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


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
        path = speak_to_file(text, Path(tmp) / "speech.wav", voice=voice, engine=engine)
        return decode_audio_bytes(path.read_bytes(), "speech.wav")


def _check_fits(text: str, free_seconds: float) -> None:
    estimate = len(text) * SECONDS_PER_CHAR
    if estimate > free_seconds:
        raise SpeechQueueFullError(
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
        speech cannot fit the queue's `free_seconds()` (SpeechQueueFullError: checked on
        arrival and again when its turn comes) or bad requests (SynthesisError)."""
        text, engine = check_request(text, voice)
        _check_fits(text, free_seconds())
        key = id(lock)
        if self._waiting.get(key, 0) > _WAITING_PER_SESSION:  # one running, the rest waiting
            raise SynthesisBusyError(
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
