"""Streaming MP4 file output: RGB frames + float PCM in, H.264 + AAC out.

`Mp4Writer` encodes and muxes as data arrives, so memory stays bounded however
long the recording is: video frames go straight to the encoder, audio goes
through a resampler (any input rate -> the AAC encoder's rate and sample
format) and a FIFO that holds less than one AAC frame (1024 samples) between
calls. Both streams start at pts 0 on their own time base (1/fps and
1/audio_sample_rate), so a frame index and a sample index map to the same
session clock and A/V stay in sync as long as the caller feeds both from it.
The file is written with `movflags=+faststart` (index at the front) so a
browser can start playing it before it has downloaded the whole file.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from av.audio.fifo import AudioFifo
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.codec.codec import UnknownCodecError
from av.video.reformatter import ColorRange, Colorspace
from av.video.stream import VideoStream

__all__ = ["Mp4Writer", "VIDEO_ENCODERS"]

logger = logging.getLogger(__name__)

# Preferred first. "h264" resolves to whatever H.264 encoder this FFmpeg build
# has (e.g. libopenh264); mpeg4 part 2 is the last resort every build carries,
# though browsers will not play it.
VIDEO_ENCODERS = ("libx264", "h264", "mpeg4")

_AAC_FRAME_SIZE = 1024  # samples per AAC frame; every frame but the last must be exactly this
_BT709 = 1  # AVCOL_SPC/PRI/TRC_BT709: what browsers assume for untagged video anyway


class Mp4Writer:
    """Write an MP4 (H.264 video, AAC mono audio) incrementally.

    Usage::

        with Mp4Writer("out.mp4", fps=30) as mp4:
            mp4.write_frame(rgb)                 # uint8 (H, W, 3), H == height, W == width
            mp4.write_audio(samples, 16000)      # float32 (S,), any length, any rate

    Frame i is shown at i / fps seconds; audio sample j (after resampling) at
    j / audio_sample_rate seconds; both from 0.
    """

    def __init__(
        self,
        path: str | Path,
        fps: int,
        width: int = 512,
        height: int = 512,
        audio_sample_rate: int = 48000,
        crf: int = 20,
        preset: str = "veryfast",
    ) -> None:
        _check_settings(fps, width, height, audio_sample_rate)
        self.path = Path(path)
        self.fps = fps
        self.width = width
        self.height = height
        self.audio_sample_rate = audio_sample_rate
        self._container = av.open(
            str(self.path), mode="w", format="mp4", container_options={"movflags": "+faststart"}
        )
        try:
            self.video_encoder = _pick_video_encoder()
            self._video = self._add_video_stream(crf, preset)
            self._audio = self._add_audio_stream()
        except Exception:
            self._container.close()
            raise
        self._frames_written = 0
        self._samples_encoded = 0  # at audio_sample_rate: the next AAC frame's pts
        self._fifo = AudioFifo()
        self._resampler: AudioResampler | None = None
        self._resampler_rate = 0
        self._closed = False

    # --- public verbs -------------------------------------------------------

    @property
    def frames_written(self) -> int:
        return self._frames_written

    @property
    def audio_samples_written(self) -> int:
        """Samples at audio_sample_rate handed to the AAC encoder so far."""
        return self._samples_encoded

    def write_frame(self, rgb: np.ndarray) -> None:
        """Encode the next video frame; rgb is uint8 of shape (H, W, 3)."""
        self._check_open()
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
            raise ValueError(
                f"frame must be a uint8 numpy array, got {getattr(rgb, 'dtype', type(rgb))}"
            )
        if rgb.shape != (self.height, self.width, 3):
            raise ValueError(
                f"frame must have shape ({self.height}, {self.width}, 3), got {rgb.shape}; "
                "resize it or open the writer with the matching width/height"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        # Convert here with an explicit BT.709 matrix, matching the stream's
        # colour tags, instead of swscale's untagged BT.601 default.
        frame = frame.reformat(
            format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
        )
        frame.pts = self._frames_written
        frame.time_base = Fraction(1, self.fps)
        self._frames_written += 1
        self._mux(self._video.encode(frame))

    def write_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """Append mono PCM: float32 array of shape (S,) in [-1, 1], at sample_rate Hz.

        Chunks may have any length and the rate may change between calls.
        """
        self._check_open()
        if not isinstance(samples, np.ndarray) or samples.dtype != np.float32:
            got = getattr(samples, "dtype", type(samples))
            raise ValueError(f"audio must be a float32 numpy array, got {got}")
        if samples.ndim != 1:
            raise ValueError(f"audio must be mono of shape (S,), got shape {samples.shape}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
        if samples.size == 0:
            return
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples).reshape(1, -1), format="flt", layout="mono"
        )  # 1xS, packed
        frame.sample_rate = sample_rate
        for out in self._resampler_for(sample_rate).resample(frame):
            self._push_audio(out)
        self._encode_full_audio_frames()

    def close(self) -> None:
        """Flush both encoders, write the index and close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._drain_resampler()
            self._encode_full_audio_frames()
            if self._fifo.samples:  # the last AAC frame may be short
                self._encode_audio(self._fifo.read())
            self._mux(self._audio.encode(None))
            self._mux(self._video.encode(None))
        finally:
            self._container.close()
        logger.info(
            "wrote %s: %d frames at %d fps, %.2f s of audio",
            self.path,
            self._frames_written,
            self.fps,
            self._samples_encoded / self.audio_sample_rate,
        )

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Close even on error so what was written so far is a playable file.
        self.close()

    # --- internals ----------------------------------------------------------

    def _add_video_stream(self, crf: int, preset: str) -> VideoStream:
        options = {"crf": str(crf), "preset": preset} if self.video_encoder == "libx264" else {}
        stream = self._container.add_stream(self.video_encoder, rate=self.fps, options=options)
        assert isinstance(stream, VideoStream)  # a video encoder gives a video stream
        stream.width = self.width
        stream.height = self.height
        stream.pix_fmt = "yuv420p"  # the only 4:2:0 layout every browser decodes
        stream.time_base = Fraction(1, self.fps)
        stream.codec_context.time_base = Fraction(1, self.fps)
        ctx = stream.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = _BT709
        ctx.color_range = int(ColorRange.MPEG)
        if self.video_encoder == "mpeg4":
            ctx.bit_rate = 4_000_000  # mpeg4 has no crf; ~visually lossless at 512x512
        return stream

    def _add_audio_stream(self) -> AudioStream:
        stream = self._container.add_stream("aac", rate=self.audio_sample_rate, layout="mono")
        stream.time_base = Fraction(1, self.audio_sample_rate)
        stream.codec_context.time_base = Fraction(1, self.audio_sample_rate)
        return stream

    def _resampler_for(self, sample_rate: int) -> AudioResampler:
        """The resampler for this input rate; a rate change drains the old one first."""
        if self._resampler is None or sample_rate != self._resampler_rate:
            self._drain_resampler()
            self._resampler = AudioResampler(
                format=self._audio.codec_context.format,
                layout="mono",
                rate=self.audio_sample_rate,
            )
            self._resampler_rate = sample_rate
        return self._resampler

    def _drain_resampler(self) -> None:
        if self._resampler is None:
            return
        for out in self._resampler.resample(None):
            self._push_audio(out)
        self._resampler = None

    def _push_audio(self, frame: av.AudioFrame) -> None:
        # pts is assigned when frames leave the FIFO, from the sample count, so
        # the input's own timing (and resampler restarts) cannot cause drift.
        frame.pts = None
        self._fifo.write(frame)

    def _encode_full_audio_frames(self) -> None:
        while self._fifo.samples >= _AAC_FRAME_SIZE:
            self._encode_audio(self._fifo.read(_AAC_FRAME_SIZE))

    def _encode_audio(self, frame: av.AudioFrame | None) -> None:
        if frame is None:
            return
        frame.pts = self._samples_encoded
        frame.time_base = Fraction(1, self.audio_sample_rate)
        self._samples_encoded += frame.samples
        self._mux(self._audio.encode(frame))

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"Mp4Writer for {self.path} is closed; open a new one")


def _check_settings(fps: int, width: int, height: int, audio_sample_rate: int) -> None:
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 60:
        raise ValueError(f"fps must be an integer in 1..60, got {fps!r}")
    for name, value in (("width", width), ("height", height)):
        # yuv420p stores chroma at half resolution, so x264 needs even sizes.
        if not isinstance(value, int) or value < 16 or value % 2:
            raise ValueError(f"{name} must be an even integer >= 16, got {value!r}")
    rates = av.codec.Codec("aac", "w").audio_rates or ()
    if audio_sample_rate not in rates:
        raise ValueError(
            f"audio_sample_rate {audio_sample_rate} is not an AAC rate; use one of {sorted(rates)}"
        )


def _pick_video_encoder() -> str:
    """The first encoder of VIDEO_ENCODERS this FFmpeg build has."""
    for name in VIDEO_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except UnknownCodecError:
            continue
        if name != VIDEO_ENCODERS[0]:
            logger.warning("libx264 is not available; encoding video with %r instead", name)
        return name
    raise RuntimeError(f"none of the video encoders {VIDEO_ENCODERS} is available in PyAV's FFmpeg")
