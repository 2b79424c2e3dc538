"""A real Pipecat pipeline driving a facecast face; run by tests/test_pipecat.py in .venv-pipecat.

    .venv-pipecat/bin/python tests/pipecat_pipeline.py --url URL --speech A.wav \\
        --long-speech B.wav --out DIR

Pipeline: SpeechSource (a TTS-like source: TTSStartedFrame, the wav as 20 ms
TTSAudioRawFrames in real time, TTSStoppedFrame) -> FacecastVideoService ->
FaceSink (records every frame that reaches it). The run: 1 s of idle face, the
first utterance whole, 2 s of quiet, the second one cut by an InterruptionFrame
`--interrupt-after` seconds in, 1.5 s more, the first 2 s of the first
utterance again and EndFrame right after it (the face should finish speaking
before the pipeline ends). A second pipeline
asks for a portrait the server does not have, to see the server's refusal
arrive as an ErrorFrame.

Writes to DIR: summary.json (times on this process's time.monotonic(), pts in
ns), frames.npy (every received video frame, uint8 (N, H, W, 3)), audio.npy
(received audio, int16 mono), a few PNGs. Needs no project package beyond
server.integrations and reads wav with the standard library (no scipy here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from server.integrations.pipecat import FacecastVideoService
from tests.framework_cli import CHUNK_S, parse_run_arguments, read_wav, save_recording


class SpeechSource(FrameProcessor):
    """First processor: passes frames on, speaks wavs like a TTS service, notes ErrorFrames."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ErrorFrame):
            self.errors.append(frame.error)
        await self.push_frame(frame, direction)

    async def speak(
        self, pcm: bytes, rate: int, cut_after_s: float | None = None, realtime: bool = True
    ) -> dict:
        """Push one utterance (in real time, or at once as many TTS services do);
        with cut_after_s, an InterruptionFrame that far in instead of the rest."""
        step = int(rate * CHUNK_S) * 2
        await self.push_frame(TTSStartedFrame())
        start = time.monotonic()
        times: dict[str, Any] = {"first_chunk": start, "sent_s": 0.0}
        for i, offset in enumerate(range(0, len(pcm), step)):
            if realtime:
                await asyncio.sleep(max(0.0, start + i * CHUNK_S - time.monotonic()))
            if cut_after_s is not None and i * CHUNK_S >= cut_after_s:
                times["interrupt"] = time.monotonic()
                await self.push_frame(InterruptionFrame())
                return times
            await self.push_frame(TTSAudioRawFrame(pcm[offset : offset + step], rate, 1))
            times["sent_s"] = (i + 1) * CHUNK_S
        await self.push_frame(TTSStoppedFrame())
        times["last_chunk"] = time.monotonic()
        return times


class FaceSink(FrameProcessor):
    """Last processor: records the face's video and audio (arrival time, pts) and frame types."""

    def __init__(self) -> None:
        super().__init__()
        self.video: list[tuple[float, int | None, tuple[int, int], str | None]] = []
        self.pixels: list[bytes] = []
        self.audio: list[tuple[float, int | None, int, int, str]] = []
        self.pcm: list[bytes] = []
        self.kinds: dict[str, int] = {}
        self.interrupt_at: list[float] = []
        self.end_at: float | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        now = time.monotonic()
        name = type(frame).__name__
        self.kinds[name] = self.kinds.get(name, 0) + 1
        if isinstance(frame, OutputImageRawFrame):
            self.video.append((now, frame.pts, frame.size, frame.format))
            self.pixels.append(frame.image)
        elif isinstance(frame, OutputAudioRawFrame):
            self.audio.append((now, frame.pts, frame.sample_rate, frame.num_channels, name))
            self.pcm.append(frame.audio)
        elif isinstance(frame, InterruptionFrame):
            self.interrupt_at.append(now)
        elif isinstance(frame, EndFrame):
            self.end_at = now
        await self.push_frame(frame, direction)

    async def wait_video(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.video) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.video)} of {count} face frames in {timeout_s} s")
            await asyncio.sleep(0.02)


async def run_pipeline(service: FacecastVideoService, script: Any) -> tuple[SpeechSource, FaceSink]:
    """Run source -> service -> sink with a real PipelineWorker and WorkerRunner."""
    source, sink = SpeechSource(), FaceSink()
    worker = PipelineWorker(
        Pipeline([source, service, sink]),
        params=PipelineParams(audio_out_sample_rate=48000),
        idle_timeout_secs=None,
        enable_rtvi=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)

    async def drive() -> None:
        try:
            await script(source, sink)
        finally:
            await worker.queue_frame(EndFrame())

    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), timeout=120)
    return source, sink


async def main_run(args: argparse.Namespace) -> dict:
    first, rate = read_wav(args.speech)
    second, second_rate = read_wav(args.long_speech)
    service = FacecastVideoService(base_url=args.url, fps=args.fps)
    timeline: dict[str, Any] = {}

    async def script(source: SpeechSource, sink: FaceSink) -> None:
        await sink.wait_video(args.fps, timeout_s=60)  # a second of idle face
        timeline["session_id"] = service.session_id
        timeline["first"] = await source.speak(first, rate)
        await asyncio.sleep(2.0)
        timeline["second"] = await source.speak(second, second_rate, args.interrupt_after)
        await asyncio.sleep(1.5)
        async with httpx.AsyncClient(base_url=args.url) as http:
            info = (await http.get(f"/api/sessions/{service.session_id}")).json()
        timeline.update(frames_sent=info["frames_sent"], dropped_frames=info["dropped_frames"])
        # Two more seconds of speech, sent at once, then EndFrame: the face should say it all.
        timeline["last"] = await source.speak(first[: rate * 4], rate, realtime=False)
        timeline["end_frame"] = time.monotonic()

    source, sink = await run_pipeline(service, script)
    timeline["finished"] = time.monotonic()
    async with httpx.AsyncClient(base_url=args.url) as http:
        left = [s["id"] for s in (await http.get("/api/sessions")).json()]
    errors = await refused_portrait(args.url)
    return save(args.out, source, sink, timeline, left, errors)


async def refused_portrait(url: str) -> list[str]:
    """A pipeline whose service asks for a portrait the server lacks: the ErrorFrames it gets."""
    service = FacecastVideoService(base_url=url, portrait_id="no-such-portrait")

    async def script(source: SpeechSource, sink: FaceSink) -> None:
        await asyncio.sleep(0.5)

    source, _ = await run_pipeline(service, script)
    return source.errors


def save(
    out: Path, source: SpeechSource, sink: FaceSink, timeline: dict, left: list, errors: list
) -> dict:
    frames = save_recording(out, sink.pixels, sink.video[0][2], sink.pcm)
    for index in (0, len(frames) // 3, len(frames) // 2, len(frames) - 1):
        Image.fromarray(frames[index]).save(out / f"frame_{index:04d}.png")
    summary = {
        "timeline": timeline,
        "video": [{"at": a, "pts": p, "size": s, "format": f} for a, p, s, f in sink.video],
        "audio": [
            {"at": a, "pts": p, "rate": r, "channels": c, "kind": k, "samples": len(b) // 2}
            for (a, p, r, c, k), b in zip(sink.audio, sink.pcm, strict=True)
        ],
        "kinds": sink.kinds,
        "sink_interrupts": sink.interrupt_at,
        "sink_end": sink.end_at,
        "errors": source.errors,
        "sessions_left": left,
        "refused_errors": errors,
    }
    (out / "summary.json").write_text(json.dumps(summary))
    return summary


def main() -> None:
    asyncio.run(main_run(parse_run_arguments(__doc__.splitlines()[0])))


if __name__ == "__main__":
    main()
