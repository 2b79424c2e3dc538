"""Pipecat: a real Pipecat pipeline with FacecastVideoService drives a live facecast face.

tests/pipecat_pipeline.py runs in .venv-pipecat (pipecat-ai needs protobuf >= 5,
this venv's mediapipe needs < 5) against a real `facecast serve` on loopback: a
TTS-like source pushes flite speech as TTSAudioRawFrames in real time, the
service sends it to the session and pushes the face (OutputImageRawFrame) and
the face's audio (SpeechOutputAudioRawFrame) to a sink that records them. Here
the mouth is read from the received pixels by MediaPipe's face mesh, an
independent judge, and the audio from the received samples.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engines.face import landmarks as fl
from tests.live import ROOT, LiveServer
from tests.loopback import SITE_DIR
from tests.speech import flite_voices, make_speech_clip, tts_available

PIPECAT_PYTHON = ROOT / ".venv-pipecat" / "bin" / "python"
SCRIPT = Path(__file__).with_name("pipecat_pipeline.py")
FPS = 25
TTS_RATE = 24000  # a common TTS output rate; the service declares it with a `start` message
# Cut the second utterance on its first open vowel ("long"), so the mouth is open at the cut.
CUT_AFTER_S = 0.85
FIRST_TEXT = "Bob bought a large hot pot of apple jam, and Pam laughed out loud at the cat."
SECOND_TEXT = (
    "This is a long announcement that keeps going for quite a while, so that we "
    "can cut it short in the middle and check that the face goes quiet at once."
)
OPEN, CLOSED = 0.04, 0.02  # inner-lip gap / face height (as tests/test_live_session.py)
LOUD, SILENT = 0.01, 0.001  # RMS of full scale
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class PipecatRun:
    summary: dict[str, Any]
    at: np.ndarray  # (N,) arrival time of each video frame at the sink, monotonic s
    pts: np.ndarray  # (N,) its pts, s
    gaps: np.ndarray  # (N,) its mouth opening, from the pixels
    audio_at: np.ndarray  # (M,) arrival time of each audio frame
    audio_pts: np.ndarray  # (M,) its pts, s
    audio_rms: np.ndarray  # (M,) its RMS, full scale 1
    loudness: np.ndarray  # (N,) RMS of the audio arriving within 20 ms of each video frame
    out_dir: Path

    @property
    def timeline(self) -> dict[str, Any]:
        return self.summary["timeline"]  # type: ignore[no-any-return]


def _require_pipecat_venv() -> dict[str, str]:
    """The environment to run .venv-pipecat's python in; fails the test when it is missing."""
    if not PIPECAT_PYTHON.exists():
        pytest.fail(
            f"{PIPECAT_PYTHON} is missing: run `bash .ci/install`, which makes .venv-pipecat "
            "(pipecat-ai cannot share .venv: it needs protobuf >= 5, mediapipe needs < 5)"
        )
    if not tts_available("flite"):
        pytest.skip("flite is not installed (apt-get install flite); tests make their own speech")
    # Its aiortc peers offer 127.0.0.1 only (tests/loopback.py), like the server's.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SITE_DIR), str(ROOT)])}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def pipecat_run(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> PipecatRun:
    env = _require_pipecat_venv()
    work = tmp_path_factory.mktemp("pipecat")
    voice = "kal16" if "kal16" in flite_voices() else "kal"
    first = make_speech_clip(FIRST_TEXT, work / "first.wav", TTS_RATE, 0.0, 0.0, voice=voice)
    second = make_speech_clip(SECOND_TEXT, work / "second.wav", TTS_RATE, 0.0, 0.0, voice=voice)
    out = work / "out"
    command = [
        str(PIPECAT_PYTHON),
        str(SCRIPT),
        *("--url", live_server.url, "--speech", str(first.path)),
        *("--long-speech", str(second.path), "--out", str(out)),
        *("--fps", str(FPS), "--interrupt-after", str(CUT_AFTER_S)),
    ]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the Pipecat pipeline ran past 150 s:\n{exc.stderr}\n{live_server.log()}")
    if done.returncode != 0:
        pytest.fail(f"the Pipecat pipeline failed:\n{done.stderr[-6000:]}\n{live_server.log()}")
    return _measure(out)


def _measure(out: Path) -> PipecatRun:
    summary = json.loads((out / "summary.json").read_text())
    frames = np.load(out / "frames.npy", mmap_mode="r")  # uint8 (N, H, W, 3)
    gaps = np.array([_gap(frame) for frame in frames])
    video, audio = summary["video"], summary["audio"]
    at = np.array([v["at"] for v in video])
    cut = summary["timeline"]["second"]["interrupt"]
    Image.fromarray(frames[int(np.argmax(gaps))]).save(out / "widest_open.png")
    Image.fromarray(frames[int(np.searchsorted(at, cut + 0.1))]).save(out / "after_cut.png")
    (out / "frames.npy").unlink()  # 0.2 GB; the PNGs stay for a look
    pcm = np.load(out / "audio.npy").astype(np.float32) / 32768.0
    bounds = np.concatenate([[0], np.cumsum([a["samples"] for a in audio])])
    blocks = [pcm[bounds[i] : bounds[i + 1]] for i in range(len(audio))]
    audio_at = np.array([a["at"] for a in audio])
    near = [np.flatnonzero(np.abs(audio_at - t) <= 0.021) for t in at]
    loudness = np.array([_rms(np.concatenate([blocks[i] for i in k] or [[]])) for k in near])
    return PipecatRun(
        summary=summary,
        at=at,
        pts=np.array([v["pts"] for v in video]) / 1e9,
        gaps=gaps,
        audio_at=audio_at,
        audio_pts=np.array([a["pts"] for a in audio]) / 1e9,
        audio_rms=np.array([_rms(block) for block in blocks]),
        loudness=loudness,
        out_dir=out,
    )


def _gap(rgb: np.ndarray) -> float:
    landmarks = fl.face_mesh(np.ascontiguousarray(rgb))
    assert landmarks is not None, "the landmarker found no face in a frame the sink received"
    return fl.inner_lip_gap(landmarks)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


def _load_note(run: PipecatRun) -> str:
    sent, dropped = run.timeline["frames_sent"], run.timeline["dropped_frames"]
    return f"(server: {sent} frames sent, {dropped} not rendered in time)"


def _speech_span(run: PipecatRun) -> tuple[float, float]:
    """When the first utterance was heard at the sink: its first and last loud audio frame."""
    start, stop = run.timeline["first"]["first_chunk"], run.timeline["second"]["first_chunk"]
    window = (run.audio_at > start) & (run.audio_at < stop)
    loud = np.flatnonzero(window & (run.audio_rms > LOUD))
    assert len(loud) > 50, "the face's audio did not carry the first utterance"
    return float(run.audio_at[loud[0]]), float(run.audio_at[loud[-1]])


def test_frames_flow_at_the_session_rate_with_monotonic_pts(pipecat_run: PipecatRun) -> None:
    run, summary = pipecat_run, pipecat_run.summary
    assert {tuple(v["size"]) for v in summary["video"]} == {(512, 512)}
    assert {v["format"] for v in summary["video"]} == {"RGB"}
    assert {(a["kind"], a["rate"], a["channels"]) for a in summary["audio"]} == {
        ("SpeechOutputAudioRawFrame", 48000, 1)
    }
    # The TTS audio and its start/stop frames stop at the service; the face's audio goes on.
    kinds = summary["kinds"]
    assert "TTSAudioRawFrame" not in kinds and "TTSStoppedFrame" not in kinds, kinds
    assert kinds["InterruptionFrame"] == 1 and kinds["EndFrame"] == 1, kinds

    span_s = run.at[-1] - run.at[0]
    fps = (len(run.at) - 1) / span_s
    assert span_s > 8.0 and fps == pytest.approx(FPS, rel=0.08), (span_s, fps)
    # Idle frames flow between utterances too: no hole in the stream (a loaded CPU may
    # bunch frames up for a moment, hence the generous bound).
    assert np.diff(run.at).max() < 1.0, np.diff(run.at).max()
    # pts: strictly increasing, one frame period apart; audio in 20 ms steps.
    assert np.all(np.diff(run.pts) > 0) and np.all(np.diff(run.audio_pts) > 0)
    assert np.median(np.diff(run.pts)) == pytest.approx(1 / FPS, abs=1e-4)
    assert np.median(np.diff(run.audio_pts)) == pytest.approx(0.02, abs=1e-4)
    assert np.diff(run.pts).max() < 3.5 / FPS
    # One clock for both tracks: the same offset from arrival, and no drift over the run.
    lag_video, lag_audio = run.at - run.pts, run.audio_at - run.audio_pts
    offset = np.median(lag_video) - np.median(lag_audio)
    assert abs(offset) < 0.03, offset
    for lag, at in ((lag_video, run.at), (lag_audio, run.audio_at)):
        drift = np.median(lag[at > at[-1] - 2.0]) - np.median(lag[at < at[0] + 2.0])
        assert abs(drift) < 0.05, drift


def test_mouth_opens_with_the_speech_and_rests_before_and_after(pipecat_run: PipecatRun) -> None:
    run = pipecat_run
    heard_from, heard_to = _speech_span(run)
    speaking = run.gaps[(run.at > heard_from + 0.1) & (run.at < heard_to - 0.1)]
    before = run.gaps[run.at < heard_from - 0.2]
    after = run.gaps[(run.at > heard_to + 0.5) & (run.at < run.timeline["second"]["first_chunk"])]
    assert len(speaking) > 3 * FPS and len(before) > FPS // 2 and len(after) > FPS
    note = _load_note(run)
    # Open wide on the open vowels, shut on p/b/m: the lips follow the phones.
    assert np.percentile(speaking, 90) > OPEN, (np.percentile(speaking, 90), note)
    assert np.percentile(speaking, 10) < CLOSED, (np.percentile(speaking, 10), note)
    assert before.max() < CLOSED and after.max() < CLOSED, (before.max(), after.max(), note)
    # The speech reached the face within a second of the first TTS chunk.
    assert heard_from - run.timeline["first"]["first_chunk"] < 1.0


def test_interruption_stops_mouth_and_sound_within_300_ms(pipecat_run: PipecatRun) -> None:
    run = pipecat_run
    cut = run.timeline["second"]["interrupt"]
    assert run.summary["sink_interrupts"][0] - cut < 0.3  # passed on at once
    note = _load_note(run)
    assert run.gaps[(run.at > cut - 1.0) & (run.at <= cut)].max() > OPEN, note  # was talking
    assert run.audio_rms[(run.audio_at > cut - 1.0) & (run.audio_at <= cut)].max() > LOUD
    after = (run.at > cut) & (run.at < cut + 1.4)
    still_open = run.at[after & (run.gaps >= CLOSED)]
    closed_after_s = float(still_open[-1] - cut) if len(still_open) else 0.0
    assert closed_after_s < 0.3, (closed_after_s, note)
    late_audio = run.audio_rms[(run.audio_at > cut + 0.3) & (run.audio_at < cut + 1.4)]
    assert len(late_audio) > 40 and late_audio.max() < SILENT, late_audio.max()


def test_audio_and_video_stay_aligned(pipecat_run: PipecatRun) -> None:
    """The mouth's opening follows the loudness of the face's own audio at the same moment.

    Frame by frame (as the sink received them), the inner-lip gap against the RMS
    of the audio arriving with the frame: the lag of best correlation is within
    two frame periods. (The first opening alone would mislead: "Bob" starts with
    its lips shut while the b is already heard.)"""
    run = pipecat_run
    heard_from, heard_to = _speech_span(run)
    window = np.flatnonzero((run.at > heard_from - 0.3) & (run.at < heard_to + 0.3))
    lags = range(-5, 6)  # frames; positive: the mouth after the sound
    gaps, loudness = run.gaps[window], run.loudness
    r = [np.corrcoef(gaps, loudness[window - lag])[0, 1] for lag in lags]
    best = list(lags)[int(np.argmax(r))]
    by_lag = dict(zip(lags, np.round(r, 2), strict=True))
    assert abs(best) <= 2 and max(r) > 0.4, (by_lag, _load_note(run))


def test_end_frame_lets_the_face_finish_then_deletes_the_session(pipecat_run: PipecatRun) -> None:
    run, summary = pipecat_run, pipecat_run.summary
    # The last 2 s of speech went out at once, as a fast TTS sends it, and EndFrame right
    # after: the face still said it all, and EndFrame reached the sink after that speech.
    end = run.timeline["end_frame"]
    loud_after_end = run.audio_at[(run.audio_at > end) & (run.audio_rms > LOUD)]
    heard_after_end_s = loud_after_end[-1] - end if len(loud_after_end) else 0.0
    assert heard_after_end_s > 1.5, heard_after_end_s
    assert summary["sink_end"] > loud_after_end[-1]
    assert summary["errors"] == []
    assert summary["timeline"]["session_id"] not in summary["sessions_left"]


def test_server_errors_become_error_frames(pipecat_run: PipecatRun) -> None:
    summary = pipecat_run.summary
    # A portrait the server lacks: its 404 message arrives as an ErrorFrame upstream.
    refused = summary["refused_errors"]
    assert len(refused) == 1 and "no portrait with id 'no-such-portrait'" in refused[0], refused


EXAMPLE_CHECK = """
import asyncio
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from server.integrations import pipecat_example as example
from server.integrations.pipecat import FacecastVideoService

async def check():
    transport = example.webrtc_transport(SmallWebRTCConnection(ice_servers=[]))
    face = FacecastVideoService(base_url="http://127.0.0.1:9")
    worker = example.build_worker(transport, face, "kal")
    pcm, rate = await example.synthesize("Hello there.", "kal")
    print(type(worker).__name__, rate, len(pcm) // 2)

asyncio.run(check())
"""


def test_the_smallwebrtc_example_builds_its_pipeline() -> None:
    """The example's transport, flite TTS and worker construct (no browser, no server)."""
    env = _require_pipecat_venv()
    command = [str(PIPECAT_PYTHON), "-c", EXAMPLE_CHECK]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-4000:]
    kind, rate, samples = done.stdout.split()
    assert kind == "PipelineWorker" and int(rate) == 8000 and int(samples) > 4000
