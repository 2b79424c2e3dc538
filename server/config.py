"""Server configuration: frozen dataclasses, loaded once at the entry point and passed down.

Environment variables (all optional) override the defaults; command-line flags
override both. Every knob has one home here, so nothing deeper reads os.environ.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engines.backends.registry import BackendConfig
from engines.face.encoder import FaceEncoderConfig
from engines.motion import MOTION_KINDS, MotionConfig
from engines.paths import avatar_cache_dir
from engines.pipeline import LIVE_FPS, PipelineConfig, check_fps
from engines.provenance import ProvenanceConfig, VerifyLimits, WatermarkConfig, parse_instance_id
from engines.render.renderer import RendererConfig

from .encoders import X264_PRESET, check_x264_preset
from .guard import default_allowed_hosts

__all__ = [
    "IceServer",
    "SessionConfig",
    "ServerConfig",
    "load_config",
    "provenance_config",
    "watermark_config",
    "MAX_FPS",
]

MAX_FPS = LIVE_FPS[1]  # webrtc.configure_encoders raises aiortc's assumed rate to it
_MAX_KEY_FILE_BYTES = 4096  # a watermark key file holds one key, not a document


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class SessionConfig:
    """One live session: the engines' pipeline (rate, seed, stages), pacing and bounds."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    # Frames and audio leave this long after their audio was taken in. None
    # derives it: feature look-ahead + one tick of pacing + render_budget_s
    # (160 ms at 25 fps); see session.playout_delay_s.
    playout_delay_s: float | None = None
    # Time a frame has from its audio being complete to its due time. Two frames
    # at 25 fps: a CPU render takes 25-45 ms on a shared 2-core VM and one frame
    # of budget dropped a fifth of the frames (benchmarks/results/bench_sessions.md).
    # A GPU renders in a few ms: None takes 80 ms on the CPU backends and 20 ms
    # on the GPU ones (see render_budget).
    render_budget_s: float | None = None
    # A streamed utterance starts playing once this much of it is queued (or it
    # ended): absorbs network jitter without gaps mid-word.
    jitter_buffer_s: float = 0.04
    # Queued speech per session (5 min); beyond it uploads and TTS get 429 and a
    # WebSocket sender is held back, then closed (README "Trust and limits").
    max_queued_speech_s: float = 300.0
    # A streamed utterance whose sender sent nothing for this long, with nothing
    # left to play, ends there (as if it had sent end_of_utterance).
    stream_gap_s: float = 2.0
    # Rendered frames waiting for their due time; a full store drops the oldest.
    max_buffered_frames: int = 16

    def __post_init__(self) -> None:
        check_fps(self.fps, LIVE_FPS)

    # The pipeline's settings, read where the session needs them.
    @property
    def fps(self) -> int:
        return self.pipeline.fps

    @property
    def motion(self) -> MotionConfig:
        return self.pipeline.motion

    @property
    def backend(self) -> BackendConfig:
        """Where the audio encoder, denoiser and renderer run (engines.backends.registry)."""
        return self.pipeline.backend

    @property
    def renderer(self) -> RendererConfig:
        return self.pipeline.renderer

    def with_pipeline(self, **changes: Any) -> SessionConfig:
        """This config with some pipeline settings changed (fps, seed, motion, backend...)."""
        return replace(self, pipeline=replace(self.pipeline, **changes))

    @property
    def render_budget(self) -> float:
        """render_budget_s, or its default for the backend: 80 ms on CPU, 20 ms on a GPU."""
        if self.render_budget_s is not None:
            return self.render_budget_s
        return 0.02 if self.backend.on_gpu else 0.08


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # localhost only unless asked: the API has no token by default
    port: int = 8080
    max_sessions: int = 4
    api_token: str | None = None
    cors_origins: tuple[str, ...] = ()
    # Host header names served (DNS-rebinding guard); None: localhost names and the
    # bound address, any name when bound to all interfaces; "*" allows any.
    allowed_hosts: tuple[str, ...] | None = None
    ice_servers: tuple[IceServer, ...] = ()  # none needed on localhost
    max_portrait_bytes: int = 20 * 1024 * 1024
    max_audio_bytes: int = 50 * 1024 * 1024
    # An uploaded file must fit the speech queue: None takes max_queued_speech_s.
    max_audio_seconds: float | None = None
    # Bodies of every other route (JSON), SDP offers and trickled fragments.
    max_json_bytes: int = 64 * 1024
    max_sdp_bytes: int = 64 * 1024
    max_ice_candidates: int = 64
    # A peer that has not connected by then is closed (a client that walked away).
    peer_connect_timeout_s: float = 15.0
    # One WebSocket message; larger ones get an error event and close code 1009.
    max_ws_message_bytes: int = 1024 * 1024
    # Uploaded portraits kept on disk (least recently used evicted first) and
    # prepared avatars kept in memory (about 5 MB each).
    max_portraits: int = 32
    max_portrait_store_bytes: int = 256 * 1024 * 1024
    avatar_cache_size: int = 8
    # Text-to-speech jobs run at once across all sessions (one per session at a time).
    tts_workers: int = 2
    # One torch thread per session: on small CPUs two threads stall when
    # another session holds a core (benchmarks/results/bench_renderer_busy1.md).
    torch_threads: int = 1
    # A session with no viewer and no WebSocket client for this long is closed.
    session_idle_timeout_s: float = 60.0
    # x264 preset of live H.264 video (with tune=zerolatency); bench_encode.md measures them.
    h264_preset: str = X264_PRESET
    data_dir: Path = field(default_factory=lambda: avatar_cache_dir().parent)
    # The instance id and development certificate; None: provenance/ in data_dir.
    provenance_dir: Path | None = None
    # POST /api/verify: the largest upload, and the frames and frame size it decodes.
    max_video_bytes: int = 64 * 1024 * 1024
    verify_limits: VerifyLimits = field(default_factory=VerifyLimits)
    session: SessionConfig = field(default_factory=SessionConfig)
    encoder: FaceEncoderConfig = field(default_factory=FaceEncoderConfig)
    # The invisible mark (on unless turned off on purpose) and the optional visible label
    # on every frame of every session; /api/health reports both.
    provenance: ProvenanceConfig = field(default_factory=ProvenanceConfig)

    @property
    def portrait_dir(self) -> Path:
        return self.data_dir / "portraits"

    @property
    def provenance_state_dir(self) -> Path:
        return self.provenance_dir or self.data_dir / "provenance"

    @property
    def audio_seconds_limit(self) -> float:
        """The longest uploaded file: never more than the speech queue holds."""
        queue = self.session.max_queued_speech_s
        return queue if self.max_audio_seconds is None else min(self.max_audio_seconds, queue)

    @property
    def served_hosts(self) -> tuple[str, ...]:
        return self.allowed_hosts or default_allowed_hosts(self.host)


def _parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    """JSON like RTCConfiguration.iceServers: [{"urls": "turn:host", "username": .., ...}]."""
    try:
        entries = json.loads(text)
        servers = []
        for entry in entries:
            urls = entry["urls"]
            servers.append(
                IceServer(
                    tuple([urls] if isinstance(urls, str) else urls),
                    entry.get("username"),
                    entry.get("credential"),
                )
            )
        return tuple(servers)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f'FACECAST_ICE_SERVERS must be JSON like [{{"urls": "stun:stun.example.org"}}]: {exc}'
        ) from exc


def load_config(env: Mapping[str, str] | None = None, **overrides: object) -> ServerConfig:
    """Defaults, then FACECAST_* environment variables, then explicit overrides (CLI flags)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    if "FACECAST_HOST" in env:
        values["host"] = env["FACECAST_HOST"]
    if "FACECAST_PORT" in env:
        values["port"] = int(env["FACECAST_PORT"])
    if "FACECAST_MAX_SESSIONS" in env:
        values["max_sessions"] = int(env["FACECAST_MAX_SESSIONS"])
    if env.get("FACECAST_API_TOKEN"):
        values["api_token"] = env["FACECAST_API_TOKEN"]
    if env.get("FACECAST_CORS_ORIGINS"):
        values["cors_origins"] = _names(env["FACECAST_CORS_ORIGINS"])
    if env.get("FACECAST_ALLOWED_HOSTS"):
        values["allowed_hosts"] = _names(env["FACECAST_ALLOWED_HOSTS"])
    if env.get("FACECAST_ICE_SERVERS"):
        values["ice_servers"] = _parse_ice_servers(env["FACECAST_ICE_SERVERS"])
    if "FACECAST_TORCH_THREADS" in env:
        values["torch_threads"] = int(env["FACECAST_TORCH_THREADS"])
    if "FACECAST_DATA_DIR" in env:
        values["data_dir"] = Path(env["FACECAST_DATA_DIR"])
    if env.get("FACECAST_H264_PRESET"):
        values["h264_preset"] = env["FACECAST_H264_PRESET"]
    if env.get("FACECAST_PROVENANCE_DIR"):
        values["provenance_dir"] = Path(env["FACECAST_PROVENANCE_DIR"])
    if "FACECAST_MAX_VIDEO_BYTES" in env:
        values["max_video_bytes"] = int(env["FACECAST_MAX_VIDEO_BYTES"])
    values["provenance"] = provenance_config(
        env,
        watermark=overrides.pop("watermark", None),
        visible_label=overrides.pop("visible_label", None),
        instance_id=overrides.pop("instance_id", None),
        watermark_key=overrides.pop("watermark_key", None),
        watermark_key_file=overrides.pop("watermark_key_file", None),
    )
    motion = _motion_config(env, overrides.pop("motion", None), overrides.pop("checkpoint", None))
    backend = _backend_config(
        env, overrides.pop("backend", None), overrides.pop("motion_backend", None)
    )
    if isinstance(overrides.get("allowed_hosts"), str):
        overrides["allowed_hosts"] = _names(str(overrides["allowed_hosts"]))
    session_keys = ("fps", "seed", "render_budget_s", "jitter_buffer_s", "max_queued_speech_s")
    session_values: dict[str, Any] = {k: overrides.pop(k) for k in session_keys if k in overrides}
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = ServerConfig(**values)  # type: ignore[arg-type]  # each value typed by its source
    session_values = {k: v for k, v in session_values.items() if v is not None}
    pipeline_values = {k: session_values.pop(k) for k in ("fps", "seed") if k in session_values}
    session = replace(config.session, **session_values)
    config = replace(
        config, session=session.with_pipeline(motion=motion, backend=backend, **pipeline_values)
    )
    if config.max_sessions < 1:
        raise ValueError(f"max_sessions must be at least 1, got {config.max_sessions}")
    if config.max_portraits < 1:
        raise ValueError(f"max_portraits must be at least 1, got {config.max_portraits}")
    check_x264_preset(config.h264_preset)
    if config.max_video_bytes < 1:
        raise ValueError(f"max_video_bytes must be at least 1, got {config.max_video_bytes}")
    if config.peer_connect_timeout_s <= 0:
        raise ValueError(
            f"peer_connect_timeout_s must be > 0 seconds, got {config.peer_connect_timeout_s}"
        )
    return config


def provenance_config(
    env: Mapping[str, str],
    watermark: object = None,
    visible_label: object = None,
    instance_id: object = None,
    watermark_key: object = None,
    watermark_key_file: object = None,
) -> ProvenanceConfig:
    """FACECAST_WATERMARK (0/off/false turns the invisible mark off), FACECAST_AI_LABEL,
    FACECAST_INSTANCE_ID (hex), FACECAST_WATERMARK_KEY / _FILE (see watermark_config),
    FACECAST_C2PA_CERT + FACECAST_C2PA_KEY (PEM paths), then the flags (--no-watermark,
    --ai-label, --instance-id, --watermark-key / -file). `facecast render` uses it too."""
    values: dict[str, Any] = {"mark": watermark_config(env, watermark_key, watermark_key_file)}
    for key, name, flag in (
        ("watermark", "FACECAST_WATERMARK", watermark),
        ("visible_label", "FACECAST_AI_LABEL", visible_label),
    ):
        chosen = flag if flag is not None else _switch(env, name)
        if chosen is not None:
            values[key] = bool(chosen)
    text = instance_id if instance_id is not None else env.get("FACECAST_INSTANCE_ID")
    if text:
        values["instance_id"] = parse_instance_id(str(text))
    cert, private = env.get("FACECAST_C2PA_CERT"), env.get("FACECAST_C2PA_KEY")
    if cert or private:
        values["signing_cert"] = Path(cert) if cert else None
        values["signing_key"] = Path(private) if private else None
    return ProvenanceConfig(**values)


def watermark_config(
    env: Mapping[str, str], key: object = None, key_file: object = None
) -> WatermarkConfig:
    """The invisible mark's key: the --watermark-key TEXT / --watermark-key-file PATH flags,
    else FACECAST_WATERMARK_KEY / FACECAST_WATERMARK_KEY_FILE, else the public key. A key
    file's trailing newline is not part of the key (so `echo KEY > file` and --watermark-key
    KEY agree). Two at once, an empty key or an unreadable file raise ValueError: a
    deployment that meant a private key must never fall back to the public one quietly.
    `facecast serve`, `render` and `verify` all read the key here."""
    names = ("--watermark-key", "--watermark-key-file")
    if key is None and key_file is None:  # flags override the environment, as a pair
        names = ("FACECAST_WATERMARK_KEY", "FACECAST_WATERMARK_KEY_FILE")
        key, key_file = env.get(names[0]), env.get(names[1])
    if key is not None and key_file is not None:
        raise ValueError(f"give {names[0]} or {names[1]}, not both")
    if key_file is not None:
        return WatermarkConfig(key=_read_key_file(str(key_file), names[1]))
    if key is None:
        return WatermarkConfig()
    text = str(key)
    if not text.strip():
        raise ValueError(
            f"{names[0]} is empty: give a long random key (`openssl rand -hex 32`), or leave "
            "it unset for the public key"
        )
    return WatermarkConfig(key=text.encode())


def _read_key_file(name: str, source: str) -> bytes:
    """The key in the file `name` (given by `source`), without its trailing newline."""
    if not name.strip():
        raise ValueError(f"{source} is empty: name the file that holds the watermark key")
    try:
        with open(name, "rb") as stream:
            data = stream.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(
            f"cannot read the watermark key file {name} ({exc.strerror or exc}); check "
            f"{source} and that this user may read the file"
        ) from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise ValueError(
            f"the watermark key file {name} is over {_MAX_KEY_FILE_BYTES} bytes; it holds "
            "one key (e.g. written by `openssl rand -hex 32`)"
        )
    key = data.rstrip(b"\r\n")
    if not key.strip():
        raise ValueError(
            f"the watermark key file {name} is empty; write a key into it "
            f"(`openssl rand -hex 32 > {name}`)"
        )
    return key


def _switch(env: Mapping[str, str], name: str) -> bool | None:
    """An on/off environment variable: 1/true/on/yes or 0/false/off/no; None when unset."""
    text = env.get(name, "").strip().lower()
    if not text:
        return None
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{name} must be 1/true/on/yes or 0/false/off/no, got {env[name]!r}")


def _names(text: str) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c')."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _backend_config(env: Mapping[str, str], name: object, motion_name: object) -> BackendConfig:
    """FACECAST_BACKEND / FACECAST_MOTION_BACKEND, then the --backend / --motion-backend flags;
    FACECAST_ENGINE_CACHE_DIR moves the graphs."""
    name = name or env.get("FACECAST_BACKEND") or "torch-cpu"
    motion_name = motion_name or env.get("FACECAST_MOTION_BACKEND") or None
    cache = env.get("FACECAST_ENGINE_CACHE_DIR")
    return BackendConfig(
        name=str(name),
        cache_dir=Path(cache) if cache else None,
        motion_name=None if motion_name is None else str(motion_name),
    )


def _motion_config(env: Mapping[str, str], kind: object, checkpoint: object) -> MotionConfig:
    """FACECAST_MOTION / FACECAST_MOTION_CHECKPOINT, then the --motion / --checkpoint flags."""
    kind = kind or env.get("FACECAST_MOTION") or "learned"
    if kind not in MOTION_KINDS:
        raise ValueError(f"motion must be one of {', '.join(MOTION_KINDS)}, got {kind!r}")
    checkpoint = checkpoint or env.get("FACECAST_MOTION_CHECKPOINT") or None
    path = None if checkpoint is None else Path(str(checkpoint))
    return MotionConfig(kind=str(kind), checkpoint=path)
