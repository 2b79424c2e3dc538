"""What the framework adapter tests share: a script run in the framework's own venv
against a live `facecast serve`, its recorded frames and audio, and the measures.

Pipecat and LiveKit need protobuf >= 5 and this venv's mediapipe needs < 5, so each
adapter runs in a venv of its own (.ci/install makes .venv-pipecat and .venv-livekit)
and writes what its sink received to a folder: summary.json (per video frame and
audio block: arrival time; a "timeline" of when each utterance was sent and cut),
frames.npy and audio.npy. Here, in the main venv, the mouth is read from those
pixels by MediaPipe's face mesh (an independent judge) and the sound from the samples.
The scripts parse their arguments with tests/framework_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engines.face import landmarks as fl
from tests.live import ROOT, LiveServer
from tests.loopback import SITE_DIR
from tests.speech import SpeechClip, flite_voices, make_speech_clip, tts_available

FPS = 25
TTS_RATE = 24000  # a common TTS output rate; the adapters declare it to the session
# Sent this far into "This is a long announcement...": the face, ~0.3 s behind the sender,
# is then on "long an-" (open vowels), so the mouth is open when the cut arrives.
CUT_AFTER_S = 1.3
FIRST_TEXT = "Bob bought a large hot pot of apple jam, and Pam laughed out loud at the cat."
SECOND_TEXT = (
    "This is a long announcement that keeps going for quite a while, so that we "
    "can cut it short in the middle and check that the face goes quiet at once."
)
# Best-correlation lag of the mouth against the sound, in frames (positive: the mouth
# after the sound): ITU-R BT.1359 finds sound after picture undetectable up to about
# 125 ms and sound before picture up to about 45 ms, so the mouth may lead by 3 frames
# at 25 fps and trail by 1.
SYNC_LAGS = (-3, 1)
OPEN, CLOSED = 0.04, 0.02  # inner-lip gap / face height (as tests/test_live_session.py)
LOUD, SILENT = 0.01, 0.001  # RMS of full scale


@dataclass(frozen=True)
class Recorded:
    """What a framework's sink received, measured."""

    summary: dict[str, Any]
    out_dir: Path
    at: np.ndarray  # (N,) when each video frame arrived, monotonic s
    gaps: np.ndarray  # (N,) its mouth opening, from the pixels
    audio_at: np.ndarray  # (M,) when each audio block arrived
    audio_rms: np.ndarray  # (M,) its RMS, full scale 1
    audio_blocks: list[np.ndarray]  # (M,) float32 samples of each block

    @property
    def timeline(self) -> dict[str, Any]:
        return self.summary["timeline"]  # type: ignore[no-any-return]

    def load_note(self) -> str:
        sent, dropped = self.timeline["frames_sent"], self.timeline["dropped_frames"]
        return f"(server: {sent} frames sent, {dropped} not rendered in time)"

    def skip_if_starved(self, max_dropped_share: float = 0.2) -> None:
        """Skip a timing or pixel check when the server could not render the face in time.

        Other jobs hogging both cores make the server drop frames (it repeats the last
        one): then an open mouth may never reach the sink and pts jump, which says
        nothing about the adapter. On an unloaded machine no frame is dropped here."""
        sent, dropped = self.timeline["frames_sent"], self.timeline["dropped_frames"]
        if dropped > max_dropped_share * max(sent, 1):
            pytest.skip(f"machine too busy to judge the face: {self.load_note()}")

    def speech_span(self, min_blocks: int) -> tuple[float, float]:
        """When the first utterance was heard: its first and last loud audio block."""
        start, stop = self.timeline["first"]["first_chunk"], self.timeline["second"]["first_chunk"]
        window = (self.audio_at > start) & (self.audio_at < stop)
        loud = np.flatnonzero(window & (self.audio_rms > LOUD))
        assert len(loud) > min_blocks, "the face's audio did not carry the first utterance"
        return float(self.audio_at[loud[0]]), float(self.audio_at[loud[-1]])


def venv_python(venv: str) -> tuple[Path, dict[str, str]]:
    """venv's python and the environment to run it in (this checkout importable, the
    loopback-only ICE patch on its path); fails the test when .ci/install has not made it."""
    python = ROOT / venv / "bin" / "python"
    if not python.exists():
        pytest.fail(
            f"{python} is missing: run `bash .ci/install`, which makes {venv} "
            "(the framework cannot share .venv: it needs protobuf >= 5, mediapipe needs < 5)"
        )
    if not tts_available("flite"):
        pytest.skip("flite is not installed (apt-get install flite); tests make their own speech")
    # Its aiortc peers offer 127.0.0.1 only (tests/loopback.py), like the server's.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SITE_DIR), str(ROOT)])}
    env["OMP_NUM_THREADS"] = "1"
    return python, env


def run_in_venv(
    venv: str, script: Path, server: LiveServer, work: Path, timeout_s: float
) -> tuple[Path, SpeechClip]:
    """Run script with venv's python against server, on the two test utterances.

    Returns the folder it wrote and the first utterance. Fails the test when the
    venv is missing (.ci/install makes it) or the script fails or overruns.
    """
    python, env = venv_python(venv)
    voice = "kal16" if "kal16" in flite_voices() else "kal"
    first = make_speech_clip(FIRST_TEXT, work / "first.wav", TTS_RATE, 0.0, 0.0, voice=voice)
    second = make_speech_clip(SECOND_TEXT, work / "second.wav", TTS_RATE, 0.0, 0.0, voice=voice)
    out = work / "out"
    command = [
        str(python),
        str(script),
        *("--url", server.url, "--speech", str(first.path)),
        *("--long-speech", str(second.path), "--out", str(out)),
        *("--fps", str(FPS), "--interrupt-after", str(CUT_AFTER_S)),
    ]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script.name} ran past {timeout_s} s:\n{exc.stderr}\n{server.log()}")
    if done.returncode != 0:
        pytest.fail(f"{script.name} failed:\n{done.stderr[-6000:]}\n{server.log()}")
    return out, first


def measure(
    out: Path, video_times: Callable[[dict[str, Any]], Sequence[float]], after_cut_s: float
) -> Recorded:
    """Read the mouth from every recorded frame and the RMS of every audio block.

    video_times: the frames' arrival times from the summary (each script records them
    its own way).
    Keeps two frames as PNG for a look (the widest open, and after_cut_s past the
    interruption) and deletes frames.npy (a few hundred MB).
    """
    summary = json.loads((out / "summary.json").read_text())
    frames = np.load(out / "frames.npy", mmap_mode="r")  # uint8 (N, H, W, 3)
    gaps = np.array([mouth_gap(frame) for frame in frames])
    at = np.asarray(video_times(summary), dtype=np.float64)
    cut = summary["timeline"]["second"]["interrupt"]
    Image.fromarray(frames[int(np.argmax(gaps))]).save(out / "widest_open.png")
    after = min(int(np.searchsorted(at, cut + after_cut_s)), len(frames) - 1)
    Image.fromarray(frames[after]).save(out / "after_cut.png")
    (out / "frames.npy").unlink()
    pcm = np.load(out / "audio.npy").astype(np.float32) / 32768.0
    audio = summary["audio"]
    bounds = np.concatenate([[0], np.cumsum([a["samples"] for a in audio])])
    blocks = [pcm[bounds[i] : bounds[i + 1]] for i in range(len(audio))]
    return Recorded(
        summary=summary,
        out_dir=out,
        at=at,
        gaps=gaps,
        audio_at=np.array([a["at"] for a in audio]),
        audio_rms=np.array([rms(block) for block in blocks]),
        audio_blocks=blocks,
    )


def mouth_gap(rgb: np.ndarray) -> float:
    landmarks = fl.face_mesh(np.ascontiguousarray(rgb))
    assert landmarks is not None, "the landmarker found no face in a frame the sink received"
    return fl.inner_lip_gap(landmarks)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0
