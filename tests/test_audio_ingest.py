"""engines.audio.ingest: every audio source to float32 mono 48 kHz, and the 48 -> 16 kHz step.

Inputs are built here with numpy, scipy and the ffmpeg CLI, never with the
code under test; pitch is checked by FFT peak, level by RMS, seams by
comparing chunked against one-shot output.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from scipy.io import wavfile
from scipy.signal import resample_poly

from engines.audio.ingest import (
    FEATURE_RATE,
    PCM_RATES,
    PLAYBACK_RATE,
    Downsampler,
    FrameResampler,
    PcmStream,
    decode_audio_bytes,
)
from engines.errors import InvalidAudioError
from tests.speech import SpeechClip, load_wav

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    """float64 (S,) sine starting at phase 0."""
    return amplitude * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


def to_s16(samples: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(samples) * 32767).astype(np.int16)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def stream_all(stream: PcmStream, data: bytes, sizes: list[int]) -> np.ndarray:
    """Push data cut at the given byte sizes (the rest in one piece), then flush."""
    blocks, start = [], 0
    for size in sizes:
        blocks.append(stream.push(data[start : start + size]))
        start += size
    blocks += [stream.push(data[start:]), stream.flush()]
    for block in blocks:
        assert block.dtype == np.float32 and block.ndim == 1
    return np.concatenate(blocks)


def random_sizes(total: int, seed: int, largest: int = 900) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(0, largest)))  # 0 and odd sizes included
    return sizes


# ---- PcmStream --------------------------------------------------------------------


@pytest.mark.parametrize("rate", PCM_RATES)
def test_pcm_every_rate_gives_48k_of_the_right_length_pitch_and_level(rate: int) -> None:
    seconds, freq = 0.5, 1000.0
    data = to_s16(sine(freq, rate, seconds)).astype("<i2").tobytes()
    stream = PcmStream(rate)
    body = np.concatenate(
        [stream.push(data[i : i + rate // 25]) for i in range(0, len(data), rate // 25)]
    )
    out = np.concatenate([body, stream.flush()])
    expected = round(seconds * PLAYBACK_RATE)
    assert abs(len(out) - expected) <= 2
    # Before the flush only the resampler's short look-ahead (<= 2 ms) is missing.
    assert expected - len(body) <= PLAYBACK_RATE // 500
    assert stream.total_in_samples == round(seconds * rate)
    assert peak_hz(out, PLAYBACK_RATE) == pytest.approx(freq, abs=3.0)
    assert rms(out[1000:-1000]) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
def test_pcm_random_odd_chunks_equal_one_shot_without_clicks(rate: int) -> None:
    data = to_s16(sine(440.0, rate, 1.0)).astype("<i2").tobytes()
    one_shot = stream_all(PcmStream(rate), data, [])
    chunked = stream_all(PcmStream(rate), data, random_sizes(len(data), seed=rate))
    assert len(chunked) == len(one_shot) == PLAYBACK_RATE
    np.testing.assert_allclose(chunked, one_shot, atol=1e-6)
    # A 0.5 amplitude 440 Hz sine moves at most 2*pi*440/48000*0.5 = 0.0288 per sample; the
    # first and last ms ring because the test sine starts and stops abruptly, not at a seam.
    assert np.abs(np.diff(chunked[48:-48])).max() < 0.03
    # Aligned with the input: libswresample's delay is compensated, not passed on. (The
    # edges differ: the test sine starts and stops abruptly.)
    np.testing.assert_allclose(chunked[48:-48], sine(440.0, PLAYBACK_RATE, 1.0)[48:-48], atol=2e-3)


def test_pcm_odd_byte_waits_for_the_next_push() -> None:
    stream = PcmStream(48000)
    assert len(stream.push(b"\x01")) == 0
    out = stream.push(b"\x00\x02\x00\xff")  # 0x0001, 0x0002, then a dangling 0xff
    np.testing.assert_array_equal(out, np.array([1, 2], dtype=np.float32) / 32768)
    out = stream.push(b"\x7f")  # 0x7fff completed across pushes
    np.testing.assert_array_equal(out, np.array([32767], dtype=np.float32) / 32768)
    assert stream.total_in_samples == 3
    assert stream.dropped_bytes == 0


def test_pcm_flush_drops_and_counts_a_dangling_byte() -> None:
    stream = PcmStream(16000)
    stream.push(to_s16(sine(440.0, 16000, 0.1)).tobytes() + b"\x05")
    assert len(stream.flush()) > 0
    assert stream.dropped_bytes == 1
    assert stream.total_in_samples == 1600
    assert len(stream.flush()) == 0  # nothing pending


def test_pcm_flush_rearms_for_the_next_utterance() -> None:
    data = to_s16(sine(300.0, 24000, 0.2)).tobytes()
    stream = PcmStream(24000)
    first = stream_all(stream, data, [333])
    second = stream_all(stream, data, [1001])
    np.testing.assert_allclose(second, first, atol=1e-6)
    assert stream.total_in_samples == 2 * 4800


@pytest.mark.parametrize("rate", [0, 11025, 96000, -16000])
def test_pcm_rejects_rates_it_does_not_resample(rate: int) -> None:
    with pytest.raises(InvalidAudioError, match=rf"got {rate}; send one of 8000, 16000, 22050"):
        PcmStream(rate)


@pytest.mark.parametrize("rate", [48000, 16000, 44100])
def test_pcm_int16_extremes_map_to_plus_minus_one(rate: int) -> None:
    n = rate // 10
    held = np.concatenate([np.full(n, 32767), np.full(n, -32768)]).astype("<i2")
    out = stream_all(PcmStream(rate), held.tobytes(), [])
    assert out.max() <= 1.0 and out.min() >= -1.0
    half = len(out) // 2
    np.testing.assert_allclose(out[half // 4 : half * 3 // 4], 32767 / 32768, atol=1e-4)
    np.testing.assert_allclose(out[half * 5 // 4 : half * 7 // 4], -1.0, atol=1e-4)


# ---- decode_audio_bytes -------------------------------------------------------------


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """samples: (S,) or (S, C) float in [-1, 1] -> 16-bit wav bytes (scipy, not PyAV)."""
    buffer = io.BytesIO()
    wavfile.write(buffer, rate, to_s16(samples))
    return buffer.getvalue()


def ffmpeg_encode(tmp_path: Path, wav: bytes, suffix: str, options: list[str]) -> bytes:
    source, target = tmp_path / "source.wav", tmp_path / f"encoded{suffix}"
    source.write_bytes(wav)
    command = ["ffmpeg", "-v", "error", "-y", "-i", str(source), *options, str(target)]
    subprocess.run(command, check=True, capture_output=True)
    return target.read_bytes()


def test_decode_wav_16k_mono() -> None:
    out = decode_audio_bytes(wav_bytes(sine(440.0, 16000, 1.0), 16000), "a.wav")
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - PLAYBACK_RATE) <= 2
    expected = sine(440.0, PLAYBACK_RATE, 1.0)[: len(out)]
    np.testing.assert_allclose(out[48:-48], expected[48:-48], atol=2e-3)


def test_decode_wav_44k1_stereo_averages_channels() -> None:
    left = sine(440.0, 44100, 1.0, amplitude=0.9)
    both = decode_audio_bytes(wav_bytes(np.stack([left, left], axis=1), 44100), "b.wav")
    # libswresample's own float downmix would give 0.707 * (L + R): +3 dB, clipped.
    assert abs(len(both) - PLAYBACK_RATE) <= 2
    assert rms(both[1000:-1000]) == pytest.approx(0.9 / np.sqrt(2), rel=0.01)
    assert peak_hz(both, PLAYBACK_RATE) == pytest.approx(440.0, abs=2.0)
    one_side = decode_audio_bytes(
        wav_bytes(np.stack([left, np.zeros_like(left)], axis=1), 44100), "c.wav"
    )
    assert rms(one_side[1000:-1000]) == pytest.approx(0.45 / np.sqrt(2), rel=0.01)


@needs_ffmpeg
@pytest.mark.parametrize(
    ("suffix", "options", "channels"),
    [
        # VBR: lame's 128k CBR itself lowers this tone by 0.45 dB (ffmpeg's decoder agrees).
        (".mp3", ["-c:a", "libmp3lame", "-q:a", "2", "-ar", "44100"], 1),
        (".ogg", ["-c:a", "libopus", "-b:a", "64k"], 1),
        (".m4a", ["-c:a", "aac", "-b:a", "128k"], 2),
    ],
)
def test_decode_compressed_formats(
    tmp_path: Path, suffix: str, options: list[str], channels: int
) -> None:
    tone = np.repeat(sine(440.0, 22050, 1.0)[:, None], channels, axis=1)  # SxC
    encoded = ffmpeg_encode(tmp_path, wav_bytes(tone, 22050), suffix, options)
    out = decode_audio_bytes(encoded, f"speech{suffix}")
    # Encoder priming is trimmed by the demuxer; allow a frame of padding either way.
    assert abs(len(out) - PLAYBACK_RATE) <= 2048
    assert peak_hz(out, PLAYBACK_RATE) == pytest.approx(440.0, abs=2.0)
    assert rms(out[4800:-4800]) == pytest.approx(0.5 / np.sqrt(2), rel=0.03)


def test_decode_real_speech_matches_an_independent_resample(speech_clip: SpeechClip) -> None:
    reference, _ = load_wav(speech_clip.path, 16000)
    out = decode_audio_bytes(speech_clip.path.read_bytes(), speech_clip.path.name)
    expected = resample_poly(reference, 3, 1)
    assert abs(len(out) - len(expected)) <= 2
    n = min(len(out), len(expected))
    assert np.corrcoef(out[:n], expected[:n])[0, 1] > 0.999


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"hello, this is a text file and not audio at all\n" * 40, "could not decode"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8, "could not decode"),
        (np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(), "decode"),
    ],
    ids=["empty", "text", "corrupt-wav", "random"],
)
def test_decode_rejects_non_audio_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(InvalidAudioError, match=message) as info:
        decode_audio_bytes(data, "upload/voice.bin")
    assert "'voice.bin'" in str(info.value)
    assert "use wav, mp3" in str(info.value)


def test_decode_rejects_an_image() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="PNG")
    with pytest.raises(InvalidAudioError, match="'face.png' has no audio stream"):
        decode_audio_bytes(buffer.getvalue(), "face.png")


def test_decode_rejects_a_wav_without_samples() -> None:
    with pytest.raises(InvalidAudioError, match="'silent.wav' holds no audio samples"):
        decode_audio_bytes(wav_bytes(np.zeros(0), 16000), "silent.wav")


@pytest.mark.parametrize("max_seconds", [0.5, 0.85])  # header check; decode-time count
def test_decode_rejects_too_long(max_seconds: float) -> None:
    data = wav_bytes(sine(440.0, 16000, 1.0), 16000)
    with pytest.raises(InvalidAudioError, match=rf"'long.wav' .*limit is {max_seconds:g} s"):
        decode_audio_bytes(data, "long.wav", max_seconds=max_seconds)
    assert len(decode_audio_bytes(data, "long.wav", max_seconds=1.0)) == PLAYBACK_RATE


@needs_ffmpeg
def test_decode_accepts_tags_that_are_not_utf8(tmp_path: Path) -> None:
    source = tmp_path / "source.wav"
    source.write_bytes(wav_bytes(sine(440.0, 44100, 0.5), 44100))
    target = tmp_path / "latin1.mp3"
    # A latin-1 title (0xe9 = e-acute), as old taggers write; PyAV's strict decoding rejects it.
    command = [b"ffmpeg", b"-v", b"error", b"-y", b"-i", bytes(source), b"-metadata"]
    subprocess.run([*command, b"title=caf\xe9", bytes(target)], check=True, capture_output=True)
    out = decode_audio_bytes(target.read_bytes(), "latin1.mp3")
    assert peak_hz(out, PLAYBACK_RATE) == pytest.approx(440.0, abs=3.0)


@needs_ffmpeg
def test_decode_rejects_a_truncated_mp3_body(tmp_path: Path) -> None:
    encoded = ffmpeg_encode(tmp_path, wav_bytes(sine(440.0, 44100, 1.0), 44100), ".mp3", [])
    garbage = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidAudioError, match="'cut.mp3'"):
        decode_audio_bytes(encoded[:200] + garbage, "cut.mp3")


# ---- FrameResampler -------------------------------------------------------------


def s16_frame(samples: np.ndarray, rate: int, pts: int) -> av.AudioFrame:
    """samples: (S,) or (S, C) float -> a packed s16 frame, as aiortc delivers them."""
    pcm = to_s16(samples).reshape(len(samples), -1)  # SxC
    layout = "mono" if pcm.shape[1] == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    return frame


def push_frames(resampler: FrameResampler, samples: np.ndarray, rate: int) -> np.ndarray:
    step = rate // 50  # 20 ms frames, as WebRTC sends
    blocks = [
        resampler.push(s16_frame(samples[i : i + step], rate, i))
        for i in range(0, len(samples), step)
    ]
    return np.concatenate([*blocks, resampler.flush()])


def test_frames_stereo_48k_are_averaged_without_delay() -> None:
    left = sine(440.0, 48000, 0.2)
    right = sine(660.0, 48000, 0.2, amplitude=0.25)
    out = push_frames(FrameResampler(), np.stack([left, right], axis=1), 48000)
    assert len(out) == len(left)
    expected = (to_s16(left).astype(np.float64) + to_s16(right)) / 2 / 32768
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_frames_mono_48k_are_exact() -> None:
    samples = sine(440.0, 48000, 0.1)
    out = push_frames(FrameResampler(), samples, 48000)
    np.testing.assert_array_equal(out, to_s16(samples).astype(np.float32) / 32768)


def test_frames_at_8k_are_resampled_to_48k() -> None:
    out = push_frames(FrameResampler(), sine(1000.0, 8000, 0.5), 8000)
    assert abs(len(out) - 24000) <= 2
    assert peak_hz(out, PLAYBACK_RATE) == pytest.approx(1000.0, abs=3.0)
    assert rms(out[1000:-1000]) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_frames_may_change_format_layout_and_rate_mid_stream() -> None:
    resampler = FrameResampler()
    planar = np.stack([sine(440.0, 44100, 0.1), sine(440.0, 44100, 0.1)]).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")  # CxS
    frame.sample_rate = 44100
    blocks = [
        resampler.push(frame),
        resampler.push(s16_frame(sine(440.0, 16000, 0.1), 16000, 0)),  # mono s16, 16 kHz
        resampler.push(s16_frame(sine(440.0, 48000, 0.1), 48000, 0)),  # the numpy path
        resampler.flush(),
    ]
    # Each switch emits the previous resampler's tail: 3 x 0.1 s, nothing lost.
    assert abs(sum(map(len, blocks)) - 14400) <= 4
    assert rms(np.concatenate(blocks)[500:-500]) == pytest.approx(0.354, rel=0.02)


# ---- Downsampler ------------------------------------------------------------------


def test_downsampler_chunking_does_not_change_output_or_length() -> None:
    samples = np.random.default_rng(2).standard_normal(48000).astype(np.float32) * 0.2
    one_shot = Downsampler().push(samples)
    assert len(one_shot) == 16000
    downsampler, blocks, start, pushed = Downsampler(), [], 0, 0
    for size in random_sizes(len(samples), seed=3, largest=1200) + [len(samples)]:
        block = downsampler.push(samples[start : start + size])
        start, pushed = start + size, min(len(samples), start + size)
        blocks.append(block)
        assert sum(map(len, blocks)) == pushed // 3  # exactly floor(n / 3) at every step
    np.testing.assert_allclose(np.concatenate(blocks), one_shot, atol=1e-6)


def test_downsampler_delay_is_what_it_reports() -> None:
    downsampler = Downsampler()
    assert downsampler.delay_samples_out == 15  # 0.9375 ms: under the 1 ms budget
    impulse = np.zeros(900, dtype=np.float32)
    impulse[300] = 1.0
    out = downsampler.push(impulse)
    assert int(np.argmax(out)) == 100 + downsampler.delay_samples_out


def test_downsampler_passes_1khz_at_unit_gain_in_phase() -> None:
    downsampler = Downsampler()
    out = downsampler.push(sine(1000.0, 48000, 0.5, amplitude=1.0).astype(np.float32))
    delay = downsampler.delay_samples_out
    expected = sine(1000.0, FEATURE_RATE, 0.5, amplitude=1.0)[: len(out) - delay]
    np.testing.assert_allclose(out[delay + 50 :], expected[50:], atol=0.01)


@pytest.mark.parametrize("freq", [9000.0, 12000.0, 20000.0])
def test_downsampler_stops_what_would_alias(freq: float) -> None:
    out = Downsampler().push(sine(freq, 48000, 0.5, amplitude=1.0).astype(np.float32))
    attenuation_db = 20 * np.log10(rms(out[100:]) / (1 / np.sqrt(2)))
    assert attenuation_db < -40.0


def test_downsampler_reset_forgets_history() -> None:
    samples = sine(440.0, 48000, 0.1).astype(np.float32)
    downsampler = Downsampler()
    first = downsampler.push(samples[:1001])
    downsampler.reset()
    np.testing.assert_array_equal(downsampler.push(samples[:1001]), first)
    with pytest.raises(ValueError, match=r"\(S,\)"):
        downsampler.push(samples.reshape(2, -1))
