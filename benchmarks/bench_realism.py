"""Does the rendered face look real? An independent judge of the renderer, old beside new.

Usage: python -m benchmarks.bench_realism [--before PATH] [--quick]

Each test portrait (benchmarks/realism_portraits.py) is rendered by a worker
process per checkout: this one ("new") and, with --before, the checkout at PATH
("old", PYTHONPATH=PATH, cwd PATH, its own avatar cache). Workers only render,
through the public API (FaceEncoder, FaceRenderer, Pipeline); they send the
frames back as .npz through a temp folder. This process judges every frame the
same way, with MediaPipe on the output pixels (engines/face/landmarks.py),
never from the motion vector:

1. streaks: fraction of the neutral frame made of replicated-edge streaks;
2. silent lips: inner-lip gap on the silent frames of a speech render and on the
   neutral frame, "closed" below CLOSED_GAP of face height;
3. closed eye: luminance inside the (neutral) eye contour of a full blink over
   the skin ring around it;
4. mouth colour: HSV saturation inside the inner lips at jawOpen 0.7 over the
   cheeks' (judged on the grayscale and sepia portraits);
5. folds/tears at yaw +-0.35, pitch +-0.25: is the face traced at all, flipped
   mesh triangles, edge density along the face oval and gradient spikes inside
   the face versus the neutral frame;
6. render time per frame on one thread, old and new interleaved;
7. identity: PSNR of the neutral face against the encoder's crop, and how much
   the background corners move at yaw 0.2.

Contact sheets go to benchmarks/results/realism/<portrait>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

# Engines imports resolve to the checkout under test in a worker (PYTHONPATH=root),
# to this checkout in the judge; benchmarks.* are imported by the judge only.
from engines.errors import FacecastError
from engines.face import landmarks as fl
from engines.motion.space import index_of, neutral_motion

__all__ = ["main", "run", "streak_fraction"]

NAME = "bench_realism"
ROOT = Path(__file__).resolve().parent.parent
SHEETS_DIR = Path(__file__).parent / "results" / "realism"
FPS = 25
RATE = 48000
REPLY = "@@realism "
# Stills every renderer draws: (column label, {motion channel: value}).
STILLS: tuple[tuple[str, dict[str, float]], ...] = (
    ("neutral", {}),
    ("jaw 1.0", {"jawOpen": 1.0}),
    ("jaw 0.7", {"jawOpen": 0.7}),
    ("mouthClose", {"mouthClose": 1.0}),
    ("blink", {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
    ("yaw -0.35", {"headYaw": -0.35}),
    ("yaw +0.35", {"headYaw": 0.35}),
    ("pitch -0.25", {"headPitch": -0.25}),
    ("pitch +0.25", {"headPitch": 0.25}),
    ("yaw +0.2", {"headYaw": 0.2}),
    ("smile", {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}),
)
POSED = ("yaw -0.35", "yaw +0.35", "pitch -0.25", "pitch +0.25")
SHEET_COLUMNS = ("neutral", "jaw 1.0", "closed lips", "blink", *POSED, "smile")
TILE = 256
# Targets (DESIGN.md "Renderer"; thresholds marked * are this benchmark's choice).
TARGETS = {
    "streak_fraction": ("<=", 0.002),  # target 0; * 0.2% of the frame allows detector noise
    "lips_closed_fraction": (">=", 0.9),
    "closed_eye_ratio": (">=", 0.85),
    "mouth_saturation_ratio": ("<=", 1.3),
    "fold_score": ("<=", 1.5),  # *
    "triangle_flips": ("<=", 0.05),  # *
    "render_ms": ("<=", 8.0),
    "face_psnr_db": (">=", 30.0),  # *
    "corner_change": ("<=", 2.0),  # * mean |diff| in 0-255 levels
}
CLOSED_GAP = 0.012
SILENT_DB = -40.0  # frame windows this far below the speech's loud level are silence


# ---- worker: runs in the checkout under test, renders only ------------------------------


def _worker_loop(stdin: IO[str], stdout: IO[str]) -> None:
    """Serve JSON commands, one per line; answer each with REPLY + JSON on stdout."""
    import torch

    from engines.pipeline import set_threads

    set_threads(1)
    state: dict[str, Any] = {}
    for line in stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        try:
            with torch.inference_mode():
                reply = _WORKER_OPS[command["op"]](command, state)
        except FacecastError as exc:
            reply = {"refused": type(exc).__name__, "message": str(exc)}
        except Exception as exc:  # a broken old checkout must not stop the whole benchmark
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        stdout.write(REPLY + json.dumps(reply) + "\n")
        stdout.flush()


def _motion(channels: dict[str, float]) -> np.ndarray:
    motion = neutral_motion()
    for name, value in channels.items():
        motion[index_of(name)] = value
    return motion


def _op_prepare(command: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Encode a portrait PNG, render the stills; npz: avatar image, landmarks, stills."""
    from engines.face.encoder import FaceEncoder
    from engines.render.renderer import FaceRenderer

    state.clear()
    avatar = FaceEncoder().encode(Path(command["png"]).read_bytes())
    renderer = FaceRenderer(avatar)
    motions = np.stack([_motion(channels) for _, channels in STILLS])
    stills = np.concatenate([renderer.render(m[None]) for m in motions])
    state.update(avatar=avatar, renderer=renderer, motions=motions)
    np.savez(
        command["out"], image=avatar.image, landmarks=avatar.landmarks, stills=stills
    )  # stills: (len(STILLS), S, S, 3)
    import engines

    return {
        "refused": None,
        "notes": list(avatar.notes),
        "engines": str(Path(engines.__file__).parent),
    }


def _op_speech(command: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Run the Pipeline over the speech file; npz: the requested frames and their pts."""
    from engines.audio.decoding import read_audio
    from engines.pipeline import Pipeline, PipelineConfig

    audio = read_audio(command["wav"], RATE)
    wanted = set(command["pts"])
    pipeline = Pipeline(state["avatar"], PipelineConfig(fps=FPS))
    frames = []
    began = time.perf_counter()
    for start in range(0, len(audio), RATE // 50):
        frames += pipeline.push(audio[start : start + RATE // 50], lambda pts: pts in wanted)
    frames += pipeline.flush(lambda pts: pts in wanted)
    drawn = [(f.pts, f.rgb) for f in frames if f.rgb is not None]
    np.savez(
        command["out"],
        pts=np.array([pts for pts, _ in drawn], dtype=np.int64),
        frames=np.stack([rgb for _, rgb in drawn]) if drawn else np.zeros((0, 1, 1, 3), np.uint8),
    )
    return {"frames": len(frames), "drawn": len(drawn), "seconds": time.perf_counter() - began}


def _op_time(command: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Seconds per single-frame render call, over the stills' motions in turn."""
    motions, renderer = state["motions"], state["renderer"]
    seconds = []
    for i in range(command["frames"]):
        began = time.perf_counter()
        renderer.render(motions[(command["offset"] + i) % len(motions)][None])
        seconds.append(time.perf_counter() - began)
    return {"seconds": seconds}


_WORKER_OPS = {"prepare": _op_prepare, "speech": _op_speech, "time": _op_time}


class _Worker:
    """A rendering process running the checkout at root (PYTHONPATH=root, cwd root)."""

    def __init__(self, label: str, root: Path, tmp: Path) -> None:
        self.label, self.root = label, root
        env = dict(os.environ, PYTHONPATH=str(root), FACECAST_CACHE_DIR=str(tmp / f"{label}-cache"))
        env.update(OMP_NUM_THREADS="1", GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2")
        self._log = (tmp / f"{label}-worker.log").open("w")
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )

    def send(self, **command: Any) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(REPLY):
                reply: dict[str, Any] = json.loads(line[len(REPLY) :])
                return reply
        log = Path(self._log.name).read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.label} worker ({self.root}) exited:\n{log}")

    def close(self) -> None:
        if self._process.poll() is None:
            self.send(op="quit")
            self._process.wait(timeout=60)
        self._log.close()


def _ask_all(workers: Sequence[_Worker], **command: Any) -> list[dict[str, Any]]:
    """The same command to every worker at once (each on its own core); their replies."""
    for worker in workers:
        worker.send(
            **{
                k: v.format(label=worker.label) if isinstance(v, str) else v
                for k, v in command.items()
            }
        )
    return [worker.receive() for worker in workers]


# ---- the judge: metrics on output pixels ------------------------------------------------


def _left_streaks(img: np.ndarray, min_run: int = 12, step: int = 2) -> np.ndarray:
    """Streak pixels touching the left border of img (H, W, 3) int16: bool (H, W).

    A row's run is its pixels from the border on that are constant: every channel
    within 1 level from pixel to pixel and 0.3 levels on average (a smear, not
    grain). Runs of >= min_run pixels count where they are striped: within 4 rows
    there are two adjacent runs both covering that column whose values differ by
    >= step levels. A flat background (adjacent runs alike) or the border of a flat
    region (the neighbour row is not flat there) does not count.
    """
    h, w = img.shape[:2]
    along = np.abs(np.diff(img, axis=1)).max(-1)  # HxW-1
    flat = along <= 1
    run = np.where(flat.all(1), w - 1, np.argmin(flat, axis=1))  # H: constant pixels 0..run
    run = np.minimum(run, w // 2)
    smooth = np.cumsum(along, axis=1)[np.arange(h), np.maximum(run - 1, 0)] <= 0.3 * run
    run = np.where(smooth & (run + 1 >= min_run), run, -1)
    inside = np.arange(w)[None, :] <= run[:, None]  # HxW
    striped = np.zeros((h, w), np.float32)
    striped[1:] = inside[1:] & inside[:-1] & (np.abs(np.diff(img, axis=0)).max(-1) >= step)
    near = np.asarray(cv2.blur(striped, (1, 9))) > 0
    return inside & near


def streak_fraction(rgb: np.ndarray) -> float:
    """Fraction of an RGB frame (H, W, 3) made of replicated-edge streaks at its 4 borders."""
    img = rgb.astype(np.int16)
    mask = _left_streaks(img)
    mask |= _left_streaks(img[:, ::-1])[:, ::-1]
    mask |= _left_streaks(img.transpose(1, 0, 2)).T
    mask |= _left_streaks(img.transpose(1, 0, 2)[:, ::-1])[:, ::-1].T
    return float(mask.mean())


def _poly_mask(shape: tuple[int, ...], points: np.ndarray) -> np.ndarray:
    """bool (H, W): inside the polygon through points (N, 2+) in pixels."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points[:, :2]).astype(np.int32)], (1,))
    return mask > 0


def _line_mask(shape: tuple[int, ...], points: np.ndarray, closed: bool, width: int) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.polylines(mask, [np.round(points[:, :2]).astype(np.int32)], closed, (1,), max(1, width))
    return mask > 0


def _grow(mask: np.ndarray, radius: float) -> np.ndarray:
    """bool mask dilated by a disc of the given radius in pixels."""
    size = 2 * max(1, int(round(radius))) + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return np.asarray(cv2.dilate(mask.astype(np.uint8), disc)) > 0


def _face_height(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[152, :2] - lm[10, :2]))


def _face_mask(shape: tuple[int, ...], lm: np.ndarray) -> np.ndarray:
    return _poly_mask(shape, lm[list(fl.FACE_OVAL)])


def _contour(lm: np.ndarray, upper: Sequence[int], lower: Sequence[int]) -> np.ndarray:
    return np.asarray(lm[list(upper) + list(lower[::-1][1:-1])])


def closed_eye_ratio(blink: np.ndarray, lm: np.ndarray) -> float | None:
    """min over eyes of Y inside the eye contour / Y of the skin ring around it.

    blink: RGB frame (H, W, 3); lm: landmarks (478, 2+) of the open (neutral) eye.
    The ring reaches half an eye width out, leaves a gap of 0.12 eye widths and
    excludes the brows and the other eye.
    """
    luma = cv2.cvtColor(blink, cv2.COLOR_RGB2YCrCb)[:, :, 0].astype(np.float32)
    eyes = [
        (fl.RIGHT_EYE_UPPER, fl.RIGHT_EYE_LOWER, fl.RIGHT_BROW),
        (fl.LEFT_EYE_UPPER, fl.LEFT_EYE_LOWER, fl.LEFT_BROW),
    ]
    masks = [_poly_mask(blink.shape, _contour(lm, up, low)) for up, low, _ in eyes]
    ratios = []
    for (upper, _, brow), eye in zip(eyes, masks, strict=True):
        width = float(np.linalg.norm(lm[upper[0], :2] - lm[upper[-1], :2]))
        ring = _grow(eye, 0.5 * width)
        ring &= ~_grow(_line_mask(blink.shape, lm[list(brow)], False, 1), 0.2 * width)
        for other in masks:
            ring &= ~_grow(other, 0.12 * width)
        if eye.sum() < 4 or ring.sum() < 16:
            return None
        ratios.append(float(luma[eye].mean() / max(float(luma[ring].mean()), 1.0)))
    return min(ratios)


def mouth_saturation_ratio(frame: np.ndarray, lm: np.ndarray) -> tuple[float | None, int]:
    """HSV saturation inside the inner lips / the cheeks' (floor 13 of 255); pixels inside."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV).astype(np.float32)
    inner = _poly_mask(frame.shape, _contour(lm, fl.LIPS_INNER_UPPER, fl.LIPS_INNER_LOWER))
    inner &= ~_grow(~inner, 1)  # one pixel in from the lips
    inner &= hsv[:, :, 2] >= 12  # hue and saturation are noise on near-black pixels
    cheeks = np.zeros(frame.shape[:2], bool)
    points = np.round(lm[[50, 280, 205, 425], :2]).astype(int)
    cheeks[points[:, 1].clip(0, frame.shape[0] - 1), points[:, 0].clip(0, frame.shape[1] - 1)] = (
        True
    )
    cheeks = _grow(cheeks, max(2.0, 0.03 * _face_height(lm)))
    if inner.sum() < 20:
        return None, int(inner.sum())
    skin = float(hsv[:, :, 1][cheeks].mean())
    return float(hsv[:, :, 1][inner].mean() / max(skin, 13.0)), int(inner.sum())


def _triangles(lm: np.ndarray) -> np.ndarray:
    from scipy.spatial import Delaunay

    return np.asarray(Delaunay(lm[:468, :2]).simplices)  # Nx3


def _signed_areas(lm: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a, b, c = (lm[tris[:, i], :2] for i in range(3))
    return 0.5 * (
        (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    )


def _oval_band(shape: tuple[int, ...], lm: np.ndarray) -> np.ndarray:
    return _line_mask(shape, lm[list(fl.FACE_OVAL)], True, max(3, int(0.06 * _face_height(lm))))


def _edge_density(frame: np.ndarray, region: np.ndarray) -> float:
    edges = cv2.Canny(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 50, 150) > 0
    return float(edges[region].mean()) if region.any() else 0.0


def _gradient_p99(frame: np.ndarray, region: np.ndarray) -> float:
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    magnitude = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    return float(np.percentile(magnitude[region], 99.5)) if region.any() else 0.0


def rigid_turn(lm: np.ndarray, yaw: float, pitch: float, like: np.ndarray) -> np.ndarray:
    """(478, 2) where a rigid 3D turn of the traced mesh lm (478, 3; MediaPipe's depth is
    in x's pixel units) about its centre puts the points, orthographically. The
    direction of each angle is the one that lies closer to the traced mesh like
    (478, 2+), so the renderer's sign convention does not matter."""
    centre = lm[:468].mean(0)
    best, best_error = None, np.inf
    for sign in (1.0, -1.0):
        x, y, z = (lm - centre).T
        a, b = sign * yaw, sign * pitch
        x, z = np.cos(a) * x + np.sin(a) * z, -np.sin(a) * x + np.cos(a) * z
        y = np.cos(b) * y - np.sin(b) * z
        turned = np.stack([x, y], 1)
        offset = (like[:468, :2] - turned[:468]).mean(0)  # the renderer may also shift
        error = float(np.linalg.norm(like[:468, :2] - turned[:468] - offset, axis=1).mean())
        if error < best_error:
            best, best_error = turned + offset, error
    return best


def fold_check(
    neutral: np.ndarray,
    neutral_lm: np.ndarray,
    posed: np.ndarray,
    posed_lm: np.ndarray | None,
    turn: tuple[float, float] = (0.0, 0.0),
) -> dict[str, Any]:
    """Folds and tears of a posed frame against the neutral one (both RGB, same size).

    triangle_flips: fraction of the neutral mesh's Delaunay triangles (area > 2 px^2)
    whose orientation the mesh traced on the posed frame reverses, among those that a
    rigid 3D turn (yaw, pitch) of the traced neutral mesh keeps: a real head turning
    by 0.35 rad hides the far side of the nose and cheek and so reverses 4-23% of
    them (raw_flips counts every reversal, rigid_flips the turn's own). oval_edges:
    Canny edge density in a band along the traced face oval, posed / neutral
    (duplicated or torn contours raise it). gradient_spike: 99.5th percentile of
    the gradient magnitude inside the face, posed / neutral. fold_score: the
    larger of the two ratios.
    """
    if posed_lm is None:
        return {"traced": False, "triangle_flips": None, "fold_score": None}
    tris = _triangles(neutral_lm)
    before, after = _signed_areas(neutral_lm, tris), _signed_areas(posed_lm, tris)
    keep = np.abs(before) > 2.0
    flipped = np.sign(before[keep]) != np.sign(after[keep])
    rigid = _signed_areas(rigid_turn(neutral_lm, *turn, posed_lm), tris)[keep]
    turned_away = np.sign(before[keep]) != np.sign(rigid)
    flips = float((flipped & ~turned_away).mean())
    edges = _edge_density(posed, _oval_band(posed.shape, posed_lm)) / max(
        _edge_density(neutral, _oval_band(neutral.shape, neutral_lm)), 1e-3
    )
    spike = _gradient_p99(posed, _face_mask(posed.shape, posed_lm)) / max(
        _gradient_p99(neutral, _face_mask(neutral.shape, neutral_lm)), 1.0
    )
    return {
        "traced": True,
        "triangle_flips": round(flips, 4),
        "raw_flips": round(float(flipped.mean()), 4),
        "rigid_flips": round(float(turned_away.mean()), 4),
        "oval_edges": round(edges, 3),
        "gradient_spike": round(spike, 3),
        "fold_score": round(max(edges, spike), 3),
    }


def identity(
    neutral: np.ndarray, image: np.ndarray, lm: np.ndarray, yawed: np.ndarray
) -> dict[str, float]:
    """PSNR (dB) of the neutral face vs the encoder's crop; corner change at yaw 0.2.

    A source with parted lips is compared above the mouth only: neutral has the lips
    together, so its jaw, chin and mouth rightly differ from the photo's.
    """
    face = _face_mask(image.shape, lm)
    parted = fl.inner_lip_gap(lm) >= CLOSED_GAP
    if parted:
        nose_base = float(lm[2, 1])  # below the nose the closing jaw moves the picture
        face[int(np.ceil(nose_base)) :, :] = False
    error = (neutral.astype(np.float64) - image.astype(np.float64))[face]
    mse = float((error**2).mean())
    psnr = 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)
    s = neutral.shape[0]
    corners = [(slice(0, 32), slice(0, 32)), (slice(0, 32), slice(s - 32, s))]
    corners += [(slice(s - 32, s), slice(0, 32)), (slice(s - 32, s), slice(s - 32, s))]
    change = [
        float(np.abs(neutral[c].astype(np.int16) - yawed[c].astype(np.int16)).mean())
        for c in corners
    ]
    return {
        "face_psnr_db": round(float(psnr), 2),
        "face_psnr_region": "above the mouth (parted source)" if parted else "face",
        "corner_change": round(max(change), 3),
    }


def _mesh(frame: np.ndarray) -> np.ndarray | None:
    return fl.face_mesh(np.ascontiguousarray(frame))


def _gap(frame: np.ndarray) -> float | None:
    lm = _mesh(frame)
    return None if lm is None else round(fl.inner_lip_gap(lm), 4)


def judge(
    stills: dict[str, np.ndarray],
    image: np.ndarray,
    avatar_lm: np.ndarray,
    silent: np.ndarray,
    monochrome: bool,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Every metric of one renderer on one portrait; also its most-closed silent frame.

    stills: label -> uint8 (S, S, 3) frame for each of STILLS; image: the encoder's
    crop (S, S, 3); avatar_lm: its landmarks (478, 3); silent: (N, S, S, 3) frames
    of the speech render where the audio is silent.
    """
    neutral = stills["neutral"]
    neutral_lm = _mesh(neutral)
    ref_lm = neutral_lm if neutral_lm is not None else avatar_lm
    gaps = [_gap(f) for f in silent]
    neutral_gap = None if neutral_lm is None else round(fl.inner_lip_gap(neutral_lm), 4)
    judged = [*gaps, neutral_gap]
    closed = sum(g is not None and g < CLOSED_GAP for g in judged)
    traced = [g for g in gaps if g is not None]
    most_closed = silent[int(np.argmin([9.0 if g is None else g for g in gaps]))] if gaps else None
    jaw_lm = _mesh(stills["jaw 0.7"])
    mouth, mouth_px = (
        (None, 0) if jaw_lm is None else mouth_saturation_ratio(stills["jaw 0.7"], jaw_lm)
    )
    folds = {
        pose: fold_check(neutral, ref_lm, stills[pose], _mesh(stills[pose]), _turn(pose))
        for pose in POSED
    }
    scores = [f["fold_score"] for f in folds.values() if f["fold_score"] is not None]
    flips = [f["triangle_flips"] for f in folds.values() if f["triangle_flips"] is not None]
    metrics: dict[str, Any] = {
        "neutral_traced": neutral_lm is not None,
        "streak_fraction": round(streak_fraction(neutral), 4),
        "streak_fraction_posed_max": round(max(streak_fraction(stills[p]) for p in POSED), 4),
        "lips_closed_fraction": round(closed / len(judged), 3),
        "lips_judged_frames": len(judged),
        "neutral_gap": neutral_gap,
        "silent_gap_median": round(float(np.median(traced)), 4) if traced else None,
        "silent_gap_max": max(traced) if traced else None,
        "silent_untraced": len(gaps) - len(traced),
        "closed_eye_ratio": _round(closed_eye_ratio(stills["blink"], ref_lm)),
        "open_eye_ratio": _round(closed_eye_ratio(neutral, ref_lm)),
        "mouth_saturation_ratio": _round(mouth),
        "mouth_saturation_judged": monochrome,
        "mouth_interior_px": mouth_px,
        "folds": folds,
        "posed_traced": sum(f["traced"] for f in folds.values()),
        "fold_score": max(scores) if scores else None,
        "triangle_flips": max(flips) if flips else None,
        **identity(neutral, image, avatar_lm, stills["yaw +0.2"]),
    }
    return metrics, most_closed


def _turn(pose: str) -> tuple[float, float]:
    channels = dict(STILLS)[pose]
    return channels.get("headYaw", 0.0), channels.get("headPitch", 0.0)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def passes(metrics: dict[str, Any]) -> dict[str, bool | None]:
    """Metric -> met its target (None: not measured or not judged on this portrait)."""
    verdict: dict[str, bool | None] = {}
    for key, (op, target) in TARGETS.items():
        value = metrics.get(key)
        if key == "mouth_saturation_ratio" and not metrics.get("mouth_saturation_judged"):
            verdict[key] = None
        elif value is None:
            verdict[key] = False if key in ("fold_score", "triangle_flips") else None
        else:
            verdict[key] = value <= target if op == "<=" else value >= target
    if metrics.get("posed_traced", 4) < len(POSED):
        verdict["fold_score"] = False  # a pose where MediaPipe finds no face at all
    return verdict


# ---- contact sheets --------------------------------------------------------------------


def _tile(frame: np.ndarray | None, text: str) -> np.ndarray:
    if frame is None:
        tile = np.full((TILE, TILE, 3), 40, np.uint8)
    else:
        h, w = frame.shape[:2]
        scale = TILE / max(h, w)
        small = cv2.resize(
            frame,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
        tile = np.full((TILE, TILE, 3), 24, np.uint8)
        y, x = (TILE - small.shape[0]) // 2, (TILE - small.shape[1]) // 2
        tile[y : y + small.shape[0], x : x + small.shape[1]] = small
    cv2.rectangle(tile, (0, 0), (TILE, 16), (0, 0, 0), -1)
    cv2.putText(tile, text, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def write_sheet(
    path: Path, source: np.ndarray, rows: dict[str, dict[str, np.ndarray | None] | str]
) -> None:
    """rows: renderer label -> {column: frame} or the refusal text; one PNG row each."""
    lines = []
    for label, cells in rows.items():
        tiles = [_tile(source, f"{label}: input")]
        for column in SHEET_COLUMNS:
            frame = None if isinstance(cells, str) else cells.get(column)
            tiles.append(
                _tile(frame, cells[:40] if isinstance(cells, str) else f"{label}: {column}")
            )
        lines.append(np.concatenate(tiles, axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet = np.ascontiguousarray(np.concatenate(lines)[:, :, ::-1])
    cv2.imwrite(str(path), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])  # committed: keep them small


# ---- the run ---------------------------------------------------------------------------


def _write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())


def silent_frames(audio: np.ndarray, max_frames: int = 40) -> list[int]:
    """pts of frames whose audio from 0.5 s before to 0.3 s after is silent, evenly picked.

    audio: float32 (S,) at RATE. Silent: RMS SILENT_DB below the 95th percentile
    of the 20 ms RMS (the speech's loud level).
    """
    hop = RATE // 50
    rms = np.sqrt(
        np.mean(audio[: len(audio) // hop * hop].reshape(-1, hop).astype(np.float64) ** 2, 1)
    )
    loud = float(np.percentile(rms, 95))
    frames = int(len(audio) / RATE * FPS)
    silent = []
    for pts in range(frames):
        t = pts / FPS
        window = rms[max(0, int((t - 0.5) * 50)) : int((t + 0.3) * 50) + 1]
        if window.size and float(np.sqrt(np.mean(window**2))) < loud * 10 ** (SILENT_DB / 20):
            silent.append(pts)
    if len(silent) > max_frames:
        silent = [silent[i] for i in np.linspace(0, len(silent) - 1, max_frames).astype(int)]
    return silent


def _speech(tmp: Path, quick: bool) -> dict[str, Any]:
    """Speech padded with 1 s of silence before and 1.2 s after, at RATE, as a wav in tmp."""
    from benchmarks._common import speech_file
    from engines.audio.decoding import read_audio

    label, path = speech_file(tmp)
    audio = read_audio(path, RATE)[: (4 if quick else 8) * RATE]
    padded = np.concatenate([np.zeros(RATE), audio, np.zeros(int(1.2 * RATE))]).astype(np.float32)
    wav = tmp / "speech_padded.wav"
    _write_wav(wav, padded)
    pts = silent_frames(padded)
    return {"source": label, "seconds": round(len(padded) / RATE, 2), "wav": str(wav), "pts": pts}


def _time_interleaved(workers: Sequence[_Worker], rounds: int, frames: int) -> dict[str, Any]:
    """Single-frame render times per worker, one worker at a time, alternating order."""
    seconds: dict[str, list[float]] = {w.label: [] for w in workers}
    for r in range(rounds):
        for worker in workers if r % 2 == 0 else workers[::-1]:
            worker.send(op="time", frames=frames, offset=r * frames)
            seconds[worker.label] += worker.receive()["seconds"]
    return {
        label: {
            "render_ms": round(1000 * float(np.median(s)), 2),
            "render_ms_p95": round(1000 * float(np.percentile(s, 95)), 2),
            "n": len(s),
        }
        for label, s in seconds.items()
    }


MONOCHROME = ("grayscale", "sepia", "cameraman")


def _portrait(
    portrait: Any, workers: Sequence[_Worker], speech: dict[str, Any], tmp: Path, quick: bool
) -> dict[str, Any]:
    """Render one portrait with every worker, judge the frames, write its contact sheet."""
    name = portrait.name
    png = tmp / f"{name}.png"
    cv2.imwrite(str(png), np.ascontiguousarray(portrait.rgb[:, :, ::-1]))
    row: dict[str, Any] = {
        "portrait": name,
        "note": portrait.note,
        "expect_refusal": portrait.expect_refusal,
    }
    stills_path = str(tmp / f"{name}-{{label}}-stills.npz")
    prepared = _ask_all(workers, op="prepare", png=str(png), out=stills_path)
    accepted = [
        w
        for w, reply in zip(workers, prepared, strict=True)
        if reply.get("refused") is None and "error" not in reply
    ]
    for worker, reply in zip(workers, prepared, strict=True):
        row[worker.label] = {
            "engines": reply.get("engines"),
            "refused": reply.get("refused"),
            "error": reply.get("error"),
            "message": reply.get("message"),
        }
    speech_path = str(tmp / f"{name}-{{label}}-speech.npz")
    for worker, reply in zip(
        accepted,
        _ask_all(accepted, op="speech", wav=speech["wav"], pts=speech["pts"], out=speech_path),
        strict=True,
    ):
        row[worker.label]["speech"] = reply
    timing = _time_interleaved(accepted, rounds=2 if quick else 4, frames=5)
    sheet: dict[str, dict[str, np.ndarray | None] | str] = {}
    for worker in workers:
        record = row[worker.label]
        if worker not in accepted:
            sheet[worker.label] = f"{worker.label}: {record['refused'] or record['error']}"
            continue
        with np.load(stills_path.format(label=worker.label)) as data:
            stills = dict(zip([label for label, _ in STILLS], data["stills"], strict=True))
            image, avatar_lm = data["image"], data["landmarks"]
        with np.load(speech_path.format(label=worker.label)) as data:
            silent = data["frames"]
        metrics, most_closed = judge(stills, image, avatar_lm, silent, name in MONOCHROME)
        metrics.update(timing[worker.label])
        record.update(metrics=metrics, passes=passes(metrics))
        sheet[worker.label] = {
            **stills,
            "closed lips": most_closed if most_closed is not None else stills["mouthClose"],
        }
        for path in (stills_path, speech_path):
            Path(path.format(label=worker.label)).unlink(missing_ok=True)
    if accepted:
        write_sheet(SHEETS_DIR / f"{name}.png", portrait.rgb, sheet)
    return row


def streak_calibration() -> dict[str, float]:
    """The streak detector on known inputs: real images ~0, a BORDER_REPLICATE crop high."""
    import skimage.data

    from engines.paths import default_portrait_path

    base = cv2.imread(str(default_portrait_path()))[:, :, ::-1]
    h, w = base.shape[:2]
    square = np.ascontiguousarray(base[h // 5 : h // 5 + w])
    padded = cv2.copyMakeBorder(square[:, : w - 120], 80, 0, 120, 0, cv2.BORDER_REPLICATE)
    return {
        "la_velata (square crop)": round(streak_fraction(cv2.resize(square, (512, 512))), 4),
        "astronaut": round(streak_fraction(skimage.data.astronaut()), 4),
        "chelsea": round(streak_fraction(skimage.data.chelsea()), 4),
        "replicated 120 px left + 80 px top": round(
            streak_fraction(cv2.resize(padded, (512, 512))), 4
        ),
        "replicated area (truth)": round(1 - (w - 120) * (w - 80) / (w * w), 4),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    # benchmarks.* only here: a worker runs this file with another checkout's benchmarks/.
    from benchmarks._common import finish_machine_info, machine_info
    from benchmarks.realism_portraits import realism_portraits

    info = machine_info()
    roots = ([("old", Path(args.before).resolve())] if args.before else []) + [("new", ROOT)]
    with tempfile.TemporaryDirectory(prefix="facecast-realism-") as tmp_name:
        tmp = Path(tmp_name)
        speech = _speech(tmp, args.quick)
        portraits = realism_portraits()
        if args.portraits:
            portraits = [p for p in portraits if p.name in args.portraits.split(",")]
        workers = [_Worker(label, root, tmp) for label, root in roots]
        try:
            rows = []
            for portrait in portraits:
                began = time.perf_counter()
                rows.append(_portrait(portrait, workers, speech, tmp, args.quick))
                print(portrait.name, f"{time.perf_counter() - began:.1f} s", flush=True)
        finally:
            for worker in workers:
                worker.close()
    return {
        "machine": finish_machine_info(info),
        "roots": {label: str(root) for label, root in roots},
        "speech": {k: v for k, v in speech.items() if k != "wav"},
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "closed_gap": CLOSED_GAP,
        "streak_calibration": streak_calibration(),
        "results": rows,
    }


def _cell(value: Any, verdict: bool | None) -> str:
    if value is None:
        return "n/a" if verdict is None else "n/a ✗"
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    return text + ("" if verdict is None else " ✓" if verdict else " ✗")


COLUMNS = (
    ("streaks", "streak_fraction"),
    ("lips closed", "lips_closed_fraction"),
    ("closed eye", "closed_eye_ratio"),
    ("mouth sat.", "mouth_saturation_ratio"),
    ("fold score", "fold_score"),
    ("tri flips", "triangle_flips"),
    ("ms/frame", "render_ms"),
    ("face PSNR", "face_psnr_db"),
    ("corners", "corner_change"),
)


def _summary_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for result in data["results"]:
        for label in data["roots"]:
            record = result.get(label, {})
            if "metrics" not in record:
                refused = record.get("refused") or record.get("error")
                ok = "✓" if result["expect_refusal"] and record.get("refused") in (
                    "NotAFaceError", "NoFaceError"
                ) else "✗"  # fmt: skip
                rows.append(
                    [result["portrait"], label, f"refused: {refused} {ok}"] + [""] * len(COLUMNS)
                )
                continue
            m, v = record["metrics"], record["passes"]
            accepted = "✗ (should refuse)" if result["expect_refusal"] else "✓"
            cells = [_cell(m.get(key), v.get(key)) for _, key in COLUMNS]
            cells[4] += f" ({m['posed_traced']}/4 traced)"
            rows.append([result["portrait"], label, accepted, *cells])
    return rows


def _tally(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for label in data["roots"]:
        for header, key in COLUMNS:
            verdicts = [
                r[label]["passes"].get(key) for r in data["results"] if "passes" in r.get(label, {})
            ]
            rows.append(
                [label, header, sum(v is True for v in verdicts), sum(v is False for v in verdicts)]
            )
    return rows


def _detail_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for result in data["results"]:
        for label in data["roots"]:
            m = result.get(label, {}).get("metrics")
            if m is None:
                continue
            folds = " ".join(
                f"{pose}: "
                + (
                    "untraced"
                    if not f["traced"]
                    else f"{f['oval_edges']}/{f['gradient_spike']}/{f['triangle_flips']}"
                    f" ({f.get('raw_flips')}/{f.get('rigid_flips')})"
                )
                for pose, f in m["folds"].items()
            )
            frames = f"{m['lips_judged_frames']} ({m['silent_untraced']} untraced)"
            rows.append(
                [result["portrait"], label, m["neutral_gap"], m["silent_gap_median"]]
                + [m["silent_gap_max"], frames, m["open_eye_ratio"], m["mouth_interior_px"]]
                + [m["streak_fraction_posed_max"], folds]
            )
    return rows


def markdown(data: dict[str, Any]) -> str:
    from benchmarks._common import machine_markdown, markdown_table

    targets = ", ".join(f"{k} {v}" for k, v in data["targets"].items())
    speech = data["speech"]
    return "\n".join(
        [
            "# Realism of the rendered face, judged by MediaPipe on the output frames",
            "",
            machine_markdown(data["machine"]),
            "",
            f"Renderers: {', '.join(f'{k} = `{v}`' for k, v in data['roots'].items())}. "
            f"Speech: {speech['source']}, {speech['seconds']} s with 1 s of silence before and "
            f"1.2 s after; {len(speech['pts'])} silent frames judged. Targets: {targets}. "
            "✓/✗ = target met / missed; mouth saturation is judged on the grayscale, sepia and "
            "cameraman portraits only; the fold score fails when a pose is not traced at all.",
            "",
            "Metrics: **streaks** fraction of the neutral frame in replicated-edge streaks "
            "(border-touching runs >= 12 px constant along the axis perpendicular to the "
            "border, varying across it). **lips closed** fraction of silent speech frames "
            f"plus the neutral frame with MediaPipe inner-lip gap < {data['closed_gap']} of face "
            "height (untraced = not closed). **closed eye** luminance inside the neutral eye "
            "contour of a full blink / the skin ring around it (brows excluded), worse eye. "
            "**mouth sat.** HSV saturation inside the inner lips at jawOpen 0.7 / the cheeks' "
            "(floor 13/255). **fold score** at yaw +-0.35 and pitch +-0.25, worst pose: max of "
            "Canny edge density along the traced face oval and the 99.5th-percentile gradient "
            "inside the face, each posed / neutral. **tri flips** worst fraction of Delaunay "
            "triangles of the neutral mesh that the posed traced mesh turns over and a rigid 3D "
            "turn of the traced neutral mesh by the same angles does not (a real turn hides "
            "the far side of nose and cheek, reversing 4-23% of them: those are not tears; "
            "until 2026-12-02 they were counted). **lips closed** reads the gap across the lip "
            "line (corner to corner); until 2026-12-02 it was the 2D distance, which counts "
            "shut lips of a turned head, side by side in projection, as open. **ms/frame** "
            "median single-frame render on 1 thread, renderers interleaved. **face PSNR** "
            "neutral frame vs the encoder's crop inside the face oval; above the nose's base "
            "when the source's lips are parted (neutral closes them, moving jaw and chin). "
            "**corners** mean |change| "
            "of the worst 32x32 corner between neutral and yaw 0.2 (0-255 levels).",
            "",
            markdown_table(
                ["portrait", "renderer", "accepted", *(h for h, _ in COLUMNS)], _summary_rows(data)
            ),
            "",
            "## Targets met / missed per renderer",
            "",
            markdown_table(["renderer", "metric", "met", "missed"], _tally(data)),
            "",
            "## Details",
            "",
            "Poses: oval edges / gradient spike / triangle flips (all flips / the rigid turn's).",
            "",
            markdown_table(
                [
                    "portrait",
                    "renderer",
                    "neutral gap",
                    "silent gap p50",
                    "silent gap max",
                    "lip frames",
                    "open-eye ratio",
                    "mouth px",
                    "streaks posed max",
                    "poses",
                ],
                _detail_rows(data),
            ),
            "",
            "## Streak detector calibration",
            "",
            markdown_table(["image", "streak fraction"], list(data["streak_calibration"].items())),
            "",
            "Contact sheets: benchmarks/results/realism/<portrait>.png (rows: renderers; "
            "columns: input, " + ", ".join(SHEET_COLUMNS) + ").",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="an older checkout to render beside this one")
    parser.add_argument("--quick", action="store_true", help="4 s of speech, fewer timing rounds")
    parser.add_argument("--portraits", help="comma-separated portrait names (default: all)")
    from benchmarks._common import run_and_report

    run_and_report(NAME, parser, run, markdown, argv)


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker_loop(sys.stdin, sys.stdout)
    else:
        main()
