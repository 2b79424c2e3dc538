"""How fast is `facecast render` end to end (audio file -> MP4) on this machine?

Usage: python -m benchmarks.bench_offline [--repeats N] [--fps 25 30]

Runs server.offline.render_to_mp4 on a ~10 s flite utterance and on a real
recording (if present) at each frame rate, with the default torch threads and,
at 25 fps, with 1 thread. Reports wall time, real-time factor (audio seconds
per wall second; >= 1 keeps up with real time), frames and output size. The
avatar is cached by a warm-up render first, so wall time is decode + features
+ motion + render + encode + mux (preparation is in bench_prepare).
Configurations run in interleaved rounds so load bursts from other jobs hit
all of them alike; with few repetitions p95 is close to the worst run.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import (
    RADIO_SPEECH,
    OtherLoad,
    audio_seconds,
    finish_machine_info,
    machine_info,
    machine_markdown,
    records_table,
    run_and_report,
    summarize,
)
from engines.audio.speech import speak_to_file
from engines.face.encoder import FaceEncoderConfig
from server.offline import RenderJobConfig, render_to_mp4

__all__ = ["main", "run"]

NAME = "bench_offline"
TEN_SECONDS = (
    "Good evening. This is a short test of the talking portrait. The quick brown fox jumps "
    "over the lazy dog, while Peter picked a bowl of blue berries and carried it home."
)
WARMUP_TEXT = "Hello, this is a warm up."

logger = logging.getLogger(__name__)


def _speech(tmp: Path) -> list[tuple[str, Path]]:
    clips = [("flite ~10 s", speak_to_file(TEN_SECONDS, tmp / "flite10.wav"))]
    if RADIO_SPEECH.exists():
        clips.append((RADIO_SPEECH.name, RADIO_SPEECH))
    else:
        logger.warning("%s not found; flite speech only", RADIO_SPEECH)
    return clips


def _configs(
    clips: list[tuple[str, Path]], fps_list: list[int]
) -> list[tuple[str, Path, int, int]]:
    """(clip label, audio path, fps, torch threads): every clip x fps at the default threads,
    plus 1 thread at the first fps."""
    default = torch.get_num_threads()
    configs = [(label, path, fps, default) for label, path in clips for fps in fps_list]
    if default != 1:
        configs += [(label, path, fps_list[0], 1) for label, path in clips]
    return configs


def _one_run(audio: Path, out: Path, fps: int, threads: int, cache: Path) -> dict[str, Any]:
    torch.set_num_threads(threads)
    load = OtherLoad()
    config = RenderJobConfig.of(encoder=FaceEncoderConfig(cache_dir=cache), fps=fps)
    report = render_to_mp4(audio, out, portrait=None, config=config)
    size = out.stat().st_size
    out.unlink()
    return {
        "wall_s": report.wall_s,
        "prepare_s": report.prepare_s,
        "frames": report.frames,
        "audio_s": report.audio_s,
        "bytes": size,
        "rtf": report.realtime_factor,
        "load": load.cores(),
    }


def _record(label: str, fps: int, threads: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    wall = summarize([r["wall_s"] for r in runs])
    first = runs[0]
    render_s = [r["wall_s"] - r["prepare_s"] for r in runs]
    return {
        "audio": label,
        "fps": fps,
        "threads": threads,
        "audio_s": first["audio_s"],
        "frames": first["frames"],
        "wall_s": wall,
        "rtf_p50": first["audio_s"] / wall["p50"],
        "rtf_p95": first["audio_s"] / wall["p95"],
        "video_fps_p50": first["frames"] / float(summarize(render_s)["p50"]),
        "prepare_ms_p50": 1000 * summarize([r["prepare_s"] for r in runs])["p50"],
        "output_kb": first["bytes"] / 1024,
        "kbit_per_s": first["bytes"] * 8 / 1000 / first["audio_s"],
        "other_load_cores": round(sum(r["load"] for r in runs) / len(runs), 2),
        "runs": runs,
    }


COLUMNS = (
    ("audio", "audio"),
    ("fps", "fps"),
    ("threads", "threads"),
    ("audio s", "audio_s"),
    ("frames", "frames"),
    ("runs", "wall_s.n"),
    ("wall s p50", "wall_s.p50"),
    ("wall s p95", "wall_s.p95"),
    ("RTF p50", "rtf_p50"),
    ("RTF p95", "rtf_p95"),
    ("video FPS p50", "video_fps_p50"),
    ("prepare ms", "prepare_ms_p50"),
    ("MP4 KiB", "output_kb"),
    ("kbit/s", "kbit_per_s"),
    ("other load", "other_load_cores"),
)


def _markdown(data: dict[str, Any]) -> str:
    return "\n".join(
        [
            "# Offline render (render_to_mp4) end to end",
            "",
            machine_markdown(data["machine"]),
            "",
            records_table(data["results"], COLUMNS),
            "",
            "## Notes",
            "",
            "- RTF = audio seconds / wall seconds (>= 1: faster than real time); RTF p95 uses the "
            "p95 (slow) wall time. Video FPS = frames / (wall - preparation).",
            "- The avatar was cached by a warm-up render, so 'prepare ms' is a cache read; a new "
            "portrait adds its cold preparation (bench_prepare).",
            f"- Default torch threads here: {data['machine']['torch_threads']}; the renderer batch "
            f"is RenderJobConfig.batch_frames = {RenderJobConfig().pipeline.batch_frames}.",
        ]
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    default_threads = torch.get_num_threads()
    data: dict[str, Any] = {"machine": machine_info(), "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cache = tmp / "cache"
        clips = _speech(tmp)
        data["clips"] = {label: round(audio_seconds(path), 2) for label, path in clips}
        warmup = speak_to_file(WARMUP_TEXT, tmp / "warmup.wav")
        _one_run(warmup, tmp / "warmup.mp4", args.fps[0], default_threads, cache)
        configs = _configs(clips, args.fps)
        runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(configs))}
        for rnd in range(args.repeats):
            for i, (label, path, fps, threads) in enumerate(configs):
                logger.info("round %d: %s at %d fps, %d threads", rnd + 1, label, fps, threads)
                runs[i].append(_one_run(path, tmp / "out.mp4", fps, threads, cache))
        torch.set_num_threads(default_threads)
    data["results"] = [_record(c[0], c[2], c[3], runs[i]) for i, c in enumerate(configs)]
    finish_machine_info(data["machine"])
    data["headline"] = {
        f"rtf_p50 {r['audio']} {r['fps']}fps {r['threads']}t": round(r["rtf_p50"], 2)
        for r in data["results"]
    }
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--fps", type=int, nargs="+", default=[25, 30])
    run_and_report(NAME, parser, run, _markdown, argv)


if __name__ == "__main__":
    main()
