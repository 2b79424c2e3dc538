"""Procedural motion baseline: audio features -> motion, no learned weights.

A real component: the learned sampler must beat it and it stays as the
fallback. Everything runs frame by frame on explicit state, so it streams,
is causal (no look-ahead beyond what the features already carry) and gives
the same motion however the features are chunked. Randomness (sway, blinks,
gaze) comes from one seeded generator consumed in frame order, so a seed
fixes the output.

Per frame:
- speech level: rms_db against an adaptive noise floor and a decaying
  speech peak -> gate (is anyone speaking) and level (0..1 loudness).
- mouth: jawOpen = level x openness (low_ratio, voicing) with fast attack and
  a slower release; lips closed (mouthClose, mouthPress) in silence and on
  energy dips inside an utterance (p, b, m); funnel/pucker on dark voiced
  sounds, stretch/smile on bright ones, upper/lower lip raise on fricatives.
- head: Ornstein-Uhlenbeck sway on yaw/pitch/roll (larger while talking),
  pitch nods on energy onsets, brows on pitch peaks and emphasis, breathing
  on headTy.
- eyes: a seeded blink process with a refractory period, paced by the speech
  (a higher rate while speaking, often a blink just after an utterance ends),
  and gaze fixations with small saccades.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..audio.features import FEATURE_NAMES, AudioFeatureConfig, AudioFeatureExtractor
from ..types import AudioChunk, AudioFeatures, MotionWindow
from . import space as ms
from .source import MotionSource, settled

__all__ = ["BaselineConfig", "BlinkProcess", "ProceduralMotionSource", "SpeechGate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineConfig:
    """Amplitudes in motion-space units (radians, [0, 1] coefficients), times in seconds."""

    # Speech detection.
    floor_min_db: float = -75.0  # digital silence must not make faint noise look like speech
    floor_rise_db_per_s: float = 3.0
    gate_margin_db: float = 9.0  # above the floor by this much counts as speech
    level_range_db: float = 24.0  # level 0 at this far below the recent speech peak
    peak_decay_db_per_s: float = 2.0
    utterance_hold_s: float = 0.35  # pauses shorter than this stay inside the utterance
    # Mouth.
    jaw_gain: float = 0.72
    jaw_attack_s: float = 0.03
    jaw_release_s: float = 0.06
    closure_level: float = 0.2  # level below which a frame inside speech is a lip closure
    close_in_speech: float = 0.35
    press_in_speech: float = 0.25
    close_in_silence: float = 0.12
    press_in_silence: float = 0.06
    round_gain: float = 0.45
    spread_gain: float = 0.3
    smile_gain: float = 0.12
    teeth_gain: float = 0.3
    lip_smooth_s: float = 0.05
    lip_release_s: float = 0.02
    # Head and brows.
    sway_std_rad: tuple[float, float, float] = (0.022, 0.016, 0.01)  # yaw, pitch, roll at idle
    sway_speech_gain: float = 1.8
    sway_time_s: float = 1.6  # OU correlation time
    sway_smooth_s: float = 0.25
    nod_rad: float = 0.045
    nod_onset: float = 0.25  # level jump that counts as a stressed onset
    nod_refractory_s: float = 0.3
    brow_gain: float = 0.35
    breath_amp: float = 0.004
    breath_period_s: float = 4.0
    # Blinks.
    blink_refractory_s: float = 1.8
    blink_mean_extra_s: float = 2.0  # exponential part of the interval while listening
    blink_speech_rate_gain: float = 0.6  # speaking shortens that part by this factor
    blink_duration_s: tuple[float, float] = (0.15, 0.25)
    blink_close_share: float = 0.35  # close fast, open slower
    blink_at_utterance_end: float = 0.5  # probability of an extra-early blink at an utterance end
    # Gaze.
    gaze_std_rad: tuple[float, float] = (0.06, 0.03)  # yaw, pitch of idle fixations
    gaze_speech_gain: float = 0.5  # look at the camera more while talking
    gaze_fixation_s: tuple[float, float] = (0.6, 2.5)
    gaze_saccade_s: float = 0.025


class _Audio(NamedTuple):
    """The scalar features the baseline reads from one feature row."""

    rms_db: float
    voiced: float
    f0_hz: float
    centroid_hz: float
    low_ratio: float
    high_ratio: float
    flux: float


_SILENT = _Audio(-100.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
_CHANNELS = {name: ms.index_of(name) for name in ms.MOTION_NAMES}


def _smooth(current: float, target: float, dt: float, tau: float) -> float:
    """One-pole low-pass step toward target with time constant tau."""
    return current + (target - current) * (1.0 - math.exp(-dt / max(tau, 1e-6)))


def _blink_curve(elapsed: float, close_s: float, hold_s: float, open_s: float) -> float:
    """Eyelid closure 0..1 at `elapsed` seconds into a blink."""
    if elapsed < close_s:
        return math.sin(0.5 * math.pi * elapsed / close_s)
    if elapsed < close_s + hold_s:
        return 1.0
    u = (elapsed - close_s - hold_s) / open_s
    return 0.5 * (1.0 + math.cos(math.pi * u)) if u < 1.0 else 0.0


class BlinkProcess:
    """Seeded blinks paced by the speech: a refractory period, then a hazard that is
    higher while speaking than while listening, and often a blink just after an
    utterance ends; closure per frame.

    The wait after the refractory period is an exponential amount of hazard, used up
    at the speaking or the listening rate, so the blink times follow the speech:
    the same seed under different audio blinks at different times (Bentivoglio et
    al. 1997: ~26 blinks a minute in conversation, ~17 at rest).

    Draws from a generator the caller owns, so the baseline's one random stream
    keeps its order. The learned source lays it over its own eyelids: few-step
    diffusion sampling averages rare, short events like a blink onset away, so
    the sampler alone blinks at about half a person's rate
    (benchmarks/results/bench_motion.md measures it).
    """

    def __init__(self, config: BaselineConfig, fps: float, rng: np.random.Generator) -> None:
        self.config = config
        self._dt = 1.0 / fps
        self._rng = rng
        self._start_s = -math.inf
        self._shape = (0.05, 0.0, 0.1)  # close, hold, open seconds
        # Hazard left before the next blink, in units of one mean wait (an Exp(1) draw
        # used up at dt / mean wait per frame); the first blink comes sooner than a
        # full interval.
        self._refractory_until = float(rng.uniform(0.3, 1.0) * config.blink_refractory_s)
        self._hazard = float(rng.exponential(1.0))
        self._early_s = math.inf

    def step(self, now: float, utterance_ended: bool = False, speaking: bool = False) -> float:
        """Closure 0..1 at time `now` (seconds, advancing by one frame between calls)."""
        c = self.config
        close_s, hold_s, open_s = self._shape
        blinking = now - self._start_s < close_s + hold_s + open_s
        recovered = now - self._start_s > c.blink_refractory_s
        if utterance_ended and recovered and self._rng.random() < c.blink_at_utterance_end:
            self._early_s = now + self._rng.uniform(0.05, 0.3)
        if now >= self._refractory_until:
            mean_wait = c.blink_mean_extra_s * (c.blink_speech_rate_gain if speaking else 1.0)
            self._hazard -= self._dt / mean_wait
        if not blinking and (self._hazard <= 0.0 or now >= self._early_s):
            duration = self._rng.uniform(*c.blink_duration_s)
            # Hold closed for a frame so the closed point is never skipped by sampling.
            self._shape = (
                c.blink_close_share * duration,
                1.01 * self._dt,
                (1.0 - c.blink_close_share) * duration,
            )
            self._start_s = now
            self._refractory_until = now + c.blink_refractory_s
            self._hazard = float(self._rng.exponential(1.0))
            self._early_s = math.inf
        return _blink_curve(now - self._start_s, *self._shape)


class SpeechGate:
    """Is anyone speaking, and how loud: rms_db per frame against an adaptive noise floor
    and a decaying speech peak. step() -> (gate 0..1, level 0..1, did an utterance end)."""

    def __init__(self, config: BaselineConfig, fps: float) -> None:
        self.config = config
        self._dt = 1.0 / fps
        self._floor_db = config.floor_min_db
        self._peak_db = config.floor_min_db + config.gate_margin_db + config.level_range_db
        self._since_active_s = math.inf

    @property
    def in_utterance(self) -> bool:
        """Speech now, or a pause shorter than utterance_hold_s inside it."""
        return self._since_active_s < self.config.utterance_hold_s

    def step(self, rms: float) -> tuple[float, float, bool]:
        c, dt = self.config, self._dt
        # Noise floor: follows dips within ~0.3 s, creeps up slowly under speech.
        if rms < self._floor_db:
            self._floor_db = _smooth(self._floor_db, rms, dt, 0.3)
        else:
            self._floor_db = min(rms, self._floor_db + c.floor_rise_db_per_s * dt)
        self._floor_db = max(self._floor_db, c.floor_min_db)
        # Speech peak: jumps up, decays slowly, so level is relative to the speaker's loudness.
        peak_min = self._floor_db + c.gate_margin_db + 0.5 * c.level_range_db
        self._peak_db = max(rms, self._peak_db - c.peak_decay_db_per_s * dt, peak_min)
        gate = float(np.clip((rms - self._floor_db - c.gate_margin_db) / 6.0, 0.0, 1.0))
        relative = (rms - self._peak_db + c.level_range_db) / c.level_range_db
        level = gate * float(np.clip(relative, 0.0, 1.0))
        was_in_utterance = self.in_utterance
        self._since_active_s = 0.0 if gate > 0.5 else self._since_active_s + dt
        return gate, level, was_in_utterance and not self.in_utterance


class ProceduralMotionSource:
    """Streaming audio features -> MotionWindow, with idle motion when there is no audio."""

    def __init__(self, config: BaselineConfig, fps: float, seed: int = 0) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.config = config
        self.fps = float(fps)
        self.seed = seed
        self._dt = 1.0 / self.fps
        self.reset()

    def reset(self) -> None:
        """Back to the state of a fresh source with the same seed."""
        c = self.config
        self._rng = np.random.default_rng(self.seed)
        self._next_pts = 0
        self._frame_index = 0  # frames produced since reset: the clock of every process
        self._speech = SpeechGate(c, self.fps)
        self._level_slow = 0.0
        self._talk = 0.0  # slow speech activity that scales sway and gaze
        # Mouth.
        self._jaw = 0.0
        self._lips = {"close": c.close_in_silence, "press": c.press_in_silence}
        for name in ("round", "front", "teeth"):
            self._lips[name] = 0.0
        self._centroid_mean = 500.0
        self._low_mean = 0.5
        # Head.
        self._ou = np.zeros(3)
        self._sway = np.zeros(3)
        self._nod_fast = self._nod_slow = 0.0
        self._last_nod_s = -math.inf
        self._log_f0_mean = math.log(120.0)
        self._brow = 0.0
        self._breath_phase = float(self._rng.uniform(0.0, 2.0 * math.pi))
        # Eyes.
        self._blinks = BlinkProcess(c, self.fps, self._rng)
        self._gaze = np.zeros(2)
        self._gaze_target = np.zeros(2)
        self._next_saccade_s = float(self._rng.uniform(*c.gaze_fixation_s))

    def step(self, features: AudioFeatures) -> MotionWindow:
        """Motion for each feature row: values float32 array of shape (T, D), same pts and T."""
        if not math.isclose(features.fps, self.fps):
            raise ValueError(f"features are at {features.fps} fps, this source at {self.fps} fps")
        columns = self._columns(features.names or FEATURE_NAMES)
        rows = features.values[:, columns].astype(np.float64)  # T x 7
        motion = ms.neutral_motion(len(rows))
        for t, row in enumerate(rows):
            self._frame(_Audio(*row.tolist()), motion[t])
        self._next_pts = features.pts + len(rows)
        return MotionWindow(ms.clip_motion(motion), self.fps, features.pts)

    def idle(self, num_frames: int) -> MotionWindow:
        """Silence behaviour without features: blinks, sway, breathing, gaze; lips closed."""
        motion = ms.neutral_motion(num_frames)
        for t in range(num_frames):
            self._frame(_SILENT, motion[t])
        pts = self._next_pts
        self._next_pts += num_frames
        return MotionWindow(ms.clip_motion(motion), self.fps, pts)

    @staticmethod
    def _columns(names: tuple[str, ...]) -> list[int]:
        try:
            return [names.index(name) for name in _Audio._fields]
        except ValueError:
            raise ValueError(
                f"features must carry {', '.join(_Audio._fields)}; got names {names[:10]}..."
            ) from None

    def _frame(self, audio: _Audio, out: np.ndarray) -> None:
        """Advance every process by one frame and write it into `out` (shape (D,))."""
        now = self._frame_index * self._dt
        gate, level, utterance_ended = self._update_speech(audio)
        self._write_mouth(audio, gate, level, out)
        self._write_head(audio, level, now, out)
        blink = self._blinks.step(now, utterance_ended, self._in_utterance())
        out[_CHANNELS["eyeBlinkLeft"]] = out[_CHANNELS["eyeBlinkRight"]] = blink
        out[[_CHANNELS["gazeYaw"], _CHANNELS["gazePitch"]]] = self._update_gaze(now)
        self._frame_index += 1

    def _update_speech(self, audio: _Audio) -> tuple[float, float, bool]:
        """Returns (gate 0..1: is this speech, level 0..1: how loud, did an utterance just end)."""
        gate, level, ended = self._speech.step(audio.rms_db)
        self._talk = _smooth(self._talk, float(gate > 0.5), self._dt, 0.8)
        return gate, level, ended

    def _in_utterance(self) -> bool:
        return self._speech.in_utterance

    def _write_mouth(self, audio: _Audio, gate: float, level: float, out: np.ndarray) -> None:
        c = self.config
        self._update_jaw(audio, level)
        lips = self._update_lips(audio, gate, level)
        values = {
            "jawOpen": self._jaw,
            "mouthClose": lips["close"],
            "mouthPress": lips["press"],
            "mouthFunnel": c.round_gain * lips["round"],
            "mouthPucker": 0.8 * c.round_gain * lips["round"],
            "mouthStretch": c.spread_gain * lips["front"],
            "mouthSmile": c.smile_gain * lips["front"],
            "mouthUpperUp": c.teeth_gain * lips["teeth"],
            "mouthLowerDown": 0.8 * c.teeth_gain * lips["teeth"],
        }
        for name, value in values.items():
            for channel in (name,) if name in _CHANNELS else (name + "Left", name + "Right"):
                out[_CHANNELS[channel]] = value

    def _update_jaw(self, audio: _Audio, level: float) -> None:
        """jawOpen follows loudness x openness, opening fast and closing a little slower."""
        c, dt = self.config, self._dt
        if level * audio.voiced > 0.3:
            # Speaker-relative: a high voice puts much energy below 250 Hz, lowering low_ratio.
            self._low_mean = _smooth(self._low_mean, audio.low_ratio, dt, 3.0)
            self._centroid_mean = _smooth(self._centroid_mean, audio.centroid_hz, dt, 2.0)
        relative_low = audio.low_ratio / (1.2 * max(self._low_mean, 0.05))
        openness = (0.35 + 0.65 * min(relative_low, 1.0)) * (0.5 + 0.5 * audio.voiced)
        target = c.jaw_gain * level * openness
        tau = c.jaw_attack_s if target > self._jaw else c.jaw_release_s
        self._jaw = _smooth(self._jaw, target, dt, tau)

    def _update_lips(self, audio: _Audio, gate: float, level: float) -> dict[str, float]:
        """Smoothed lip targets: close/press, round (dark vowels), front (bright), teeth."""
        c = self.config
        if self._in_utterance():
            dip = float(np.clip(1.0 - level / c.closure_level, 0.0, 1.0))
            close, press = c.close_in_speech * dip, c.press_in_speech * dip
        else:
            close, press = c.close_in_silence, c.press_in_silence
        vowel = level * audio.voiced
        # Vowel colour relative to this speaker's own average brightness.
        brightness = audio.centroid_hz / max(self._centroid_mean, 1.0)
        targets = {
            "close": close,
            "press": press,
            "round": vowel * float(np.clip((0.85 - brightness) / 0.35, 0.0, 1.0)),
            "front": vowel * float(np.clip((brightness - 1.15) / 0.5, 0.0, 1.0)),
            "teeth": gate * float(np.clip(1.5 * audio.high_ratio, 0.0, 1.0)),
        }
        for name, value in targets.items():
            tau = c.lip_smooth_s
            if name in ("close", "press") and value < self._lips[name]:
                tau = c.lip_release_s  # lips part before the jaw opens, never after
            self._lips[name] = _smooth(self._lips[name], value, self._dt, tau)
        return self._lips

    def _write_head(self, audio: _Audio, level: float, now: float, out: np.ndarray) -> None:
        c, dt = self.config, self._dt
        # OU sway: exact discretisation, then a low-pass so the head moves smoothly.
        decay = math.exp(-dt / c.sway_time_s)
        scale = 1.0 + (c.sway_speech_gain - 1.0) * self._talk
        std = np.asarray(c.sway_std_rad) * scale
        noise = self._rng.standard_normal(3)  # drawn every frame: keeps the stream chunk-proof
        self._ou = self._ou * decay + std * math.sqrt(1.0 - decay**2) * noise
        self._sway += (self._ou - self._sway) * (1.0 - math.exp(-dt / c.sway_smooth_s))
        nod = self._update_nod(audio, level, now)
        brow = self._update_brow(audio, level, nod)
        out[_CHANNELS["headYaw"]] = self._sway[0]
        out[_CHANNELS["headPitch"]] = self._sway[1] - nod * c.nod_rad
        out[_CHANNELS["headRoll"]] = self._sway[2]
        out[_CHANNELS["headTy"]] = c.breath_amp * math.sin(
            2.0 * math.pi * now / c.breath_period_s + self._breath_phase
        )
        out[_CHANNELS["browInnerUp"]] = brow
        out[_CHANNELS["browOuterUpLeft"]] = out[_CHANNELS["browOuterUpRight"]] = 0.7 * brow

    def _update_nod(self, audio: _Audio, level: float, now: float) -> float:
        """Nod envelope 0..1: a smooth rise and fall after each stressed onset."""
        c, dt = self.config, self._dt
        onset = level - self._level_slow
        self._level_slow = _smooth(self._level_slow, level, dt, 0.15)
        if (
            onset > c.nod_onset
            and audio.voiced > 0.4
            and now - self._last_nod_s > c.nod_refractory_s
        ):
            kick = min(1.0, onset / (2.0 * c.nod_onset))
            self._nod_fast += kick
            self._nod_slow += kick
            self._last_nod_s = now
        # Difference of two decays: rises in ~0.1 s, settles in ~0.5 s.
        self._nod_fast *= math.exp(-dt / 0.08)
        self._nod_slow *= math.exp(-dt / 0.25)
        return min(1.0, 2.2 * (self._nod_slow - self._nod_fast))

    def _update_brow(self, audio: _Audio, level: float, nod: float) -> float:
        """Brow raise 0..1 on pitch above the speaker's running mean, and on emphasis."""
        c, dt = self.config, self._dt
        excess_st = 0.0
        if audio.f0_hz > 0.0:
            log_f0 = math.log(audio.f0_hz)
            excess_st = 12.0 * (log_f0 - self._log_f0_mean) / math.log(2.0)
            self._log_f0_mean = _smooth(self._log_f0_mean, log_f0, dt, 2.0)
        target = c.brow_gain * (float(np.clip(excess_st / 5.0, 0.0, 1.0)) * level + 0.5 * nod)
        self._brow = _smooth(self._brow, target, dt, 0.08 if target > self._brow else 0.3)
        return self._brow

    def _update_gaze(self, now: float) -> np.ndarray:
        """Gaze (yaw, pitch): hold a fixation, then a fast saccade to a new one."""
        c = self.config
        if now >= self._next_saccade_s:
            spread = 1.0 + (c.gaze_speech_gain - 1.0) * self._talk
            target = self._rng.standard_normal(2) * np.asarray(c.gaze_std_rad) * spread
            limit = 2.5 * np.asarray(c.gaze_std_rad)
            self._gaze_target = np.clip(target, -limit, limit)
            self._next_saccade_s = now + self._rng.uniform(*c.gaze_fixation_s)
        self._gaze += (self._gaze_target - self._gaze) * (
            1.0 - math.exp(-self._dt / c.gaze_saccade_s)
        )
        return self._gaze


class BaselineMotion(MotionSource):
    """The procedural baseline over audio features at the output rate; controls mixed after."""

    def __init__(
        self,
        config: BaselineConfig,
        features: AudioFeatureConfig,
        fps: float,
        seed: int = 0,
    ) -> None:
        super().__init__(fps)
        self.extractor = AudioFeatureExtractor(features, fps)
        self.source = ProceduralMotionSource(config, fps, seed=seed)

    @property
    def latency_s(self) -> float:
        return self.extractor.latency_s

    def push(self, chunk: AudioChunk) -> MotionWindow:
        return self._motion(self.extractor.push(chunk))

    def flush(self) -> MotionWindow:
        return self._motion(self.extractor.flush())

    def _motion(self, features: AudioFeatures) -> MotionWindow:
        return self.mixer.apply(self.source.step(features))

    def rest_frame(self) -> np.ndarray:
        """The baseline's own first idle frame, controls applied (does not advance it)."""
        idle = ProceduralMotionSource(self.source.config, self.fps, seed=0).idle(1)
        return settled(idle.values, self.controls)
