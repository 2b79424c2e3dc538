"""Checking a video: is it facecast output? The invisible mark over its frames, and its manifest.

    any file FFmpeg reads --PyAV: first video stream, at most max_frames frames,
        luma at most 1024 px wide--> WatermarkDetector --the configured key, and the
        public one when that is private--> WatermarkReport (which key matched, not the key)
    the same file --c2pa Reader (MP4, MOV, AVI)--> ManifestReport

The work is bounded before it starts: a frame larger than `max_pixels` is
refused from the stream's header (or its first frame), decoding stops after
`max_frames` frames or 4x as many packets, and every frame is scaled to at most
1024 px wide in the decoder's own converter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from engines.errors import InvalidVideoError, VideoTooLargeError

from .manifest import ManifestReport, describe, read_manifest
from .marker import format_mark
from .watermark import (
    DEFAULT_KEY,
    Detection,
    WatermarkConfig,
    WatermarkDetector,
    key_kind,
    split_payload,
)

__all__ = ["VerifyLimits", "VerifyReport", "WatermarkReport", "verify_video"]

_MAX_WIDTH = 1024  # the detector works at 512 px: more only costs
_MIME_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "avi": "video/avi"}


@dataclass(frozen=True)
class VerifyLimits:
    """max_frames: frames read from the start (250: 10 s at 25 fps; the mark needs a few
    seconds of video); max_pixels: the largest frame decoded (4K)."""

    max_frames: int = 250
    max_pixels: int = 3840 * 2160

    def __post_init__(self) -> None:
        if self.max_frames < 1 or self.max_pixels < 1:
            raise ValueError(f"verify limits must be positive, got {self}")


@dataclass(frozen=True)
class WatermarkReport:
    """The mark's verdict; `mark` is 'instance-stream' in hex when the payload read back;
    `key` says whose key found it ('public' or 'private', None when not found) and
    `keys_tried` which were tried, never the keys themselves."""

    marked: bool
    mark: str | None
    instance_id: str | None
    stream_mark: str | None
    p_value: float
    z: float
    frames: int
    key: str | None = None
    keys_tried: tuple[str, ...] = ("public",)

    @classmethod
    def of(
        cls, detection: Detection, key: str | None = None, keys_tried: tuple[str, ...] = ("public",)
    ) -> WatermarkReport:
        mark = instance = stream = None
        if detection.payload is not None:
            instance_id, stream_id = split_payload(detection.payload)
            mark = format_mark(instance_id, stream_id)
            instance, stream = mark.split("-")
        return cls(
            detection.marked,
            mark,
            instance,
            stream,
            detection.p_value,
            round(detection.z, 2),
            detection.frames,
            key if detection.marked else None,
            keys_tried,
        )


@dataclass(frozen=True)
class VerifyReport:
    watermark: WatermarkReport
    manifest: ManifestReport
    width: int
    height: int
    container: str

    @property
    def identified(self) -> bool:
        """The video says it is facecast output: the mark, or a valid AI-generated manifest."""
        return self.watermark.marked or (self.manifest.valid and self.manifest.ai_generated)

    def to_dict(self) -> dict[str, Any]:
        return {
            "identified": self.identified,
            "watermark": asdict(self.watermark),
            "manifest": self.manifest.to_dict(),
            "video": {"width": self.width, "height": self.height, "container": self.container},
        }

    def describe(self) -> list[str]:
        """Lines for people."""
        mark = self.watermark
        if mark.marked and mark.mark:
            line = (
                f"watermark: MARKED ({mark.key} key), instance {mark.instance_id}, "
                f"session/job {mark.stream_mark}"
            )
        elif mark.marked:
            line = f"watermark: MARKED ({mark.key} key), payload unreadable (its CRC failed)"
        else:
            line = f"watermark: not found with the {' or the '.join(mark.keys_tried)} key"
        stats = f"p = {mark.p_value:.2g}, z = {mark.z:.1f}, {mark.frames} frames"
        return [
            f"{line} ({stats})",
            describe(self.manifest),
            "verdict: facecast output" if self.identified else "verdict: no facecast provenance",
        ]


def verify_video(
    source: Path | BinaryIO,
    limits: VerifyLimits | None = None,
    config: WatermarkConfig | None = None,
) -> VerifyReport:
    """Check one video file (a path or a seekable binary file). InvalidVideoError if it
    holds no decodable video, VideoTooLargeError if its frames are over the limit.

    The mark is looked for with `config.key` and, when that is a private key, with the
    public one too (one decode, one fold: little more than one key's cost), so a holder
    of a private key still recognises every other deployment's output."""
    limits = limits or VerifyLimits()
    detector = WatermarkDetector(config)
    if isinstance(source, Path):
        with open(source, "rb") as stream:
            return _verify(stream, limits, detector)
    return _verify(source, limits, detector)


def _verify(stream: BinaryIO, limits: VerifyLimits, detector: WatermarkDetector) -> VerifyReport:
    width, height, container = _decode_into(stream, limits, detector)
    mime = next((m for k, m in _MIME_TYPES.items() if k in container.split(",")), None)
    manifest = ManifestReport(present=False) if mime is None else read_manifest(stream, mime)
    return VerifyReport(_watermark_report(detector), manifest, width, height, container)


def _watermark_report(detector: WatermarkDetector) -> WatermarkReport:
    """The best of the configured key and, if that is private, the public key: the marked
    detection with the smallest p, else the one closest to marked."""
    keys = list(dict.fromkeys([detector.config.key, DEFAULT_KEY]))
    detections = detector.results(keys)
    kinds = tuple(key_kind(key) for key in keys)
    best = max(
        zip(detections, kinds, strict=True), key=lambda d: (d[0].marked, -d[0].p_value, d[0].z)
    )
    return WatermarkReport.of(best[0], best[1], kinds)


def _decode_into(
    stream: BinaryIO, limits: VerifyLimits, detector: WatermarkDetector
) -> tuple[int, int, str]:
    """(width, height, container format) after adding the video's luma frames to `detector`."""
    import av

    try:
        container = av.open(stream, mode="r")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidVideoError(
            f"the file is not a video FFmpeg can read ({_reason(exc)}); send an MP4, WebM, "
            "MOV, MKV or any other video file"
        ) from None
    with container:
        if not container.streams.video:
            raise InvalidVideoError("the file holds no video stream")
        video = container.streams.video[0]
        _check_size(video.codec_context.width, video.codec_context.height, limits)
        size: tuple[int, int] | None = None
        packets = 0
        try:
            for packet in container.demux(video):
                packets += 1
                for frame in packet.decode():
                    if size is None:
                        _check_size(frame.width, frame.height, limits)
                        size = (frame.width, frame.height)
                    elif (frame.width, frame.height) != size:
                        break  # a resolution change: the mark's grid moved; keep what we have
                    detector.add(_luma(frame))
                if detector.frames >= limits.max_frames or packets > 4 * limits.max_frames:
                    break
        except av.FFmpegError as exc:
            if detector.frames == 0:
                raise InvalidVideoError(
                    f"the video could not be decoded ({_reason(exc)})"
                ) from None
        if size is None or detector.frames == 0:
            raise InvalidVideoError("the video stream holds no decodable frames")
        return size[0], size[1], str(container.format.name)


def _reason(exc: Exception) -> str:
    """FFmpeg's own words, without the file name (an upload's is a temporary file)."""
    return str(getattr(exc, "strerror", None) or exc)[:200]


def _check_size(width: int, height: int, limits: VerifyLimits) -> None:
    if width * height > limits.max_pixels:
        raise VideoTooLargeError(
            f"the video is {width}x{height}, over the {limits.max_pixels} pixel limit; "
            "scale it down (the mark survives scaling) and verify again"
        )


def _luma(frame: Any) -> Any:
    """(H, W) uint8 luma, scaled in the decoder's converter to at most _MAX_WIDTH wide."""
    if frame.width <= _MAX_WIDTH:
        return frame.reformat(format="gray").to_ndarray()
    height = max(2, round(frame.height * _MAX_WIDTH / frame.width))
    return frame.reformat(width=_MAX_WIDTH, height=height, format="gray").to_ndarray()
