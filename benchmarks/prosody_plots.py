"""Plots and the utterance contact sheet of benchmarks/bench_prosody.py (matplotlib, Agg)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import prosody_judge as pj  # noqa: E402
from engines.audio.ingest import FEATURE_RATE  # noqa: E402
from engines.motion import space as ms  # noqa: E402
from engines.training.phone_align import openness_curve  # noqa: E402

if TYPE_CHECKING:
    from benchmarks.bench_prosody import JudgedClip

__all__ = ["all_plots", "utterance_sheet"]

FPS = 25
_PITCH, _YAW = ms.index_of("headPitch"), ms.index_of("headYaw")
_BROW = ms.index_of("browInnerUp")
_COLOURS = {
    "learned": "tab:blue",
    "learned, whole window": "tab:cyan",
    "baseline": "tab:orange",
    "loudness follower": "tab:gray",
}
TILE = 160
LABEL_H = 30
COLUMNS = 6


def _save(fig: plt.Figure, out_dir: Path, name: str) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=100)
    plt.close(fig)
    return name


def _value(x: Any) -> float:
    return math.nan if x is None else float(x)


def _openness_plot(out_dir: Path, data: dict[str, Any]) -> str:
    sources = data["sources"]
    names = list(sources)
    bars = {
        "held-out, lag 0": [_value(s["openness"]["r_lag0_mean"]) for s in sources.values()],
        "held-out, best lag": [_value(s["openness"]["r_best_mean"]) for s in sources.values()],
        "radio, lag 0": [
            _value(s.get("radio", {}).get("openness", {}).get("r_lag0")) for s in sources.values()
        ],
        "radio frames, lag 0": [
            _value(data["rendered"][n]["openness"][0]["r_lag0"])
            if n in data["rendered"] and data["radio"]
            else math.nan
            for n in names
        ],
    }
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(bars)
    for k, (label, values) in enumerate(bars.items()):
        ax.bar(np.arange(len(names)) + (k - 1.5) * width, values, width, label=label)
    ref = data["loudness_reference"]
    ax.axhline(
        _value(ref["held_out"]["r_lag0_mean"]),
        color="k",
        ls="--",
        lw=1,
        label="loudness envelope, held-out",
    )
    if ref["radio"]:
        ax.axhline(
            _value(ref["radio"]["r_lag0"]),
            color="k",
            ls=":",
            lw=1.5,
            label="loudness envelope, radio",
        )
    ax.axhline(0.6, color="green", lw=1, label="target 0.6 (real speech)")
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("Pearson r with the phones' openness")
    ax.set_ylim(0, 1)
    ax.set_title("Lip opening vs vowel openness (judge: pocketsphinx phones)")
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    return _save(fig, out_dir, "openness.png")


def _lag_plot(out_dir: Path, data: dict[str, Any]) -> str:
    sources = data["sources"]
    lags = np.arange(-4, 5)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(sources)
    for k, (name, s) in enumerate(sources.items()):
        got = [r["lag"] for r in s["openness"]["per_clip"]]
        counts = [got.count(int(lag)) for lag in lags]
        ax.bar(
            lags + (k - (len(sources) - 1) / 2) * width,
            counts,
            width,
            label=name,
            color=_COLOURS.get(name),
        )
        if "radio" in s:
            ax.plot(
                s["radio"]["openness"]["lag"] + (k - (len(sources) - 1) / 2) * width,
                -0.6,
                marker="^",
                color=_COLOURS.get(name),
                ms=8,
            )
    ax.axvline(0, color="green", lw=1)
    ax.set_xticks(lags)
    ax.set_xlabel("best lag (frames of 40 ms; positive = mouth late); triangles: radio")
    ax.set_ylabel("held-out clips")
    ax.set_title("Best lag of lip gap against openness")
    ax.legend(fontsize=8)
    return _save(fig, out_dir, "lags.png")


def _head_plot(
    out_dir: Path, data: dict[str, Any], traces: dict[str, Any], clips: Sequence[JudgedClip]
) -> str:
    names = list(traces)
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 2.2 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        head = data["sources"][name]["head"]
        for col, (axis, index) in enumerate((("pitch", _PITCH), ("yaw", _YAW))):
            ax = axes[row, col]
            shown = list(zip(clips, traces[name]["motions"], strict=True))[:3]
            for clip, motion in shown:
                t = np.arange(len(motion)) / FPS
                ax.plot(t, np.degrees(motion[:, index]), lw=1.2, label=clip.name)
            ax.axvspan(0, max(c.lead_s for c, _ in shown) + 0.5, color="0.9", zorder=0)
            r = head[axis]["abs_r_mean"]
            ax.set_title(
                f"{name}: head {axis}, seed 0 (mean |r| between clips "
                f"{'-' if r is None else f'{r:.2f}'})",
                fontsize=9,
            )
            ax.set_ylabel("degrees")
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("s (grey: leading noise and first 0.5 s, not correlated)")
    return _save(fig, out_dir, "head_traces.png")


def _spread_plot(out_dir: Path, data: dict[str, Any]) -> str:
    sources = data["sources"]
    names = list(sources)
    fig, ax = plt.subplots(figsize=(9, 4))
    groups = [("speech", "spread_speech_deg"), ("silence", "spread_silence_deg")]
    width = 0.8 / 9
    for a, axis in enumerate(("yaw", "pitch", "roll")):
        for g, (label, key) in enumerate(groups):
            values = [_value(s["head"][key][axis]) for s in sources.values()]
            ax.bar(
                np.arange(len(names)) + (3 * a + g - 4) * width,
                values,
                width,
                color=f"C{a}",
                alpha=1.0 if g == 0 else 0.45,
                label=f"{axis}, {label}",
            )
        values = [_value(s["listening_spread_deg"][axis]) for s in sources.values()]
        ax.bar(
            np.arange(len(names)) + (3 * a + 2 - 4) * width,
            values,
            width,
            color=f"C{a}",
            alpha=0.2,
            hatch="//",
            label=f"{axis}, 20 s listening",
        )
    ax.axhspan(2, 5, color="green", alpha=0.08, label="target in speech: 2-5 deg")
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("std over frames (degrees)")
    ax.set_title("Head rotation spread: speaking vs silent")
    ax.legend(fontsize=7, ncol=3)
    return _save(fig, out_dir, "rotation_spread.png")


def _eta_plot(out_dir: Path, traces: dict[str, Any], clips: Sequence[JudgedClip]) -> str:
    names = list(traces)
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5.5), squeeze=False)
    rng = np.random.default_rng(0)
    chance = [pj.random_times(c.intervals, 20 * max(len(c.accents), 1), rng) for c in clips]
    accents = [c.accents for c in clips]
    for col, name in enumerate(names):
        motions = traces[name]["motions"]
        speed = [np.abs(np.diff(np.degrees(m[:, _PITCH]))) * FPS for m in motions]
        brow = [m[:, _BROW] for m in motions]
        for row, (series, offset, label) in enumerate(
            ((speed, 0.5, "|head pitch velocity| (deg/s)"), (brow, 0.0, "browInnerUp"))
        ):
            ax = axes[row, col]
            lags, mean, n = pj.event_triggered_average(series, accents, FPS, 0.5, 1.0, offset)
            lags_c, mean_c, _ = pj.event_triggered_average(series, chance, FPS, 0.5, 1.0, offset)
            ax.plot(lags, mean, color=_COLOURS.get(name), label=f"accents (n={n})")
            ax.plot(lags_c, mean_c, color="k", ls="--", lw=1, label="random speech times")
            ax.axvspan(0, 0.25, color="green", alpha=0.1)
            ax.axvline(0, color="k", lw=0.5)
            ax.set_title(f"{name}", fontsize=9)
            ax.set_ylabel(label, fontsize=8)
            ax.set_xlabel("s after accent onset", fontsize=8)
            if col == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Accent-triggered averages (green: the 250 ms where a peak counts)", fontsize=10)
    return _save(fig, out_dir, "accent_triggered.png")


def _ratio_plot(out_dir: Path, data: dict[str, Any]) -> str:
    sources = data["sources"]
    names = list(sources)
    fig, ax = plt.subplots(figsize=(9, 4))
    series = [
        ("nods, held-out", lambda s: s["events"]["nods"]),
        ("nods, radio", lambda s: s.get("radio", {}).get("events", {}).get("nods")),
        ("brows, held-out", lambda s: s["events"]["brows"]),
        ("brows, radio", lambda s: s.get("radio", {}).get("events", {}).get("brows")),
    ]
    width = 0.8 / len(series)
    for k, (label, get) in enumerate(series):
        stats = [get(s) or {} for s in sources.values()]
        x = np.arange(len(names)) + (k - 1.5) * width
        ax.bar(x, [_value(st.get("ratio")) for st in stats], width, label=label, color=f"C{k}")
        ax.plot(x, [_value(st.get("max_ratio")) for st in stats], "_", color="k", ms=10)
    ax.axhline(2.0, color="green", lw=1, label="target 2x chance")
    ax.axhline(1.0, color="k", lw=0.5, ls="--")
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("peak rate after accents / at random times")
    ax.set_title("Nods and brow raises following accents (black ticks: 1 / chance, the ceiling)")
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "accent_ratios.png")


def _blink_plot(out_dir: Path, data: dict[str, Any], clips: Sequence[JudgedClip]) -> str:
    names = list(data["sources"])
    rows = min(8, len(clips))
    fig, axes = plt.subplots(
        1, len(names), figsize=(3.3 * len(names), 0.4 * rows + 1.8), squeeze=False
    )
    for col, name in enumerate(names):
        ax = axes[0, col]
        blinks = data["sources"][name]["blinks"]
        for r in range(rows):
            for a, b in clips[r].intervals:
                ax.axvspan(
                    a,
                    b,
                    ymin=(rows - r - 0.9) / rows,
                    ymax=(rows - r - 0.1) / rows,
                    color="0.88",
                    lw=0,
                )
            onsets = np.asarray(blinks["onsets"][r]) / FPS
            ax.vlines(onsets, rows - r - 0.9, rows - r - 0.1, color=_COLOURS.get(name), lw=2)
        ax.set_ylim(0, rows)
        ax.set_xlim(0, max(len(c.samples) / FEATURE_RATE for c in clips[:rows]))
        ax.set_yticks(np.arange(rows) + 0.5, [c.name for c in clips[:rows]][::-1], fontsize=7)
        ax.set_xlabel("s (grey: speech)", fontsize=8)
        share = blinks["same_seed_coincidence"]
        ax.set_title(
            f"{name}\n{blinks['speech_per_min']:.0f}/min speech, "
            f"{blinks['silence_per_min']:.0f}/min silence, same-frame share "
            f"{'-' if share is None else f'{share:.2f}'}",
            fontsize=8,
        )
    fig.suptitle("Blink onsets, seed 0", fontsize=10)
    return _save(fig, out_dir, "blinks.png")


def _rendered_plot(
    out_dir: Path, data: dict[str, Any], clips: Sequence[JudgedClip], radio: JudgedClip | None
) -> str | None:
    rendered = data["rendered"]
    if not rendered:
        return None
    fig, axes = plt.subplots(len(rendered), 2, figsize=(12, 2.8 * len(rendered)), squeeze=False)
    for row, (name, got) in enumerate(rendered.items()):
        ax = axes[row, 0]
        for clip_name, y in zip(got["clips"], got["_nose_y"], strict=True):
            y = np.asarray(y)
            ax.plot(np.arange(len(y)) / FPS, y - np.nanmean(y), lw=1.2, label=clip_name)
        r = got["nose_y_abs_r_mean"]
        ax.set_title(
            f"{name}, rendered: nose-tip y (px, minus mean); mean |r| between clips "
            f"{'-' if r is None else f'{r:.2f}'}",
            fontsize=9,
        )
        leads = [c.lead_s for c in (*clips, *([radio] if radio else [])) if c.name in got["clips"]]
        ax.axvspan(0, max(leads, default=0.0) + 0.5, color="0.9", zorder=0)
        ax.legend(fontsize=7)
        ax.set_xlabel("s")
        ax = axes[row, 1]
        gap = np.asarray(got["_gap"][0])
        clip = radio if (radio is not None and got["clips"][0] == radio.name) else None
        if clip is not None:
            curve = openness_curve(clip.phones, FPS, len(gap))
            t = np.arange(len(gap)) / FPS
            ax.plot(t, curve * np.nanmax(gap), color="0.6", lw=1, label="openness (scaled)")
            ax.plot(t, gap, color=_COLOURS.get(name), lw=1.2, label="inner-lip gap (frames)")
            first = got["openness"][0]
            ax.set_title(
                f"{name}, radio from frames: r lag 0 = {first['r_lag0']:.2f}, best "
                f"{first['r_best']:.2f} at lag {first['lag']:+d}",
                fontsize=9,
            )
            ax.set_xlim(clip.lead_s, clip.lead_s + clip.speech_s)
            ax.legend(fontsize=7)
            ax.set_xlabel("s")
    return _save(fig, out_dir, "rendered.png")


def all_plots(
    out_dir: Path,
    data: dict[str, Any],
    traces: dict[str, Any],
    clips: Sequence[JudgedClip],
    radio: JudgedClip | None,
) -> list[str]:
    """Write every plot; returns their file names (relative to out_dir)."""
    written = [
        _openness_plot(out_dir, data),
        _lag_plot(out_dir, data),
        _head_plot(out_dir, data, traces, clips),
        _spread_plot(out_dir, data),
        _eta_plot(out_dir, traces, clips),
        _ratio_plot(out_dir, data),
        _blink_plot(out_dir, data, clips),
        _rendered_plot(out_dir, data, clips, radio),
    ]
    return [w for w in written if w]


def _phone_at(clip: JudgedClip, t: float) -> str:
    for p in clip.phones:
        if p.start_s <= t < p.end_s:
            return p.symbol
    return "-"


def _face_box(frame: np.ndarray) -> tuple[int, int, int]:
    """(top, left, side) of a square around the face oval (the whole frame if none is found)."""
    from engines.face.landmarks import FACE_OVAL, face_mesh

    lm = face_mesh(frame)
    size = frame.shape[0]
    if lm is None:
        return 0, 0, size
    oval = lm[list(FACE_OVAL), :2]
    centre = 0.5 * (oval.min(axis=0) + oval.max(axis=0))
    side = int(min(size, 1.3 * (oval.max(axis=0) - oval.min(axis=0)).max()))
    left, top = (int(np.clip(c - side / 2, 0, size - side)) for c in centre)
    return top, left, side


def utterance_sheet(
    out_dir: Path,
    clip: JudgedClip,
    motion: np.ndarray,
    render: Callable[[np.ndarray], np.ndarray],
    count: int = 12,
) -> str:
    """~12 frames across the clip's speech (cropped to the face, TILE px), the judge's phone under
    each (* when an accent is within a frame) and the time in the original clip."""
    spans = clip.intervals
    lo, hi = spans[0][0], spans[-1][1]
    picks = np.unique(
        np.clip(
            np.round(
                np.linspace(lo, hi, count, endpoint=False) * FPS + 0.5 * (hi - lo) * FPS / count
            ).astype(int),
            0,
            len(motion) - 1,
        )
    )
    frames = render(motion[picks])
    top, left, side = _face_box(frames[0])
    frames = frames[:, top : top + side, left : left + side]
    accents = np.round(clip.accents * FPS).astype(int)
    tiles = []
    for frame, i in zip(frames, picks, strict=True):
        tile = cv2.resize(frame, (TILE, TILE), interpolation=cv2.INTER_AREA)
        label = np.full((LABEL_H, TILE, 3), 255, np.uint8)
        accent = " *" if np.any(np.abs(accents - i) <= 1) else ""
        cv2.putText(
            label,
            _phone_at(clip, i / FPS) + accent,
            (6, 21),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.65,
            (0, 0, 0),
            2,
            cv2.LINE_AA,
        )
        cv2.putText(
            label,
            f"{i / FPS - clip.lead_s:.2f}s",
            (96, 20),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (90, 90, 90),
            1,
            cv2.LINE_AA,
        )
        tiles.append(np.vstack([tile, label]))
    while len(tiles) % COLUMNS:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[k : k + COLUMNS]) for k in range(0, len(tiles), COLUMNS)]
    sheet = np.vstack(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_dir / "utterance_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return "utterance_sheet.png"
