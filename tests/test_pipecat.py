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

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.framework_runs import (
    CLOSED,
    FPS,
    LOUD,
    OPEN,
    SILENT,
    SYNC_LAGS,
    Recorded,
    measure,
    rms,
    run_in_venv,
    venv_python,
)
from tests.live import LiveServer

VENV = ".venv-pipecat"
SCRIPT = Path(__file__).with_name("pipecat_pipeline.py")
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class PipecatRun(Recorded):
    pts: np.ndarray  # (N,) each video frame's pts, s
    audio_pts: np.ndarray  # (M,) each audio frame's pts, s
    loudness: np.ndarray  # (N,) RMS of the audio arriving within 20 ms of each video frame


@pytest.fixture(scope="module")
def pipecat_run(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> PipecatRun:
    work = tmp_path_factory.mktemp("pipecat")
    out, _ = run_in_venv(VENV, SCRIPT, live_server, work, timeout_s=150)
    recorded = measure(out, lambda summary: [v["at"] for v in summary["video"]], after_cut_s=0.1)
    video = recorded.summary["video"]
    near = [np.flatnonzero(np.abs(recorded.audio_at - t) <= 0.021) for t in recorded.at]
    blocks = recorded.audio_blocks
    loudness = [rms(np.concatenate([blocks[i] for i in k] or [[]])) for k in near]
    return PipecatRun(
        **vars(recorded),
        pts=np.array([v["pts"] for v in video]) / 1e9,
        audio_pts=np.array([a["pts"] for a in recorded.summary["audio"]]) / 1e9,
        loudness=np.array(loudness),
    )


def test_frames_flow_at_the_session_rate_with_monotonic_pts(pipecat_run: PipecatRun) -> None:
    run, summary = pipecat_run, pipecat_run.summary
    run.skip_if_starved()
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
    # A hole in the pts is a frame the server says it could not render in time.
    steps = np.round(np.diff(run.pts) * FPS).astype(int)
    missing = int((steps - 1).clip(min=0).sum())
    assert missing <= run.timeline["dropped_frames"] + 2, (missing, run.load_note())
    # One clock for both tracks: the same offset from arrival, and no drift over the run.
    lag_video, lag_audio = run.at - run.pts, run.audio_at - run.audio_pts
    offset = np.median(lag_video) - np.median(lag_audio)
    assert abs(offset) < 0.03, offset
    for lag, at in ((lag_video, run.at), (lag_audio, run.audio_at)):
        drift = np.median(lag[at > at[-1] - 2.0]) - np.median(lag[at < at[0] + 2.0])
        assert abs(drift) < 0.05, drift


def test_mouth_opens_with_the_speech_and_rests_before_and_after(pipecat_run: PipecatRun) -> None:
    run = pipecat_run
    run.skip_if_starved()
    heard_from, heard_to = run.speech_span(50)
    speaking = run.gaps[(run.at > heard_from + 0.1) & (run.at < heard_to - 0.1)]
    before = run.gaps[run.at < heard_from - 0.2]
    after = run.gaps[(run.at > heard_to + 0.5) & (run.at < run.timeline["second"]["first_chunk"])]
    assert len(speaking) > 3 * FPS and len(before) > FPS // 2 and len(after) > FPS
    note = run.load_note()
    # Open wide on the open vowels, shut on p/b/m: the lips follow the phones.
    assert np.percentile(speaking, 90) > OPEN, (np.percentile(speaking, 90), note)
    assert np.percentile(speaking, 10) < CLOSED, (np.percentile(speaking, 10), note)
    assert before.max() < CLOSED and after.max() < CLOSED, (before.max(), after.max(), note)
    # The speech reached the face within a second of the first TTS chunk.
    assert heard_from - run.timeline["first"]["first_chunk"] < 1.0


def test_interruption_stops_mouth_and_sound_within_300_ms(pipecat_run: PipecatRun) -> None:
    run = pipecat_run
    run.skip_if_starved()
    cut = run.timeline["second"]["interrupt"]
    assert run.summary["sink_interrupts"][0] - cut < 0.3  # passed on at once
    note = run.load_note()
    assert run.gaps[(run.at > cut - 1.0) & (run.at <= cut)].max() > OPEN, note  # was talking
    assert run.audio_rms[(run.audio_at > cut - 1.0) & (run.audio_at <= cut)].max() > LOUD
    # Shut within 300 ms of the cut, and no more talking: the idle face may part its
    # lips a little in silence (up to about 0.03 here, against 0.1 at the cut), which
    # is below OPEN and brief.
    after = (run.at > cut) & (run.at < cut + 1.4)
    trace = str(np.round(np.c_[run.at[after] - cut, run.gaps[after]], 3).tolist())
    shut = run.at[after & (run.gaps < CLOSED)]
    assert len(shut) and shut[0] - cut < 0.3, (note, trace)
    settled = run.gaps[after & (run.at > cut + 0.3)]
    assert settled.max() < OPEN and np.median(settled) < CLOSED, (note, trace)
    late_audio = run.audio_rms[(run.audio_at > cut + 0.3) & (run.audio_at < cut + 1.4)]
    assert len(late_audio) > 40 and late_audio.max() < SILENT, late_audio.max()


def test_audio_and_video_stay_aligned(pipecat_run: PipecatRun) -> None:
    """The mouth's opening follows the loudness of the face's own audio at the same moment.

    Frame by frame (as the sink received them), the inner-lip gap against the RMS
    of the audio arriving with the frame: the lag of best correlation is inside
    SYNC_LAGS (what viewers do not notice). (The first opening alone would
    mislead: "Bob" starts with its lips shut while the b is already heard.)"""
    run = pipecat_run
    run.skip_if_starved()
    heard_from, heard_to = run.speech_span(50)
    window = np.flatnonzero((run.at > heard_from - 0.3) & (run.at < heard_to + 0.3))
    lags = range(-5, 6)  # frames; positive: the mouth after the sound
    gaps, loudness = run.gaps[window], run.loudness
    r = [np.corrcoef(gaps, loudness[window - lag])[0, 1] for lag in lags]
    best = list(lags)[int(np.argmax(r))]
    by_lag = dict(zip(lags, np.round(r, 2), strict=True))
    assert SYNC_LAGS[0] <= best <= SYNC_LAGS[1] and max(r) > 0.4, (by_lag, run.load_note())


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
    python, env = venv_python(VENV)
    command = [str(python), "-c", EXAMPLE_CHECK]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-4000:]
    kind, rate, samples = done.stdout.split()
    assert kind == "PipelineWorker" and int(rate) == 8000 and int(samples) > 4000
