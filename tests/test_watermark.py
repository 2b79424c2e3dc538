"""engines.provenance: the mark on real rendered frames through real codecs, the null, the code."""

from __future__ import annotations

import io
import subprocess

import av
import cv2
import numpy as np
import pytest

from engines.face.encoder import FaceEncoder, FaceEncoderConfig
from engines.pipeline import INPUT_RATE, Pipeline, PipelineConfig
from engines.provenance import (
    CODED_BITS,
    CORRECTABLE_ERRORS,
    WatermarkConfig,
    WatermarkEmbedder,
    code,
    detect,
    make_payload,
    split_payload,
)
from tests.speech import load_wav

FPS = 25
PAYLOAD = make_payload(0xABCDEF, 0x12_3456_789A)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory, speech_path) -> np.ndarray:  # type: ignore[no-untyped-def]
    """About 3 s of the built-in portrait talking: (T, 512, 512, 3) uint8, unmarked."""
    avatar = FaceEncoder(FaceEncoderConfig(cache_dir=tmp_path_factory.mktemp("avatars"))).encode()
    samples, _ = load_wav(speech_path, INPUT_RATE)
    samples = samples[: 3 * INPUT_RATE].astype(np.float32)
    pipeline = Pipeline(avatar, PipelineConfig(fps=FPS))
    out = []
    for start in range(0, len(samples), INPUT_RATE // FPS):
        out += pipeline.push(samples[start : start + INPUT_RATE // FPS])
    out += pipeline.flush()
    return np.stack([f.rgb for f in out])


@pytest.fixture(scope="module")
def marked(frames: np.ndarray) -> np.ndarray:
    return WatermarkEmbedder(PAYLOAD).embed_batch(frames)


def _h264(frames: np.ndarray, bitrate: int = 1_000_000) -> bytes:
    """The live path's encoder: libx264 superfast/zerolatency at the session bitrate."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = bitrate
        stream.options = {"preset": "superfast", "tune": "zerolatency"}
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


def _ffmpeg(data: bytes, *args: str) -> bytes:
    cmd = ["ffmpeg", "-v", "error", "-i", "pipe:0", *args, "-c:v", "libx264", "-preset"]
    cmd += ["veryfast", "-pix_fmt", "yuv420p", "-f", "matroska", "pipe:1"]
    return subprocess.run(cmd, input=data, capture_output=True, check=True).stdout


def _luma(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])


def test_round_trip_is_invisible_and_reads_the_payload(frames, marked) -> None:
    mse = np.mean((marked.astype(np.float64) - frames) ** 2)
    assert 10 * np.log10(255**2 / mse) >= 42  # PSNR
    found = detect(marked)
    assert found.marked and found.payload == PAYLOAD and found.p_value < 1e-12
    assert split_payload(found.payload) == (0xABCDEF, 0x12_3456_789A)


def test_survives_live_h264_then_crf28_downscale_and_crop(marked) -> None:
    live = _h264(marked)
    videos = {
        "h264 1 Mbps": live,
        "crf 28": _ffmpeg(live, "-crf", "28"),
        "512 -> 256": _ffmpeg(live, "-vf", "scale=256:256:flags=area", "-crf", "23"),
        "4% crop": _ffmpeg(live, "-vf", "crop=iw*0.96:ih*0.96:iw*0.03:ih*0.01", "-crf", "23"),
    }
    for name, data in videos.items():
        luma = _luma(data)
        found = detect(luma)
        assert found.marked, f"{name}: z {found.z:.1f}, p {found.p_value:.2g}"
        assert found.payload == PAYLOAD, f"{name}: payload not read (margin {found.bit_margin:.2f})"
    assert _luma(videos["4% crop"]).shape[1:] == (492, 492)


def test_unmarked_frames_and_a_wrong_key_are_not_marked(frames, marked) -> None:
    for name, video in {
        "unmarked render": frames,
        "unmarked after h264": _luma(_h264(frames)),
    }.items():
        found = detect(video)
        assert not found.marked and found.payload is None, f"{name}: z {found.z:.1f}"
    other = detect(marked, WatermarkConfig(key=b"another deployment"))
    assert not other.marked and other.payload is None
    still = np.repeat(cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY)[None], 3, axis=0)
    assert not detect(still).marked


def test_code_corrects_every_pattern_it_claims() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        payload = int(rng.integers(0, 2**62)) * 4 + int(rng.integers(0, 4))
        signs = 1.0 - 2.0 * code.encode(payload).astype(np.float64)
        flips = rng.choice(CODED_BITS, CORRECTABLE_ERRORS, replace=False)
        signs[flips] *= -1
        assert code.decode(signs) == payload
        # Bursts too: the free distance bounds any pattern of that many errors.
        start = int(rng.integers(0, CODED_BITS - CORRECTABLE_ERRORS))
        burst = 1.0 - 2.0 * code.encode(payload).astype(np.float64)
        burst[start : start + CORRECTABLE_ERRORS] *= -1
        assert code.decode(burst) == payload


def test_code_never_passes_garbage_as_a_payload() -> None:
    rng = np.random.default_rng(4)
    passed = sum(code.decode(rng.standard_normal(CODED_BITS)) is not None for _ in range(200))
    assert passed <= 2  # CRC-16: 2**-16 per try; 200 tries pass none in practice
    with pytest.raises(ValueError, match="64-bit"):
        code.encode(1 << 64)
