"""The facecast avatar worker for LiveKit: one per facecast host, registered with LiveKit.

    FACECAST_URL=http://127.0.0.1:8080 LIVEKIT_URL=wss://... LIVEKIT_API_KEY=... \\
    LIVEKIT_API_SECRET=... python -m server.integrations.livekit_worker start

It registers with the LiveKit server under the agent name `facecast-avatar`
(FACECAST_AGENT_NAME), for explicit dispatch only: an agent's
`FacecastAvatarSession` asks for it per room. Its load is the facecast server's
own (sessions in use / its --max-sessions, from /api/health), so with several
hosts, each a `facecast serve` with a worker beside it, LiveKit sends each new
room to a host with room left and none to a full or unreachable one.

Per job it accepts with the identity the agent chose and the attribute
`lk.publish_on_behalf` = the agent's identity (so clients show the face as the
agent's), joins the room, creates a facecast session and runs LiveKit's
`AvatarRunner` with a `FacecastVideoGenerator`, fed by `DataStreamAudioReceiver`
(the `lk.audio_stream` topic; it answers `lk.clear_buffer` and sends
`lk.playback_finished`). The session is deleted when the job ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from livekit.agents import AgentServer, JobContext, JobRequest, cli
from livekit.agents.voice.avatar import AvatarOptions, AvatarRunner, DataStreamAudioReceiver
from livekit.agents.voice.room_io import ATTRIBUTE_PUBLISH_ON_BEHALF

from server.integrations.livekit import AGENT_NAME, AvatarJob, FacecastVideoGenerator
from server.integrations.session_link import LinkConfig

__all__ = ["WorkerConfig", "avatar_entrypoint", "build_server", "facecast_load", "main"]

logger = logging.getLogger(__name__)

FULL = 1.0  # the load LiveKit reads as "send no more jobs here"


@dataclass(frozen=True)
class WorkerConfig:
    """Where the facecast server is; read from the environment (the job runs in a child
    process, which inherits it): FACECAST_URL, FACECAST_API_TOKEN, FACECAST_AGENT_NAME."""

    facecast_url: str = "http://127.0.0.1:8080"
    token: str | None = None
    agent_name: str = AGENT_NAME
    load_threshold: float = 0.99  # below FULL: a host with one session left still takes a room

    @classmethod
    def from_env(cls) -> WorkerConfig:
        return cls(
            facecast_url=os.environ.get("FACECAST_URL", cls.facecast_url),
            token=os.environ.get("FACECAST_API_TOKEN") or None,
            agent_name=os.environ.get("FACECAST_AGENT_NAME", AGENT_NAME),
        )

    def link(self, job: AvatarJob) -> LinkConfig:
        return LinkConfig(
            self.facecast_url, self.token, portrait_id=job.portrait_id, fps=job.fps, seed=job.seed
        )


def facecast_load(config: WorkerConfig, timeout_s: float = 2.0) -> Callable[[], float]:
    """A load function for AgentServer: the facecast server's sessions / its max_sessions.

    A server that cannot be reached, or refuses, reads as full: no rooms are sent
    to a host whose face would not come up. (LiveKit runs it in an executor every
    0.5 s, so a blocking request is fine.)"""
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}

    def load() -> float:
        try:
            response = httpx.get(
                f"{config.facecast_url}/api/health", headers=headers, timeout=timeout_s
            )
            response.raise_for_status()
            health = response.json()
            return min(FULL, health["sessions"] / max(health["max_sessions"], 1))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "facecast at %s unavailable (%s): load reads full", config.facecast_url, exc
            )
            return FULL

    return load


async def accept_job(request: JobRequest) -> None:
    """Join as the identity the agent asked for, publishing on the agent's behalf."""
    try:
        job = AvatarJob.from_metadata(request.job.metadata)
    except ValueError as exc:
        logger.error("room %s: %s", request.room.name, exc)
        await request.reject()
        return
    await request.accept(
        name="facecast avatar",
        identity=job.avatar_identity,
        attributes={ATTRIBUTE_PUBLISH_ON_BEHALF: job.agent_identity},
    )


async def avatar_entrypoint(ctx: JobContext) -> None:
    """One room: a facecast session, published by AvatarRunner until the job ends."""
    config = WorkerConfig.from_env()
    job = AvatarJob.from_metadata(ctx.job.metadata)
    await ctx.connect()
    generator = FacecastVideoGenerator(config.link(job))
    await generator.start()
    ctx.add_shutdown_callback(generator.aclose)
    assert generator.video_size is not None  # start() waited for the first frame
    width, height = generator.video_size
    options = AvatarOptions(
        video_width=width,
        video_height=height,
        video_fps=float(job.fps or 25),
        audio_sample_rate=generator.audio_rate or 48000,
        audio_channels=1,
    )
    receiver = DataStreamAudioReceiver(ctx.room, sender_identity=job.agent_identity)
    runner = AvatarRunner(ctx.room, audio_recv=receiver, video_gen=generator, options=options)
    await runner.start()
    ctx.add_shutdown_callback(runner.aclose)
    logger.info("room %s: facecast session %s is the avatar", ctx.room.name, generator.session_id)


def build_server(config: WorkerConfig) -> AgentServer:
    """An AgentServer that takes facecast avatar jobs, loaded by the facecast server."""
    server = AgentServer(load_fnc=facecast_load(config), load_threshold=config.load_threshold)
    server.rtc_session(avatar_entrypoint, agent_name=config.agent_name, on_request=accept_job)
    return server


def main() -> None:
    cli.run_app(build_server(WorkerConfig.from_env()))


if __name__ == "__main__":
    main()
