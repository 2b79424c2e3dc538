"""LiveKit: AvatarRunner with FacecastVideoGenerator drives a live facecast face.

tests/livekit_avatar.py runs in .venv-livekit (livekit needs protobuf >= 5, this
venv's mediapipe needs < 5) against a real `facecast serve` on loopback, with
livekit-agents' own classes up to the room (no LiveKit server can be installed
from the package registries, so the room, the data stream and the RPCs over it
are not exercised; see that script). Here the mouth is read from the frames the
runner's video source put out, by MediaPipe's face mesh, and the sound from its
audio source's samples.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.framework_runs import (
    CLOSED,
    FPS,
    OPEN,
    SILENT,
    SYNC_LAGS,
    Recorded,
    measure,
    run_in_venv,
    venv_python,
)
from tests.live import LiveServer

VENV = ".venv-livekit"
SCRIPT = Path(__file__).with_name("livekit_avatar.py")
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class AvatarRun(Recorded):
    first_s: float  # duration of the first utterance
    finished: list[dict[str, Any]]  # lk.playback_finished payloads, with their arrival


@pytest.fixture(scope="module")
def avatar_run(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> AvatarRun:
    work = tmp_path_factory.mktemp("livekit")
    out, first = run_in_venv(VENV, SCRIPT, live_server, work, timeout_s=120)
    recorded = measure(out, lambda summary: summary["video_at"], after_cut_s=0.3)
    finished = recorded.summary["playback_finished"]
    return AvatarRun(
        **vars(recorded),
        first_s=first.duration_s,
        finished=[{**json.loads(f["payload"]), "at": f["at"]} for f in finished],
    )


def test_video_flows_at_the_session_rate_idle_frames_included(avatar_run: AvatarRun) -> None:
    run = avatar_run
    run.skip_if_starved()
    assert tuple(run.summary["size"]) == (512, 512)
    span_s = run.at[-1] - run.at[0]
    fps = (len(run.at) - 1) / span_s
    assert span_s > 7.0 and fps == pytest.approx(FPS, rel=0.1), (span_s, fps, run.load_note())
    # Before any speech and between utterances the idle face keeps coming: no hole.
    assert np.diff(run.at).max() < 1.0, np.diff(run.at).max()
    idle = run.at < run.timeline["first"]["first_chunk"]
    assert idle.sum() > FPS // 2


def test_playback_finished_reports_the_whole_utterance(avatar_run: AvatarRun) -> None:
    run = avatar_run
    assert len(run.finished) == 2, run.finished
    first = run.finished[0]
    # lk.playback_finished as livekit-agents 1.8.9 encodes it (the transcript is its own field).
    assert set(first) - {"at"} == {"playback_position", "interrupted", "synchronized_transcript"}
    assert first["interrupted"] is False
    # The runner counts the audio the generator yielded: all of the speech, no idle silence.
    assert first["playback_position"] == pytest.approx(run.first_s, abs=0.03), first
    assert first["at"] > run.timeline["first"]["last_chunk"]
    assert len(run.summary["playback_started"]) == 2


def test_clear_buffer_reports_interrupted_at_once_and_stops_the_mouth(
    avatar_run: AvatarRun,
) -> None:
    run = avatar_run
    run.skip_if_starved()
    cut = run.timeline["second"]["interrupt"]
    second = run.finished[1]
    # Answered at once (the agent waits on it: livekit/agents #3237), with what was heard.
    assert second["interrupted"] is True and second["at"] - cut < 0.3, second
    assert 0.1 < second["playback_position"] < run.timeline["second"]["sent_s"], second
    note = run.load_note()
    assert run.gaps[(run.at > cut - 1.0) & (run.at <= cut)].max() > OPEN, note  # was talking
    # The mouth shuts within 300 ms of the cut and stays shut, but for a small parting
    # in silence that the session's motion makes 0.2-0.4 s (and ~1.1 s) after a cut
    # (0.03-0.035, against 0.1 at the cut): below OPEN, and brief.
    after = (run.at > cut) & (run.at < cut + 0.8)
    trace = np.round(np.c_[run.at[after] - cut, run.gaps[after]], 3).tolist()
    shut = run.at[after & (run.gaps < CLOSED)]
    assert len(shut) and shut[0] - cut < 0.3, (note, trace)
    settled = run.gaps[after & (run.at > cut + 0.3)]
    assert settled.max() < OPEN and np.median(settled) < CLOSED, (note, trace)
    late_audio = run.audio_rms[(run.audio_at > cut + 0.3) & (run.audio_at < cut + 1.4)]
    assert len(late_audio) > 40 and late_audio.max() < SILENT, late_audio.max()


def test_mouth_opens_with_the_speech_and_rests_before_and_after(avatar_run: AvatarRun) -> None:
    run = avatar_run
    run.skip_if_starved()
    heard_from, heard_to = run.speech_span(100)
    speaking = run.gaps[(run.at > heard_from + 0.1) & (run.at < heard_to - 0.1)]
    before = run.gaps[run.at < heard_from - 0.2]
    after = run.gaps[(run.at > heard_to + 0.5) & (run.at < run.timeline["second"]["first_chunk"])]
    assert len(speaking) > 3 * FPS and len(before) > FPS // 2 and len(after) > FPS // 2
    note = run.load_note()
    assert np.percentile(speaking, 90) > OPEN, (np.percentile(speaking, 90), note)
    assert np.percentile(speaking, 10) < CLOSED, (np.percentile(speaking, 10), note)
    assert before.max() < CLOSED and after.max() < CLOSED, (before.max(), after.max(), note)
    assert heard_from - run.timeline["first"]["first_chunk"] < 1.0


def test_audio_and_video_leave_the_runner_aligned(avatar_run: AvatarRun) -> None:
    """The mouth's opening follows the loudness of the runner's audio at the same moment."""
    run = avatar_run
    run.skip_if_starved()
    heard_from, heard_to = run.speech_span(100)
    window = np.flatnonzero((run.at > heard_from - 0.3) & (run.at < heard_to + 0.3))
    near = [np.flatnonzero(np.abs(run.audio_at - t) <= 0.021) for t in run.at]
    loudness = np.array([run.audio_rms[k].mean() if len(k) else 0.0 for k in near])
    lags = range(-5, 6)  # frames; positive: the mouth after the sound
    r = [np.corrcoef(run.gaps[window], loudness[window - lag])[0, 1] for lag in lags]
    best = list(lags)[int(np.argmax(r))]
    assert SYNC_LAGS[0] <= best <= SYNC_LAGS[1] and max(r) > 0.4, (
        dict(zip(lags, np.round(r, 2), strict=True)),
        run.load_note(),
    )


def test_the_session_is_deleted_when_the_generator_closes(avatar_run: AvatarRun) -> None:
    assert avatar_run.timeline["session_id"] not in avatar_run.summary["sessions_left"]


WORKER_CHECK = """
import asyncio, json, sys
import httpx
from server.integrations.livekit import AvatarJob, FacecastAvatarSession
from server.integrations.livekit_worker import WorkerConfig, build_server, facecast_load

url = sys.argv[1]
load = facecast_load(WorkerConfig(facecast_url=url))
idle = load()
session = httpx.post(url + "/api/sessions", json={}).json()
busy = load()
httpx.delete(url + "/api/sessions/" + session["id"])
gone = facecast_load(WorkerConfig(facecast_url="http://127.0.0.1:9"), timeout_s=1)()
job = FacecastAvatarSession(portrait_id="p1", fps=25).job_for("agent-1")
back = AvatarJob.from_metadata(job.to_metadata())
server = build_server(WorkerConfig(facecast_url=url))
print(json.dumps({"idle": idle, "busy": busy, "gone": gone, "job": back.__dict__,
                  "agent_name": server._agent_name}))
"""


def test_worker_load_is_facecast_capacity_and_the_job_round_trips(live_server: LiveServer) -> None:
    """The load function reads the live server's sessions / max_sessions (3 here)."""
    python, env = venv_python(VENV)
    command = [str(python), "-c", WORKER_CHECK, live_server.url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["busy"] == pytest.approx(result["idle"] + 1 / 3), result
    assert result["gone"] == 1.0  # unreachable reads full: no rooms sent there
    assert result["agent_name"] == "facecast-avatar"
    assert result["job"] == {
        "agent_identity": "agent-1",
        "avatar_identity": "facecast-avatar",
        "portrait_id": "p1",
        "fps": 25,
        "seed": None,
    }
