"""Training targets for the learned motion model: one motion-space sequence per utterance.

Mouth channels come from the phone timings (visemes.phone_targets: coarticulated
visemes, lips closed on p/b/m, rounding on w/uw/ow). Head rotation, breathing, brows
and blinks come from the utterance's visual prosody (prosody.prosody_targets: nods
and brow raises at pitch accents, a posture per phrase, settling at phrase ends,
calmer listening, blinks paced by the speech), so the sampler learns them from the
prosody cues it will hear at run time, and the seed only draws their directions
and sizes. Gaze and the remaining channels come from the procedural baseline run
on the same audio (seeded fixations and saccades).

Alignment: feature row k and target frame k both describe time k / fps, so a
training pair (features[k], motion[k]) needs no shift; the run-time look-ahead is
the feature extractor's own (AudioFeatureExtractor.latency_s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..audio.features import AudioFeatureConfig, AudioFeatureExtractor
from ..motion import space as ms
from ..motion.baseline import BaselineConfig, ProceduralMotionSource
from ..types import AudioChunk
from .prosody import PROSODY_CHANNELS, ProsodyConfig, prosody_targets
from .visemes import MOUTH_CHANNELS, Phone, VisemeConfig, phone_targets

__all__ = ["TrainingExample", "pad_with_silence", "utterance_targets"]

_MOUTH_INDEX = np.array([ms.index_of(name) for name in MOUTH_CHANNELS])
_PROSODY_INDEX = np.array([ms.index_of(name) for name in PROSODY_CHANNELS])


@dataclass(frozen=True)
class TrainingExample:
    """features: float32 (T, F) audio features; motion: float32 (T, D) targets; same T."""

    features: np.ndarray
    motion: np.ndarray
    fps: float


def pad_with_silence(
    samples: np.ndarray,
    sample_rate: int,
    phones: Sequence[Phone],
    rng: np.random.Generator,
    pad_range_s: tuple[float, float] = (0.2, 2.5),
) -> tuple[np.ndarray, tuple[Phone, ...]]:
    """Random stretches of background noise before and after an utterance; phones shifted.

    Synthesized utterances carry only ~0.2 s of pause at either end, but a live
    face spends most of its time listening: without long pauses in training the
    sampler has never seen idle motion (lips at rest, blinks, slow sway). The
    padding continues the clip's own noise floor (the RMS of its quietest 50 ms).
    samples: float32 (S,); returns float32 (S + lead + tail,) and phones tiling it.
    """
    block = max(int(0.05 * sample_rate), 1)
    usable = len(samples) // block * block
    if usable:
        rms = np.sqrt((samples[:usable].reshape(-1, block).astype(np.float64) ** 2).mean(axis=1))
        floor = max(float(rms.min()), 1e-4)
    else:
        floor = 1e-4
    lead_s, tail_s = (float(rng.uniform(*pad_range_s)) for _ in range(2))
    lead = (rng.standard_normal(int(lead_s * sample_rate)) * floor).astype(np.float32)
    tail = (rng.standard_normal(int(tail_s * sample_rate)) * floor).astype(np.float32)
    shift = len(lead) / sample_rate
    end = (len(lead) + len(samples) + len(tail)) / sample_rate
    moved = [Phone(p.symbol, p.start_s + shift, p.end_s + shift) for p in phones]
    padded = [Phone("SIL", 0.0, shift), *moved, Phone("SIL", moved[-1].end_s, end)]
    return np.concatenate([lead, samples.astype(np.float32), tail]), tuple(padded)


def utterance_targets(
    samples: np.ndarray,
    sample_rate: int,
    phones: Sequence[Phone],
    fps: float,
    seed: int,
    features_config: AudioFeatureConfig | None = None,
    baseline_config: BaselineConfig | None = None,
    viseme_config: VisemeConfig | None = None,
    prosody_config: ProsodyConfig | None = None,
) -> TrainingExample:
    """Audio features and motion targets for one utterance.

    samples: float32 (S,) mono at sample_rate (the feature extractor's rate).
    """
    features_config = features_config or AudioFeatureConfig()
    if sample_rate != features_config.sample_rate:
        raise ValueError(
            f"samples are at {sample_rate} Hz; resample to {features_config.sample_rate} Hz first"
        )
    extractor = AudioFeatureExtractor(features_config, fps)
    chunk = AudioChunk(np.ascontiguousarray(samples, dtype=np.float32), sample_rate, 0)
    head = extractor.push(chunk)
    tail = extractor.flush()
    features = np.concatenate([head.values, tail.values]).astype(np.float32)
    source = ProceduralMotionSource(baseline_config or BaselineConfig(), fps, seed=seed)
    motion = np.concatenate([source.step(head).values, source.step(tail).values]).astype(np.float32)
    prosody = prosody_targets(phones, features, fps, seed, prosody_config, baseline_config)
    motion[:, _PROSODY_INDEX] = prosody[:, _PROSODY_INDEX]
    mouth = phone_targets(phones, fps, viseme_config, num_frames=len(features))
    motion[:, _MOUTH_INDEX] = mouth[:, _MOUTH_INDEX]
    return TrainingExample(features, ms.clip_motion(motion), fps)
