"""The prosody judge's measures (benchmarks/prosody_judge.py) on synthetic signals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import prosody_judge as pj
from engines.motion import space as ms
from engines.training.metrics import blink_onsets
from engines.training.visemes import Phone

FPS = 25
RATE = 16000


def _events(rng: np.random.Generator, count: int, length_s: float) -> np.ndarray:
    return np.sort(rng.uniform(0.5, length_s - 1.0, count))


def test_triggered_ratio_is_high_for_peaks_after_accents_and_about_one_for_random_peaks() -> None:
    rng = np.random.default_rng(3)
    length = 60.0
    accents = _events(rng, 40, length)
    following = accents + 0.1
    unrelated = np.sort(rng.uniform(0.0, length, 40))
    speech = [(0.0, length)]
    tied = pj.triggered_ratio([accents], [following], [speech], window_s=0.25)
    random = pj.triggered_ratio([accents], [unrelated], [speech], window_s=0.25)
    assert tied["rate"] == 1.0
    assert tied["ratio"] is not None and tied["ratio"] > 4.0
    assert tied["max_ratio"] == pytest.approx(tied["ratio"])
    assert random["ratio"] is not None and 0.5 < random["ratio"] < 1.6
    # peaks *before* the accents do not count
    before = pj.triggered_ratio([accents], [accents - 0.1], [speech], window_s=0.25)
    assert before["rate"] < 0.5


def test_hit_rate_window_edges() -> None:
    events = np.array([1.0, 2.0, 3.0])
    peaks = np.array([1.0, 2.3, 2.9])
    assert pj.hit_rate(events, peaks, 0.25) == (1, 3)  # 1.0 at the event counts; 2.3 too late
    assert pj.hit_rate(events, np.zeros(0), 0.25) == (0, 3)


def test_best_lag_recovers_a_known_two_frame_delay() -> None:
    rng = np.random.default_rng(0)
    reference = np.convolve(rng.normal(size=300), np.ones(3) / 3, mode="same")
    late = np.concatenate([np.zeros(2), reference[:-2]])  # late[t + 2] == reference[t]
    r0, best, lag = pj.best_lag(reference, late, max_lag=4)
    assert lag == 2
    assert best == pytest.approx(1.0, abs=1e-6)
    assert r0 < 0.9
    early = np.concatenate([reference[3:], np.zeros(3)])
    assert pj.best_lag(reference, early, max_lag=4)[2] == -3


def test_local_peaks_above_the_masked_percentile() -> None:
    trace = np.zeros(100)
    trace[[10, 30, 50]] = [1.0, 2.0, 3.0]
    trace[70] = 0.5
    mask = np.ones(100, dtype=bool)
    assert pj.local_peaks(trace, mask, 75.0).tolist() == [10, 30, 50, 70]
    # the percentile is taken over the masked frames only: nine zeros and the 2.0
    # give a 95th percentile of 1.1, which drops the peaks at 1.0 and 0.5
    mask[:] = False
    mask[25:35] = True
    assert pj.local_peaks(trace, mask, 95.0).tolist() == [30, 50]
    assert pj.local_peaks(np.ones(50), np.ones(50, dtype=bool)).size == 0


def test_pick_accents_takes_the_top_third_at_least_min_gap_apart() -> None:
    onsets = np.array([0.0, 0.1, 0.5, 1.0, 1.2, 2.0])
    prominence = np.array([5.0, 4.0, 0.0, 1.0, 0.2, 3.0])
    accents = pj.pick_accents(onsets, prominence, share=0.5, min_gap_s=0.3)
    # top half: 5 (0.0), 4 (0.1: too close to 0.0), 3 (2.0)
    assert accents.tolist() == [0.0, 2.0]


def test_pitch_track_finds_a_harmonic_tone_and_rejects_noise() -> None:
    t = np.arange(RATE) / RATE
    tone = sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in range(1, 6)) * 0.1
    f0 = pj.pitch_track(tone.astype(np.float32), RATE)
    assert np.mean(f0 > 0) > 0.9
    assert np.median(f0[f0 > 0]) == pytest.approx(140.0, rel=0.02)
    noise = np.random.default_rng(0).normal(0.0, 0.1, RATE)
    assert np.mean(pj.pitch_track(noise, RATE) > 0) < 0.05


def test_accents_fall_on_the_loud_high_syllables() -> None:
    # Six 150 ms "vowels"; the 2nd and 5th are 12 dB louder and an octave higher.
    phones, pieces = [], []
    for k in range(6):
        loud = k in (1, 4)
        f0, amp = (220.0, 0.4) if loud else (110.0, 0.1)
        t = np.arange(int(0.15 * RATE)) / RATE
        pieces += [amp * np.sin(2 * np.pi * f0 * t), np.zeros(int(0.15 * RATE))]
        phones.append(Phone("AA", 0.3 * k, 0.3 * k + 0.15))
    samples = np.concatenate(pieces).astype(np.float32)
    accents = pj.find_accents(samples, RATE, phones)
    assert accents.tolist() == pytest.approx([0.3, 1.2])


def test_speech_mask_treats_sil_and_gaps_as_silence() -> None:
    phones = [Phone("SIL", 0.0, 0.2), Phone("AA", 0.2, 0.4), Phone("B", 0.4, 0.48),
              Phone("IY", 0.6, 0.8)]  # fmt: skip
    assert pj.speech_intervals(phones) == [(0.2, 0.48), (0.6, 0.8)]
    mask = pj.speech_mask(phones, 25, FPS)
    assert mask.tolist() == [i in (5, 6, 7, 8, 9, 10, 11, 15, 16, 17, 18, 19) for i in range(25)]
    times = pj.random_times(pj.speech_intervals(phones), 500, np.random.default_rng(0))
    inside = ((times >= 0.2) & (times < 0.48)) | ((times >= 0.6) & (times < 0.8))
    assert inside.all()


def test_loudness_envelope_follows_bursts_and_is_normalised() -> None:
    samples = np.zeros(2 * RATE, dtype=np.float32)
    samples[RATE // 2 : RATE] = np.random.default_rng(0).normal(0, 0.1, RATE // 2)
    env = pj.loudness_envelope(samples, RATE, FPS, 50)
    assert env.shape == (50,)
    assert env.max() == pytest.approx(1.0, abs=0.05) and env.min() == 0.0
    assert env[15:23].min() > 0.8 and env[:10].max() == 0.0 and env[30:].max() == 0.0


def test_blink_onsets_and_coincidence() -> None:
    motion = ms.neutral_motion(100)
    blinks = [ms.index_of("eyeBlinkLeft"), ms.index_of("eyeBlinkRight")]
    for start in (10, 40, 80):
        motion[start : start + 4, blinks] = 1.0
    onsets = pj.blink_onset_frames(motion)
    assert onsets.tolist() == [10, 40, 80]
    assert len(onsets) == blink_onsets(motion)
    assert pj.coincidence_share(onsets, onsets + 1) == (3, 3)
    assert pj.coincidence_share(onsets, onsets + 5) == (0, 3)
    assert pj.coincidence_share(onsets, np.array([41])) == (1, 3)


def test_event_triggered_average_lines_up_on_the_events() -> None:
    trace = np.zeros(200)
    events = np.array([2.0, 4.0, 6.0])
    for t in events:
        trace[int(t * FPS) + 3] = 1.0  # 120 ms after each event
    lags, mean, n = pj.event_triggered_average([trace], [events], FPS, 0.5, 1.0)
    assert n == 3
    assert lags[np.argmax(mean)] == pytest.approx(0.12)
    assert mean.max() == 1.0


def test_conversation_joins_clips_with_their_phones_on_one_clock() -> None:
    from benchmarks.bench_prosody import FPS as BENCH_FPS
    from benchmarks.bench_prosody import JudgedClip, conversation

    def clip(name: str, seconds: float, speech: tuple[float, float]) -> JudgedClip:
        samples = np.full(int(seconds * RATE), len(name), np.float32)
        phones = (
            Phone("SIL", 0.0, speech[0]),
            Phone("AA", *speech),
            Phone("SIL", speech[1], seconds),
        )
        return JudgedClip(name, samples, phones, np.zeros(0), seconds, speech[0])

    first, second = clip("a", 4.0, (1.5, 2.5)), clip("bb", 3.0, (1.0, 2.0))
    joined = conversation([first, second])
    assert len(joined.samples) == len(first.samples) + len(second.samples)
    assert joined.samples[len(first.samples)] == 2.0  # the second clip's audio follows
    assert [p.symbol for p in joined.phones if p.symbol != "SIL"] == ["AA", "AA"]
    spoken = joined.speech(int(7.0 * BENCH_FPS))
    # speech from 1.5 s to 2.5 s, then from 4 + 1 s to 4 + 2 s (frame i is at i / FPS)
    first_frame, last_frame = np.flatnonzero(spoken)[[0, -1]]
    assert (first_frame, last_frame) == (math.ceil(1.5 * BENCH_FPS), 6 * BENCH_FPS - 1)
    assert not spoken[math.ceil(2.5 * BENCH_FPS) : 5 * BENCH_FPS].any()
    assert joined.span(len(spoken)) == slice(0, len(spoken))
