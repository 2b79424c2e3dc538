"""Live video encoding: aiortc's H.264 encoder at a chosen x264 preset, H.264 first in answers.

aiortc opens libx264 with x264's default preset (medium) plus tune=zerolatency:
about 4x the CPU of superfast per 512x512 talking-face frame, for at most
0.6 dB PSNR and 0.003 SSIM more at the session bitrates. ultrafast is cheaper
still but turns off deblocking and adaptive quantization and loses about 2 dB
PSNR and 0.03 SSIM at aiortc's default 1 Mbps (benchmarks/results/bench_encode.md). aiortc's VP8
costs more than superfast at lower quality, so answers put H.264 first and
VP8 second: VP8 is sent only to a peer that offers no H.264.

`install_h264_preset` makes every RTCRtpSender in the process build its H.264
encoder as a `PresetH264Encoder`; everything else of aiortc's encoder (rate
control, keyframes, packetization) is untouched.
"""

from __future__ import annotations

from aiortc import RTCRtpCodecCapability, RTCRtpSender, rtcrtpsender
from aiortc.codecs import get_encoder
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.video.codeccontext import VideoCodecContext

__all__ = [
    "X264_PRESET",
    "X264_PRESETS",
    "PresetH264Encoder",
    "check_x264_preset",
    "install_h264_preset",
    "preferred_video_codecs",
]

# x264's presets, fastest first; aiortc uses x264's default, "medium".
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
# The fastest preset at medium's quality for talking faces: bench_encode.md says why.
X264_PRESET = "superfast"
# Codec preference of a session's video, best first (rtx, when offered, follows its codec).
_VIDEO_PREFERENCE = ("video/h264", "video/vp8", "video/rtx")


def check_x264_preset(preset: str) -> str:
    """`preset` if x264 knows it; ValueError naming the presets otherwise."""
    if preset not in X264_PRESETS:
        raise ValueError(
            f"unknown x264 preset {preset!r}: use one of {', '.join(X264_PRESETS)} "
            f"({X264_PRESET} is the measured choice for live sessions)"
        )
    return preset


class PresetH264Encoder(H264Encoder):
    """aiortc's H264Encoder whose libx264 opens at `preset` (tune=zerolatency kept).

    aiortc creates, configures and opens its codec context inside one method
    (and again whenever the size or the bitrate moves by more than 10%), ending
    with `self.codec.encode(frame)`. The `codec` property adds the preset to the
    options of any context that is not open yet, so every context aiortc makes
    opens with it, however often it is rebuilt. `threads` (x264's threads
    option) None keeps aiortc's (x264 picks from the core count).
    """

    def __init__(self, preset: str = X264_PRESET, threads: int | None = None) -> None:
        self._codec: VideoCodecContext | None = None
        self._x264_options = {"preset": check_x264_preset(preset)}
        if threads is not None:
            self._x264_options["threads"] = str(threads)
        super().__init__()

    @property
    def preset(self) -> str:
        return self._x264_options["preset"]

    @property  # type: ignore[override]  # aiortc declares a plain attribute
    def codec(self) -> VideoCodecContext | None:
        codec = self._codec
        if codec is not None and not codec.is_open:
            missing = {k: v for k, v in self._x264_options.items() if codec.options.get(k) != v}
            if missing:
                codec.options = {**codec.options, **missing}
        return codec

    @codec.setter
    def codec(self, codec: VideoCodecContext | None) -> None:
        self._codec = codec


def install_h264_preset(preset: str = X264_PRESET) -> None:
    """Make aiortc's RTP senders in this process encode H.264 with `preset`.

    RTCRtpSender calls the `get_encoder` it imported from aiortc.codecs when it
    sends its first frame; this replaces that name in aiortc.rtcrtpsender only.
    Calling it again changes the preset of encoders made from then on.
    """
    check_x264_preset(preset)

    def sender_encoder(codec: RTCRtpCodecParameters) -> Encoder:
        if codec.mimeType.lower() == "video/h264":
            return PresetH264Encoder(preset)
        return get_encoder(codec)

    rtcrtpsender.get_encoder = sender_encoder  # type: ignore[attr-defined]


def preferred_video_codecs() -> list[RTCRtpCodecCapability]:
    """aiortc's video capabilities, H.264 first, then VP8, then rtx (for either).

    For RTCRtpTransceiver.setCodecPreferences: an answer keeps the offered codecs
    in this order, so a peer that offers both gets H.264 and one that offers
    only VP8 still gets VP8.
    """
    codecs = RTCRtpSender.getCapabilities("video").codecs
    rank = {mime: i for i, mime in enumerate(_VIDEO_PREFERENCE)}
    known = [c for c in codecs if c.mimeType.lower() in rank]
    return sorted(known, key=lambda c: rank[c.mimeType.lower()])
