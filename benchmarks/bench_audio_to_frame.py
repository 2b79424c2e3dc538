"""How long from a sound entering the live server to its mouth motion at the receiver?

Usage: python -m benchmarks.bench_audio_to_frame [--bursts 10] [--period 2.0] [--url URL]

Starts `facecast serve` in a subprocess (or uses --url), creates a 25 fps
session and watches it with a real aiortc peer in this process
(FacecastClient.watch). Over the session's PCM WebSocket it streams digital
silence in real time, 20 ms per message from its own loop, so the send time of
every chunk is known, and every `--period` seconds one chunk starts a 250 ms
voiced burst (a 150 Hz glottal buzz through /a/ formants, which the procedural
baseline answers with a wide-open jaw). At the receiver every frame around a
burst is kept and measured with MediaPipe (tests.portraits.mouth_gap); the
burst onset is found in the received, decoded audio. Per burst:

- send -> mouth open: first received frame whose lip gap passes halfway from
  rest to the burst's peak;
- send -> audio heard: first received sample at a quarter of the burst's peak
  amplitude, timed as its chunk's arrival plus its offset in the chunk;
- A/V offset at the receiver: mouth open - audio heard (negative: the mouth
  moves before the sound is heard).

The first two bursts warm the baseline's adaptive loudness tracking and are not
counted. Also reused by bench_av_drift and the other live benchmarks: the
server context (`serve`), the CPU meter and the burst machinery live here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import signal

from benchmarks._common import (
    finish_machine_info,
    markdown_table,
    run_and_report,
    summarize,
    summary_table,
)
from benchmarks._live import CpuMeter, live_header, live_machine_info, metric_total, serve

__all__ = [
    "main",
    "run",
    "voiced_burst",
    "BurstSchedule",
    "stream_bursts",
    "analyse_bursts",
    "watched_session",
    "drop_pixels",
    "summarize_bursts",
]

NAME = "bench_audio_to_frame"
FPS = 25
PCM_RATE = 16000
CHUNK_S = 0.02
BURST_S = 0.25
WARMUP_BURSTS = 2
# Frames kept for measuring: this long before and after each burst is sent.
KEEP_BEFORE_S = 0.3
KEEP_AFTER_S = 1.0
# aiortc's receiver (1.x): audio frames leave its jitter buffer once 4 newer packets have
# arrived (prefetch=4, 20 ms each); a video frame once the next frame's first packet arrives.
AIORTC_AUDIO_BUFFER_S = 4 * 0.02

logger = logging.getLogger(__name__)


# ---- the stimulus --------------------------------------------------------------------------


def voiced_burst(
    duration_s: float = BURST_S, rate: int = PCM_RATE, peak: float = 0.5
) -> np.ndarray:
    """A loud 'ah': 150 Hz harmonic buzz through /a/ formants (730, 1090, 2440 Hz).

    Returns float32 array of shape (S,) with 5 ms fades and the given peak amplitude.
    """
    count = int(round(duration_s * rate))
    t = np.arange(count) / rate
    f0 = 150.0
    source = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, int(4000 / f0)))
    voice = np.zeros(count)
    for freq, bandwidth, gain in ((730, 90, 1.0), (1090, 110, 0.6), (2440, 170, 0.3)):
        radius = np.exp(-np.pi * bandwidth / rate)
        theta = 2 * np.pi * freq / rate
        voice += gain * signal.lfilter(
            [1 - radius], [1, -2 * radius * np.cos(theta), radius**2], source
        )
    fade = int(0.005 * rate)
    envelope = np.ones(count)
    envelope[:fade] = np.linspace(0, 1, fade)
    envelope[-fade:] = np.linspace(1, 0, fade)
    return (peak * voice / np.abs(voice).max() * envelope).astype(np.float32)


@dataclass
class BurstSchedule:
    """Burst onsets (seconds from the stream start, on 20 ms chunk boundaries) and the
    frames worth keeping around them; `sent_at` fills in as the stream runs."""

    onsets_s: list[float]
    duration_s: float
    measured: list[bool]  # keep frames (and measure) this burst
    start: float | None = None
    sent_at: list[float | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sent_at = [None] * len(self.onsets_s)

    @classmethod
    def every(
        cls, period_s: float, count: int, lead_s: float = 1.5, tail_s: float = 1.5
    ) -> BurstSchedule:
        onsets = [round((lead_s + i * period_s) / CHUNK_S) * CHUNK_S for i in range(count)]
        return cls(onsets, onsets[-1] + tail_s, [True] * count)

    def keep_pixels(self, index: int) -> bool:
        """Viewer.keep_pixels: only frames near a measured burst are converted and kept."""
        if self.start is None:
            return False
        now = time.monotonic() - self.start
        return any(
            onset - KEEP_BEFORE_S <= now <= onset + KEEP_AFTER_S
            for onset, keep in zip(self.onsets_s, self.measured, strict=True)
            if keep
        )

    def pcm(self, burst: np.ndarray) -> bytes:
        """The whole stream: silence with the bursts in, s16le mono at PCM_RATE."""
        samples = np.zeros(int(round(self.duration_s * PCM_RATE)), dtype=np.float32)
        for onset in self.onsets_s:
            at = int(round(onset * PCM_RATE))
            samples[at : at + len(burst)] = burst[: len(samples) - at]
        return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


async def stream_bursts(
    client: Any, session_id: str, schedule: BurstSchedule, burst: np.ndarray
) -> int:
    """Stream the schedule's PCM in real time, one 20 ms message at a time, as one utterance.

    Fills schedule.start and schedule.sent_at (time.monotonic() right after the chunk
    holding a burst's first sample was handed to the socket). Returns how many chunks
    left later than 20 ms after their due time (a late sender blurs the figures).
    """
    import websockets

    from server.client import EventLog

    pcm = schedule.pcm(burst)
    step = int(PCM_RATE * CHUNK_S) * 2
    burst_chunks = {int(round(onset / CHUNK_S)): i for i, onset in enumerate(schedule.onsets_s)}
    url = client.websocket_url(f"/api/sessions/{session_id}/stream", sample_rate=PCM_RATE)
    late = 0
    async with websockets.connect(url) as socket:
        log = EventLog()
        collector = asyncio.create_task(log.collect(socket))
        start = schedule.start = time.monotonic()
        for chunk, offset in enumerate(range(0, len(pcm), step)):
            due = start + chunk * CHUNK_S
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() - due > CHUNK_S:
                late += 1
            await socket.send(pcm[offset : offset + step])
            if chunk in burst_chunks:
                schedule.sent_at[burst_chunks[chunk]] = time.monotonic()
        await socket.send(json.dumps({"type": "end_of_utterance"}))
        await asyncio.sleep(0.1)
        collector.cancel()
    errors = log.of_type("error")
    if errors:
        raise RuntimeError(f"the server rejected the stream: {errors[0]}")
    return late


# ---- measuring at the receiver ---------------------------------------------------------------


def _gap(rgb: np.ndarray) -> float | None:
    from engines.face import landmarks as fl

    landmarks = fl.face_mesh(np.ascontiguousarray(rgb))
    return None if landmarks is None else float(fl.inner_lip_gap(landmarks))


def _audio_onset(
    audio: list[tuple[float, np.ndarray]], lo: float, hi: float
) -> tuple[float | None, float]:
    """(time of the first sample at 1/4 of the window's peak, peak) over chunks received in
    [lo, hi]; a sample's time is its chunk's arrival plus its offset at 48 kHz."""
    chunks = [(at, samples) for at, samples in audio if lo <= at <= hi]
    if not chunks:
        return None, 0.0
    peak = max(float(np.abs(s).max()) for _, s in chunks)
    if peak < 0.05:
        return None, peak
    for at, samples in chunks:
        loud = np.flatnonzero(np.abs(samples) >= 0.25 * peak)
        if len(loud):
            return at + loud[0] / 48000.0, peak
    return None, peak


def analyse_bursts(viewer: Any, schedule: BurstSchedule, which: list[int]) -> list[dict[str, Any]]:
    """Per burst index in `which`: latencies (ms) of mouth and sound after the send."""
    results = []
    for i in which:
        sent = schedule.sent_at[i]
        if sent is None:
            continue
        frames = [
            f
            for f in viewer.frames
            if f.rgb is not None and sent - KEEP_BEFORE_S <= f.received_at <= sent + KEEP_AFTER_S
        ]
        measured = [(f.received_at, _gap(f.rgb)) for f in frames]
        measured = [(at, g) for at, g in measured if g is not None]
        rest = [g for at, g in measured if at < sent + 0.05]
        after = [(at, g) for at, g in measured if at >= sent]
        record: dict[str, Any] = {"burst": i, "frames": len(measured)}
        record["trace"] = [[round((at - sent) * 1000), round(g, 4)] for at, g in measured]
        audio_at, audio_peak = _audio_onset(viewer.audio, sent - 0.1, sent + KEEP_AFTER_S)
        record["audio_peak"] = round(audio_peak, 3)
        if audio_at is not None:
            record["audio_ms"] = (audio_at - sent) * 1000
        if rest and after:
            rest_gap = float(np.median(rest))
            peak_gap = max(g for _, g in after)
            record.update(rest_gap=round(rest_gap, 4), peak_gap=round(peak_gap, 4))
            if peak_gap - rest_gap > 0.02:
                threshold = rest_gap + 0.5 * (peak_gap - rest_gap)
                opened = next(at for at, g in after if g >= threshold)
                record["mouth_ms"] = (opened - sent) * 1000
        if "mouth_ms" in record and "audio_ms" in record:
            record["av_offset_ms"] = record["mouth_ms"] - record["audio_ms"]
        results.append(record)
    return results


def drop_pixels(viewer: Any, before: float) -> None:
    """Forget the pixels of frames received before `before` (already analysed)."""
    from server.client import ReceivedFrame

    for k, f in enumerate(viewer.frames):
        if f.rgb is not None and f.received_at < before:
            viewer.frames[k] = ReceivedFrame(f.received_at, f.pts, f.time_s, None)


def summarize_bursts(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        key: summarize([r[key] for r in records if key in r])
        for key in ("mouth_ms", "audio_ms", "av_offset_ms")
    } | {
        "bursts": len(records),
        "mouth_detected": sum("mouth_ms" in r for r in records),
        "audio_detected": sum("audio_ms" in r for r in records),
    }


# ---- the benchmark -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def watched_session(
    url: str, fps: int, schedule: BurstSchedule | None
) -> AsyncIterator[tuple[Any, str, Any]]:
    """(client, session id, viewer): a new session with one flowing aiortc viewer; deleted after."""
    from server.client import FacecastClient

    async with FacecastClient(url) as client:
        session = await client.create_session(fps=fps)
        sid = session["id"]
        keep = schedule.keep_pixels if schedule is not None else (lambda index: False)
        viewer = await client.watch(sid, keep_pixels=keep)
        try:
            await viewer.wait_frames(2 * fps, timeout_s=30)
            yield client, sid, viewer
        finally:
            await viewer.close()
            with contextlib.suppress(Exception):
                await client.delete_session(sid)


async def _measure(url: str, server_pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    schedule = BurstSchedule.every(args.period, args.bursts + WARMUP_BURSTS)
    burst = voiced_burst()
    async with watched_session(url, FPS, schedule) as (client, sid, viewer):
        meter = CpuMeter(server_pid)
        underruns = await metric_total(client, "facecast_audio_underruns_total")
        late_chunks = await stream_bursts(client, sid, schedule, burst)
        cpu = meter.cores()
        underruns = await metric_total(client, "facecast_audio_underruns_total") - underruns
        info = await client.request("GET", f"/api/sessions/{sid}")
    records = analyse_bursts(viewer, schedule, list(range(WARMUP_BURSTS, len(schedule.onsets_s))))
    frames = viewer.frames
    pts = [f.pts for f in frames]
    span = frames[-1].received_at - frames[0].received_at
    return {
        "bursts": records,
        "summary": summarize_bursts(records),
        "session": {k: info[k] for k in ("fps", "frames_sent", "dropped_frames")}
        | {"stats": info["stats"]},
        "received_fps": round((len(frames) - 1) / span, 2) if span > 0 else 0.0,
        "pts_strictly_increasing": all(b > a for a, b in zip(pts, pts[1:], strict=False)),
        "late_sender_chunks": late_chunks,
        "server_audio_underruns": int(underruns),
        "cpu": cpu,
    }


def _floor_ms(playout_delay_ms: float) -> dict[str, float]:
    return {
        "playout_delay_ms": playout_delay_ms,
        "tick_wait_ms": 1000.0 / FPS,
        "aiortc_audio_buffer_ms": AIORTC_AUDIO_BUFFER_S * 1000,
        "aiortc_video_buffer_ms": 1000.0 / FPS,
    }


def _markdown(data: dict[str, Any]) -> str:
    s, session = data["summary"], data["session"]
    stats = session["stats"]
    delay = stats["playout_delay_ms"]
    heard = delay + AIORTC_AUDIO_BUFFER_S * 1000
    rows = [
        (label, s[key])
        for label, key in (
            ("send -> mouth open at the receiver", "mouth_ms"),
            ("send -> burst heard at the receiver", "audio_ms"),
            ("A/V offset: mouth open - heard", "av_offset_ms"),
        )
    ]
    per_burst = [
        [
            r["burst"],
            r.get("mouth_ms", "-"),
            r.get("audio_ms", "-"),
            r.get("av_offset_ms", "-"),
            r.get("rest_gap", "-"),
            r.get("peak_gap", "-"),
            r["frames"],
        ]
        for r in data["bursts"]
    ]
    cpu = data["cpu"]
    lines = [
        *live_header(
            "# Audio to frame: a sound entering the server -> the mouth at the receiver",
            data["machine"],
        ),
        f"One {FPS} fps session, one aiortc viewer in the client process, silence streamed in "
        f"real time over the PCM WebSocket (20 ms messages) with a {BURST_S * 1000:.0f} ms voiced "
        f"burst every {data['period_s']} s; {s['bursts']} bursts measured after "
        f"{WARMUP_BURSTS} warm-up bursts. Mouth opening detected on {s['mouth_detected']}, "
        f"sound on {s['audio_detected']}.",
        "",
        summary_table("measure (ms)", rows),
        "",
        f"Server during the run: playout delay {delay} ms, session stats audio_to_frame_ms_p50 "
        f"{stats['audio_to_frame_ms_p50']} ms (tick in -> frame sent), frame_time_ms_p50 "
        f"{stats['frame_time_ms_p50']} ms, {session['dropped_frames']} frames dropped of "
        f"{session['frames_sent']} sent; received {data['received_fps']} fps, pts strictly "
        f"increasing: {data['pts_strictly_increasing']}; sender chunks > 20 ms late: "
        f"{data['late_sender_chunks']}, server audio_underruns counter: "
        f"{data['server_audio_underruns']}. CPU (cores): server {cpu['server_cores']}, client "
        f"{cpu['client_cores']}, other processes {cpu['other_cores']}.",
        "",
        "## Where the time goes (the server's floor)",
        "",
        f"- The session clock holds every frame and every audio sample for playout_delay_s = "
        f"feature look-ahead 40 ms + one tick of pacing ({1000 / FPS:.0f} ms) + the render "
        f"budget (SessionConfig.render_budget_s) = {delay} ms after the tick "
        "that took its audio in (session.playout_delay_s). Audio and video leave on the same "
        "clock, so the server itself adds the same delay to both.",
        f"- A chunk is taken in at the next tick (0-{1000 / FPS:.0f} ms later) but placed at "
        "the start of that tick's playback span, behind whatever of the utterance is still "
        "queued: a streamed utterance starts only once 40 ms of it are queued (jitter buffer), "
        "and a tick that finds it short pads silence (audio_underruns), which delays the rest "
        "of the utterance until the queue skips as much silence from the next pause (the "
        "underrun debt), so latency does not creep up. Send -> leaving "
        f"the server is therefore playout_delay - {1000 / FPS:.0f} ms to playout_delay + the "
        "standing queue (0-40 ms).",
        "- Frame k is rendered from audio features centred on the middle of tick k, so a "
        "burst's first open frame is sent when the tick holding its onset starts playing: by "
        "design the mouth leads the sound by up to one frame (0-40 ms) at the server.",
        f"- Receiver (aiortc 1.x): audio leaves its jitter buffer once 4 newer 20 ms packets "
        f"arrived (+{AIORTC_AUDIO_BUFFER_S * 1000:.0f} ms); a video frame once the next frame's "
        f"first packet arrived (+{1000 / FPS:.0f} ms); plus VP8/Opus decode. A browser instead "
        "syncs the two by RTCP sender reports, so its A/V offset is not this one; the server-side "
        f"offset is about the measured one + {AIORTC_AUDIO_BUFFER_S * 1000 - 1000 / FPS:.0f} ms.",
        "- Mouth open = first frame past half of the burst's peak lip gap (MediaPipe on the "
        f"received frame), so the figure is quantized to frames ({1000 / FPS:.0f} ms).",
        "- Expected at this receiver when every frame is rendered in time: send -> mouth "
        f"{delay:.0f}-{delay + 2 * 1000 / FPS:.0f} ms (server {delay - 1000 / FPS:.0f}-"
        f"{delay + 1000 / FPS:.0f} ms, + aiortc's one-frame video buffer, + 0-1 frame until the "
        f"lip gap passes half); send -> heard {heard - 1000 / FPS:.0f}"
        f"-{heard + 1000 / FPS:.0f} ms (+ the 80 ms audio "
        "buffer); A/V offset about -40 +- 40 ms. A frame rendered after its due time is shown "
        "one tick late, and a dropped one not at all (the last frame repeats), so a server that "
        "is late on frames ('dropped' above, frame_time > 40 ms) shows up here as a later mouth "
        "and a positive offset.",
        "- The server's own stats audio_to_frame_ms_p50 is measured from the moment a tick's "
        "audio is taken from the speech queue to the moment its frame is handed to the track "
        "(80 ms nominal: playout delay minus one tick), counted only for frames sent "
        "on time; it leaves out the queue wait and the look-ahead, and is not a send -> frame "
        "figure.",
        "",
        "## Per burst",
        "",
        markdown_table(
            ["burst", "mouth ms", "heard ms", "offset ms", "rest gap", "peak gap", "frames"],
            per_burst,
        ),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {"machine": live_machine_info(), "period_s": args.period, "fps": FPS}
    with serve(args.url, "--max-sessions", "2") as server:
        data["server"] = {"url": server.url, "own_subprocess": server.pid is not None}
        data.update(asyncio.run(_measure(server.url, server.pid, args)))
    finish_machine_info(data["machine"])
    data["floor"] = _floor_ms(data["session"]["stats"]["playout_delay_ms"])
    s = data["summary"]
    data["headline"] = {
        key: round(s[key]["p50"], 1)
        for key in ("mouth_ms", "audio_ms", "av_offset_ms")
        if s[key].get("n")
    }
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=10, help="measured bursts (after 2 warm-up)")
    parser.add_argument("--period", type=float, default=2.0, help="seconds between bursts")
    parser.add_argument("--url", help="use this running server instead of starting one")
    run_and_report(NAME, parser, run, _markdown, argv)


if __name__ == "__main__":
    main()
