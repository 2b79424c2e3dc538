"""Visual prosody targets and the speech-paced blinks: motion tied to the speech's events."""

from __future__ import annotations

import numpy as np
import pytest

from engines.errors import SynthesisError
from engines.motion import space as ms
from engines.motion.baseline import BaselineConfig, BlinkProcess, SpeechGate
from engines.training.corpus import synthesize
from engines.training.prosody import ProsodyConfig, find_accents, phrases, prosody_targets
from engines.training.targets import pad_with_silence, utterance_targets
from engines.training.visemes import Phone

FPS = 25
TEXTS = (
    "Nobody expected the old bridge to open again before the winter.",
    "Maybe we should take the early train, and then walk along the river.",
    "I really think this is the best idea we have had all year.",
)
PITCH = ms.index_of("headPitch")
BROW = ms.index_of("browInnerUp")


@pytest.fixture(scope="module")
def examples():
    """Three padded utterances as training examples, all with seed 0."""
    out = []
    for i, text in enumerate(TEXTS):
        try:
            speech = synthesize(text, voice="awb")
        except SynthesisError as exc:
            pytest.skip(f"flite is needed to make speech: {exc}")
        rng = np.random.default_rng(i)
        samples, phones = pad_with_silence(speech.samples, speech.sample_rate, speech.phones, rng)
        example = utterance_targets(samples, speech.sample_rate, phones, FPS, seed=0)
        out.append((example, phones))
    return out


def test_every_accent_starts_a_nod_and_high_ones_raise_the_brows(examples) -> None:
    for example, phones in examples:
        accents = find_accents(phones, example.features, FPS, ProsodyConfig())
        assert len(accents) >= 2
        velocity = np.diff(example.motion[:, PITCH]) * FPS  # the nod pitches the head down
        brow = example.motion[:, BROW]
        for accent in accents:
            frame = int(round(accent.time_s * FPS))
            after = slice(frame, frame + int(0.25 * FPS))
            assert velocity[after].min() < -0.05, f"no nod after the accent at {accent.time_s}"
            if accent.f0_z > ProsodyConfig().brow_f0_z:
                assert brow[after].max() > brow[max(frame - 1, 0)] + 0.05


def test_one_seed_gives_different_clips_different_head_paths(examples) -> None:
    traces = [example.motion[:, PITCH] for example, _ in examples]
    n = min(len(t) for t in traces)
    r = np.corrcoef([t[:n] for t in traces])
    off_diagonal = np.abs(r[~np.eye(len(traces), dtype=bool)])
    assert off_diagonal.max() < 0.5, r


def test_listening_is_calmer_than_speaking(examples) -> None:
    for example, phones in examples:
        times = np.arange(len(example.motion)) / FPS
        runs = phrases(phones, ProsodyConfig().phrase_pause_s)
        speaking = np.zeros(len(times), bool)
        for start, end in runs:
            speaking |= (times >= start) & (times < end)
        # Away from the edges of speech, where postures ease in and out.
        far = np.convolve(speaking, np.ones(41), "same") == 0
        head = example.motion[:, :3]
        moving = np.abs(np.diff(head, axis=0)).sum(1)
        assert moving[far[1:]].mean() < 0.5 * moving[speaking[1:]].mean()


def test_blinks_follow_the_speech_not_only_the_seed() -> None:
    """One seed under two speech schedules blinks at different times, at a human rate."""

    def onsets(speaking: np.ndarray) -> list[int]:
        process = BlinkProcess(BaselineConfig(), FPS, np.random.default_rng(7))
        closure = [
            process.step(i / FPS, bool(speaking[i - 1] and not speaking[i]), bool(speaking[i]))
            for i in range(len(speaking))
        ]
        shut = np.asarray(closure) > 0.5
        return [i for i in range(1, len(shut)) if shut[i] and not shut[i - 1]]

    minutes = 4
    frames = minutes * 60 * FPS
    rng = np.random.default_rng(3)
    talk_a = np.repeat(rng.random(frames // 50) < 0.6, 50)
    talk_b = np.repeat(rng.random(frames // 75) < 0.6, 75)[:frames]
    a, b = onsets(talk_a), onsets(talk_b)
    assert 12 <= len(a) / minutes <= 26 and 12 <= len(b) / minutes <= 26
    shared = sum(any(abs(x - y) <= 1 for y in b) for x in a)
    assert shared < 0.3 * len(a)
    # Speaking blinks more than listening (Bentivoglio et al. 1997).
    silent = onsets(np.zeros(frames, bool))
    talking = onsets(np.ones(frames, bool))
    assert len(talking) > 1.2 * len(silent)


def test_speech_gate_ends_an_utterance_after_the_hold() -> None:
    config = BaselineConfig()
    gate = SpeechGate(config, FPS)
    loud = [gate.step(-20.0) for _ in range(25)]
    assert loud[-1][0] == 1.0 and gate.in_utterance
    quiet = [gate.step(-90.0)[2] for _ in range(25)]
    ended_at = quiet.index(True)
    assert abs(ended_at + 1 - config.utterance_hold_s * FPS) <= 1
    assert sum(quiet) == 1 and not gate.in_utterance


def test_phrases_split_at_long_pauses_only() -> None:
    phones = [
        Phone("SIL", 0.0, 0.5),
        Phone("HH", 0.5, 0.6),
        Phone("AH", 0.6, 0.8),
        Phone("SIL", 0.8, 0.9),  # too short to end a phrase
        Phone("L", 0.9, 1.0),
        Phone("OW", 1.0, 1.3),
        Phone("SIL", 1.3, 1.8),
        Phone("B", 1.8, 1.9),
        Phone("AY", 1.9, 2.2),
    ]
    assert phrases(phones, 0.15) == [(0.5, 1.3), (1.8, 2.2)]
    assert len(prosody_targets(phones, np.zeros((60, 87), np.float32), FPS, seed=0)) == 60
