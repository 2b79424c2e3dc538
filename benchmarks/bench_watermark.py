"""Does the provenance mark survive the server's codecs, a downscale, a crop and CRF 28, invisibly?

    portraits --Pipeline (learned motion, radio speech)--> 10 s clips, marking off
    clip x payloads --WatermarkEmbedder--> marked clips --transformations--> detect

Transformations, all with real codecs: the live H.264 path (PyAV libx264 at
superfast/zerolatency, 1 Mbps, as server/encoders.py), live VP8 (libvpx
realtime, 1 Mbps), and from the live H.264 file with the ffmpeg CLI: CRF 28
re-encode, 512 -> 256 downscale, a 4% crop (offset), a 4% crop resized back.

False positives: >= 1000 unmarked clips, each 1-2 s (the statistic is over the
frames' mean, so a short clip is the hard case, not the easy one): windows of
the unmarked renders through the same codecs, ffmpeg lavfi test sources with
varied parameters and sizes, the portraits and skimage images as still video
at varied crops and sizes, and marked clips read with a wrong key.

Also: embedding cost beside the renderer in one run (one thread), PSNR,
invisible-watermark (DWT-DCT) on the same clip, and a contact sheet.

--live-server measures the product itself instead (bench_watermark_live.md): a
real `facecast serve` marks its sessions' frames, an aiortc viewer receives
them through the codec the server negotiates (H.264) for 10 s per portrait
while the face speaks, and the detector reads the viewer's decoded frames.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_watermark [--quick | --live-server]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from benchmarks._common import (
    RADIO_SPEECH,
    RESULTS_DIR,
    SHARED_ASSETS,
    finish_machine_info,
    machine_info,
    machine_markdown,
    markdown_table,
    run_and_report,
    summarize,
)
from engines.provenance import WatermarkConfig, WatermarkDetector, WatermarkEmbedder, detect

FPS = 25
CLIP_S = 10
BITRATE = 1_000_000  # aiortc's default session bitrate
IWM_DIR = Path(
    "/tmp/iwm"
)  # pip install --no-deps --target /tmp/iwm invisible-watermark PyWavelets<1.9
TRANSFORMS = ("raw", "h264_live", "vp8_live", "crf28", "down256", "crop4", "crop4_resized")


def _portraits(quick: bool) -> list[tuple[str, bytes | None]]:
    from io import BytesIO

    from PIL import Image
    from skimage import data

    found: list[tuple[str, bytes | None]] = [("la_velata (built-in)", None)]
    if quick:
        return found
    for path in sorted((SHARED_ASSETS / "portraits").glob("*.jpg")):
        if path.stem != "la_velata":  # the built-in portrait is the same picture
            found.append((path.stem, path.read_bytes()))
    buf = BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    found.append(("astronaut (skimage)", buf.getvalue()))
    return found


def _render(portrait: bytes | None, seconds: int) -> tuple[np.ndarray, dict[str, list[float]]]:
    """(T, S, S, 3) uint8 unmarked frames of the portrait talking, and per-frame seconds of
    the render call and of embedding that frame right after it (as the server will)."""
    from engines.audio.decoding import read_audio
    from engines.face.encoder import FaceEncoder
    from engines.pipeline import INPUT_RATE, Pipeline, PipelineConfig

    audio = read_audio(RADIO_SPEECH, INPUT_RATE)[: INPUT_RATE * seconds]
    audio = np.pad(audio, (0, max(0, INPUT_RATE * seconds - len(audio))))  # silence at the end
    pipeline = Pipeline(FaceEncoder().encode(portrait), PipelineConfig(fps=FPS))
    embedder = WatermarkEmbedder(7)
    frames, times, tick = [], {"render": [], "embed": [], "pack": []}, INPUT_RATE // FPS
    kept: list[np.ndarray] = []  # the last marked frames, as a session's frame store holds
    for start in range(0, len(audio) + tick, tick):
        new = pipeline.push(audio[start : start + tick]) if start < len(audio) else pipeline.flush()
        for frame in new:
            began = time.perf_counter()
            # As the session does: the renderer's frame in, a packed marked frame kept.
            kept = [*kept[-15:], embedder.embed(frame.rgb)]
            times["embed"].append(time.perf_counter() - began)
            times["render"].append(frame.render_s)
            began = time.perf_counter()
            np.ascontiguousarray(frame.rgb)  # packing alone: what the encoder does unmarked
            times["pack"].append(time.perf_counter() - began)
        frames += [f.rgb for f in new]
    return np.stack(frames), times


def _encode_live(frames: np.ndarray, codec: str) -> bytes:
    """The live path's encoder at the session bitrate; the bitstream in a container."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = BITRATE
        if codec == "libx264":
            stream.options = {"preset": "superfast", "tune": "zerolatency"}
        else:
            stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


def _ffmpeg(data: bytes, *vf: str, crf: int = 23) -> bytes:
    """Re-encode with the ffmpeg CLI (libx264 at `crf`, optional filters)."""
    filters = ["-vf", ",".join(vf)] if vf else []
    cmd = ["ffmpeg", "-v", "error", "-i", "pipe:0", *filters, "-c:v", "libx264", "-preset"]
    cmd += ["veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p", "-f", "matroska", "pipe:1"]
    return subprocess.run(cmd, input=data, capture_output=True, check=True).stdout


def _luma(data: bytes, limit: int | None = None) -> np.ndarray:
    """(T, H, W) uint8 luma of a video file's frames (PyAV decodes it)."""
    with av.open(io.BytesIO(data)) as container:
        out = []
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="gray"))
            if limit and len(out) >= limit:
                break
    return np.stack(out)


def _transformed(marked: np.ndarray) -> dict[str, np.ndarray]:
    live = _encode_live(marked, "libx264")
    crop = "crop=iw*0.96:ih*0.96:iw*0.03:ih*0.01"
    return {
        "raw": np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in marked]),
        "h264_live": _luma(live),
        "vp8_live": _luma(_encode_live(marked, "libvpx")),
        "crf28": _luma(_ffmpeg(live, crf=28)),
        "down256": _luma(_ffmpeg(live, "scale=256:256:flags=area")),
        "crop4": _luma(_ffmpeg(live, crop)),
        "crop4_resized": _luma(_ffmpeg(live, crop, "scale=512:512")),
    }


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def _marked_runs(clips: dict[str, np.ndarray], payloads: int, config: WatermarkConfig) -> dict:
    """Per transformation: detection, payload and bit results over portraits x payloads."""
    rng = np.random.default_rng(17)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TRANSFORMS}
    psnr: dict[str, float] = {}
    for label, frames in clips.items():
        for k in range(payloads):
            payload = int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))
            marked = WatermarkEmbedder(payload, config).embed_batch(frames)
            if k == 0:
                psnr[label] = _psnr(marked, frames)
            for name, luma in _transformed(marked).items():
                found = detect(luma, config)
                rows[name].append(
                    {
                        "portrait": label,
                        "marked": found.marked,
                        "payload_ok": found.payload == payload,
                        "z": found.z,
                        "bit_margin": found.bit_margin,
                        "size": list(luma.shape[1:]),
                    }
                )
            print(f"marked {label} #{k}", file=sys.stderr, flush=True)
    return {"runs": rows, "psnr_db": psnr}


def _lavfi_clip(source: str, size: str, seconds: float) -> np.ndarray:
    cmd = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, "-t", str(seconds)]
    cmd += ["-pix_fmt", "gray", "-f", "rawvideo", "pipe:1"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    width, height = (int(v) for v in size.split("x"))
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width)


def _lavfi_sources(count: int, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    sizes = ["512x512", "256x256", "640x480", "320x240", "480x480", "1280x720", "492x492"]
    out = []
    for i in range(count):
        size = sizes[i % len(sizes)]
        seed = int(rng.integers(0, 2**31))
        kind = i % 8
        if kind == 0:
            src = f"testsrc2=s={size}:r={FPS}"
        elif kind == 1:
            src = f"mandelbrot=s={size}:r={FPS}:start_scale={rng.uniform(0.5, 3):.3f}"
        elif kind == 2:
            src = f"smptebars=s={size}:r={FPS}"
        elif kind == 3:
            src = f"cellauto=s={size}:r={FPS}:rule={int(rng.integers(1, 255))}:seed={seed}"
        elif kind == 4:
            src = f"life=s={size}:r={FPS}:seed={seed}:mold=10"
        elif kind == 5:
            src = f"gradients=s={size}:r={FPS}:seed={seed}"
        elif kind == 6:
            src = f"testsrc=s={size}:r={FPS}"
        else:
            noise = int(rng.integers(2, 40))
            src = f"color=c=0x{seed & 0xFFFFFF:06x}:s={size}:r={FPS},noise=alls={noise}:allf=t"
        out.append((src.split("=")[0], src, size))
    return out


def _still_images() -> list[tuple[str, np.ndarray]]:
    from skimage import data

    from engines.face.encoder import FaceEncoder

    images = [("la_velata (built-in)", FaceEncoder().encode(None).image)]
    for path in sorted((SHARED_ASSETS / "portraits").glob("*.jpg")):
        images.append((path.stem, cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)))
    for name in (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "camera",
        "cat",
        "immunohistochemistry",
    ):
        image = getattr(data, name)()
        images.append((name, image if image.ndim == 3 else np.repeat(image[..., None], 3, 2)))
    return images


def _null_clips(unmarked: dict[str, np.ndarray], count: int) -> list[tuple[str, np.ndarray]]:
    """`count` unmarked luma clips of 1-2 s: renders, test sources, stills (see docstring)."""
    rng = np.random.default_rng(1000)
    clips: list[tuple[str, np.ndarray]] = []
    per = max(1, count // 3)
    # Unmarked renders through the same transformations, in 1 s windows.
    for frames in unmarked.values():
        for name, luma in _transformed(frames).items():
            for start in range(0, len(luma) - FPS + 1, FPS):
                clips.append((f"render:{name}", luma[start : start + FPS]))
    clips = clips[:per] if len(clips) > per else clips
    for kind, src, size in _lavfi_sources(per, rng):
        clips.append((f"lavfi:{kind}", _lavfi_clip(src, size, 1.0)))
    stills = _still_images()
    while len(clips) < count:
        label, image = stills[len(clips) % len(stills)]
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        keep = rng.uniform(0.6, 1.0)
        y0, x0 = int(rng.uniform(0, 1 - keep) * h), int(rng.uniform(0, 1 - keep) * w)
        crop = gray[y0 : y0 + int(keep * h), x0 : x0 + int(keep * w)]
        side = int(rng.choice([256, 384, 512, 640]))
        still = cv2.resize(crop, (side, side * crop.shape[0] // crop.shape[1]))
        clips.append((f"still:{label}", np.repeat(still[None], 2, axis=0)))
    return clips[:count]


def _false_positives(clips: list[tuple[str, np.ndarray]], config: WatermarkConfig) -> dict:
    z_by_kind: dict[str, list[float]] = {}
    detections = []
    for i, (kind, luma) in enumerate(clips):
        found = detect(luma, config)
        z_by_kind.setdefault(kind.split(" ")[0], []).append(found.z)
        if found.marked:
            detections.append({"kind": kind, "z": found.z, "p": found.p_value})
        if i % 100 == 0:
            print(f"null clip {i}/{len(clips)}", file=sys.stderr, flush=True)
    threshold = WatermarkDetector(config)
    return {
        "clips": len(clips),
        "detections": detections,
        "z_threshold": float(
            np.sqrt(2 * (np.log(threshold.hypotheses) - np.log(config.false_positive_rate)))
        ),
        "by_kind": {
            k: {"n": len(v), "z_max": max(v), "z_p50": float(np.median(v))}
            for k, v in z_by_kind.items()
        },
    }


def _wrong_key(clips: dict[str, np.ndarray], config: WatermarkConfig) -> list[float]:
    """z of marked clips (live H.264) read with another key: must stay unmarked."""
    other = WatermarkConfig(key=b"some-other-deployment")
    zs = []
    for frames in clips.values():
        luma = _luma(_encode_live(WatermarkEmbedder(12345, config).embed_batch(frames), "libx264"))
        found = detect(luma, other)
        zs.append(found.z if not found.marked else float("inf"))
    return zs


def _cost(times: dict[str, list[float]]) -> dict[str, Any]:
    """ms per frame of render and of embed, interleaved in one run (first 10 frames warm-up)."""
    return {f"{k}_ms": summarize([s * 1e3 for s in v[10:]]) for k, v in times.items()}


def _invisible_watermark(frames: np.ndarray) -> dict:
    """imwatermark's dwtDct and dwtDctSvd, 64 bits, same clip; majority vote over frames."""
    if not IWM_DIR.exists():
        return {"available": False, "why": f"{IWM_DIR} missing; see the module docstring"}
    sys.path.insert(0, str(IWM_DIR))
    return {method: _iwm_method(frames, method) for method in ("dwtDct", "dwtDctSvd")}


def _iwm_method(frames: np.ndarray, method: str) -> dict[str, Any]:
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    bits = np.random.default_rng(5).integers(0, 2, 64).astype(np.uint8)
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", bits.tolist())
    bgr = frames[..., ::-1]
    start = time.perf_counter()
    marked_bgr = np.stack([encoder.encode(np.ascontiguousarray(f), method) for f in bgr])
    cost = (time.perf_counter() - start) / len(frames) * 1e3
    marked = np.ascontiguousarray(marked_bgr[..., ::-1])
    decoder = WatermarkDecoder("bits", 64)
    out: dict[str, Any] = {"embed_ms": cost, "psnr_db": _psnr(marked, frames)}
    live = _encode_live(marked, "libx264")
    crop = "crop=iw*0.96:ih*0.96:iw*0.03:ih*0.01"
    videos = {
        "raw": marked,
        "h264_live": _rgb(live),
        "crf28": _rgb(_ffmpeg(live, crf=28)),
        "down256": _rgb(_ffmpeg(live, "scale=256:256:flags=area")),
        "crop4": _rgb(_ffmpeg(live, crop)),
    }
    for name, rgb in videos.items():
        reads = [decoder.decode(np.ascontiguousarray(f[..., ::-1]), method) for f in rgb[::5]]
        read = (np.mean(reads, axis=0) > 0.5).astype(np.uint8)
        out[name] = {
            "bit_accuracy": float(np.mean(read == bits)),
            "exact": bool((read == bits).all()),
        }
    return out


def _rgb(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _contact_sheet(clips: dict[str, np.ndarray], config: WatermarkConfig, path: Path) -> None:
    """Rows: portraits; columns: original | marked | (marked - original) x 20 + 128."""
    rows = []
    for frames in clips.values():
        original = frames[len(frames) // 2]
        marked = WatermarkEmbedder(0x1234_5678_9ABC_DEF0, config).embed(original)
        diff = np.clip(128 + 20 * (marked.astype(np.int16) - original), 0, 255).astype(np.uint8)
        rows.append(np.concatenate([original, marked, diff], axis=1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def run(args: argparse.Namespace) -> dict[str, Any]:
    cv2.setNumThreads(1)
    info = machine_info()
    config = WatermarkConfig()
    seconds = 4 if args.quick else CLIP_S
    clips: dict[str, np.ndarray] = {}
    cost: dict[str, Any] = {}
    for label, portrait in _portraits(args.quick):
        frames, times = _render(portrait, seconds)
        clips[label] = frames
        if not cost:  # embedding timed right after each render call, in the same process
            cost = _cost(times)
        print(f"rendered {label}: {len(frames)} frames", file=sys.stderr, flush=True)
    marked = _marked_runs(clips, 1 if args.quick else args.payloads, config)
    null = _false_positives(_null_clips(clips, 60 if args.quick else args.null_clips), config)
    sheet = RESULTS_DIR / "watermark_contact_sheet.png"
    _contact_sheet(clips, config, sheet if args.out_dir is None else args.out_dir / sheet.name)
    first = next(iter(clips.values()))
    return {
        "machine": finish_machine_info(info),
        "quick": args.quick,
        "config": {"strength": config.strength, "false_positive_rate": config.false_positive_rate},
        "clip_seconds": seconds,
        "cost": cost,
        "marked": marked,
        "false_positives": null,
        "wrong_key_z": _wrong_key(clips, config),
        "invisible_watermark": _invisible_watermark(first),
    }


_LIVE_TEXT = (
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, "
    "and the shells she sells are surely sea shells."
)


async def _live_clip(url: str, portrait: bytes | None, seconds: int) -> dict[str, Any]:
    """One session of the portrait speaking, watched for `seconds`; the mark read back."""
    from engines.provenance import split_payload, stream_mark
    from server.client import FacecastClient

    async with FacecastClient(url, timeout_s=120) as client:
        portrait_id = None
        if portrait is not None:
            files = {"file": ("portrait.png", portrait, "image/png")}
            portrait_id = (await client.request("POST", "/api/portraits", files=files))["id"]
        session = await client.create_session(fps=FPS, portrait_id=portrait_id)
        viewer = await client.watch(session["id"])
        await viewer.wait_frames(FPS)
        await client.speak(session["id"], _LIVE_TEXT)
        start = len(viewer.frames)
        await viewer.wait_frames(start + seconds * FPS, timeout_s=seconds * 3)
        codecs = [getattr(t, "_codecs", []) for t in viewer.pc.getTransceivers()]
        await viewer.close()
        health = await client.request("GET", "/api/health")
        await client.delete_session(session["id"])
    frames = [f.rgb for f in viewer.frames[start : start + seconds * FPS] if f.rgb is not None]
    expected = (int(health["instance_id"], 16), stream_mark(session["id"]))
    out: dict[str, Any] = {
        "codec": next((c[0].mimeType for c in codecs if c and "video" in c[0].mimeType), "?"),
        "frames": len(frames),
    }
    # What the viewer got, then a platform's CRF 28 re-encode or a 512 -> 256 downscale.
    raw = np.stack(frames)
    for name, luma in (
        ("received", raw),
        ("crf28", _luma(_raw_to_x264(raw, crf=28))),
        ("down256", _luma(_raw_to_x264(raw, "scale=256:256:flags=area"))),
    ):
        found = detect(luma)
        read = found.payload is not None and split_payload(found.payload) == expected
        out[name] = {"marked": found.marked, "payload_ok": read, "z": round(found.z, 2)}
    return out


def _raw_to_x264(frames: np.ndarray, *vf: str, crf: int = 23) -> bytes:
    """(T, H, W, 3) uint8 RGB -> the ffmpeg CLI's libx264 at `crf` (optional filters)."""
    height, width = frames.shape[1:3]
    cmd = ["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    cmd += ["-s", f"{width}x{height}", "-r", str(FPS), "-i", "pipe:0"]
    cmd += ["-vf", ",".join(vf)] if vf else []
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p"]
    cmd += ["-f", "matroska", "pipe:1"]
    return subprocess.run(cmd, input=frames.tobytes(), capture_output=True, check=True).stdout


def run_live(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    from benchmarks._live import serve

    cv2.setNumThreads(1)
    info = machine_info()
    _, times = _render(None, 4)  # the embedding cost beside the renderer, one thread
    runs: dict[str, list[dict[str, Any]]] = {}
    with serve(None) as server:
        for label, portrait in _portraits(args.quick):
            if portrait is not None:  # uploads are PNG: re-encode the JPEGs
                ok, png = cv2.imencode(".png", cv2.imdecode(np.frombuffer(portrait, np.uint8), 1))
                portrait = png.tobytes()
            runs[label] = [asyncio.run(_live_clip(server.url, portrait, CLIP_S))]
            print(f"live {label}: {runs[label]}", file=sys.stderr, flush=True)
    info = finish_machine_info(info)
    return {"machine": info, "clip_seconds": CLIP_S, "cost": _cost(times), "live": runs}


_COST_NAMES = {
    "render_ms": "render 512x512",
    "embed_ms": "embed (packs the planar frame, then marks it)",
    "pack_ms": "packing the planar frame alone (np.ascontiguousarray), for scale",
}


def markdown_live(data: dict[str, Any]) -> str:
    cost = data["cost"]
    stages = ("received", "crf28", "down256")
    rows = [
        [k, r["codec"], r["frames"]]
        + [f"{r[n]['marked']}/{r[n]['payload_ok']}/{r[n]['z']}" for n in stages]
        for k, runs in data["live"].items()
        for r in runs
    ]
    headers = ["portrait", "codec", "frames"]
    headers += [f"{n}: detected/payload/z" for n in ("as received", "then CRF 28", "then 256")]
    return "\n".join(
        [
            "# bench_watermark --live-server: the mark as a real facecast serve sends it",
            "",
            machine_markdown(data["machine"]),
            "",
            f"One session per portrait at {FPS} fps speaking flite text; an aiortc viewer on "
            f"loopback received {data['clip_seconds']} s, decoded by its own decoder; the server "
            "marked every rendered frame (the payload: its instance id and the session's mark). "
            "Then the received frames re-encoded at CRF 28, and downscaled to 256x256. "
            "Detected: p <= 1e-6 (z >= 7.59); one session per row.",
            "",
            markdown_table(headers, rows),
            "",
            "Cost, in this process before the server started: the built-in portrait rendered "
            "for 4 s, each frame marked right after its render call as the session does (the "
            "renderer's channel-planar frame in, a packed marked frame out and kept), one "
            "thread:",
            "",
            markdown_table(
                ["measure", "p50", "p95"],
                [[f"{_COST_NAMES[k]}, ms per frame", v["p50"], v["p95"]] for k, v in cost.items()],
            ),
        ]
    )


def _marked_table(data: dict[str, Any]) -> str:
    rows = []
    for name, runs in data["marked"]["runs"].items():
        zs = [r["z"] for r in runs]
        rows.append(
            [
                name,
                len(runs),
                f"{100 * np.mean([r['marked'] for r in runs]):.1f}%",
                f"{100 * np.mean([r['payload_ok'] for r in runs]):.1f}%",
                min(zs),
                float(np.median(zs)),
                min(r["bit_margin"] for r in runs),
            ]
        )
    headers = ["transformation", "clips", "detected", "payload exact", "z min", "z p50"]
    return markdown_table([*headers, "bit margin min"], rows)


def markdown(data: dict[str, Any]) -> str:
    null, cost = data["false_positives"], data["cost"]
    iwm = data["invisible_watermark"]
    psnr = data["marked"]["psnr_db"]
    lines = [
        "# bench_watermark: the provenance mark after real codecs, crops and downscales",
        "",
        machine_markdown(data["machine"]),
        "",
        f"Clips: {data['clip_seconds']} s renders (learned motion, radio speech, silence after)"
        f" of {', '.join(psnr)}; each marked with random 64-bit payloads. Detection threshold:"
        f" p <= {data['config']['false_positive_rate']:g} per video,"
        f" z >= {null['z_threshold']:.2f}.",
        "",
        "## Marked clips",
        "",
        _marked_table(data),
        "",
        "## Unmarked clips (false positives)",
        "",
        f"{null['clips']} clips, {len(null['detections'])} detected as marked.",
        "",
        markdown_table(
            ["kind", "clips", "z max", "z p50"],
            [[k, v["n"], v["z_max"], v["z_p50"]] for k, v in sorted(null["by_kind"].items())],
        ),
        "",
        f"Marked clips (live H.264) read with another key: z = "
        f"{', '.join(f'{z:.2f}' for z in data['wrong_key_z'])}"
        f" (threshold {null['z_threshold']:.2f}).",
        "",
        "## Cost and invisibility",
        "",
        markdown_table(
            ["measure", "p50", "p95"],
            [
                [
                    "embed, ms per 512x512 frame (1 thread)",
                    cost["embed_ms"]["p50"],
                    cost["embed_ms"]["p95"],
                ],
                [
                    "render, ms per frame (same run)",
                    cost["render_ms"]["p50"],
                    cost["render_ms"]["p95"],
                ],
            ],
        ),
        "",
        markdown_table(
            ["portrait", "PSNR marked vs unmarked (dB)"], [[k, v] for k, v in psnr.items()]
        ),
        "",
        "Contact sheet: watermark_contact_sheet.png (original | marked | difference x20 + 128).",
        "",
        "## invisible-watermark (DWT-DCT), same first clip",
        "",
    ]
    if iwm.get("available", True):
        names = ("raw", "h264_live", "crf28", "down256", "crop4")
        lines.append("Bits read per frame (every 5th frame), majority vote over the clip:")
        lines.append("")
        rows = [
            [m, r["embed_ms"], r["psnr_db"], *(f"{r[n]['bit_accuracy']:.2f}" for n in names)]
            for m, r in iwm.items()
        ]
        lines.append(markdown_table(["method", "embed ms", "PSNR dB", *names], rows))
    else:
        lines.append(f"Not measured: {iwm['why']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one portrait, 4 s, 60 null clips")
    parser.add_argument("--payloads", type=int, default=4, help="payloads per portrait")
    parser.add_argument("--null-clips", type=int, default=1000)
    parser.add_argument(
        "--live-server", action="store_true", help="a real server's sessions instead"
    )
    if "--live-server" in (sys.argv[1:] if argv is None else argv):
        run_and_report("bench_watermark_live", parser, run_live, markdown_live, argv)
    else:
        run_and_report("bench_watermark", parser, run, markdown, argv)


if __name__ == "__main__":
    main()
