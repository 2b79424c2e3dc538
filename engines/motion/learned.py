"""The learned motion source: streaming audio encoder + diffusion sampler behind MotionSource.

Per push: 16 kHz audio -> log-mel/prosody features at the model's own frame
rate (the rate it was trained at, 25 fps for the shipped checkpoint) -> the
AudioEncoder over a rolling buffer of feature rows, exact for every row whose
one-frame look-ahead has arrived -> MotionSampler windows of `heard_frames`
frames, conditioned on the eased control states of those frames -> motion at
the output rate (linear interpolation when it differs from the model's rate).

Smoothing: sampling one frame per call adds frame-to-frame tremor to the slow
channels (head, brows, gaze, cheeks); a One Euro filter (engines.motion.smoothing) in
the model's normalised units takes it out. The mouth and the eyelids are not
filtered: their timing is the point.

Digital silence: training audio always carries a noise floor, and the log-mel
of exact zeros lies far outside it (the head then twitches), so a seeded dither
at -80 dBFS goes under the audio before its features.

Blinks: few-step sampling averages a rare, short event like a blink onset
away (alone the live sampler blinks about 10 times a minute in silence, half a
person's rate; bench_motion measures it), so the baseline's BlinkProcess closes
the lids over the sampled motion too, paced by a SpeechGate over the same
feature rows: more blinks while speaking, often one just after an utterance
ends, so the blink times follow the audio and not only the seed. The model's
own partial lid closure (emotion, a lowered gaze) stays where it is larger; its
own full closures are cut (_MODEL_LID_CAP) so that one process sets the rate.

Latency (algorithmic): the features' 40 ms look-ahead + the encoder's one
model frame + (heard_frames - 1) model frames, + one model frame when the
output rate differs (interpolation needs the next frame). 80 ms at 25 fps with
heard_frames = 1.

The shipped checkpoint is engines/assets/motion.safetensors; any checkpoint
`facecast train` writes loads the same way.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..audio.features import FEATURE_NAMES, AudioFeatureExtractor
from ..backends.registry import BackendConfig, motion_stages
from ..paths import DEFAULT_CHECKPOINT
from ..types import AudioChunk, AudioFeatures, MotionWindow
from . import space as ms
from .baseline import BlinkProcess, SpeechGate
from .checkpoint import load_motion_model
from .config import MotionConfig
from .model import MotionModel, MotionSampler
from .smoothing import OneEuroFilter
from .source import MotionSource

__all__ = ["LearnedMotion", "default_motion_model"]

logger = logging.getLogger(__name__)

_BLINKS = [ms.index_of("eyeBlinkLeft"), ms.index_of("eyeBlinkRight")]
# The sampler's own lid closure is kept up to this: the lowered lids of sadness (0.15)
# and of a downward gaze (about 0.2) stay, while its own blinks, which it learned
# from the same speech-paced targets, are cut, so they do not add to the BlinkProcess's
# (together they blinked 33 times a minute in speech).
_MODEL_LID_CAP = 0.3
# Channels the One Euro filter smooths: all but the mouth and the eyelids.
_SMOOTHED = [
    i
    for i, name in enumerate(ms.MOTION_NAMES)
    if name not in ms.MOUTH_CHANNELS and i not in _BLINKS
]
_BROW_RAISES = ("browInnerUp", "browOuterUpLeft", "browOuterUpRight")
_RMS = FEATURE_NAMES.index("rms_db")
_DITHER = 1e-4  # -80 dBFS: under any real recording's noise floor, over digital zero


@functools.lru_cache(maxsize=4)
def _cached_model(path: str) -> MotionModel:
    return load_motion_model(Path(path))


def default_motion_model(checkpoint: Path | None = None) -> MotionModel:
    """The model at checkpoint (None: the shipped one), loaded once per process.

    The modules are shared read-only between sources: sampling never mutates them.
    """
    return _cached_model(str(Path(checkpoint or DEFAULT_CHECKPOINT).resolve()))


class LearnedMotion(MotionSource):
    """MotionSource driven by the learned sampler; see the module docstring."""

    def __init__(
        self,
        config: MotionConfig,
        fps: float,
        seed: int = 0,
        model: MotionModel | None = None,
        backend: BackendConfig | None = None,
    ) -> None:
        self.config = config
        self.model = model or default_motion_model(config.checkpoint)
        self.stages = motion_stages(self.model, backend or BackendConfig())
        self.model_fps = self.model.fps
        super().__init__(fps, control_fps=self.model_fps)  # conditioned per model frame
        self.heard_frames = min(config.heard_frames, self.model.window)
        self.extractor = AudioFeatureExtractor(config.features, self.model_fps)
        self.sampler = MotionSampler(
            self.stages.denoiser,
            normalizer=self.model.normalizer,
            window=self.model.window,
            prefix=self.model.prefix,
            num_steps=config.num_steps,
            audio_scale=_audio_scales(config),
            controls_scale=config.controls_scale,
            seed=seed,
        )
        self._seed = seed
        self._context = self.model.encoder.context_frames
        self._new_stream()

    @property
    def latency_s(self) -> float:
        frames = self.model.encoder.lookahead_frames + self.heard_frames - 1
        frames += 0 if self._resampler.identity else 1
        return self.extractor.latency_s + frames / self.model_fps

    def push(self, chunk: AudioChunk) -> MotionWindow:
        noise = self._dither.standard_normal(len(chunk.samples)).astype(np.float32) * _DITHER
        self._append(self.extractor.push(replace(chunk, samples=chunk.samples + noise)))
        ready = self._rows_start + len(self._rows) - self.model.encoder.lookahead_frames
        return self._resampler.push(self._sample_until(ready, self.heard_frames))

    def flush(self) -> MotionWindow:
        """Sample every remaining frame (the future past the end is silence), then reset."""
        self._append(self.extractor.flush())
        end = self._rows_start + len(self._rows)
        motion = self._sample_until(end, self.heard_frames, final=True)
        out = self._resampler.push(motion, final=True)
        self._new_stream()
        return out

    def _new_stream(self) -> None:
        """Every piece of per-stream state, fresh: the next push starts at frame 0."""
        self._rows = np.zeros((0, self.model.config.feature_dim), np.float32)  # kept tail
        self._rows_start = 0  # model frame index of self._rows[0]
        self._next_frame = 0  # first model frame not sampled yet
        self._resampler = _Resampler(self.model_fps, self.fps)
        self.sampler.reset(self._seed)
        self._blinks = BlinkProcess(
            self.config.baseline, self.model_fps, np.random.default_rng([self._seed, 1])
        )
        self._speech = SpeechGate(self.config.baseline, self.model_fps)
        self._dither = np.random.default_rng([self._seed, 2])
        self._smoother = OneEuroFilter(self.model_fps)

    def _append(self, features: AudioFeatures) -> None:
        if len(features):
            self._rows = np.concatenate([self._rows, features.values.astype(np.float32)])

    def _sample_until(self, ready: int, group: int, final: bool = False) -> np.ndarray:
        """Motion (N, D) at the model rate for frames [next, ready), in groups of `group`."""
        out: list[np.ndarray] = []
        while ready - self._next_frame >= group or (final and ready > self._next_frame):
            n = min(group, ready - self._next_frame)
            embedding = self._embed(self._next_frame, n)
            states = self.mixer.advance(n)
            motion = self.sampler.sample_window(embedding, states)
            self._smooth(motion)
            if self.config.blink_process:
                self._lay_blinks(motion, self._next_frame)
            out.append(motion)
            self._next_frame += n
        self._trim()
        return np.concatenate(out) if out else np.zeros((0, ms.MOTION_DIM), np.float32)

    def _smooth(self, motion: np.ndarray) -> None:
        """One Euro filter over the slow channels of motion (N, D), in the model's units."""
        std = self.model.normalizer.std[_SMOOTHED]
        for frame in motion:
            frame[_SMOOTHED] = self._smoother(frame[_SMOOTHED] / std) * std

    def _lay_blinks(self, motion: np.ndarray, first: int) -> None:
        """Close the lids over motion (N, D) of model frames first.. where a blink is due,
        paced by whether the speaker talks (their rows' loudness)."""
        # Every sampled frame's row is still kept: frames are sampled only up to `ready`.
        rms = self._rows[first - self._rows_start : first - self._rows_start + len(motion), _RMS]
        for row, frame in enumerate(motion):
            _, _, ended = self._speech.step(float(rms[row]))
            closure = self._blinks.step(
                (first + row) / self.model_fps, ended, self._speech.in_utterance
            )
            frame[_BLINKS] = np.maximum(np.minimum(frame[_BLINKS], _MODEL_LID_CAP), closure)

    @torch.inference_mode()
    def _embed(self, first: int, n: int) -> torch.Tensor:
        """Encoder rows for frames [first, first + n): Tensor of shape (1, n, C).

        Runs over the receptive field only; rows before the stream start are the
        zero padding the encoder saw in training, so each row is exact.
        """
        lo = max(first - self._context, 0) - self._rows_start
        hi = first + n + self.model.encoder.lookahead_frames - self._rows_start
        window = torch.from_numpy(self._rows[lo:hi])[None]  # 1xTxF
        offset = first - self._rows_start - lo
        return self.stages.encoder(window)[:, offset : offset + n]

    def _trim(self) -> None:
        """Forget feature rows no future frame's receptive field reaches."""
        keep_from = max(self._next_frame - self._context, self._rows_start)
        drop = keep_from - self._rows_start
        if drop > 0:
            self._rows = self._rows[drop:]
            self._rows_start = keep_from


def _audio_scales(config: MotionConfig) -> np.ndarray:
    """Per-channel audio guidance (D,): mouth_audio_scale on the lips, nod_audio_scale on
    the head's pitch, brow_audio_scale on the brow raises, audio_scale elsewhere."""
    scales = np.full(ms.MOTION_DIM, config.audio_scale, np.float32)
    scales[[ms.index_of(name) for name in ms.MOUTH_CHANNELS]] = config.mouth_audio_scale
    scales[ms.index_of("headPitch")] = config.nod_audio_scale
    scales[[ms.index_of(name) for name in _BROW_RAISES]] = config.brow_audio_scale
    return scales


class _Resampler:
    """Model-rate motion frames -> output-rate frames by linear interpolation in time."""

    def __init__(self, model_fps: float, fps: float) -> None:
        self.model_fps, self.fps = model_fps, fps
        self.identity = abs(model_fps - fps) < 1e-9
        self._frames = np.zeros((0, 0), np.float32)  # model frames kept, from _start
        self._start = 0
        self._next_out = 0

    def push(self, motion: np.ndarray, final: bool = False) -> MotionWindow:
        """motion: model-rate frames (N, D), in order -> the output frames they complete."""
        pts = self._next_out
        if self.identity:
            self._next_out += len(motion)
            return MotionWindow(np.asarray(motion, np.float32), self.fps, pts)
        if len(motion):
            frames = motion if self._frames.size == 0 else np.concatenate([self._frames, motion])
            self._frames = np.asarray(frames, np.float32)
        end = self._start + len(self._frames)  # model frames known: [0, end)
        rows: list[np.ndarray] = []
        while len(self._frames):
            position = self._next_out * self.model_fps / self.fps  # in model frames
            lower = int(np.floor(position + 1e-9))
            if lower + 1 >= end and not (final and lower < end):
                break
            a = self._frames[lower - self._start]
            b = self._frames[min(lower + 1, end - 1) - self._start]
            rows.append(a + (b - a) * (position - lower))
            self._next_out += 1
        keep = max(int(np.floor(self._next_out * self.model_fps / self.fps)) - self._start, 0)
        self._frames, self._start = self._frames[keep:], self._start + keep
        values = np.stack(rows) if rows else np.zeros((0, ms.MOTION_DIM), np.float32)
        return MotionWindow(values.astype(np.float32), self.fps, pts)
