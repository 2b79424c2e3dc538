"""Do mouth and sound drift apart over a long live session?

Usage: python -m benchmarks.bench_av_drift [--minutes 10] [--period 5] [--url URL]
       python -m benchmarks.bench_av_drift --minutes 1      (quick mode)

Starts `facecast serve` in a subprocess (or uses --url), creates one 25 fps
session watched by a real aiortc peer in this process, and streams silence with
a 250 ms voiced burst every --period seconds for the whole run, exactly as
bench_audio_to_frame does (same stimulus, same detection). Bursts in the first
and in the last window (one minute each; halves of the run when it is shorter
than two minutes) are measured at the receiver: A/V offset (mouth open - burst
heard), send -> mouth and send -> heard. Drift = last window's p50 - first
window's p50.

It also compares the received streams with the wall clock: for video, arrival
time minus the frame's pts; for audio, arrival time minus the received sample
count / 48 kHz (the client keeps no audio pts); each as a median over the first
and the last 10 s. A change between start and end is a stream running slower or
faster than real time, or delay building up.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import (
    finish_machine_info,
    markdown_table,
    setup_logging,
    write_results,
)
from benchmarks._live import CpuMeter, live_header, live_machine_info, metric_total, serve
from benchmarks.bench_audio_to_frame import (
    FPS,
    WARMUP_BURSTS,
    BurstSchedule,
    analyse_bursts,
    stream_bursts,
    summarize_bursts,
    voiced_burst,
    watched_session,
)

__all__ = ["main", "run"]

NAME = "bench_av_drift"
CLOCK_WINDOW_S = 10.0
KEYS = ("av_offset_ms", "mouth_ms", "audio_ms")

logger = logging.getLogger(__name__)


def _schedule(minutes: float, period_s: float) -> tuple[BurstSchedule, float]:
    """Bursts over the whole run, measured in the first and last window; (schedule, window s)."""
    total = minutes * 60.0
    count = int((total - 3.0) // period_s) + 1
    schedule = BurstSchedule.every(period_s, count, lead_s=1.5, tail_s=1.5)
    window = min(60.0, total / 2)
    end = schedule.onsets_s[-1]
    schedule.measured = [
        onset < schedule.onsets_s[0] + window or onset > end - window for onset in schedule.onsets_s
    ]
    return schedule, window


def _clock_offsets(times: np.ndarray, media_s: np.ndarray) -> dict[str, float]:
    """Median (arrival - media time) over the first and last CLOCK_WINDOW_S, in ms, and the rate."""
    offset = times - media_s
    first = times < times[0] + CLOCK_WINDOW_S
    last = times > times[-1] - CLOCK_WINDOW_S
    start, end = float(np.median(offset[first])), float(np.median(offset[last]))
    return {
        "start_ms": 0.0,
        "end_ms": round((end - start) * 1000, 2),
        "media_s": round(float(media_s[-1] - media_s[0]), 3),
        "wall_s": round(float(times[-1] - times[0]), 3),
        "rate": round(float((media_s[-1] - media_s[0]) / (times[-1] - times[0])), 6),
    }


def _clocks(viewer: Any) -> dict[str, Any]:
    frames = viewer.frames
    video = _clock_offsets(
        np.array([f.received_at for f in frames]), np.array([f.time_s for f in frames])
    )
    arrivals = np.array([at for at, _ in viewer.audio])
    lengths = np.array([len(samples) for _, samples in viewer.audio])
    # A chunk's first sample plays on arrival: sample clock = samples received before it.
    audio = _clock_offsets(arrivals, (np.cumsum(lengths) - lengths) / 48000.0)
    pts = [f.pts for f in frames]
    return {
        "video": video,
        "audio": audio,
        "video_pts_strictly_increasing": all(b > a for a, b in zip(pts, pts[1:], strict=False)),
        "video_pts_steps": sorted({b - a for a, b in zip(pts, pts[1:], strict=False)})[:8],
    }


async def _measure(url: str, server_pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    schedule, window = _schedule(args.minutes, args.period)
    async with watched_session(url, FPS, schedule) as (client, sid, viewer):
        meter = CpuMeter(server_pid)
        underruns = await metric_total(client, "facecast_audio_underruns_total")
        late_chunks = await stream_bursts(client, sid, schedule, voiced_burst())
        cpu = meter.cores()
        underruns = await metric_total(client, "facecast_audio_underruns_total") - underruns
        info = await client.request("GET", f"/api/sessions/{sid}")
    measured = [i for i, keep in enumerate(schedule.measured) if keep]
    half = len(schedule.onsets_s) / 2
    first = analyse_bursts(viewer, schedule, [i for i in measured if WARMUP_BURSTS <= i < half])
    last = analyse_bursts(viewer, schedule, [i for i in measured if i >= half])
    return {
        "window_s": window,
        "bursts_total": len(schedule.onsets_s),
        "first": {"bursts": first, "summary": summarize_bursts(first)},
        "last": {"bursts": last, "summary": summarize_bursts(last)},
        "clocks": _clocks(viewer),
        "session": {k: info[k] for k in ("fps", "frames_sent", "dropped_frames")}
        | {"stats": info["stats"]},
        "late_sender_chunks": late_chunks,
        "server_audio_underruns": int(underruns),
        "cpu": cpu,
    }


def _drift(data: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in KEYS:
        a, b = data["first"]["summary"][key], data["last"]["summary"][key]
        out[key] = round(b["p50"] - a["p50"], 1) if a.get("n") and b.get("n") else None
    return out


def _markdown(data: dict[str, Any]) -> str:
    first, last, drift = data["first"]["summary"], data["last"]["summary"], data["drift_ms"]
    labels = {
        "av_offset_ms": "A/V offset: mouth open - heard",
        "mouth_ms": "send -> mouth open",
        "audio_ms": "send -> heard",
    }

    def cells(s: dict[str, Any]) -> list[Any]:
        return [s.get("n", 0), s.get("p50", "-"), s.get("p95", "-")]

    rows = [[labels[k], *cells(first[k]), *cells(last[k]), drift[k]] for k in KEYS]
    clocks, session = data["clocks"], data["session"]
    clock_rows = [
        [name, c["end_ms"], c["rate"], c["media_s"], c["wall_s"]]
        for name, c in (
            ("video (pts)", clocks["video"]),
            ("audio (samples received)", clocks["audio"]),
        )
    ]
    cpu = data["cpu"]
    return "\n".join(
        [
            *live_header("# A/V drift over a long live session", data["machine"]),
            f"{data['minutes']} min, one {FPS} fps session, one aiortc viewer in the client "
            "process, silence streamed in real time with a voiced burst every "
            f"{data['period_s']} s "
            f"({data['bursts_total']} bursts). Measured: the bursts in the first and the last "
            f"{data['window_s']:.0f} s (the first two are warm-up). Times in ms at the receiver.",
            "",
            markdown_table(
                [
                    "measure (ms)",
                    "first n",
                    "first p50",
                    "first p95",
                    "last n",
                    "last p50",
                    "last p95",
                    "drift (p50 last - first)",
                ],
                rows,
            ),
            "",
            "## Received streams against the wall clock",
            "",
            f"Arrival time minus media time, median over the last {CLOCK_WINDOW_S:g} s, relative "
            f"to the same over the first {CLOCK_WINDOW_S:g} s (positive: arriving later than its "
            "timestamps, delay built up); rate = media seconds per wall second.",
            "",
            markdown_table(["stream", "end - start (ms)", "rate", "media s", "wall s"], clock_rows),
            "",
            f"Video pts strictly increasing: {clocks['video_pts_strictly_increasing']}; pts steps "
            f"seen (90 kHz): {clocks['video_pts_steps']}. Server at the end: "
            f"{session['frames_sent']} frames sent, {session['dropped_frames']} dropped, "
            f"frame_time_ms_p50 {session['stats']['frame_time_ms_p50']}, playout delay "
            f"{session['stats']['playout_delay_ms']} ms; audio_underruns counter "
            f"{data['server_audio_underruns']}; sender chunks > 20 ms "
            "late "
            f"{data['late_sender_chunks']}. CPU (cores): server {cpu['server_cores']}, client "
            f"{cpu['client_cores']}, other {cpu['other_cores']}.",
            "",
            "## Notes",
            "",
            "- Audio and video frames are timed on one session clock from integer positions, so "
            "the server itself cannot drift; an A/V drift here would come from the tracks "
            "skipping ahead under load (video skips late frames; audio skips when > 200 ms "
            "behind) or from the receiver.",
            "- The whole stream is one streamed utterance. Every tick that finds its queue empty "
            "(a late chunk from the sender, a stalled event loop) is padded with silence and the "
            "rest of the utterance plays that much later, until the queue skips as much silence "
            "from the next pause (the underrun debt); the send -> heard rows show whether "
            "latency crept up over the stream.",
            "- The A/V offset is at an aiortc receiver: audio waits in its jitter buffer for 4 "
            "newer packets (80 ms), video for the next frame's first packet (40 ms); see "
            "bench_audio_to_frame.md.",
        ]
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {
        "machine": live_machine_info(),
        "minutes": args.minutes,
        "period_s": args.period,
        "fps": FPS,
    }
    with serve(args.url, "--max-sessions", "2") as server:
        data["server"] = {"url": server.url, "own_subprocess": server.pid is not None}
        data.update(asyncio.run(_measure(server.url, server.pid, args)))
    finish_machine_info(data["machine"])
    data["drift_ms"] = _drift(data)
    data["headline"] = {
        "av_offset_first_p50_ms": round(
            data["first"]["summary"]["av_offset_ms"].get("p50", float("nan")), 1
        ),
        "av_offset_last_p50_ms": round(
            data["last"]["summary"]["av_offset_ms"].get("p50", float("nan")), 1
        ),
        "av_drift_ms": data["drift_ms"]["av_offset_ms"],
        "video_clock_end_ms": data["clocks"]["video"]["end_ms"],
        "audio_clock_end_ms": data["clocks"]["audio"]["end_ms"],
    }
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="session length (1: quick)")
    parser.add_argument("--period", type=float, default=5.0, help="seconds between bursts")
    parser.add_argument("--url", help="use this running server instead of starting one")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.minutes * 60 < 4 * args.period + 6:
        parser.error("--minutes too short for two measured windows; use at least 1")
    setup_logging()
    data = run(args)
    md = write_results(NAME, data, _markdown(data), args.out_dir)
    print(md.read_text())


if __name__ == "__main__":
    main()
