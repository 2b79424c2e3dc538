"""Visual prosody and lip timing, judged independently of the motion model (issue 14).

Usage: python -m benchmarks.bench_prosody [--quick] [--checkpoint PATH] [--sources NAME ...]
       [--sentences N] [--out-dir DIR]

Does speech drive the head, brows and blinks, and are the lips on time? For
each motion source (the learned sampler as live and offline rendering run it,
the learned sampler hearing whole windows as offline rendering did before, the
procedural baseline, and a loudness follower defined here as a reference for
the lip measures) on the held-out clips of bench_motion (flite slt, espeak-ng voices kept out of
training) and the real radio recording. Every clip is padded with 1.5 s of
-60 dBFS noise before and after, so there is silence to judge.

The judge (benchmarks/prosody_judge.py) uses pocketsphinx phones and its own
energy and pitch tracker, never the model's features or training targets:
accents are the most prominent third of the vowel nuclei (z(peak dB) +
z(peak F0 in semitones)), >= 0.3 s apart, at the nucleus onset. Measured from
the motion vectors:
1. openness: r of the lip aperture (the gap, 0 when pressed shut: what the
   rendered mouth shows) against the phones' vowel-openness curve
   (phone_align.openness_curve, as lip_sync_score uses) at lag 0 and the best
   lag in -4..+4 frames (positive = mouth late), beside the audio's own
   loudness envelope against the same curve;
2. head: |r| between headPitch (and headYaw) traces of different clips with
   the same seed, from 0.5 s into the speech; chance = the same with clip B on
   another seed; rotation spread (std, degrees) in speech and in silence;
3. nods: share of accents followed within 250 ms by a head-pitch speed peak
   (a local maximum of |velocity| smoothed over 3 frames, in the top decile of
   the clip's speech), over the same share at random speech times;
4. brows: the same with browInnerUp peaks;
5. blinks per minute in speech and in silence over one stream of all the held-out
   clips in turn (a few minutes), in 4 x 20 s listening clips, and the
   share of one clip's blink onsets within +-1 frame of another's (same seed);
6. lips: bilabial closure (and its rate at random speech windows), open
   vowels, lips closed in silence.
Then from rendered frames (MediaPipe on FaceRenderer output, built-in
portrait): openness r and lag from the inner-lip gap, nose-tip y correlation
between clips, nods from nose-tip y velocity. Plots and an utterance contact
sheet go to OUT_DIR/prosody/.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import prosody_judge as pj
from benchmarks._common import (
    RESULTS_DIR,
    finish_machine_info,
    machine_info,
    run_and_report,
)
from benchmarks.bench_motion import FPS, RATE, Clip, _clips, _motion, _radio
from engines.motion import MotionConfig
from engines.motion import space as ms
from engines.paths import DEFAULT_CHECKPOINT
from engines.training.metrics import blink_onsets, lip_aperture, lip_gap, lip_sync_score
from engines.training.phone_align import PhoneAligner, openness_curve
from engines.training.visemes import Phone

__all__ = ["main", "JudgedClip", "loudness_follower"]

logger = logging.getLogger(__name__)

NAME = "bench_prosody"
PAD_S = 1.5  # noise before and after every clip (before: at least this)
# Extra lead-in noise per clip, drawn from its name: real clips do not all start
# speaking on the same frame, and with a shared onset a seeded sampler's first posture
# is the same in every clip whatever the audio (it still is when the motion ignores
# the audio: a canned loop correlates at any onset).
LEAD_JITTER_S = 1.0
NOISE_RMS = 10 ** (-60 / 20)  # -60 dBFS
LISTEN_S = 20.0
# Seeds of the listening clip: one 20 s clip holds about 5 blinks, too few for a rate.
LISTEN_SEEDS = 4
SKIP_S = 0.5  # head correlations start this far into the speech
MAX_LAG = 4
WINDOW_S = 0.25  # peaks must follow an accent within this
# A nod or a brow raise is a peak of the (speed) trace in its top decile during speech,
# the speed first smoothed over 3 frames: at the 75th percentile of raw frame-to-frame
# speed, peaks are so dense that a random 250 ms window holds one 60% of the time and
# no source could reach twice chance.
PEAK_PERCENTILE = 90.0
SPEED_SMOOTH_FRAMES = 3
CLOSED_GAP = 0.05  # lip gap at or below: closed (bilabial_closure_rate's threshold)
FOLLOWER_JAW = 0.6  # the loudness follower's widest jawOpen
CHANCE_CLIPS = 8  # clips rendered on a second seed for the chance |r|
ETA_WINDOW = (0.5, 1.0)  # s before and after accents in the event-triggered plots
SOURCE_NAMES = ("learned", "learned, whole window", "baseline", "loudness follower")
_JAW = ms.index_of("jawOpen")
_PITCH, _YAW, _ROLL = (ms.index_of(n) for n in ("headPitch", "headYaw", "headRoll"))
_BROW = ms.index_of("browInnerUp")

MotionFn = Callable[..., np.ndarray]  # (samples (S,), seed=int) -> motion (T, D)


@dataclass(frozen=True)
class JudgedClip:
    """A clip padded with noise, with the judge's phones (shifted) and accents."""

    name: str
    samples: np.ndarray  # float32 (S,) at RATE, padded
    phones: tuple[Phone, ...]  # the judge's, on the padded clock
    accents: np.ndarray  # accent times (s), padded clock
    speech_s: float  # length of the original clip
    lead_s: float = PAD_S  # noise before it

    @property
    def intervals(self) -> list[tuple[float, float]]:
        return pj.speech_intervals(self.phones)

    def span(self, num_frames: int) -> slice:
        """Frames of the original clip (time i / FPS inside it)."""
        lo = math.ceil(self.lead_s * FPS)
        return slice(lo, min(math.ceil((self.lead_s + self.speech_s) * FPS), num_frames))

    def speech(self, num_frames: int) -> np.ndarray:
        return pj.speech_mask(self.phones, num_frames, FPS)


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, NOISE_RMS, int(round(seconds * RATE)))).astype(np.float32)


def judge_clip(clip: Clip) -> JudgedClip:
    """Pad clip with noise before (PAD_S plus a jitter drawn from its name) and after."""
    jitter = np.random.default_rng(zlib.crc32(clip.name.encode())).uniform(0.0, LEAD_JITTER_S)
    lead = round((PAD_S + float(jitter)) * FPS) / FPS  # whole frames
    samples = np.concatenate([_noise(lead, 0), clip.samples, _noise(PAD_S, 1)])
    phones = tuple(Phone(p.symbol, p.start_s + lead, p.end_s + lead) for p in clip.phones)
    accents = pj.find_accents(samples, RATE, phones)
    return JudgedClip(clip.name, samples, phones, accents, len(clip.samples) / RATE, lead)


def loudness_follower(samples: np.ndarray, seed: int = 0) -> np.ndarray:
    """Reference source: jawOpen = the normalised loudness envelope (zero lag); all else neutral."""
    del seed  # deterministic
    num_frames = int(round(len(samples) * FPS / RATE))
    motion = ms.neutral_motion(num_frames)
    motion[:, _JAW] = FOLLOWER_JAW * pj.loudness_envelope(samples, RATE, FPS, num_frames)
    return motion


def _sources(names: Sequence[str], checkpoint: Path | None) -> dict[str, MotionFn]:
    configs = {
        "learned": MotionConfig(checkpoint=checkpoint),
        "learned, whole window": MotionConfig(checkpoint=checkpoint, heard_frames=64),
        "baseline": MotionConfig(kind="baseline"),
    }
    fns: dict[str, MotionFn] = {n: partial(_motion, c) for n, c in configs.items()}
    fns["loudness follower"] = loudness_follower
    return {n: fns[n] for n in names}


# --- measures from motion vectors ------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _openness(clip: JudgedClip, trace: np.ndarray) -> dict[str, float]:
    """r at lag 0, best r and lag of trace (T,) against the openness curve, on the clip's span."""
    span = clip.span(len(trace))
    curve = openness_curve(clip.phones, FPS, len(trace))[span]
    r0, best, lag = pj.best_lag(curve, trace[span], MAX_LAG)
    return {"r_lag0": r0, "r_best": best, "lag": lag}


def _openness_summary(rows: Sequence[dict[str, float]]) -> dict[str, Any]:
    return {
        "r_lag0_mean": _mean([r["r_lag0"] for r in rows]),
        "r_best_mean": _mean([r["r_best"] for r in rows]),
        "lag_median": float(np.median([r["lag"] for r in rows])) if rows else None,
        "per_clip": list(rows),
    }


def _bilabial_chance(clip: JudgedClip, gap: np.ndarray, rng: np.random.Generator) -> list[bool]:
    """Closure at random speech windows as long as each bilabial (+-20 ms slack), 20 draws each."""
    out = []
    for p in clip.phones:
        if p.symbol not in ("P", "B", "M") or p.end_s - p.start_s < 0.04 - 1e-9:
            continue
        for start in pj.random_times(clip.intervals, 20, rng):
            lo = max(math.ceil((start - 0.02) * FPS - 1e-9), 0)
            hi = min(math.floor((start + p.end_s - p.start_s + 0.02) * FPS + 1e-9), len(gap) - 1)
            lo = min(lo, hi)
            out.append(bool(gap[lo : hi + 1].min() <= CLOSED_GAP))
    return out


def _lips(clips: Sequence[JudgedClip], motions: Sequence[np.ndarray]) -> dict[str, Any]:
    scores = [lip_sync_score(c.phones, m, FPS) for c, m in zip(clips, motions, strict=True)]
    rng = np.random.default_rng(0)
    chance: list[bool] = []
    silent_closed = silent = 0
    for clip, motion in zip(clips, motions, strict=True):
        gap = lip_gap(motion)
        chance += _bilabial_chance(clip, gap, rng)
        quiet = ~clip.speech(len(motion))
        silent += int(quiet.sum())
        silent_closed += int((gap[quiet] <= CLOSED_GAP).sum())
    bilabials, vowels = sum(s.bilabials for s in scores), sum(s.open_vowels for s in scores)
    return {
        "bilabials": bilabials,
        "bilabial_closure_rate": sum(s.bilabials_closed for s in scores) / max(bilabials, 1),
        "bilabial_chance_rate": float(np.mean(chance)) if chance else None,
        "open_vowels": vowels,
        "open_vowel_rate": sum(s.open_vowels_open for s in scores) / max(vowels, 1),
        "silent_closed_share": silent_closed / max(silent, 1),
    }


def _pairwise_abs_r(
    a: Sequence[np.ndarray],
    leads: Sequence[float],
    b: Sequence[np.ndarray] | None = None,
) -> list[float]:
    """|r| of a[i] against a[j] (or b[j] when given), i != j, on the clips' common clock,
    from SKIP_S after the later of the two speech onsets (leads: seconds of noise
    before clip i's speech, for a and b alike)."""
    other = a if b is None else b
    pairs = (
        combinations(range(len(a)), 2)
        if b is None
        else ((i, j) for i in range(len(a)) for j in range(len(other)) if i != j)
    )
    out = []
    for i, j in pairs:
        start = math.ceil((max(leads[i], leads[j]) + SKIP_S) * FPS)
        end = min(len(a[i]), len(other[j]))
        r = pj.pearson(a[i][start:end], other[j][start:end])
        if np.isfinite(r):
            out.append(abs(r))
    return out


def _spread(clips: Sequence[JudgedClip], motions: Sequence[np.ndarray], speaking: bool) -> dict:
    """Mean over clips of the std (degrees) of yaw, pitch, roll in speech (or silence) frames."""
    out = {}
    for axis, index in (("yaw", _YAW), ("pitch", _PITCH), ("roll", _ROLL)):
        stds = []
        for clip, motion in zip(clips, motions, strict=True):
            mask = clip.speech(len(motion)) == speaking
            if mask.sum() >= 3:
                stds.append(float(np.degrees(motion[mask, index]).std()))
        out[axis] = _mean(stds)
    return out


def _head(
    clips: Sequence[JudgedClip], motions: Sequence[np.ndarray], seed1: Sequence[np.ndarray]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for axis, index in (("pitch", _PITCH), ("yaw", _YAW)):
        leads = [c.lead_s for c in clips]
        same = _pairwise_abs_r([m[:, index] for m in motions], leads)
        chance = _pairwise_abs_r(
            [m[:, index] for m in motions[: len(seed1)]], leads, [m[:, index] for m in seed1]
        )
        seeds = [
            pj.pearson(
                a[math.ceil((c.lead_s + SKIP_S) * FPS) :, index],
                b[math.ceil((c.lead_s + SKIP_S) * FPS) :, index],
            )
            for c, a, b in zip(clips, motions, seed1, strict=False)
        ]
        out[axis] = {
            "abs_r_mean": _mean(same),
            "abs_r_max": max(same) if same else None,
            "pairs": len(same),
            "chance_abs_r_mean": _mean(chance),
            "same_clip_other_seed_r_mean": _mean(seeds),
        }
    out["spread_speech_deg"] = _spread(clips, motions, True)
    out["spread_silence_deg"] = _spread(clips, motions, False)
    return out


def _pitch_speed(motion: np.ndarray) -> np.ndarray:
    """|d headPitch / dt| in deg/s: (T - 1,), entry i at time (i + 0.5) / FPS."""
    return np.abs(np.diff(np.degrees(motion[:, _PITCH]))) * FPS


def _peak_times(trace: np.ndarray, speech: np.ndarray, offset: float) -> np.ndarray:
    return (pj.local_peaks(trace, speech[: len(trace)], PEAK_PERCENTILE) + offset) / FPS


def _smoothed_speed(trace: np.ndarray) -> np.ndarray:
    """|d trace / dt| per frame step, over SPEED_SMOOTH_FRAMES (centred): (T - 1,)."""
    speed = np.abs(np.diff(trace)) * FPS
    kernel = np.ones(SPEED_SMOOTH_FRAMES) / SPEED_SMOOTH_FRAMES
    return np.convolve(speed, kernel, mode="same")


def _events(clips: Sequence[JudgedClip], motions: Sequence[np.ndarray]) -> dict[str, Any]:
    """Nods (head-pitch speed peaks) and brow raises (browInnerUp peaks) after accents."""
    accents = [c.accents for c in clips]
    spans = [c.intervals for c in clips]
    speech = [c.speech(len(m)) for c, m in zip(clips, motions, strict=True)]
    pitch = [np.degrees(m[:, _PITCH]) for m in motions]
    nods = [_peak_times(_smoothed_speed(p), s, 0.5) for p, s in zip(pitch, speech, strict=True)]
    brows = [_peak_times(m[:, _BROW], s, 0.0) for m, s in zip(motions, speech, strict=True)]
    return {
        "nods": pj.triggered_ratio(accents, nods, spans, WINDOW_S),
        "brows": pj.triggered_ratio(accents, brows, spans, WINDOW_S),
    }


def conversation(clips: Sequence[JudgedClip]) -> JudgedClip:
    """The clips one after another, each with its own noise before and after: one long
    stream of utterances and 3-4 s listening turns, the judge's phones moved along.

    Blink rates per state need minutes of one stream: in a clip of a few seconds the
    first blink after the stream starts (a refractory period, then the hazard) lands
    in the speech whatever the process, and the short padding holds almost none.
    """
    samples, phones, offset = [], [], 0.0
    for clip in clips:
        samples.append(clip.samples)
        phones += [Phone(p.symbol, p.start_s + offset, p.end_s + offset) for p in clip.phones]
        offset += len(clip.samples) / RATE
    joined = np.concatenate(samples)
    return JudgedClip("conversation", joined, tuple(phones), np.zeros(0), len(joined) / RATE, 0.0)


def _blink_rates(clip: JudgedClip, motion: np.ndarray) -> dict[str, float]:
    """Blinks per minute while the clip's speaker talks and while they do not."""
    speech = clip.speech(len(motion))
    onsets = pj.blink_onset_frames(motion)
    rates = {}
    for key, speaking in (("speech_per_min", True), ("silence_per_min", False)):
        frames = int(np.count_nonzero(speech == speaking))
        rates[key] = 60.0 * FPS * int(np.count_nonzero(speech[onsets] == speaking)) / max(frames, 1)
    return rates


def _blinks(
    clips: Sequence[JudgedClip],
    motions: Sequence[np.ndarray],
    listening: Sequence[np.ndarray],
    talk: tuple[JudgedClip, np.ndarray],
) -> dict[str, Any]:
    onsets = [pj.blink_onset_frames(motion) for motion in motions]
    near = total = 0
    expected = []
    for i, j in ((i, j) for i in range(len(clips)) for j in range(len(clips)) if i != j):
        # From the later speech onset: before it both clips listen to the same noise.
        lo = math.ceil(max(clips[i].lead_s, clips[j].lead_s) * FPS)
        end = min(len(motions[i]), len(motions[j]))
        a, b = (x[(x >= lo) & (x < end)] for x in (onsets[i], onsets[j]))
        n, k = pj.coincidence_share(a, b)
        near, total = near + n, total + k
        expected += [min(1.0, 3 * len(b) / max(end - lo, 1))] * len(a)
    return {
        **_blink_rates(*talk),
        "conversation_s": talk[0].speech_s,
        "listening_per_min": sum(map(blink_onsets, listening)) * 60.0 / (LISTEN_S * len(listening)),
        "same_seed_coincidence": near / total if total else None,
        "chance_coincidence": _mean(expected),
        "onsets": [o.tolist() for o in onsets],
    }


def _evaluate(
    fn: MotionFn, clips: list[JudgedClip], radio: JudgedClip | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results, traces for the plots) of one source."""
    motions = [fn(c.samples, seed=0) for c in clips]
    seed1 = [fn(c.samples, seed=1) for c in clips[:CHANCE_CLIPS]]
    listenings = [fn(_noise(LISTEN_S, 2), seed=seed) for seed in range(LISTEN_SEEDS)]
    listening = listenings[0]
    talk = conversation(clips)
    talk_motion = fn(talk.samples, seed=0)
    everything = clips + ([radio] if radio else [])
    radio_motion = [fn(radio.samples, seed=0)] if radio else []
    every_motion = motions + radio_motion
    result: dict[str, Any] = {
        "openness": _openness_summary(
            [_openness(c, lip_aperture(m)) for c, m in zip(clips, motions, strict=True)]
        ),
        "lips": _lips(clips, motions),
        "head": _head(clips, motions, seed1),
        "events": _events(clips, motions),
        "blinks": _blinks(everything, every_motion, listenings, (talk, talk_motion)),
        "listening_spread_deg": {
            axis: float(np.degrees(listening[:, i]).std())
            for axis, i in (("yaw", _YAW), ("pitch", _PITCH), ("roll", _ROLL))
        },
    }
    if radio:
        result["radio"] = {
            "openness": _openness(radio, lip_aperture(radio_motion[0])),
            "lips": _lips([radio], radio_motion),
            "events": _events([radio], radio_motion),
        }
    return result, {"motions": motions, "radio": radio_motion}


# --- measures from rendered frames -----------------------------------------------------


def _landmark_traces(frames_fn: Callable[[np.ndarray], np.ndarray], motion: np.ndarray) -> dict:
    """Inner-lip gap and nose tip (x, y) per frame from MediaPipe; nan where no face."""
    from engines.face.landmarks import face_mesh, inner_lip_gap

    gap = np.full(len(motion), np.nan)
    nose = np.full((len(motion), 2), np.nan)
    for start in range(0, len(motion), 25):
        for k, frame in enumerate(frames_fn(motion[start : start + 25])):
            lm = face_mesh(frame)
            if lm is not None:
                gap[start + k], nose[start + k] = inner_lip_gap(lm), lm[1, :2]
    return {"gap": gap, "nose": nose}


def _fill(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    if ok.all() or not ok.any():
        return x
    return np.interp(np.arange(len(x)), np.flatnonzero(ok), x[ok])


def _rendered(clips: Sequence[JudgedClip], motions: Sequence[np.ndarray], render: Callable) -> dict:
    traces = [_landmark_traces(render, m) for m in motions]
    openness = [_openness(c, _fill(t["gap"])) for c, t in zip(clips, traces, strict=True)]
    nose_y = [_fill(t["nose"][:, 1]) for t in traces]
    speech = [c.speech(len(y)) for c, y in zip(clips, nose_y, strict=True)]
    nods = [_peak_times(_smoothed_speed(y), s, 0.5) for y, s in zip(nose_y, speech, strict=True)]
    nose_r = _pairwise_abs_r(nose_y, [c.lead_s for c in clips])
    return {
        "clips": [c.name for c in clips],
        "face_found_share": float(np.mean([np.isfinite(t["gap"]).mean() for t in traces])),
        "openness": openness,
        "nose_y_abs_r_mean": _mean(nose_r),
        "nose_y_abs_r_max": max(nose_r) if nose_r else None,
        "nose_y_amplitude_px": _mean([float(np.nanstd(y)) for y in nose_y]),
        "nods": pj.triggered_ratio([c.accents for c in clips], nods, [c.intervals for c in clips]),
        "_nose_y": [y.tolist() for y in nose_y],
        "_gap": [_fill(t["gap"]).tolist() for t in traces],
    }


def _renderer() -> Callable[[np.ndarray], np.ndarray]:
    from engines.face.encoder import FaceEncoder
    from engines.paths import default_portrait_path
    from engines.render.renderer import FaceRenderer

    renderer = FaceRenderer(FaceEncoder().encode(default_portrait_path().read_bytes()))

    def render(motion: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return renderer.render(motion)

    return render


# --- the run ---------------------------------------------------------------------------


def _render_clips(clips: list[JudgedClip], radio: JudgedClip | None, sentences: int) -> list[int]:
    """Indices into clips + [radio] to render: the radio, the first free sentence in two voices."""
    names = [f"flite-{sentences}", f"espeak-{sentences}"]
    picks = [i for i, c in enumerate(clips) if c.name in names] or [0, 1]
    return ([len(clips)] if radio else []) + picks[:2]


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import prosody_plots as plots

    started = time.perf_counter()
    torch.set_num_threads(1)  # as a live session runs it; two threads thrash on a shared box
    info = machine_info()
    sentences = 2 if args.quick and args.sentences is None else (args.sentences or 8)
    fns = _sources(args.sources, args.checkpoint)
    aligner = PhoneAligner(RATE)
    clips = [judge_clip(c) for c in _clips(sentences, aligner)]
    found = _radio(aligner)
    radio = judge_clip(found) if found else None
    logger.info("%d held-out clips%s", len(clips), " + radio" if radio else "")
    loudness = [
        _openness(
            c, pj.loudness_envelope(c.samples, RATE, FPS, int(round(len(c.samples) * FPS / RATE)))
        )
        for c in clips + ([radio] if radio else [])
    ]
    results: dict[str, Any] = {}
    traces: dict[str, Any] = {}
    for name, fn in fns.items():
        logger.info("evaluating %s", name)
        results[name], traces[name] = _evaluate(fn, clips, radio)
    everything = clips + ([radio] if radio else [])
    picks = _render_clips(clips, radio, sentences)
    rendered_names = [n for n in ("learned", "baseline") if n in fns][: 1 if args.quick else 2]
    rendered: dict[str, Any] = {}
    render = _renderer() if rendered_names else None
    for name in rendered_names:
        logger.info("rendering %s", name)
        motions = traces[name]["motions"] + traces[name]["radio"]
        rendered[name] = _rendered(
            [everything[i] for i in picks], [motions[i] for i in picks], render
        )
    out_dir = (args.out_dir or RESULTS_DIR) / "prosody"
    data = {
        "machine": finish_machine_info(info),
        "checkpoint": str(args.checkpoint or DEFAULT_CHECKPOINT),
        "quick": bool(args.quick),
        "clips": [
            {"name": c.name, "seconds": c.speech_s, "accents": len(c.accents)} for c in clips
        ],
        "radio": radio is not None,
        "loudness_reference": {
            "held_out": _openness_summary(loudness[: len(clips)]),
            "radio": loudness[len(clips)] if radio else None,
        },
        "sources": results,
        "rendered": rendered,
    }
    if render is not None and "learned" in traces:
        sheet_clip = everything[picks[-1]]
        data["sheet_clip"] = sheet_clip.name
        plots.utterance_sheet(out_dir, sheet_clip, traces["learned"]["motions"][picks[-1]], render)
    data["plots"] = plots.all_plots(out_dir, data, traces, clips, radio)
    for got in rendered.values():  # traces for the plots only
        got.pop("_nose_y"), got.pop("_gap")
    data["seconds"] = time.perf_counter() - started
    return data


def main(argv: list[str] | None = None) -> None:
    from benchmarks.prosody_report import markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer clips; render learned only")
    parser.add_argument("--checkpoint", type=Path, help="motion checkpoint (default: shipped)")
    parser.add_argument(
        "--sources",
        nargs="+",
        choices=SOURCE_NAMES,
        default=list(SOURCE_NAMES),
        help="motion sources to judge (quote names with spaces)",
    )
    parser.add_argument("--sentences", type=int, help="generated held-out sentences (8; quick 2)")
    run_and_report(NAME, parser, _run, markdown, argv)


if __name__ == "__main__":
    main()
