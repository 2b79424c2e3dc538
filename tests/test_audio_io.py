"""engines.audio.decoding on real speech in every container and codec we promise, and errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import wavfile

from engines.audio.decoding import AudioInfo, iter_audio, probe_audio, read_audio
from engines.errors import InvalidAudioError
from tests.speech import SpeechClip, load_wav, write_wav

# name -> (file suffix, ffmpeg output options, codec name PyAV reports, channels, rate)
FORMATS: dict[str, tuple[str, list[str], str, int, int]] = {
    "wav_s16_mono_16k": (".wav", ["-c:a", "pcm_s16le"], "pcm_s16le", 1, 16000),
    "wav_s24_mono_16k": (".wav", ["-c:a", "pcm_s24le"], "pcm_s24le", 1, 16000),
    "wav_s16_stereo_44k1": (
        ".wav",
        ["-c:a", "pcm_s16le", "-ac", "2", "-ar", "44100"],
        "pcm_s16le",
        2,
        44100,
    ),
    "wav_s24_stereo_48k": (
        ".wav",
        ["-c:a", "pcm_s24le", "-ac", "2", "-ar", "48000"],
        "pcm_s24le",
        2,
        48000,
    ),
    "mp3_44k1": (".mp3", ["-c:a", "libmp3lame", "-b:a", "128k", "-ar", "44100"], "mp3", 1, 44100),
    "ogg_opus": (".ogg", ["-c:a", "libopus", "-b:a", "64k"], "opus", 1, 48000),
    "ogg_vorbis": (".ogg", ["-c:a", "libvorbis", "-q:a", "5", "-ar", "44100"], "vorbis", 1, 44100),
    "flac_48k": (".flac", ["-c:a", "flac", "-ar", "48000"], "flac", 1, 48000),
    "m4a_aac_stereo": (
        ".m4a",
        ["-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "44100"],
        "aac",
        2,
        44100,
    ),
}

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.fixture(scope="module")
def original(speech_clip: SpeechClip) -> np.ndarray:
    """The reference samples, read with scipy (not the code under test): shape (S,)."""
    samples, _ = load_wav(speech_clip.path, 16000)
    return samples


@pytest.fixture(scope="module")
def converted(speech_clip: SpeechClip, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed; it makes the format variants")
    directory = tmp_path_factory.mktemp("formats")
    paths = {}
    for name, (suffix, options, _, _, _) in FORMATS.items():
        path = directory / f"{name}{suffix}"
        cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(speech_clip.path), *options, str(path)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        paths[name] = path
    return paths


def _best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    """Max normalised correlation of two signals over lags in [-max_lag, max_lag]."""
    n = min(len(a), len(b)) - 2 * max_lag
    ref = a[max_lag : max_lag + n].astype(np.float64)
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        other = b[max_lag + lag : max_lag + lag + n].astype(np.float64)
        denom = np.linalg.norm(ref) * np.linalg.norm(other) + 1e-12
        best = max(best, float(ref @ other / denom))
    return best


@needs_ffmpeg
@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_decodes_to_16k_mono(
    name: str, converted: dict[str, Path], original: np.ndarray, speech_clip: SpeechClip
) -> None:
    _, _, codec, channels, rate = FORMATS[name]
    info = probe_audio(converted[name])
    assert isinstance(info, AudioInfo)
    assert (info.codec, info.channels, info.sample_rate) == (codec, channels, rate)
    assert info.duration_s == pytest.approx(speech_clip.duration_s, abs=0.05)

    decoded = read_audio(converted[name])
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert len(decoded) / 16000 == pytest.approx(speech_clip.duration_s, abs=0.05)
    assert np.abs(decoded).max() <= 1.0
    # Lossy codecs shift phase a little; the waveform must still match closely.
    assert _best_correlation(original, decoded, max_lag=80) > 0.98
    level_ratio = np.sqrt(np.mean(decoded**2) / np.mean(original**2))
    assert 0.85 < level_ratio < 1.15


@needs_ffmpeg
def test_resamples_to_any_rate(converted: dict[str, Path], speech_clip: SpeechClip) -> None:
    for rate in (8000, 22050, 48000):
        decoded = read_audio(converted["m4a_aac_stereo"], sample_rate=rate)
        assert len(decoded) / rate == pytest.approx(speech_clip.duration_s, abs=0.05)


def test_stereo_is_downmixed_not_left_channel(tmp_path: Path) -> None:
    rate = 16000
    t = np.arange(rate) / rate
    left, right = 0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 1200 * t)
    path = tmp_path / "stereo.wav"
    wavfile.write(path, rate, (np.stack([left, right], axis=1) * 32767).astype(np.int16))
    mono = read_audio(path)
    spectrum = np.abs(np.fft.rfft(mono))
    bin_hz = rate / len(mono)
    assert spectrum[round(300 / bin_hz)] > 0.2 * spectrum.max()
    assert spectrum[round(1200 / bin_hz)] > 0.2 * spectrum.max()


def test_iter_audio_chunks_are_exact_and_contiguous(speech_path: Path) -> None:
    whole = read_audio(speech_path)
    chunks = list(iter_audio(speech_path, chunk_samples=1000))
    assert all(len(c.samples) == 1000 for c in chunks[:-1])
    assert 0 < len(chunks[-1].samples) <= 1000
    assert [c.pts for c in chunks] == [i * 1000 for i in range(len(chunks))]
    assert all(c.sample_rate == 16000 and c.samples.dtype == np.float32 for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), whole)


def test_wav_decode_matches_samples_exactly(tmp_path: Path) -> None:
    # Same rate, 16-bit mono: decoding must be lossless up to int16 quantisation.
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, 4000).astype(np.float32)
    path = write_wav(tmp_path / "noise.wav", samples, 16000)
    np.testing.assert_allclose(read_audio(path), samples, atol=1.0 / 32768)


def test_silence_decodes_to_zeros(silence_path: Path) -> None:
    decoded = read_audio(silence_path)
    assert len(decoded) == 3 * 16000
    assert np.abs(decoded).max() == 0.0


def _iterate_all(path: Path) -> list:
    return list(iter_audio(path))


def _assert_invalid(path: Path, *needles: str) -> None:
    for call in (probe_audio, read_audio, _iterate_all):
        with pytest.raises(InvalidAudioError) as info:
            call(path)
        message = str(info.value)
        for needle in needles:
            assert needle in message, f"{call.__name__}: {message!r} lacks {needle!r}"


def test_missing_file(tmp_path: Path) -> None:
    _assert_invalid(tmp_path / "nope.wav", "nope.wav", "does not exist")


def test_directory(tmp_path: Path) -> None:
    _assert_invalid(tmp_path, "not a file")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("this is not audio\n" * 20)
    _assert_invalid(path, "could not decode 'x.txt' as audio", "use wav, mp3, ogg, flac or m4a")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    _assert_invalid(path, "empty.wav", "use wav, mp3")


def test_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "face.jpg"
    Image.new("RGB", (64, 64), (200, 120, 90)).save(path)
    _assert_invalid(path, "face.jpg", "no audio stream", "use wav, mp3")


@needs_ffmpeg
def test_video_without_audio(tmp_path: Path) -> None:
    path = tmp_path / "silent_video.mp4"
    cmd = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10"]
    subprocess.run([*cmd, "-t", "1", "-c:v", "mpeg4", str(path)], check=True, timeout=60)
    _assert_invalid(path, "silent_video.mp4", "no audio stream")


def test_wav_with_zero_samples(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    _assert_invalid(path, "zero.wav", "no audio samples")


def test_truncated_garbage_after_header(tmp_path: Path, speech_path: Path) -> None:
    # An ID3 header then random bytes: decoding may stop early, but never leak an av error.
    path = tmp_path / "broken.mp3"
    noise = np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + noise)
    try:
        decoded = read_audio(path)
    except InvalidAudioError as exc:
        assert "broken.mp3" in str(exc)
    else:
        assert decoded.dtype == np.float32 and np.all(np.abs(decoded) <= 1.0)


def test_missing_file_raises_at_call_not_iteration(tmp_path: Path) -> None:
    with pytest.raises(InvalidAudioError):
        iter_audio(tmp_path / "nope.wav")  # no next(): the check must be eager


def test_bad_arguments(speech_path: Path) -> None:
    with pytest.raises(ValueError):
        iter_audio(speech_path, chunk_samples=0)
    with pytest.raises(ValueError):
        iter_audio(speech_path, sample_rate=0)
