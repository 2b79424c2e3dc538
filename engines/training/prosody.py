"""Visual prosody: head, brow and blink training targets read from the speech itself.

The learned sampler's non-mouth targets (issue 14, data engine). Before this the
targets were the procedural baseline's seeded sway, so the model learned a loop:
every clip got the same head path for a seed. Here every movement is tied to an
event of the utterance, and the seed only draws its direction and size.

Events, from the phone timings and the audio features of one utterance:
- Syllable nuclei: the vowel phones. Prominence = z-score (within the utterance) of
  the nucleus's peak energy + z-score of its peak F0 in semitones + half the
  z-score of its duration: a pitch accent is a local F0 excursion on a lengthened,
  louder syllable.
- Pitch accents: the most prominent nuclei (ProsodyConfig.accent_share of them,
  at least accent_gap_s apart), strength from their prominence.
- Phrases: runs of speech between pauses of at least phrase_pause_s.

Motion, per event (amplitudes in radians and motion-space units):
- Nod: head pitch dips and recovers after each accent's onset (a difference of
  two exponentials: peak speed ~0.1 s after the onset, settled in ~0.6 s),
  2-3 degrees at full strength. Graf, Cosatto, Strom and Huang ("Visual prosody:
  facial movements accompanying speech", FG 2002) find nods and brow raises aligned
  with pitch accents and head movements of a few degrees in conversational
  speech; Munhall et al. (Psychological Science 2004) that head motion follows F0
  and loudness.
- Brows: browInnerUp and browOuterUp rise with accents whose F0 excursion is
  large (rise ~0.1 s, decay ~0.35 s): Graf et al. again; brow raises mark
  emphasis and are rarer than nods.
- Phrase posture: each phrase turns the head to a new yaw (alternating sides, size
  scaled by the phrase's loudness) and the head pitch follows the phrase's F0
  level a little (Busso, Deng, Grimm, Neumann and Narayanan, "Rigid head motion in
  expressive speech animation", IEEE TASLP 2007: head motion is predictable from
  pitch and energy, rotation spreads of a few degrees); phrase ends settle with a
  small roll tilt.
- Listening (pauses and silence) is calmer: posture relaxes towards rest and the
  only motion left is a slow drift a third of the speaking one.
- Blinks: engines.motion.baseline.BlinkProcess driven by the phones' speech state
  (about 20 a minute in speech, 14 listening, and often just after a phrase ends;
  Bentivoglio et al., Movement Disorders 1997: ~17 a minute at rest, ~26 in
  conversation). The live source runs the same process on its own speech gate.

A small seeded drift (ProsodyConfig.drift_rad) stays under all of it, so
repeated phrases are not identical, but it is small against the events: with
one seed, two different clips share no head path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..audio.features import FEATURE_NAMES
from ..motion import space as ms
from ..motion.baseline import BaselineConfig, BlinkProcess
from .visemes import Phone, is_vowel, parse_arpabet

__all__ = [
    "PROSODY_CHANNELS",
    "Accent",
    "ProsodyConfig",
    "find_accents",
    "phrases",
    "prosody_targets",
]

PROSODY_CHANNELS: tuple[str, ...] = (
    "headYaw",
    "headPitch",
    "headRoll",
    "headTy",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
)


@dataclass(frozen=True)
class ProsodyConfig:
    accent_share: float = 0.35  # share of nuclei that carry a pitch accent
    accent_gap_s: float = 0.35  # accents closer than this: the weaker one goes
    phrase_pause_s: float = 0.15  # a pause this long ends a phrase
    nod_rad: float = 0.05  # nod depth at strength 1 (~3 degrees)
    nod_rise_s: float = 0.07
    nod_settle_s: float = 0.22
    brow_raise: float = 0.5  # browInnerUp at strength 1
    brow_f0_z: float = 0.3  # accents whose F0 z-score is below this raise no brows
    posture_yaw_rad: tuple[float, float] = (0.05, 0.11)  # per phrase, drawn in this range
    posture_time_s: float = 0.35
    pitch_per_semitone_rad: float = 0.004  # head up with a phrase's higher F0
    settle_roll_rad: tuple[float, float] = (0.02, 0.045)
    settle_time_s: float = 0.8
    drift_rad: tuple[float, float, float] = (0.012, 0.008, 0.006)  # yaw, pitch, roll, speaking
    drift_time_s: float = 1.5
    listening_share: float = 0.35  # drift while listening, as a share of speaking's


@dataclass(frozen=True)
class Accent:
    time_s: float  # onset of the accented nucleus
    strength: float  # ~0.5..1.5
    f0_z: float  # the nucleus's F0 excursion, z-score within the utterance


def phrases(phones: Sequence[Phone], pause_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds of each run of speech between pauses of >= pause_s."""
    runs: list[tuple[float, float]] = []
    for phone in phones:
        if parse_arpabet(phone.symbol) == "SIL":
            continue
        if runs and phone.start_s - runs[-1][1] < pause_s:
            runs[-1] = (runs[-1][0], phone.end_s)
        else:
            runs.append((phone.start_s, phone.end_s))
    return runs


def _zscore(values: np.ndarray) -> np.ndarray:
    if len(values) < 2:
        return np.zeros_like(values)
    return (values - values.mean()) / max(float(values.std()), 1e-6)


def _median_f0(f0: np.ndarray) -> float:
    """The utterance's median F0 over voiced frames (f0 > 0), 120 Hz when none is voiced."""
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if len(voiced) else 120.0


def find_accents(
    phones: Sequence[Phone], features: np.ndarray, fps: float, config: ProsodyConfig
) -> list[Accent]:
    """Pitch accents of one utterance; features: (T, F) rows in FEATURE_NAMES order."""
    rms = features[:, FEATURE_NAMES.index("rms_db")]
    f0 = features[:, FEATURE_NAMES.index("f0_hz")]
    median_f0 = _median_f0(f0)
    nuclei = []
    for phone in phones:
        if not is_vowel(parse_arpabet(phone.symbol)):
            continue
        lo = int(np.clip(math.floor(phone.start_s * fps), 0, len(rms) - 1))
        hi = int(np.clip(math.ceil(phone.end_s * fps), lo + 1, len(rms)))
        pitch = f0[lo:hi]
        semitones = (
            12.0 * math.log2(max(float(pitch.max()), 1.0) / median_f0) if pitch.max() else 0.0
        )
        nuclei.append(
            (phone.start_s, float(rms[lo:hi].max()), semitones, phone.end_s - phone.start_s)
        )
    if not nuclei:
        return []
    table = np.asarray(nuclei)
    f0_z = _zscore(table[:, 2])
    prominence = _zscore(table[:, 1]) + f0_z + 0.5 * _zscore(table[:, 3])
    count = max(1, int(round(config.accent_share * len(table))))
    chosen: list[int] = []
    for i in np.argsort(-prominence):
        if len(chosen) == count:
            break
        if all(abs(table[i, 0] - table[j, 0]) >= config.accent_gap_s for j in chosen):
            chosen.append(int(i))
    return [
        Accent(
            float(table[i, 0]),
            float(np.clip(0.8 + 0.3 * prominence[i], 0.5, 1.5)),
            float(f0_z[i]),
        )
        for i in sorted(chosen, key=lambda i: table[i, 0])
    ]


def _pulse(times: np.ndarray, onset: float, rise: float, settle: float) -> np.ndarray:
    """0 before onset, then a smooth rise and fall with peak 1 (difference of exponentials)."""
    t = np.maximum(times - onset, 0.0)
    shape = np.exp(-t / settle) - np.exp(-t / rise)
    peak_t = rise * settle / (settle - rise) * math.log(settle / rise)
    peak = math.exp(-peak_t / settle) - math.exp(-peak_t / rise)
    return np.where(times >= onset, shape / peak, 0.0)


def _pulse_area(rise: float, settle: float) -> float:
    """Integral over time (s) of _pulse(., ., rise, settle): (settle - rise) / its peak."""
    peak_t = rise * settle / (settle - rise) * math.log(settle / rise)
    return (settle - rise) / (math.exp(-peak_t / settle) - math.exp(-peak_t / rise))


def _nod(times: np.ndarray, onset: float, c: ProsodyConfig) -> np.ndarray:
    """A nod: down (peak 1) then a smaller, slower rebound above rest, with zero mean,
    so a stretch of accented speech does not hold the head lower than listening."""
    down = _pulse(times, onset, c.nod_rise_s, c.nod_settle_s)
    rebound = _pulse(times, onset + 0.7 * c.nod_settle_s, c.nod_settle_s, 2.0 * c.nod_settle_s)
    scale = _pulse_area(c.nod_rise_s, c.nod_settle_s) / _pulse_area(
        c.nod_settle_s, 2.0 * c.nod_settle_s
    )
    return down - scale * rebound


def _ease(times: np.ndarray, start: float, duration: float) -> np.ndarray:
    """0 before start, smoothstep to 1 over duration."""
    u = np.clip((times - start) / duration, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _speaking(times: np.ndarray, runs: list[tuple[float, float]]) -> np.ndarray:
    inside = np.zeros(len(times), bool)
    for start, end in runs:
        inside |= (times >= start) & (times < end)
    return inside


def prosody_targets(
    phones: Sequence[Phone],
    features: np.ndarray,
    fps: float,
    seed: int,
    config: ProsodyConfig | None = None,
    blinks: BaselineConfig | None = None,
) -> np.ndarray:
    """Head, brow and blink targets (T, D) for one utterance; other channels neutral.

    phones: tiling the utterance, pauses as SIL; features: (T, F) at fps, row k at k / fps.
    """
    c = config or ProsodyConfig()
    rng = np.random.default_rng([seed, 14])
    num = len(features)
    times = np.arange(num) / fps
    runs = phrases(phones, c.phrase_pause_s)
    speaking = _speaking(times, runs)
    f0 = features[:, FEATURE_NAMES.index("f0_hz")]
    rms = features[:, FEATURE_NAMES.index("rms_db")]
    median_f0 = _median_f0(f0)
    loud = float(np.percentile(rms[speaking], 90)) if speaking.any() else 0.0

    yaw, pitch, roll = (np.zeros(num) for _ in range(3))
    # Phrase posture: a new yaw per phrase, pitch with the phrase's F0, relaxing in pauses.
    side = rng.choice([-1.0, 1.0])
    posture_yaw = posture_pitch = 0.0
    for start, end in runs:
        inside = (times >= start) & (times < end)
        level = float(np.clip(1.0 + (rms[inside].mean() - loud) / 12.0, 0.4, 1.0))
        target_yaw = side * level * rng.uniform(*c.posture_yaw_rad)
        voiced = f0[inside][f0[inside] > 0]
        semitones = 12.0 * math.log2(float(np.median(voiced)) / median_f0) if len(voiced) else 0.0
        target_pitch = float(np.clip(c.pitch_per_semitone_rad * semitones, -0.03, 0.03))
        into = _ease(times, start, c.posture_time_s)
        yaw += (target_yaw - posture_yaw) * into
        pitch += (target_pitch - posture_pitch) * into
        posture_yaw, posture_pitch = target_yaw, target_pitch
        # The phrase ends: posture relaxes during the pause, the head settles with a tilt.
        out = _ease(times, end, 2.0 * c.posture_time_s)
        yaw -= 0.6 * posture_yaw * out
        pitch -= posture_pitch * out
        posture_yaw, posture_pitch = 0.4 * posture_yaw, 0.0
        roll += side * rng.uniform(*c.settle_roll_rad) * _pulse(times, end, 0.15, c.settle_time_s)
        side = -side
    # Accents: nods, a little yaw and roll with them, brows on the high ones.
    brow = np.zeros(num)
    for accent in find_accents(phones, features, fps, c):
        nod = _nod(times, accent.time_s, c)
        depth = accent.strength * rng.uniform(0.7, 1.3) * c.nod_rad
        pitch -= depth * nod
        yaw += rng.choice([-1.0, 1.0]) * 0.25 * depth * nod
        roll += rng.choice([-1.0, 1.0]) * 0.15 * depth * nod
        if accent.f0_z > c.brow_f0_z:
            raise_ = _pulse(times, accent.time_s, 0.06, 0.25)
            brow += c.brow_raise * min(accent.strength, 1.2) * rng.uniform(0.7, 1.2) * raise_
    # Drift: a slow seeded wander, calmer while listening.
    calm = c.listening_share + (1.0 - c.listening_share) * _smoothed(speaking, fps, 0.6)
    drift = _ou(rng, num, fps, c.drift_time_s) * np.asarray(c.drift_rad)
    yaw += calm * drift[:, 0]
    pitch += calm * drift[:, 1]
    roll += calm * drift[:, 2]

    motion = ms.neutral_motion(num)
    motion[:, ms.index_of("headYaw")] = yaw
    motion[:, ms.index_of("headPitch")] = pitch
    motion[:, ms.index_of("headRoll")] = roll
    # Breath: the chest rises in each pause before speech and falls while talking.
    motion[:, ms.index_of("headTy")] = 0.002 - 0.004 * (1.0 - _smoothed(speaking, fps, 0.8))
    brow = np.clip(brow, 0.0, 0.8)
    motion[:, ms.index_of("browInnerUp")] = brow
    motion[:, ms.index_of("browOuterUpLeft")] = motion[:, ms.index_of("browOuterUpRight")] = (
        0.7 * brow
    )
    motion[:, ms.index_of("eyeBlinkLeft")] = motion[:, ms.index_of("eyeBlinkRight")] = _blinks(
        times, speaking, blinks or BaselineConfig(), fps, rng
    )
    return ms.clip_motion(motion)


def _smoothed(mask: np.ndarray, fps: float, tau_s: float) -> np.ndarray:
    """A 0/1 mask through a one-pole low-pass forwards and backwards (no lag)."""
    alpha = 1.0 - math.exp(-1.0 / (fps * tau_s))
    out = mask.astype(np.float64)
    for order in (1, -1):
        state = out[::order][0]
        smoothed = np.empty_like(out)
        for i, value in enumerate(out[::order]):
            state += alpha * (value - state)
            smoothed[i] = state
        out = smoothed[::order]
    return out


def _ou(rng: np.random.Generator, num: int, fps: float, tau_s: float) -> np.ndarray:
    """(num, 3) Ornstein-Uhlenbeck paths with unit stationary std."""
    decay = math.exp(-1.0 / (fps * tau_s))
    noise = rng.standard_normal((num, 3)) * math.sqrt(1.0 - decay**2)
    out = np.empty((num, 3))
    state = rng.standard_normal(3)
    for i in range(num):
        state = state * decay + noise[i]
        out[i] = state
    return out


def _blinks(
    times: np.ndarray,
    speaking: np.ndarray,
    config: BaselineConfig,
    fps: float,
    rng: np.random.Generator,
) -> np.ndarray:
    process = BlinkProcess(config, fps, rng)
    closure = np.zeros(len(times))
    for i, now in enumerate(times):
        ended = i > 0 and speaking[i - 1] and not speaking[i]
        closure[i] = process.step(float(now), ended, bool(speaking[i]))
    return closure
