"""Shared fixtures: real speech and silence made on the fly (no audio files in the repo)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.live import LiveServer, run_server
from tests.loopback import use_loopback_ice
from tests.speech import SpeechClip, flite_voices, make_speech_clip, tts_available, write_wav

# Open vowels (AA, AO, AE, AW) and bilabials: a mouth that follows the phones must
# open wide and close on this sentence; mostly close vowels (ee, oo) barely part the lips.
SPEECH_TEXT = "Bob bought a large hot pot of apple jam, and Pam laughed out loud at the cat."
SAMPLE_RATE = 16000

# Every aiortc peer a test makes offers 127.0.0.1 only (the servers do too, see tests.live).
use_loopback_ice()


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


# Small limits, so the hardening tests see every one of them within seconds.
HARDENED_ARGS = (
    "--max-sessions",
    "4",
    "--session-idle-timeout",
    "3",
    "--peer-connect-timeout",
    "2",
    "--max-portraits",
    "2",
    "--max-queued-speech",
    "20",
)


@pytest.fixture(scope="session")
def hardened_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real `facecast serve` with small limits, for the hardening and fuzz tests."""
    with run_server(tmp_path_factory.mktemp("hardened"), *HARDENED_ARGS) as server:
        yield server


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real `facecast serve` with FACECAST_API_TOKEN set (and -v logging, as all are)."""
    env = {"FACECAST_API_TOKEN": TEST_TOKEN}
    with run_server(tmp_path_factory.mktemp("token"), env=env) as server:
        yield server


TEST_TOKEN = "s3cret-token-for-tests"
