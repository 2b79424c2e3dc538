"""A complete local Pipecat bot with a facecast face, seen in a browser over SmallWebRTC.

Two terminals, after `bash .ci/install` (which makes .venv-pipecat):

    .venv/bin/facecast serve                                        # the face, port 8080
    .venv-pipecat/bin/python -m server.integrations.pipecat_example  # the bot, port 7860

Open http://localhost:7860/client and press Connect: the face reads a few
sentences, then idles (blinks, breathes) until you disconnect. Everything runs
on this machine: the speech is flite's (`apt-get install flite`; no network, no
keys), through `FliteTTSService`, a small Pipecat TTS service, then
`FacecastVideoService`, then Pipecat's `SmallWebRTCTransport`, which sends the
face and its voice to the browser. Options: `--facecast-url`, `--portrait-id`
(from `GET /api/portraits`), `--voice` (one of `flite -lv`), and Pipecat's own
runner options (`--host`, `--port`, ...). For a voice assistant put STT, an LLM
and their aggregators before the TTS service, as in any Pipecat bot.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import wave
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

from pipecat.frames.frames import Frame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.runner.types import RunnerArguments, SmallWebRTCRunnerArguments
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner

from server.integrations.pipecat import FacecastVideoService

__all__ = ["FliteTTSService", "bot", "build_worker", "synthesize", "webrtc_transport"]

FACE_SIZE, FACE_FPS = 512, 25  # facecast's frame size and default session rate
SENTENCES = (
    "Hello! I am a facecast portrait, speaking through a Pipecat pipeline.",
    "My voice comes from flite, on this machine, and my face follows every word.",
    "Between sentences I idle: I blink, I breathe, and I look around a little.",
)
CHUNK_S = 0.1


async def synthesize(text: str, voice: str) -> tuple[bytes, int]:
    """s16le mono PCM of `text` spoken by flite, and its rate."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        process = await asyncio.create_subprocess_exec(
            *("flite", "-voice", voice, "-t", text, "-o", str(path)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(
                f"flite failed ({stderr.decode().strip()}); try a voice from flite -lv"
            )
        with wave.open(str(path), "rb") as wav:
            return wav.readframes(wav.getnframes()), wav.getframerate()


class FliteTTSService(TTSService):
    """Pipecat TTS through the local flite program (`apt-get install flite`)."""

    def __init__(self, *, voice: str = "kal16", **kwargs: object) -> None:
        settings = TTSSettings(model=None, voice=voice, language=None)
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=settings, **kwargs)
        self._voice = voice

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        pcm, rate = await synthesize(text, self._voice)
        step = int(rate * CHUNK_S) * 2

        async def chunks() -> AsyncIterator[bytes]:
            for offset in range(0, len(pcm), step):
                yield pcm[offset : offset + step]

        await self.start_tts_usage_metrics(text)
        frames = self._stream_audio_frames_from_iterator(
            chunks(), in_sample_rate=rate, context_id=context_id
        )
        async for frame in frames:
            await self.stop_ttfb_metrics()
            yield frame


def webrtc_transport(connection: SmallWebRTCConnection) -> SmallWebRTCTransport:
    """Audio and live video out at the face's size and rate; no microphone needed."""
    params = TransportParams(
        audio_in_enabled=False,
        audio_out_enabled=True,
        video_out_enabled=True,
        video_out_is_live=True,
        video_out_width=FACE_SIZE,
        video_out_height=FACE_SIZE,
        video_out_framerate=FACE_FPS,
    )
    return SmallWebRTCTransport(webrtc_connection=connection, params=params)


def build_worker(
    transport: SmallWebRTCTransport, face: FacecastVideoService, voice: str
) -> PipelineWorker:
    """transport in -> flite TTS -> facecast face -> transport out; speaks on connect."""
    pipeline = Pipeline([transport.input(), FliteTTSService(voice=voice), face, transport.output()])
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_out_sample_rate=48000))

    @transport.event_handler("on_client_connected")
    async def _connected(transport: SmallWebRTCTransport, client: object) -> None:
        await worker.queue_frames([TTSSpeakFrame(text) for text in SENTENCES])

    @transport.event_handler("on_client_disconnected")
    async def _disconnected(transport: SmallWebRTCTransport, client: object) -> None:
        await worker.cancel()

    return worker


async def bot(runner_args: RunnerArguments) -> None:
    """Entry point for Pipecat's development runner: one browser connection, one face."""
    if not isinstance(runner_args, SmallWebRTCRunnerArguments):
        raise RuntimeError("this example runs on the SmallWebRTC transport: use `-t webrtc`")
    options = runner_args.cli_args or argparse.Namespace()
    face = FacecastVideoService(
        base_url=getattr(options, "facecast_url", "http://127.0.0.1:8080"),
        api_token=getattr(options, "facecast_token", None),
        portrait_id=getattr(options, "portrait_id", None),
        fps=FACE_FPS,
    )
    transport = webrtc_transport(runner_args.webrtc_connection)
    worker = build_worker(transport, face, getattr(options, "voice", "kal16"))
    runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
    await runner.add_workers(worker)
    await runner.run()


def main() -> None:
    from pipecat.runner.run import main as run_pipecat

    parser = argparse.ArgumentParser(description="A Pipecat bot with a facecast face")
    parser.add_argument("--facecast-url", default="http://127.0.0.1:8080")
    parser.add_argument("--facecast-token", default=None, help="the server's FACECAST_API_TOKEN")
    parser.add_argument("--portrait-id", default=None)
    parser.add_argument("--voice", default="kal16", help="a flite voice (flite -lv)")
    run_pipecat(parser)


if __name__ == "__main__":
    main()
