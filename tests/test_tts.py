"""Text to speech: only listed voices, bounded text, and long text in sentence-sized parts."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from engines.audio.speech import MAX_TEXT_CHARS, available_voices, check_request
from engines.errors import SynthesisError
from server.errors import SpeechQueueFullError, SynthesisBusyError
from server.tts import SpeechSynthesizer, split_text
from tests.speech import tts_available

pytestmark = pytest.mark.skipif(not tts_available("flite"), reason="flite is not installed")


def test_only_voices_the_engine_lists_are_accepted() -> None:
    assert {"kal", "slt", "awb", "rms"} <= set(available_voices("flite"))
    for voice in ("http://127.0.0.1:9/x.flitevox", "/etc/passwd", "../kal", "nope", "kal slt"):
        with pytest.raises(SynthesisError, match="unknown flite voice"):
            check_request("hello", voice)
    assert check_request("  hello   there ", "slt") == ("hello there", "flite")


def test_text_is_bounded_and_split_into_sentence_sized_parts() -> None:
    with pytest.raises(SynthesisError, match=str(MAX_TEXT_CHARS)):
        check_request("a" * (MAX_TEXT_CHARS + 1), None)
    with pytest.raises(SynthesisError, match="empty"):
        check_request(" \n ", None)
    text = "One two three. " * 60 + "x" * 700
    parts = split_text(" ".join(text.split()), max_chars=100)
    assert all(len(part) <= 100 for part in parts), [len(p) for p in parts]
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")  # nothing lost, in order
    assert all(part.endswith(".") for part in parts[:-7])  # cut at sentence ends where it can


async def _speak_twice_at_once(synthesizer: SpeechSynthesizer) -> list[object]:
    lock = asyncio.Lock()
    calls = [
        synthesizer.speak(lock, lambda: 300.0, "Hello there. How are you?", "kal") for _ in range(7)
    ]
    return await asyncio.gather(*calls, return_exceptions=True)


def test_a_session_runs_one_job_at_a_time_and_at_most_four_wait() -> None:
    synthesizer = SpeechSynthesizer(workers=2)
    try:
        results = asyncio.run(_speak_twice_at_once(synthesizer))
    finally:
        synthesizer.shutdown()
    spoken = [r for r in results if isinstance(r, np.ndarray)]
    refused = [r for r in results if isinstance(r, SynthesisBusyError)]
    assert len(spoken) == 5 and len(refused) == 2, results
    assert all(len(r) > 48000 for r in spoken)  # over a second of 48 kHz speech each


def test_text_whose_speech_cannot_fit_the_queue_is_refused_before_synthesis() -> None:
    synthesizer = SpeechSynthesizer(workers=1)
    try:
        with pytest.raises(SpeechQueueFullError, match="free"):
            asyncio.run(synthesizer.speak(asyncio.Lock(), lambda: 1.0, "word " * 40, None))
    finally:
        synthesizer.shutdown()
