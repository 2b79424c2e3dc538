"""Live video encoding: the x264 preset reaches x264, answers put H.264 first, VP8 still works.

The loopback tests run a real ServerState in this process (startup, a session on
the built-in portrait, PeerLink answering) against a real aiortc viewer, so the
encoder aiortc's sender actually built can be looked at; the H.264 the viewer
receives is checked for the settings x264 writes into its first keyframe.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription, rtcrtpreceiver
from aiortc.codecs import get_decoder
from aiortc.codecs.base import Decoder
from aiortc.codecs.h264 import h264_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import SessionDescription

from server.client import Viewer
from server.config import load_config
from server.encoders import (
    X264_PRESET,
    PresetH264Encoder,
    check_x264_preset,
    install_h264_preset,
    preferred_video_codecs,
)
from server.state import ServerState

VIDEO_CLOCK = 90000


def _frames(count: int, seed: int = 0) -> list[av.VideoFrame]:
    """`count` 512x512 rgb24 frames of a moving gradient plus noise, 25 fps on a 90 kHz clock."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 512, dtype=np.float32)
    frames = []
    for i in range(count):
        base = (ramp[None, :, None] + 8 * i) % 256 + rng.normal(0, 12, (512, 512, 3))
        frame = av.VideoFrame.from_ndarray(np.clip(base, 0, 255).astype(np.uint8), format="rgb24")
        frame.pts = i * VIDEO_CLOCK // 25
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        frames.append(frame)
    return frames


def _x264_settings(annex_b: bytes) -> dict[str, str]:
    """The 'options:' x264 writes in its SEI of each keyframe, as {name: value}."""
    start = annex_b.find(b"options: ")
    if start < 0:
        return {}
    text = annex_b[start + len(b"options: ") :].split(b"\x00", 1)[0].decode("ascii", "replace")
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


# What x264's presets set (x264 common/base.c); medium is x264's (and aiortc's) default.
PRESET_SETTINGS = {
    "ultrafast": {"me": "dia", "subme": "0", "ref": "1", "deblock": "0:0:0"},
    "superfast": {"me": "dia", "subme": "1", "ref": "1", "deblock": "1:0:0"},
    "veryfast": {"me": "hex", "subme": "2", "ref": "1"},
    "medium": {"me": "hex", "subme": "7", "ref": "3"},
}


def _matches(settings: dict[str, str], expected: dict[str, str]) -> bool:
    return all(settings.get(k) == v for k, v in expected.items())


@pytest.mark.parametrize("preset", ["superfast", "ultrafast", "medium"])
def test_the_preset_reaches_x264_and_survives_a_rebuild(preset: str) -> None:
    expected = PRESET_SETTINGS[preset]
    encoder = PresetH264Encoder(preset, threads=1)
    frames = _frames(4)
    first, _ = encoder.encode(frames[0])
    assert _matches(_x264_settings(b"".join(map(h264_depayload, first))), expected)
    encoder.encode(frames[1])
    # aiortc rebuilds its codec when the bitrate moves by more than 10% (congestion control).
    encoder.target_bitrate = 3 * encoder.target_bitrate
    rebuilt, _ = encoder.encode(frames[2])
    settings = _x264_settings(b"".join(map(h264_depayload, rebuilt)))
    assert settings, "a rebuilt encoder starts with a keyframe carrying x264's settings"
    assert _matches(settings, expected)
    assert encoder.preset == preset and encoder.codec is not None and encoder.codec.is_open


def test_an_unknown_preset_is_refused_with_the_known_ones() -> None:
    assert check_x264_preset("veryfast") == "veryfast"
    with pytest.raises(ValueError, match="ultrafast, superfast"):
        PresetH264Encoder("quick")
    with pytest.raises(ValueError, match="unknown x264 preset"):
        load_config({"FACECAST_H264_PRESET": "quick"})
    assert load_config({}).h264_preset == X264_PRESET


def test_preferences_put_h264_first_then_vp8() -> None:
    kinds = [c.mimeType.lower() for c in preferred_video_codecs()]
    assert kinds[0] == "video/h264"
    assert kinds.index("video/vp8") > max(i for i, k in enumerate(kinds) if k == "video/h264")


class _StreamTap:
    """Keeps the first H.264 access units this process's receivers decode (the viewer's)."""

    def __init__(self, keep: int = 4) -> None:
        self.units: list[bytes] = []
        self._keep = keep

    def get_decoder(self, codec: RTCRtpCodecParameters) -> Decoder:
        decoder = get_decoder(codec)
        if codec.mimeType.lower() == "video/h264":
            decode = decoder.decode

            def tapped(frame: JitterFrame) -> list[Any]:
                if len(self.units) < self._keep:
                    self.units.append(bytes(frame.data))
                return decode(frame)

            decoder.decode = tapped  # type: ignore[method-assign,assignment]
        return decoder


@dataclass
class _Watched:
    answer_video_codecs: list[str]
    frames: int
    pixels_std: float
    encoder: object
    x264: dict[str, str]


async def _watch(
    data_dir: Path, tap: _StreamTap, offer_video: Callable[[str], bool], frames: int = 8
) -> _Watched:
    """A real server state answers a real viewer whose offer keeps the video codecs chosen."""
    state = ServerState.build(load_config({"FACECAST_DATA_DIR": str(data_dir)}))
    await state.startup()
    viewer: Viewer | None = None
    try:
        session = await state.sessions.create()
        pc = RTCPeerConnection()
        viewer = Viewer(pc)
        pc.on("track", viewer.attach)
        video = pc.addTransceiver("video", direction="recvonly")
        capabilities = RTCRtpReceiver.getCapabilities("video")
        assert capabilities is not None
        video.setCodecPreferences(
            [c for c in capabilities.codecs if offer_video(c.mimeType.lower())]
        )
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        link = await state.connect_peer(session, pc.localDescription.sdp, owns_session=False)
        answer = link.pc.localDescription.sdp
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await viewer.wait_frames(frames, timeout_s=60)
        media = next(m for m in SessionDescription.parse(answer).media if m.kind == "video")
        sender = next(s for s in link.pc.getSenders() if s.track and s.track.kind == "video")
        last = viewer.frames[-1].rgb
        assert last is not None
        return _Watched(
            [c.mimeType.lower() for c in media.rtp.codecs],
            len(viewer.frames),
            float(last.std()),
            sender._RTCRtpSender__encoder,  # type: ignore[attr-defined]  # the one aiortc built
            _x264_settings(b"".join(tap.units)),
        )
    finally:
        if viewer is not None:
            await viewer.close()
        await state.shutdown()


@pytest.fixture
def tap(monkeypatch: pytest.MonkeyPatch) -> _StreamTap:
    stream_tap = _StreamTap()
    monkeypatch.setattr(rtcrtpreceiver, "get_decoder", stream_tap.get_decoder)
    return stream_tap


@pytest.fixture
def stock_encoders() -> Any:
    """Undo install_h264_preset after the test (the server installs it process-wide)."""
    from aiortc import rtcrtpsender

    original = rtcrtpsender.get_encoder  # type: ignore[attr-defined]
    yield
    rtcrtpsender.get_encoder = original  # type: ignore[attr-defined]


def test_an_offer_of_vp8_and_h264_is_answered_with_h264_at_the_preset(
    tmp_path: Path, tap: _StreamTap, stock_encoders: None
) -> None:
    # aiortc offers VP8 first, as browsers do; the answer must still lead with H.264.
    watched = asyncio.run(_watch(tmp_path, tap, lambda mime: mime != "video/rtx"))
    assert watched.answer_video_codecs[0] == "video/h264"
    assert "video/vp8" in watched.answer_video_codecs
    assert watched.frames >= 8 and watched.pixels_std > 10  # a decoded face, not a flat frame
    encoder = watched.encoder
    assert isinstance(encoder, PresetH264Encoder) and encoder.preset == X264_PRESET
    assert encoder.codec is not None and encoder.codec.is_open
    assert _matches(watched.x264, PRESET_SETTINGS[X264_PRESET]), watched.x264


def test_an_offer_of_vp8_only_still_streams(
    tmp_path: Path, tap: _StreamTap, stock_encoders: None
) -> None:
    watched = asyncio.run(_watch(tmp_path, tap, lambda mime: mime == "video/vp8"))
    assert watched.answer_video_codecs == ["video/vp8"]
    assert watched.frames >= 8 and watched.pixels_std > 10
    assert type(watched.encoder).__name__ == "Vp8Encoder" and not tap.units


def test_install_changes_the_preset_of_new_encoders(stock_encoders: None) -> None:
    from aiortc import rtcrtpsender

    install_h264_preset("veryfast")
    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=VIDEO_CLOCK, payloadType=102)
    encoder = rtcrtpsender.get_encoder(h264)  # type: ignore[attr-defined]
    assert isinstance(encoder, PresetH264Encoder) and encoder.preset == "veryfast"
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=VIDEO_CLOCK, payloadType=96)
    assert type(rtcrtpsender.get_encoder(vp8)).__name__ == "Vp8Encoder"  # type: ignore[attr-defined]
