"""What does live video encoding cost per 512x512 talking-face frame, and what quality is left?

Usage: python -m benchmarks.bench_encode [--quick] [--seconds 6]

Renders a few seconds of the built-in portrait talking (baseline motion over
speech, plus head turns and blinks), then runs the frames through the encoders
aiortc's senders use, exactly as a live session calls them (`encode(frame)` on
rgb24 frames with 90 kHz timestamps: colour conversion, encode, RTP
packetization), and decodes the payloads as a viewer does (aiortc's
depayloader and decoder). Per configuration:
- ms per frame: wall p50/p95 and the process's CPU time (robust to other
  load; at threads=1 x264 runs on the calling thread), first keyframe apart;
- the bitrate actually produced, and PSNR (RGB, numpy) and SSIM (luma,
  skimage) of every decoded frame against the raw rendered frame;
- H.264 at x264 presets ultrafast..faster and medium (x264's default, which
  aiortc uses), all with tune=zerolatency as aiortc sets it, at aiortc's H.264
  session bitrates (MIN / DEFAULT / MAX_BITRATE); aiortc's VP8 encoder at its
  own session bitrates and at H.264's default; and the live server's preset
  with x264's own thread count (what the live encoder runs: aiortc sets none).
The chosen preset is the fastest whose quality at aiortc's default bitrate is
within 1 dB PSNR and 0.005 SSIM of medium; server.encoders.X264_PRESET is
what the live server uses, and the report says whether the two agree.
"""

from __future__ import annotations

import argparse
import fractions
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from aiortc.codecs import h264, vpx
from aiortc.codecs.base import Decoder, Encoder
from aiortc.jitterbuffer import JitterFrame
from skimage.metrics import structural_similarity

from benchmarks._common import (
    finish_machine_info,
    machine_info,
    machine_markdown,
    markdown_table,
    run_and_report,
    speech_file,
    summarize,
)
from benchmarks.contact_sheet import baseline_motion
from engines.face.encoder import FaceEncoder
from engines.face.image_io import LUMA_WEIGHTS
from engines.motion.space import index_of
from engines.render.renderer import FaceRenderer
from server.encoders import X264_PRESET, PresetH264Encoder

__all__ = ["main", "run"]

NAME = "bench_encode"
FPS = 25
VIDEO_CLOCK = 90000
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "medium")
DEFAULT_PRESET = "medium"  # x264's default: what aiortc's H264Encoder opens
H264_BITRATES = (h264.MIN_BITRATE, h264.DEFAULT_BITRATE, h264.MAX_BITRATE)
VP8_BITRATES = (vpx.MIN_BITRATE, vpx.DEFAULT_BITRATE, h264.DEFAULT_BITRATE, vpx.MAX_BITRATE)
# The choice: the fastest preset this close to medium at aiortc's default bitrate.
# 1 dB is about what a viewer starts to notice; 0.005 SSIM is a seventh of what
# ultrafast loses (no deblocking, no adaptive quantization).
PSNR_TOLERANCE_DB = 1.0
SSIM_TOLERANCE = 0.005

logger = logging.getLogger(__name__)


def talking_frames(seconds: float) -> np.ndarray:
    """uint8 frames (T, 512, 512, 3) of the built-in portrait speaking, turning and blinking."""
    with tempfile.TemporaryDirectory() as tmp:
        _, speech = speech_file(Path(tmp))
        motion = baseline_motion(speech, FPS)
    count = min(len(motion), int(seconds * FPS))
    motion = np.array(motion[:count], dtype=np.float32)  # TxD
    t = np.arange(count) / FPS
    motion[:, index_of("headYaw")] += 0.35 * np.sin(2 * np.pi * t / 3.0)
    blinks = (t % 2.0) < 0.16  # a 160 ms blink every 2 s
    motion[blinks, index_of("eyeBlinkLeft")] = 1.0
    motion[blinks, index_of("eyeBlinkRight")] = 1.0
    renderer = FaceRenderer(FaceEncoder().encode(None))
    with torch.inference_mode():
        batches = [renderer.render(motion[i : i + 8]) for i in range(0, count, 8)]
    return np.concatenate(batches)


def _video_frame(rgb: np.ndarray, index: int) -> av.VideoFrame:
    """A frame as SessionVideoTrack makes it: rgb24, pts on the 90 kHz video clock."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame.pts = index * VIDEO_CLOCK // FPS
    frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
    return frame


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ LUMA_WEIGHTS  # HxW


def frame_quality(raw: np.ndarray, decoded: np.ndarray) -> tuple[float, float]:
    """(PSNR in dB over RGB, SSIM of luma) of a decoded (H, W, 3) uint8 frame against raw."""
    error = np.mean((raw.astype(np.float32) - decoded.astype(np.float32)) ** 2)
    psnr = float(10 * np.log10(255.0**2 / max(float(error), 1e-10)))
    ssim = float(structural_similarity(_luma(raw), _luma(decoded), data_range=255.0))
    return psnr, ssim


def _quality_stats(pairs: list[tuple[float, float]]) -> dict[str, float]:
    psnr, ssim = np.array(pairs).T
    return {
        "psnr_mean": float(psnr.mean()),
        "psnr_min": float(psnr.min()),
        "ssim_mean": float(ssim.mean()),
        "ssim_min": float(ssim.min()),
    }


def encode_run(
    encoder: Encoder,
    decoder: Decoder,
    depayload: Callable[[bytes], bytes],
    frames: np.ndarray,
    bitrate: int,
) -> dict[str, Any]:
    """Encode frames (T, H, W, 3) live-style at `bitrate`, decode as a viewer; cost and quality."""
    encoder.target_bitrate = bitrate  # type: ignore[attr-defined]  # both of aiortc's video encoders
    wall, cpu, sent, quality = [], [], 0, []
    source = {}
    for index, rgb in enumerate(frames):
        frame = _video_frame(rgb, index)
        start, start_cpu = time.perf_counter(), time.process_time()
        payloads, timestamp = encoder.encode(frame)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        sent += sum(len(p) for p in payloads)
        source[timestamp] = index
        data = b"".join(depayload(p) for p in payloads)
        for out in decoder.decode(JitterFrame(data, timestamp)):
            if out.pts is None:
                raise RuntimeError("the decoder returned a frame without a timestamp")
            decoded = out.to_ndarray(format="rgb24")  # type: ignore[attr-defined]
            quality.append(frame_quality(frames[source[out.pts]], decoded))
    if len(quality) != len(frames):
        raise RuntimeError(f"decoded {len(quality)} of {len(frames)} frames")
    return {
        "bitrate_target_kbps": bitrate // 1000,
        "bitrate_kbps": sent * 8 * FPS / len(frames) / 1000,
        "keyframe_ms": wall[0],
        "wall_ms": summarize(wall[1:]),
        "cpu_ms": summarize(cpu[1:]),
        **_quality_stats(quality),
    }


def yuv420_ceiling(frames: np.ndarray) -> dict[str, float]:
    """Quality of the rgb24 -> yuv420p -> rgb24 round trip alone: no codec can beat it."""
    pairs = []
    for index, rgb in enumerate(frames):
        yuv = _video_frame(rgb, index).reformat(format="yuv420p")
        pairs.append(frame_quality(rgb, yuv.to_ndarray(format="rgb24")))
    return _quality_stats(pairs)


def choose_preset(records: list[dict[str, Any]]) -> str:
    """The fastest preset within the tolerances of medium at aiortc's default bitrate."""
    at_default = {
        r["preset"]: r
        for r in records
        if r["codec"] == "H.264" and r["bitrate_target_kbps"] == h264.DEFAULT_BITRATE // 1000
    }
    reference = at_default[DEFAULT_PRESET]
    for preset in PRESETS:  # fastest first
        record = at_default[preset]
        if (
            record["psnr_mean"] >= reference["psnr_mean"] - PSNR_TOLERANCE_DB
            and record["ssim_mean"] >= reference["ssim_mean"] - SSIM_TOLERANCE
        ):
            return preset
    return DEFAULT_PRESET


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    info = machine_info()
    frames = talking_frames(2.0 if args.quick else args.seconds)
    logger.info("rendered %d frames of %s", len(frames), frames.shape[1:])
    records = []
    for bitrate in H264_BITRATES:
        for preset in PRESETS:
            record = encode_run(
                PresetH264Encoder(preset, threads=1),
                h264.H264Decoder(),
                h264.h264_depayload,
                frames,
                bitrate,
            )
            records.append({"codec": "H.264", "preset": preset, "threads": 1, **record})
            logger.info("H.264 %s at %d kbps: %s", preset, bitrate // 1000, record["cpu_ms"])
    live = encode_run(
        PresetH264Encoder(X264_PRESET),
        h264.H264Decoder(),
        h264.h264_depayload,
        frames,
        h264.DEFAULT_BITRATE,
    )
    records.append(
        {"codec": "H.264", "preset": f"{X264_PRESET} (live)", "threads": "x264's", **live}
    )
    for bitrate in VP8_BITRATES:
        vp8 = vpx.Vp8Encoder()
        record = encode_run(vp8, vpx.Vp8Decoder(), vpx.vp8_depayload, frames, bitrate)
        threads = vp8.codec.thread_count if vp8.codec is not None else None
        records.append({"codec": "VP8", "preset": "aiortc", "threads": threads, **record})
    return {
        "name": NAME,
        "machine": finish_machine_info(info),
        "frames": len(frames),
        "fps": FPS,
        "size": list(frames.shape[1:3]),
        "yuv420_ceiling": yuv420_ceiling(frames),
        "records": records,
        "chosen_preset": choose_preset(records),
        "server_preset": X264_PRESET,
        "tolerances": {"psnr_db": PSNR_TOLERANCE_DB, "ssim": SSIM_TOLERANCE},
    }


def _rows(records: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["codec"],
            r["preset"],
            r["threads"],
            r["bitrate_target_kbps"],
            round(r["bitrate_kbps"]),
            r["cpu_ms"]["mean"],
            r["wall_ms"]["p50"],
            r["wall_ms"]["p95"],
            r["keyframe_ms"],
            r["psnr_mean"],
            r["psnr_min"],
            round(r["ssim_mean"], 4),
            round(r["ssim_min"], 4),
        ]
        for r in records
    ]


def _markdown(data: dict[str, Any]) -> str:
    headers = [
        "codec",
        "preset",
        "threads",
        "target kbps",
        "sent kbps",
        "CPU ms/frame",
        "wall p50",
        "wall p95",
        "keyframe ms",
        "PSNR dB",
        "PSNR min",
        "SSIM",
        "SSIM min",
    ]
    ceiling = data["yuv420_ceiling"]
    chosen, live = data["chosen_preset"], data["server_preset"]
    h = data["size"]
    return "\n\n".join(
        [
            f"# {NAME}: live video encoding of {h[0]}x{h[1]} talking-face frames",
            machine_markdown(data["machine"]),
            f"{data['frames']} frames at {data['fps']} fps of the built-in portrait (baseline "
            "motion over speech, head turns, blinks), encoded as aiortc's senders do "
            "(`encode()` on rgb24 frames: colour conversion, encode, RTP packetization) and "
            "decoded as a viewer does. H.264: libx264 with tune=zerolatency, Baseline, "
            "level 3.1; VP8: aiortc's Vp8Encoder as is (it picks one thread at this size). CPU ms "
            "is the process's CPU time per frame (mean, first keyframe excluded: all of x264's "
            "threads in the (live) row), wall p50/p95 the "
            "elapsed time; PSNR over RGB, SSIM of luma, mean and worst frame.",
            markdown_table(headers, _rows(data["records"])),
            f"rgb24 -> yuv420p -> rgb24 alone (the ceiling): PSNR {ceiling['psnr_mean']:.1f} dB, "
            f"SSIM {ceiling['ssim_mean']:.4f}.",
            _choice_note(data),
            f"Chosen by this run: **{chosen}**; the live server uses "
            f"server.encoders.X264_PRESET = **{live}**"
            + (" (the same)." if chosen == live else " (they differ: revisit the constant)."),
        ]
    )


def _choice_note(data: dict[str, Any]) -> str:
    by_key = {(r["codec"], r["preset"], r["bitrate_target_kbps"]): r for r in data["records"]}
    default_kbps = h264.DEFAULT_BITRATE // 1000
    medium = by_key[("H.264", DEFAULT_PRESET, default_kbps)]
    chosen = by_key[("H.264", data["chosen_preset"], default_kbps)]
    vp8 = by_key.get(("VP8", "aiortc", default_kbps))
    tol = data["tolerances"]
    lines = [
        "## The choice",
        f"Rule: the fastest preset whose mean PSNR at aiortc's default bitrate "
        f"({default_kbps} kbps) is within {tol['psnr_db']} dB of medium's and mean SSIM within "
        f"{tol['ssim']}. At {default_kbps} kbps, {data['chosen_preset']} costs "
        f"{chosen['cpu_ms']['mean']:.2f} ms per frame against {medium['cpu_ms']['mean']:.2f} ms "
        f"for medium ({medium['cpu_ms']['mean'] / chosen['cpu_ms']['mean']:.1f}x), at "
        f"{chosen['psnr_mean']:.2f} dB / SSIM {chosen['ssim_mean']:.4f} against "
        f"{medium['psnr_mean']:.2f} dB / {medium['ssim_mean']:.4f}.",
    ]
    for preset in PRESETS[: PRESETS.index(data["chosen_preset"])]:
        faster = by_key[("H.264", preset, default_kbps)]
        lines.append(
            f"{preset} is cheaper still ({faster['cpu_ms']['mean']:.2f} ms) but gives up "
            f"{chosen['psnr_mean'] - faster['psnr_mean']:.2f} dB PSNR and "
            f"{chosen['ssim_mean'] - faster['ssim_mean']:.4f} SSIM at {default_kbps} kbps "
            f"({faster['psnr_mean']:.2f} dB, worst frame {faster['psnr_min']:.2f} dB)."
        )
    slower = PRESETS[PRESETS.index(data["chosen_preset"]) + 1 :]
    if slower and slower[0] != DEFAULT_PRESET:
        next_one = by_key[("H.264", slower[0], default_kbps)]
        lines.append(
            f"{slower[0]}, the next slower preset, would win back "
            f"{next_one['psnr_mean'] - chosen['psnr_mean']:.2f} dB and "
            f"{next_one['ssim_mean'] - chosen['ssim_mean']:.4f} SSIM for "
            f"{next_one['cpu_ms']['mean'] / chosen['cpu_ms']['mean']:.1f}x the CPU "
            f"({next_one['cpu_ms']['mean']:.2f} ms)."
        )
    if vp8 is not None:
        lines.append(
            f"aiortc's VP8 at the same bitrate costs {vp8['cpu_ms']['mean']:.2f} ms per frame "
            f"({vp8['psnr_mean']:.2f} dB, SSIM {vp8['ssim_mean']:.4f}): answers put H.264 first "
            "and fall back to VP8 only for a peer that offers no H.264."
        )
    return "\n\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s of frames instead of --seconds")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of video per run")
    run_and_report(NAME, parser, run, _markdown, argv)


if __name__ == "__main__":
    main()
