"""LiveKit's AvatarRunner driving a facecast face; run by tests/test_livekit.py in .venv-livekit.

    .venv-livekit/bin/python tests/livekit_avatar.py --url URL --speech A.wav \\
        --long-speech B.wav --out DIR

No LiveKit server can be had here, so the room is left out and everything up to
it is LiveKit's own: the agent's side is `QueueAudioOutput` (the in-process twin of
`DataStreamAudioOutput` and `DataStreamAudioReceiver`: capture_frame, flush,
clear_buffer, playback events), the avatar's is `AvatarRunner` with its
`AVSynchronizer`, `AudioSource` and `VideoSource`, running a `FacecastVideoGenerator`
on a live facecast session. The one step skipped is publishing the tracks (it needs
a connected room): the runner is told its tracks are published, and the subscriber
reads the runner's own sources through local tracks with `rtc.VideoStream` and
`rtc.AudioStream`, which is what `publish_track` would send.

The run: 1 s of idle face, the first utterance whole (flush, then the runner's
playback_finished), 1.5 s quiet, the second one cut by `clear_buffer`
`--interrupt-after` seconds in, 1.5 s more. Writes to DIR: summary.json (times on
time.monotonic()), frames.npy (uint8 (N, H, W, 3), every subscribed frame),
audio.npy (int16 mono).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from livekit import rtc
from livekit.agents.voice.avatar import AvatarOptions, AvatarRunner, QueueAudioOutput
from livekit.agents.voice.io import PlaybackFinishedEvent

from server.integrations.livekit import FacecastVideoGenerator
from server.integrations.session_link import LinkConfig
from tests.framework_cli import CHUNK_S, parse_run_arguments, read_wav, save_recording


class Subscriber:
    """Reads the runner's audio and video sources as a room subscriber would get them."""

    def __init__(self, runner: AvatarRunner) -> None:
        video = rtc.LocalVideoTrack.create_video_track("avatar_video", runner._video_source)
        audio = rtc.LocalAudioTrack.create_audio_track("avatar_audio", runner._audio_source)
        self._video = rtc.VideoStream(video, format=rtc.VideoBufferType.RGB24)
        self._audio = rtc.AudioStream(audio, sample_rate=48000, num_channels=1)
        self.video_at: list[float] = []
        self.pixels: list[bytes] = []
        self.size: tuple[int, int] | None = None
        self.audio_at: list[float] = []
        self.pcm: list[bytes] = []
        self._tasks = [
            asyncio.create_task(self._read_video()),
            asyncio.create_task(self._read_audio()),
        ]

    async def _read_video(self) -> None:
        async for event in self._video:
            self.video_at.append(time.monotonic())
            self.size = (event.frame.width, event.frame.height)
            self.pixels.append(bytes(event.frame.data))

    async def _read_audio(self) -> None:
        async for event in self._audio:
            self.audio_at.append(time.monotonic())
            self.pcm.append(bytes(event.frame.data))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._video.aclose()
        await self._audio.aclose()


class Agent:
    """The agent's audio output, as AgentSession drives it; notes the playback events."""

    def __init__(self, rate: int) -> None:
        self.output = QueueAudioOutput(sample_rate=rate)
        self.started: list[float] = []
        self.finished: list[dict[str, Any]] = []
        self.output.on("playback_started", lambda _: self.started.append(time.monotonic()))
        self.output.on("playback_finished", self._on_finished)

    def _on_finished(self, event: PlaybackFinishedEvent) -> None:
        # The payload DataStreamAudioReceiver sends as lk.playback_finished (livekit-agents'
        # own encoding of the runner's notify_playback_finished arguments).
        rpc = PlaybackFinishedEvent(event.playback_position, event.interrupted)
        self.finished.append({"at": time.monotonic(), "payload": json.dumps(asdict(rpc))})

    async def speak(self, pcm: bytes, rate: int, cut_after_s: float | None = None) -> dict:
        step = int(rate * CHUNK_S)
        start = time.monotonic()
        times: dict[str, Any] = {"first_chunk": start, "sent_s": len(pcm) / 2 / rate}
        for i, offset in enumerate(range(0, len(pcm), step * 2)):
            await asyncio.sleep(max(0.0, start + i * CHUNK_S - time.monotonic()))
            if cut_after_s is not None and i * CHUNK_S >= cut_after_s:
                times["interrupt"] = time.monotonic()
                times["sent_s"] = i * CHUNK_S
                self.output.clear_buffer()  # as AgentSession does on barge-in
                return times
            chunk = pcm[offset : offset + step * 2]
            await self.output.capture_frame(rtc.AudioFrame(chunk, rate, 1, len(chunk) // 2))
        self.output.flush()
        times["last_chunk"] = time.monotonic()
        return times

    async def wait_finished(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.finished) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no playback_finished in {timeout_s} s ({self.finished})")
            await asyncio.sleep(0.02)


async def main_run(args: argparse.Namespace) -> None:
    first, rate = read_wav(args.speech)
    second, second_rate = read_wav(args.long_speech)
    generator = FacecastVideoGenerator(LinkConfig(args.url, fps=args.fps))
    await generator.start()
    assert generator.video_size is not None
    width, height = generator.video_size
    options = AvatarOptions(width, height, float(args.fps), 48000, 1)
    agent = Agent(rate)
    runner = AvatarRunner(rtc.Room(), audio_recv=agent.output, video_gen=generator, options=options)
    runner._video_publication = runner._audio_publication = object()  # type: ignore[assignment]
    subscriber = Subscriber(runner)
    await runner.start()
    timeline: dict[str, Any] = {"session_id": generator.session_id}
    try:
        await asyncio.sleep(1.0)
        timeline["first"] = await agent.speak(first, rate)
        await agent.wait_finished(1, timeout_s=30)
        await asyncio.sleep(1.5)
        timeline["second"] = await agent.speak(second, second_rate, args.interrupt_after)
        await agent.wait_finished(2, timeout_s=10)
        await asyncio.sleep(1.5)
        async with httpx.AsyncClient(base_url=args.url) as http:
            info = (await http.get(f"/api/sessions/{generator.session_id}")).json()
        timeline.update(frames_sent=info["frames_sent"], dropped_frames=info["dropped_frames"])
    finally:
        await subscriber.close()
        await runner.aclose()
        await generator.aclose()
    async with httpx.AsyncClient(base_url=args.url) as http:
        left = [s["id"] for s in (await http.get("/api/sessions")).json()]
    save(args.out, agent, subscriber, timeline, left)


def save(out: Path, agent: Agent, sub: Subscriber, timeline: dict, left: list) -> None:
    assert sub.size is not None
    save_recording(out, sub.pixels, sub.size, sub.pcm)
    summary = {
        "timeline": timeline,
        "video_at": sub.video_at,
        "size": sub.size,
        "audio": [
            {"at": a, "samples": len(b) // 2} for a, b in zip(sub.audio_at, sub.pcm, strict=True)
        ],
        "playback_started": agent.started,
        "playback_finished": agent.finished,
        "sessions_left": left,
    }
    (out / "summary.json").write_text(json.dumps(summary))


def main() -> None:
    asyncio.run(main_run(parse_run_arguments(__doc__.splitlines()[0])))


if __name__ == "__main__":
    main()
