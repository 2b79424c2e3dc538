"""Shared fixtures: real speech and silence made on the fly (no audio files in the repo)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.live import LiveServer, run_server
from tests.speech import SpeechClip, flite_voices, make_speech_clip, tts_available, write_wav

# Open vowels (AA, AO, AE, AW) and bilabials: a mouth that follows the phones must
# open wide and close on this sentence; mostly close vowels (ee, oo) barely part the lips.
SPEECH_TEXT = "Bob bought a large hot pot of apple jam, and Pam laughed out loud at the cat."
SAMPLE_RATE = 16000


@pytest.fixture(scope="session")
def speech_clip(tmp_path_factory: pytest.TempPathFactory) -> SpeechClip:
    """About 3-4 s of flite speech with 1 s of digital silence before and after, 16 kHz mono wav.

    The speech span (speech_start_s, speech_end_s) is measured, not assumed.
    """
    if not tts_available("flite"):
        pytest.skip("flite is not installed (apt-get install flite); tests make their own speech")
    directory = tmp_path_factory.mktemp("speech")
    # kal16 is flite's 16 kHz voice: real energy above 4 kHz for the fricative features.
    voice = "kal16" if "kal16" in flite_voices() else "kal"
    return make_speech_clip(SPEECH_TEXT, directory / "speech.wav", SAMPLE_RATE, voice=voice)


@pytest.fixture(scope="session")
def speech_path(speech_clip: SpeechClip) -> Path:
    """Path of the speech_clip wav (16 kHz mono, 1 s silence, speech, 1 s silence)."""
    return speech_clip.path


@pytest.fixture(scope="session")
def speech_span(speech_clip: SpeechClip) -> tuple[float, float]:
    """(start_s, end_s) of the speech inside speech_path."""
    return speech_clip.speech_start_s, speech_clip.speech_end_s


@pytest.fixture(scope="session")
def silence_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of digital silence, 16 kHz mono 16-bit wav."""
    path = tmp_path_factory.mktemp("silence") / "silence.wav"
    return write_wav(path, np.zeros(3 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real `facecast serve` subprocess on loopback for all live tests.

    Capped at 3 sessions and closing unwatched sessions after 4 s, so the cap
    and the cleanup of vanished clients are testable in seconds.
    """
    data_dir = tmp_path_factory.mktemp("live")
    args = ("--max-sessions", "3", "--session-idle-timeout", "4")
    with run_server(data_dir, *args) as server:
        yield server
