"""The learned motion source with the shipped checkpoint: streaming contract and behaviour.

Behaviour is judged the way benchmarks/bench_motion.py judges it, on speech the
model never heard (flite's slt voice is held out of training), with
pocketsphinx's alignment as the reference.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engines.audio.features import frame_count
from engines.motion import MotionConfig, open_motion_source
from engines.motion import space as ms
from engines.motion.checkpoint import CheckpointError
from engines.motion.controls import Controls
from engines.motion.learned import LearnedMotion, _Resampler
from engines.paths import DEFAULT_CHECKPOINT
from engines.training.corpus import synthesize
from engines.training.metrics import blink_onsets, head_velocity, lip_gap, lip_sync_score
from engines.training.phone_align import PhoneAligner
from engines.types import AudioChunk

RATE = 16000
HELD_OUT_TEXT = "Maybe Bob will bring a warm apple pie to the big party."
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="needs flite")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    if shutil.which("flite") is None:
        pytest.skip("needs flite")
    return synthesize(HELD_OUT_TEXT, "slt", 1.0, None, RATE).samples


def run(
    samples: np.ndarray,
    chunk: int | list[int] = 640,
    fps: float = 25,
    seed: int = 0,
    controls: Controls | None = None,
    heard: int = 1,
) -> tuple[np.ndarray, list[int]]:
    """Motion (T, D) and the pts of every non-empty window, pushing chunks of the given sizes."""
    source = open_motion_source(MotionConfig(heard_frames=heard), fps, seed=seed)
    if controls is not None:
        source.set_controls(controls)
    sizes = iter(chunk) if isinstance(chunk, list) else None
    windows, start = [], 0
    while start < len(samples):
        size = next(sizes) if sizes is not None else chunk
        windows.append(source.push(AudioChunk(samples[start : start + size], RATE, start)))
        start += size
    windows.append(source.flush())
    kept = [w for w in windows if len(w)]
    return np.concatenate([w.values for w in kept]), [w.pts for w in kept]


def test_the_shipped_checkpoint_is_the_default_and_loads() -> None:
    assert DEFAULT_CHECKPOINT.is_file()
    source = open_motion_source(MotionConfig(), 25)
    assert isinstance(source, LearnedMotion) and source.model.fps == 25.0
    assert source.latency_s == pytest.approx(0.08)  # 40 ms features + 1 frame of encoder


def test_a_missing_checkpoint_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="facecast train"):
        open_motion_source(MotionConfig(checkpoint=tmp_path / "none.safetensors"), 25)


@needs_flite
def test_motion_does_not_depend_on_how_audio_is_chunked(speech: np.ndarray) -> None:
    reference, _ = run(speech, 640)
    rng = np.random.default_rng(0)
    odd_sizes = [int(n) for n in rng.integers(1, 3000, size=len(speech))]
    for chunking in (160, 4096, odd_sizes):
        # Equal up to float rounding: the encoder's convolutions see other slice lengths.
        assert np.allclose(run(speech, chunking)[0], reference, atol=1e-4)


@needs_flite
@pytest.mark.parametrize("fps", [25, 30, 40])
def test_one_frame_per_tick_with_contiguous_pts(speech: np.ndarray, fps: int) -> None:
    motion, pts = run(speech, fps=fps)
    assert len(motion) == frame_count(len(speech), RATE, fps)
    assert np.isfinite(motion).all() and motion.shape[1] == ms.MOTION_DIM
    assert pts == sorted(set(pts)) and pts[0] == 0


@needs_flite
def test_frames_arrive_within_the_stated_latency(speech: np.ndarray) -> None:
    source = open_motion_source(MotionConfig(), 25)
    emitted = 0
    for start in range(0, len(speech), 640):
        emitted += len(source.push(AudioChunk(speech[start : start + 640], RATE, start)))
        heard_s = min(start + 640, len(speech)) / RATE
        # Every frame whose time is at least latency_s behind the audio is out.
        due = int(np.floor((heard_s - source.latency_s) * 25 - 0.5 - 1e-6)) + 1
        assert emitted == max(due, 0), (heard_s, emitted, due)


@needs_flite
def test_seeds_fix_the_motion(speech: np.ndarray) -> None:
    a, _ = run(speech, seed=3)
    assert np.array_equal(a, run(speech, seed=3)[0])
    assert not np.array_equal(a, run(speech, seed=4)[0])


def test_resampler_interpolates_linearly_and_flushes_the_tail() -> None:
    ramp = np.arange(10, dtype=np.float32)[:, None].repeat(ms.MOTION_DIM, 1)  # frame i = i
    resampler = _Resampler(25.0, 40.0)
    out = np.concatenate([resampler.push(ramp[:4]).values, resampler.push(ramp[4:], True).values])
    times = np.arange(len(out)) * 25.0 / 40.0  # output frame k sits at model frame k * 25/40
    assert len(out) == 16 and np.allclose(out[:, 0], np.minimum(times, 9.0))


# --- behaviour of the trained model ------------------------------------------------------


@pytest.fixture(scope="module")
def judge_phones(speech: np.ndarray):
    return PhoneAligner(RATE).align(speech, HELD_OUT_TEXT)


@needs_flite
@pytest.mark.parametrize("heard", [1, 8])
def test_lips_follow_held_out_speech(speech: np.ndarray, judge_phones, heard: int) -> None:
    motion, _ = run(speech, heard=heard)
    score = lip_sync_score(judge_phones, motion, 25)
    assert score.bilabials >= 8 and score.open_vowels >= 4
    assert score.bilabials_closed / score.bilabials >= 0.6, score
    assert score.open_vowels_open / score.open_vowels >= 0.6, score
    assert score.openness_r > 0.3 and abs(score.openness_lag) <= 2, score


def test_silence_gives_a_living_face_with_closed_lips() -> None:
    quiet = np.random.default_rng(1).normal(0, 1e-3, 12 * RATE).astype(np.float32)
    motion, _ = run(quiet)
    assert lip_gap(motion).max() < 0.1
    assert blink_onsets(motion) >= 2  # people blink every few seconds
    assert head_velocity(motion, 25).mean() > 0.005  # the head is never frozen
    assert (np.abs(np.diff(motion, axis=0)).max(axis=1) > 1e-5).mean() > 0.9


def _onsets(motion: np.ndarray) -> set[int]:
    shut = motion[:, ms.index_of("eyeBlinkLeft")] > 0.5
    return {i for i in range(1, len(shut)) if shut[i] and not shut[i - 1]}


def test_blink_times_follow_the_audio_not_only_the_seed(speech: np.ndarray) -> None:
    """One seed, the same speech placed at other times: the blinks move with it."""
    quiet = np.random.default_rng(1).normal(0, 1e-3, 6 * RATE).astype(np.float32)
    early, _ = run(np.concatenate([speech, quiet, speech, quiet]))
    late, _ = run(np.concatenate([quiet, speech, quiet, speech]))
    a, b = _onsets(early), _onsets(late)
    assert len(a) >= 2 and len(b) >= 2
    shared = sum(any(abs(x - y) <= 1 for y in b) for x in a)
    assert shared <= len(a) // 2, (sorted(a), sorted(b))


@needs_flite
@pytest.mark.parametrize(
    ("controls", "channel", "low", "high"),
    [
        (Controls(gaze_yaw=0.3), "gazeYaw", 0.15, 0.45),
        (Controls(gaze_pitch=-0.2), "gazePitch", -0.3, -0.1),
        (Controls(head_distance=1.3), "headScale", 0.15, 0.45),
        (Controls(emotion="happy"), "mouthSmileLeft", 0.3, 1.0),
        (Controls(emotion="angry"), "browDownLeft", 0.4, 1.0),
    ],
)
def test_controls_move_the_output_as_asked(
    speech: np.ndarray, controls: Controls, channel: str, low: float, high: float
) -> None:
    neutral, _ = run(speech)
    steered, _ = run(speech, controls=controls)
    index = ms.index_of(channel)
    settled = slice(10, None)  # after the 0.3 s easing
    change = float((steered[settled, index] - neutral[settled, index]).mean())
    assert low <= change <= high, change


@needs_flite
def test_head_pitch_follows_the_speech_more_than_the_seed() -> None:
    """Nods and the head's pitch level come from the speech's accents and F0: one clip on
    two seeds nods alike, different clips on one seed do not (at guidance 1 on pitch the
    seed set the path: 0.74 against 0.41, a margin of 0.33; guided, 0.85 against 0.23)."""
    texts = (
        "Maybe Bob will bring a warm apple pie to the big party.",
        "Nobody expected the river to rise so quickly after the storm.",
        "Please call me back when you have finished reading the report.",
    )
    leads_s = (1.5, 1.8, 2.1)  # clips start at different times on the stream's clock, as in life
    rng = np.random.default_rng(5)
    clips = [
        np.concatenate(
            [
                rng.normal(0, 1e-3, int(lead * RATE)).astype(np.float32),
                synthesize(text, "slt", 1.0, None, RATE).samples,
                rng.normal(0, 1e-3, int(1.5 * RATE)).astype(np.float32),
            ]
        )
        for text, lead in zip(texts, leads_s, strict=True)
    ]
    pitch = ms.index_of("headPitch")
    traces = {
        (i, seed): run(c, seed=seed)[0][:, pitch] for i, c in enumerate(clips) for seed in (0, 1)
    }

    def r(a: np.ndarray, b: np.ndarray, start: int) -> float:
        n = min(len(a), len(b))
        return float(np.corrcoef(a[start:n], b[start:n])[0, 1])

    settled = [int((lead + 0.5) * 25) for lead in leads_s]  # half a second into the speech
    seeds_agree = np.mean([r(traces[i, 0], traces[i, 1], settled[i]) for i in range(3)])
    clips_alike = np.mean(
        [abs(r(traces[i, 0], traces[j, 0], max(settled))) for i, j in ((0, 1), (0, 2), (1, 2))]
    )
    assert seeds_agree - clips_alike >= 0.45, (seeds_agree, clips_alike)
