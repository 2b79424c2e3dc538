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

LIVEKIT_PYTHON = ROOT / ".venv-livekit" / "bin" / "python"
SCRIPT = Path(__file__).with_name("livekit_avatar.py")
FPS = 25
TTS_RATE = 24000
CUT_AFTER_S = 0.85  # on the open vowel of "long", so the mouth is open at the cut
FIRST_TEXT = "Bob bought a large hot pot of apple jam, and Pam laughed out loud at the cat."
SECOND_TEXT = (
    "This is a long announcement that keeps going for quite a while, so that we "
    "can cut it short in the middle and check that the face goes quiet at once."
)
OPEN, CLOSED = 0.04, 0.02  # inner-lip gap / face height (as tests/test_pipecat.py)
LOUD, SILENT = 0.01, 0.001  # RMS of full scale
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class AvatarRun:
    summary: dict[str, Any]
    first_s: float  # duration of the first utterance
    at: np.ndarray  # (N,) when each video frame left the runner's video source, monotonic s
    gaps: np.ndarray  # (N,) its mouth opening, from the pixels
    audio_at: np.ndarray  # (M,) when each audio frame left the audio source
    audio_rms: np.ndarray  # (M,) its RMS, full scale 1
    finished: list[dict[str, Any]]  # lk.playback_finished payloads, with their arrival

    @property
    def timeline(self) -> dict[str, Any]:
        return self.summary["timeline"]  # type: ignore[no-any-return]


def _livekit_env() -> dict[str, str]:
    if not LIVEKIT_PYTHON.exists():
        pytest.fail(
            f"{LIVEKIT_PYTHON} is missing: run `bash .ci/install`, which makes .venv-livekit "
            "(livekit cannot share .venv: it needs protobuf >= 5, mediapipe needs < 5)"
        )
    if not tts_available("flite"):
        pytest.skip("flite is not installed (apt-get install flite); tests make their own speech")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SITE_DIR), str(ROOT)])}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def avatar_run(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> AvatarRun:
    env = _livekit_env()
    work = tmp_path_factory.mktemp("livekit")
    voice = "kal16" if "kal16" in flite_voices() else "kal"
    first = make_speech_clip(FIRST_TEXT, work / "first.wav", TTS_RATE, 0.0, 0.0, voice=voice)
    second = make_speech_clip(SECOND_TEXT, work / "second.wav", TTS_RATE, 0.0, 0.0, voice=voice)
    out = work / "out"
    command = [
        str(LIVEKIT_PYTHON),
        str(SCRIPT),
        *("--url", live_server.url, "--speech", str(first.path)),
        *("--long-speech", str(second.path), "--out", str(out)),
        *("--fps", str(FPS), "--interrupt-after", str(CUT_AFTER_S)),
    ]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the avatar run went past 120 s:\n{exc.stderr}\n{live_server.log()}")
    if done.returncode != 0:
        pytest.fail(f"the avatar run failed:\n{done.stderr[-6000:]}\n{live_server.log()}")
    return _measure(out, first.duration_s)


def _measure(out: Path, first_s: float) -> AvatarRun:
    summary = json.loads((out / "summary.json").read_text())
    frames = np.load(out / "frames.npy", mmap_mode="r")  # uint8 (N, H, W, 3)
    gaps = np.array([_gap(frame) for frame in frames])
    at = np.array(summary["video_at"])
    cut = summary["timeline"]["second"]["interrupt"]
    Image.fromarray(frames[int(np.argmax(gaps))]).save(out / "widest_open.png")
    Image.fromarray(frames[int(np.searchsorted(at, cut + 0.3))]).save(out / "after_cut.png")
    (out / "frames.npy").unlink()
    pcm = np.load(out / "audio.npy").astype(np.float32) / 32768.0
    audio = summary["audio"]
    bounds = np.concatenate([[0], np.cumsum([a["samples"] for a in audio])])
    rms = [_rms(pcm[bounds[i] : bounds[i + 1]]) for i in range(len(audio))]
    finished = [{**json.loads(f["payload"]), "at": f["at"]} for f in summary["playback_finished"]]
    return AvatarRun(
        summary=summary,
        first_s=first_s,
        at=at,
        gaps=gaps,
        audio_at=np.array([a["at"] for a in audio]),
        audio_rms=np.array(rms),
        finished=finished,
    )


def _gap(rgb: np.ndarray) -> float:
    landmarks = fl.face_mesh(np.ascontiguousarray(rgb))
    assert landmarks is not None, "the landmarker found no face in a frame the runner sent"
    return fl.inner_lip_gap(landmarks)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


def _load_note(run: AvatarRun) -> str:
    sent, dropped = run.timeline["frames_sent"], run.timeline["dropped_frames"]
    return f"(server: {sent} frames sent, {dropped} not rendered in time)"


def _speech_span(run: AvatarRun) -> tuple[float, float]:
    """When the first utterance left the runner's audio source: first and last loud frame."""
    start, stop = run.timeline["first"]["first_chunk"], run.timeline["second"]["first_chunk"]
    window = (run.audio_at > start) & (run.audio_at < stop)
    loud = np.flatnonzero(window & (run.audio_rms > LOUD))
    assert len(loud) > 100, "the runner's audio did not carry the first utterance"
    return float(run.audio_at[loud[0]]), float(run.audio_at[loud[-1]])


def test_video_flows_at_the_session_rate_idle_frames_included(avatar_run: AvatarRun) -> None:
    run = avatar_run
    assert tuple(run.summary["size"]) == (512, 512)
    span_s = run.at[-1] - run.at[0]
    fps = (len(run.at) - 1) / span_s
    assert span_s > 7.0 and fps == pytest.approx(FPS, rel=0.1), (span_s, fps, _load_note(run))
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
    cut = run.timeline["second"]["interrupt"]
    second = run.finished[1]
    # Answered at once (the agent waits on it: livekit/agents #3237), with what was heard.
    assert second["interrupted"] is True and second["at"] - cut < 0.3, second
    assert 0.1 < second["playback_position"] < run.timeline["second"]["sent_s"], second
    note = _load_note(run)
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
    heard_from, heard_to = _speech_span(run)
    speaking = run.gaps[(run.at > heard_from + 0.1) & (run.at < heard_to - 0.1)]
    before = run.gaps[run.at < heard_from - 0.2]
    after = run.gaps[(run.at > heard_to + 0.5) & (run.at < run.timeline["second"]["first_chunk"])]
    assert len(speaking) > 3 * FPS and len(before) > FPS // 2 and len(after) > FPS // 2
    note = _load_note(run)
    assert np.percentile(speaking, 90) > OPEN, (np.percentile(speaking, 90), note)
    assert np.percentile(speaking, 10) < CLOSED, (np.percentile(speaking, 10), note)
    assert before.max() < CLOSED and after.max() < CLOSED, (before.max(), after.max(), note)
    assert heard_from - run.timeline["first"]["first_chunk"] < 1.0


def test_audio_and_video_leave_the_runner_aligned(avatar_run: AvatarRun) -> None:
    """The mouth's opening follows the loudness of the runner's audio at the same moment."""
    run = avatar_run
    heard_from, heard_to = _speech_span(run)
    window = np.flatnonzero((run.at > heard_from - 0.3) & (run.at < heard_to + 0.3))
    near = [np.flatnonzero(np.abs(run.audio_at - t) <= 0.021) for t in run.at]
    loudness = np.array([run.audio_rms[k].mean() if len(k) else 0.0 for k in near])
    lags = range(-5, 6)  # frames; positive: the mouth after the sound
    r = [np.corrcoef(run.gaps[window], loudness[window - lag])[0, 1] for lag in lags]
    best = list(lags)[int(np.argmax(r))]
    assert abs(best) <= 2 and max(r) > 0.4, (
        dict(zip(lags, np.round(r, 2), strict=True)),
        _load_note(run),
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
    env = _livekit_env()
    command = [str(LIVEKIT_PYTHON), "-c", WORKER_CHECK, live_server.url]
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
