"""End to end: portrait + speech -> MP4, checked by decoding the file and reading the face in it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from engines.audio.decoding import probe_audio
from engines.audio.features import frame_count
from server.offline import RenderJobConfig, render_to_mp4
from tests.portraits import mouth_gap


def decode(path: Path) -> tuple[list[np.ndarray], dict]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        info = {
            "video_codec": video.codec_context.name,
            "audio_codec": audio.codec_context.name,
            "size": (video.codec_context.width, video.codec_context.height),
            "fps": float(video.average_rate),
            "audio_s": float(audio.duration * audio.time_base),
        }
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames, info


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def speech_video(speech_path: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("render") / "speech.mp4"
    report = render_to_mp4(speech_path, out, config=RenderJobConfig.of(fps=25))
    frames, info = decode(out)
    return report, frames, info


def test_mp4_has_one_frame_per_video_tick_and_the_audio(speech_video, speech_path: Path) -> None:
    report, frames, info = speech_video
    duration = probe_audio(speech_path).duration_s
    expected = frame_count(round(duration * 16000), 16000, 25)
    assert len(frames) == report.frames == expected
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert info["size"] == (512, 512) and info["fps"] == pytest.approx(25.0)
    assert info["audio_s"] == pytest.approx(duration, abs=0.08)


def test_mouth_opens_during_speech_and_rests_in_silence(speech_video, speech_span) -> None:
    _, frames, _ = speech_video
    start, end = speech_span
    times = np.arange(len(frames)) / 25.0
    speaking = [i for i in range(len(frames)) if start + 0.1 < times[i] < end - 0.1][::2]
    silent = [i for i in range(len(frames)) if times[i] < start - 0.2 or times[i] > end + 0.4][::2]
    speech_gaps = np.array([mouth_gap(frames[i]) for i in speaking])
    silence_gaps = np.array([mouth_gap(frames[i]) for i in silent])
    assert silence_gaps.max() < 0.02, "lips must be closed in silence"
    # A mouth that follows the phones opens wide on the open vowels and closes on
    # p/b/m and between words, so it is shut for a good part of speech too.
    assert np.percentile(speech_gaps, 90) > 0.05, "the mouth should open clearly on vowels"
    assert (speech_gaps > 0.02).mean() > 0.3, speech_gaps
    assert np.percentile(speech_gaps, 10) < 0.01, "the lips should meet within speech (p, b, m)"


def test_silence_renders_a_living_face_with_closed_lips(silence_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "idle.mp4"
    render_to_mp4(silence_path, out, config=RenderJobConfig.of(fps=25))
    frames, _ = decode(out)
    assert len(frames) == 75
    assert max(mouth_gap(f) for f in frames[::10]) < 0.02
    motion = [np.abs(frames[i].astype(int) - frames[0].astype(int)).mean() for i in range(0, 75, 5)]
    assert max(motion) > 0.5, "an idle face must not be frozen"


def test_cli_renders_mp3_stereo_at_40_fps(speech_path: Path, tmp_path: Path) -> None:
    mp3 = tmp_path / "speech.mp3"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-i",
            str(speech_path),
            "-ac",
            "2",
            "-ar",
            "44100",
            str(mp3),
        ],
        check=True,
    )
    out = tmp_path / "out40.mp4"
    result = run_cli("render", "--audio", str(mp3), "-o", str(out), "--fps", "40")
    assert result.returncode == 0, result.stderr
    frames, info = decode(out)
    assert info["fps"] == pytest.approx(40.0)
    assert abs(len(frames) - 40 * probe_audio(mp3).duration_s) <= 2


def test_cli_renders_with_the_baseline_on_request(speech_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "baseline.mp4"
    result = run_cli("render", "--audio", str(speech_path), "--motion", "baseline", "-o", str(out))
    assert result.returncode == 0, result.stderr
    frames, _ = decode(out)
    assert len(frames) == frame_count(round(probe_audio(speech_path).duration_s * 16000), 16000, 25)


def test_cli_renders_on_the_onnxruntime_backend_like_torch(
    speech_path: Path, tmp_path: Path, speech_video
) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = tmp_path / "ort.mp4"
    env = {**os.environ, "FACECAST_ENGINE_CACHE_DIR": str(tmp_path / "engines")}
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "render", "--audio", str(speech_path),
         "--backend", "onnxruntime", "-o", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "engines").glob("*.onnx"))) == 3
    frames, _ = decode(out)
    reference = speech_video[1]
    assert len(frames) == len(reference)
    pairs = zip(frames, reference, strict=True)
    worst = max(float(np.mean((a.astype(float) - b) ** 2)) for a, b in pairs)
    assert 10 * np.log10(255**2 / max(worst, 1e-9)) > 35  # dB: the same video, re-encoded


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_refuses_a_gpu_backend_without_a_gpu(speech_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.mp4"
    result = run_cli(
        "render", "--audio", str(speech_path), "--backend", "torch-cuda", "-o", str(out)
    )
    assert result.returncode == 2
    assert "torch-cuda backend needs a CUDA GPU" in result.stderr and not out.exists()


def test_cli_speaks_text_with_builtin_tts(tmp_path: Path) -> None:
    out = tmp_path / "hello.mp4"
    result = run_cli("render", "--text", "Hello there.", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    frames, info = decode(out)
    assert len(frames) > 10 and info["audio_codec"] == "aac"


@pytest.mark.parametrize(
    "make_args, message",
    [
        (
            lambda d, s: ["--portrait", str(d / "broken.jpg"), "--audio", str(s)],
            "broken.jpg.*(not an image|damaged)",
        ),
        (lambda d, s: ["--audio", str(d / "notes.txt")], "could not decode"),
        (lambda d, s: ["--audio", str(d / "missing.wav")], "does not exist"),
        (lambda d, s: ["--audio", str(s), "--fps", "0"], "fps"),
        (
            lambda d, s: ["--audio", str(s), "--checkpoint", str(d / "none.safetensors")],
            "no motion checkpoint at .*none.safetensors; train one with `facecast train`",
        ),
        (
            lambda d, s: ["--audio", str(s), "--checkpoint", str(d / "notes.txt")],
            "not a readable safetensors file",
        ),
    ],
)
def test_cli_bad_input_gives_a_clear_error_and_no_file(
    tmp_path: Path, speech_path: Path, make_args, message
) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    (tmp_path / "notes.txt").write_text("hello, I am not audio")
    out = tmp_path / "out.mp4"
    result = run_cli("render", *make_args(tmp_path, speech_path), "-o", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert re.search(message, result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial.mp4"))
