"""Mp4Writer: write synthetic video + a sine, decode it back with PyAV and check what came out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from server.mp4_output import Mp4Writer

SIZE = 128  # small frames keep x264 fast; the writer does not care
AUDIO_RATE = 16_000
DURATION_S = 2
BACKGROUND = (30, 60, 90)
SQUARE = (250, 40, 20)
CHUNK_SIZES = (317, 1013, 77, 4001, 1)  # odd sizes that never line up with AAC's 1024


@dataclass(frozen=True)
class Decoded:
    video_codec: str
    audio_codec: str
    frames: list[np.ndarray]  # each uint8 (H, W, 3)
    frame_times: list[float]
    audio: np.ndarray  # float32 (S,) at audio_rate
    audio_rate: int
    audio_start: float
    video_duration: float
    audio_duration: float


def _frame(index: int) -> np.ndarray:
    """uint8 (SIZE, SIZE, 3): a flat background with a square moving right."""
    rgb = np.empty((SIZE, SIZE, 3), np.uint8)
    rgb[...] = BACKGROUND
    x = 2 * index % (SIZE - 32)
    rgb[40:72, x : x + 32] = SQUARE
    return rgb


def _sine(seconds: float, rate: int = AUDIO_RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _write(path: Path, fps: int, audio: np.ndarray, frames: list[np.ndarray]) -> None:
    """Interleave frames and odd-sized audio chunks the way a live session would."""
    with Mp4Writer(path, fps=fps, width=SIZE, height=SIZE) as mp4:
        done = 0
        chunk = 0
        for index, rgb in enumerate(frames):
            mp4.write_frame(rgb)
            due = (index + 1) * len(audio) // len(frames)
            while done < due:
                n = min(CHUNK_SIZES[chunk % len(CHUNK_SIZES)], due - done)
                mp4.write_audio(audio[done : done + n], AUDIO_RATE)
                done += n
                chunk += 1
            if index == len(frames) // 2:
                # Streaming: audio is encoded as it arrives, not held until close().
                assert mp4.audio_samples_written > 0.9 * 48_000 * done / AUDIO_RATE - 2048


def _decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        names = (video.codec_context.name, audio.codec_context.name)
        durations = [float(s.duration * s.time_base) for s in (video, audio)]
        frames, times = [], []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time))
    with av.open(str(path)) as container:
        chunks, starts, rate = [], [], 0
        for frame in container.decode(audio=0):
            chunks.append(frame.to_ndarray().reshape(-1))  # 1xS planar mono
            starts.append(float(frame.time))
            rate = frame.sample_rate
    return Decoded(
        video_codec=names[0],
        audio_codec=names[1],
        frames=frames,
        frame_times=times,
        audio=np.concatenate(chunks).astype(np.float32),
        audio_rate=rate,
        audio_start=starts[0],
        video_duration=durations[0],
        audio_duration=durations[1],
    )


@pytest.mark.parametrize("fps", [25, 30, 40])
def test_round_trip(tmp_path: Path, fps: int) -> None:
    path = tmp_path / f"out{fps}.mp4"
    frames = [_frame(i) for i in range(DURATION_S * fps)]
    _write(path, fps, _sine(DURATION_S), frames)
    out = _decode(path)

    assert (out.video_codec, out.audio_codec) == ("h264", "aac")
    assert len(out.frames) == DURATION_S * fps
    np.testing.assert_allclose(out.frame_times, np.arange(len(out.frames)) / fps, atol=1e-3)
    assert abs(out.video_duration - DURATION_S) < 0.05
    assert abs(out.audio_duration - DURATION_S) < 0.05
    assert abs(len(out.audio) / out.audio_rate - DURATION_S) < 0.05
    assert out.audio_rate == 48_000
    assert out.frame_times[0] == 0.0
    assert abs(out.audio_start - out.frame_times[0]) < 1e-3

    for index in (0, len(frames) // 2, len(frames) - 1):
        got = out.frames[index].reshape(-1, 3).mean(axis=0)
        want = frames[index].reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(got, want, atol=3.0)
        # The square is where it was written (colour within codec error).
        assert np.abs(out.frames[index][56, :].astype(int) - frames[index][56, :]).mean() < 12

    spectrum = np.abs(np.fft.rfft(out.audio * np.hanning(len(out.audio))))
    peak_hz = np.fft.rfftfreq(len(out.audio), 1 / out.audio_rate)[np.argmax(spectrum)]
    assert abs(peak_hz - 440.0) < 2.0
    assert 0.3 < np.abs(out.audio[4800:-4800]).max() < 0.7  # amplitude survived resampling


def test_flash_and_beep_line_up(tmp_path: Path) -> None:
    """A white frame at 1.0 s and a beep starting at 1.0 s come out together."""
    fps = 30
    frames = [np.zeros((SIZE, SIZE, 3), np.uint8) for _ in range(2 * fps)]
    frames[fps][...] = 255
    audio = np.zeros(2 * AUDIO_RATE, np.float32)
    audio[AUDIO_RATE : AUDIO_RATE + AUDIO_RATE // 10] = _sine(0.1)
    path = tmp_path / "sync.mp4"
    _write(path, fps, audio, frames)
    out = _decode(path)

    flash = out.frame_times[int(np.argmax([f.mean() for f in out.frames]))]
    onset = out.audio_start + int(np.argmax(np.abs(out.audio) > 0.25)) / out.audio_rate
    assert abs(flash - 1.0) < 1e-3
    assert abs(onset - flash) < 1 / fps


def test_audio_rate_may_change_between_chunks(tmp_path: Path) -> None:
    path = tmp_path / "rates.mp4"
    with Mp4Writer(path, fps=25, width=SIZE, height=SIZE) as mp4:
        for index in range(50):
            mp4.write_frame(_frame(index))
        mp4.write_audio(_sine(1.0, 16_000), 16_000)
        mp4.write_audio(_sine(1.0, 44_100), 44_100)
    out = _decode(path)
    assert abs(len(out.audio) / out.audio_rate - 2.0) < 0.05


def test_file_is_faststart(tmp_path: Path) -> None:
    path = tmp_path / "fast.mp4"
    _write(path, 25, _sine(0.5), [_frame(i) for i in range(12)])
    data = path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((SIZE, SIZE, 3), np.float32), "uint8"),
        (np.zeros((SIZE, SIZE), np.uint8), r"shape \(128, 128, 3\)"),
        (np.zeros((SIZE, SIZE, 4), np.uint8), r"shape \(128, 128, 3\)"),
        (np.zeros((SIZE + 2, SIZE, 3), np.uint8), r"got \(130, 128, 3\)"),
        ([[0]], "numpy array"),
    ],
)
def test_bad_frames_rejected(tmp_path: Path, bad: object, match: str) -> None:
    with Mp4Writer(tmp_path / "bad.mp4", fps=25, width=SIZE, height=SIZE) as mp4:
        with pytest.raises(ValueError, match=match):
            mp4.write_frame(bad)  # type: ignore[arg-type]
        mp4.write_frame(_frame(0))  # the writer is still usable after a rejected frame
    with av.open(str(tmp_path / "bad.mp4")) as container:
        assert len(list(container.decode(video=0))) == 1
        assert not container.streams.audio  # no audio written: the muxer drops the empty track


@pytest.mark.parametrize(
    ("samples", "rate", "match"),
    [
        (np.zeros(100, np.float64), 16_000, "float32"),
        (np.zeros(100, np.int16), 16_000, "float32"),
        (np.zeros((100, 2), np.float32), 16_000, r"mono of shape \(S,\)"),
        (np.zeros(100, np.float32), 0, "positive int"),
    ],
)
def test_bad_audio_rejected(tmp_path: Path, samples: np.ndarray, rate: int, match: str) -> None:
    with (
        Mp4Writer(tmp_path / "bad.mp4", fps=25, width=SIZE, height=SIZE) as mp4,
        pytest.raises(ValueError, match=match),
    ):
        mp4.write_audio(samples, rate)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fps": 0}, "fps"),
        ({"fps": 61}, "fps"),
        ({"fps": 29.97}, "fps"),
        ({"fps": 25, "width": 511}, "width"),
        ({"fps": 25, "audio_sample_rate": 12345}, "AAC rate"),
    ],
)
def test_bad_settings_rejected(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Mp4Writer(tmp_path / "x.mp4", **kwargs)  # type: ignore[arg-type]


def test_writes_after_close_fail(tmp_path: Path) -> None:
    mp4 = Mp4Writer(tmp_path / "closed.mp4", fps=25, width=SIZE, height=SIZE)
    mp4.write_frame(_frame(0))
    mp4.close()
    mp4.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        mp4.write_frame(_frame(1))
