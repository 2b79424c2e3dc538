"""The `facecast` command line."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from engines.audio.speech import speak_to_file
from engines.backends.registry import BACKEND_NAMES, BackendConfig, check_backends
from engines.errors import FacecastError
from engines.face.encoder import FaceEncoder
from engines.motion import MOTION_KINDS

from .auth import TokenRedactingFilter
from .config import provenance_config, watermark_config
from .offline import RenderJobConfig, render_to_mp4

__all__ = ["main"]

logger = logging.getLogger("facecast")


# `facecast serve` flags: (flag, type, help); all default to None, so config.py decides.
_SERVE_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("--host", str, "address to bind (default 127.0.0.1: this machine only)"),
    ("--port", int, "port (default 8080)"),
    ("--fps", int, "default session frame rate, 1-40 (default 25)"),
    ("--max-sessions", int, "concurrent sessions (default 4)"),
    ("--torch-threads", int, "torch threads (default 1)"),
    ("--session-idle-timeout", float, "close unwatched sessions after N s"),
    ("--render-budget-ms", float, "render time per frame before it is due (80 CPU, 20 GPU)"),
    ("--jitter-buffer-ms", float, "streamed speech queued before it starts (40)"),
    ("--peer-connect-timeout", float, "close a WebRTC peer not connected after N s (15)"),
    ("--max-portraits", int, "uploaded portraits kept (default 32, LRU evicted)"),
    ("--max-queued-speech", float, "seconds of speech a session queues (300); longest upload"),
    ("--allowed-hosts", str, "comma-separated Host names served (localhost, --host; '*': any)"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facecast", description="Talking portraits from speech.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="portrait + speech -> lip-synced 512x512 MP4")
    render.add_argument(
        "--portrait", type=Path, help="photo or painting (default: built-in La Velata)"
    )
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", type=Path, help="speech in any format FFmpeg reads")
    source.add_argument("--text", help="text to speak with the built-in TTS (flite)")
    render.add_argument(
        "--voice", help="TTS voice (flite: kal, awb, rms, slt; or an espeak-ng voice)"
    )
    render.add_argument("-o", "--output", type=Path, required=True, help="output .mp4 path")
    render.add_argument(
        "--fps", type=int, default=25, help="frame rate, 1-60; 25-40 look best (default 25)"
    )
    render.add_argument("--seed", type=int, default=0, help="seed for blinks and head motion")
    _motion_arguments(render)
    _provenance_arguments(render)

    prepare = sub.add_parser("prepare", help="analyse a portrait once and cache it")
    prepare.add_argument("--portrait", type=Path, help="photo or painting (default: built-in)")

    serve = sub.add_parser("serve", help="live server: web client, WebRTC, WebSocket, WHEP")
    for flag, kind, text in _SERVE_OPTIONS:
        serve.add_argument(flag, type=kind, help=text)
    _motion_arguments(serve)
    _provenance_arguments(serve)
    verify = sub.add_parser(
        "verify", help="is a video facecast output? reads the invisible mark and the C2PA manifest"
    )
    verify.add_argument("video", type=Path, help="any video FFmpeg reads")
    verify.add_argument("--json", action="store_true", help="print the full report as JSON")
    verify.add_argument(
        "--max-frames", type=int, default=250, help="frames read from the start (default 250)"
    )
    _watermark_key_arguments(
        verify, "also look for the mark of this private key (the public key is always tried)"
    )
    train = sub.add_parser("train", help="train the learned motion model on a synthesized corpus")
    train.add_argument("--steps", type=int, help="optimizer steps (default 20000)")
    train.add_argument("--corpus-size", type=int, help="utterances to synthesize (default 500)")
    train.add_argument("--seed", type=int, default=0, help="seed for corpus, weights and batches")
    train.add_argument("--corpus", type=Path, help="existing corpus folder (build_corpus output)")
    train.add_argument(
        "--recordings",
        type=Path,
        help="folder of your own speech: audio files, each with a same-stem .txt transcript",
    )
    train.add_argument(
        "--save-every", type=int, default=0, help="also write the checkpoint every N steps"
    )
    train.add_argument("--log-every", type=int, default=100, help="print the loss every N steps")
    train.add_argument(
        "--init", type=Path, help="start from this checkpoint's weights (same model sizes)"
    )
    train.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    train.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="CHANNEL=W",
        help="loss weight of one motion channel (others 1), e.g. headPitch=3; repeatable",
    )
    train.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("checkpoints/motion.safetensors"),
        help="checkpoint path (default checkpoints/motion.safetensors)",
    )
    return parser


def _motion_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--motion",
        choices=MOTION_KINDS,
        help="motion source: the learned diffusion sampler (default) or the procedural baseline",
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="motion checkpoint from `facecast train` (default: shipped)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        help="where the networks run (default torch-cpu; GPU ones need facecast[gpu])",
    )
    parser.add_argument(
        "--motion-backend",
        choices=BACKEND_NAMES,
        help="where the audio encoder and denoiser run, if not on --backend "
        "(on a CPU, onnxruntime samples motion about twice as fast as torch)",
    )


def _provenance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-watermark",
        dest="watermark",
        action="store_false",
        default=None,
        help="do NOT put the invisible provenance mark on frames (on by default; "
        "/api/health reports it)",
    )
    parser.add_argument(
        "--ai-label",
        dest="visible_label",
        action="store_true",
        default=None,
        help='draw a visible "AI-generated" label in the bottom-right corner',
    )
    parser.add_argument(
        "--instance-id", help="this install's id in the mark, 6 hex digits (default: random, kept)"
    )
    _watermark_key_arguments(
        parser, "mark frames with this private key, not the public one: only its holders can verify"
    )


def _watermark_key_arguments(parser: argparse.ArgumentParser, purpose: str) -> None:
    """--watermark-key TEXT or --watermark-key-file PATH (not both; argparse says so, exit 2);
    unset, config.watermark_config reads FACECAST_WATERMARK_KEY / _FILE."""
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--watermark-key",
        metavar="TEXT",
        help=f"{purpose}. Other users can see process arguments: prefer "
        "--watermark-key-file or FACECAST_WATERMARK_KEY",
    )
    keys.add_argument(
        "--watermark-key-file",
        metavar="PATH",
        help="the same, read from a file (its trailing newline is not part of the key)",
    )


def _verify(args: argparse.Namespace) -> int:
    """Exit 0: facecast output (the mark, or a valid AI-generated manifest); 1: neither."""
    from engines.provenance import VerifyLimits, verify_video

    mark = watermark_config(os.environ, args.watermark_key, args.watermark_key_file)
    report = verify_video(args.video, VerifyLimits(max_frames=args.max_frames), mark)
    if args.json:
        print(json.dumps({"file": str(args.video), **report.to_dict()}, indent=2))
    else:
        print(f"{args.video}: {report.width}x{report.height}")
        for line in report.describe():
            print(f"  {line}")
    return 0 if report.identified else 1


def _channel_weights(items: list[str]) -> tuple[tuple[str, float], ...]:
    """--weight CHANNEL=W items -> ((channel, weight), ...); ValueError names a bad one."""
    weights = []
    for item in items:
        name, _, value = item.partition("=")  # no "=" leaves value empty: float refuses it
        try:
            weights.append((name.strip(), float(value)))
        except ValueError:
            raise ValueError(f"--weight takes CHANNEL=W, got {item!r}") from None
    return tuple(weights)


def _train(args: argparse.Namespace) -> None:
    from engines.training.train import TrainConfig, train  # torch training: only this command

    overrides = {
        "steps": args.steps,
        "corpus_size": args.corpus_size,
        "seed": args.seed,
        "save_every": args.save_every,
        "init_checkpoint": None if args.init is None else str(args.init),
        "lr": args.lr,
        "channel_weights": _channel_weights(args.weight) or None,
    }
    config = dataclasses.replace(
        TrainConfig(), **{k: v for k, v in overrides.items() if v is not None}
    )
    print(f"training {config.steps} steps (seed {config.seed})", flush=True)
    report = train(
        config,
        args.output,
        corpus_dir=args.corpus,
        log_every=args.log_every,
        progress=lambda step, loss, valid: print(
            f"step {step}/{config.steps} loss {loss:.4f}"
            + ("" if valid is None else f" validation {valid:.4f}"),
            flush=True,
        ),
        recordings=args.recordings,
    )
    print(
        f"wrote {report.checkpoint}: {report.steps} steps in {report.seconds:.1f} s "
        f"({report.steps / max(report.seconds, 1e-9):.1f} steps/s)"
    )


def _render(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="facecast-") as tmp:
        audio = args.audio
        if args.text is not None:
            audio = speak_to_file(args.text, Path(tmp) / "speech.wav", voice=args.voice)
        defaults = RenderJobConfig().pipeline.motion
        motion = dataclasses.replace(
            defaults, kind=args.motion or defaults.kind, checkpoint=args.checkpoint
        )
        backend = BackendConfig(args.backend or "torch-cpu", motion_name=args.motion_backend)
        check_backends(backend)
        provenance = provenance_config(
            os.environ,
            args.watermark,
            args.visible_label,
            args.instance_id,
            args.watermark_key,
            args.watermark_key_file,
        )
        config = RenderJobConfig.of(
            provenance=provenance, fps=args.fps, seed=args.seed, motion=motion, backend=backend
        )
        report = render_to_mp4(audio, args.output, args.portrait, config)
    for note in report.notes:
        print(f"note: {note}")
    print(
        f"wrote {report.output}: {report.frames} frames at {report.fps} fps, "
        f"{report.audio_s:.2f} s of audio in {report.wall_s:.2f} s "
        f"({report.realtime_factor:.1f}x real time)"
    )
    mark = f"mark {report.mark_id}" if report.watermark else "NO invisible mark (--no-watermark)"
    if report.watermark and provenance.mark.key_kind == "private":
        mark += " (private key: verify with --watermark-key or --watermark-key-file)"
    signer = "a development certificate" if report.development_certificate else "your certificate"
    print(f"provenance: job {report.job_id}, {mark}; C2PA manifest signed with {signer}")


def _prepare(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    avatar = FaceEncoder().encode(args.portrait)
    for note in avatar.notes:
        print(f"note: {note}")
    yaw, pitch, roll = (float(v) for v in avatar.pose)
    print(
        f"prepared {args.portrait or 'built-in portrait'} in {time.perf_counter() - start:.2f} s "
        f"(pose yaw {yaw:+.2f} pitch {pitch:+.2f} roll {roll:+.2f} rad; "
        f"id {avatar.content_hash[:12]})"
    )


def _seconds(milliseconds: float | None) -> float | None:
    return None if milliseconds is None else milliseconds / 1000


def _serve(args: argparse.Namespace) -> None:
    import uvicorn  # imported here: `render` and `prepare` do not need the web stack

    from .app import create_app
    from .config import load_config

    config = load_config(
        host=args.host,
        port=args.port,
        fps=args.fps,
        max_sessions=args.max_sessions,
        torch_threads=args.torch_threads,
        session_idle_timeout_s=args.session_idle_timeout,
        render_budget_s=_seconds(args.render_budget_ms),
        jitter_buffer_s=_seconds(args.jitter_buffer_ms),
        peer_connect_timeout_s=args.peer_connect_timeout,
        max_queued_speech_s=args.max_queued_speech,
        max_portraits=args.max_portraits,
        allowed_hosts=args.allowed_hosts,
        motion=args.motion,
        checkpoint=args.checkpoint,
        backend=args.backend,
        motion_backend=args.motion_backend,
        watermark=args.watermark,
        visible_label=args.visible_label,
        instance_id=args.instance_id,
        watermark_key=args.watermark_key,
        watermark_key_file=args.watermark_key_file,
    )
    check_backends(config.session.backend)
    if not config.provenance.watermark:
        logger.warning("the invisible provenance mark is OFF (--no-watermark / FACECAST_WATERMARK)")
    elif config.provenance.mark.key_kind == "private":
        logger.info("the invisible mark uses a private key: only its holders can verify it")
    if config.host not in ("127.0.0.1", "localhost", "::1") and config.api_token is None:
        logger.warning(
            "listening on %s without FACECAST_API_TOKEN: anyone can connect", config.host
        )
    print(f"facecast: open http://{config.host}:{config.port}/ in a browser", flush=True)
    redact_tokens_in_logs()
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level="info" if args.verbose else "warning",
        log_config=_uvicorn_log_config(),
        # The protocol layer refuses (close 1009) what the app would refuse anyway,
        # before buffering it; the app's own limit sends an error event first.
        ws_max_size=2 * config.max_ws_message_bytes,
        ws_max_queue=8,
    )


def _uvicorn_log_config() -> dict[str, object]:
    """uvicorn's own logging setup, with the token filter on every handler it makes."""
    from uvicorn.config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["filters"] = {"redact": {"()": TokenRedactingFilter}}
    for handler in log_config["handlers"].values():
        handler["filters"] = ["redact"]
    return log_config


def redact_tokens_in_logs() -> None:
    """No API token reaches a log: the filter sits on the root handlers too."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(TokenRedactingFilter())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "verify":
            return _verify(args)
        {"render": _render, "prepare": _prepare, "serve": _serve, "train": _train}[args.command](
            args
        )
    except FacecastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
