"""Make real speech for tests with the system TTS engines (flite, espeak-ng).

Kept independent of engines/ (reads and writes wav with scipy) so that the
audio code under test is never used to build its own test input.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

__all__ = [
    "SpeechClip",
    "tts_available",
    "flite_voices",
    "synthesize",
    "load_wav",
    "write_wav",
    "trim_silence",
    "pad_with_silence",
    "make_speech_clip",
]

DEFAULT_VOICES = {"flite": "kal", "espeak-ng": None}


@dataclass(frozen=True)
class SpeechClip:
    """A test utterance: speech between speech_start_s and speech_end_s, silence around it."""

    path: Path
    sample_rate: int
    speech_start_s: float
    speech_end_s: float
    duration_s: float
    text: str


def tts_available(engine: str = "flite") -> bool:
    return shutil.which(engine) is not None


def flite_voices() -> tuple[str, ...]:
    """Voices the installed flite offers (empty without flite)."""
    if not tts_available("flite"):
        return ()
    out = subprocess.run(["flite", "-lv"], check=True, capture_output=True, text=True).stdout
    return tuple(out.split(":", 1)[-1].split())


def synthesize(
    text: str, path: str | Path, engine: str = "flite", voice: str | None = None
) -> Path:
    """Speak `text` into a wav file at `path` with flite or espeak-ng; returns the path."""
    path = Path(path)
    voice = voice or DEFAULT_VOICES.get(engine)
    if engine == "flite":
        cmd = ["flite", "-voice", voice or "kal", "-t", text, "-o", str(path)]
    elif engine == "espeak-ng":
        cmd = ["espeak-ng", "-w", str(path)] + (["-v", voice] if voice else []) + [text]
    else:
        raise ValueError(f"unknown TTS engine {engine!r}; use 'flite' or 'espeak-ng'")
    if not tts_available(engine):
        raise FileNotFoundError(f"{engine} is not installed; apt-get install {engine}")
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return path


def load_wav(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] (shape (S,)) and their rate, resampled if asked."""
    rate, data = wavfile.read(str(path))
    if data.dtype.kind == "i":
        samples = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    else:
        samples = data.astype(np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if sample_rate is not None and sample_rate != rate:
        gcd = np.gcd(sample_rate, rate)
        samples = resample_poly(samples, sample_rate // gcd, rate // gcd).astype(np.float32)
        rate = sample_rate
    return samples, rate


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write float samples (shape (S,)) as 16-bit PCM mono wav."""
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
    wavfile.write(str(path), sample_rate, pcm)
    return Path(path)


def trim_silence(samples: np.ndarray, sample_rate: int, threshold_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing parts whose 10 ms RMS stays below threshold_db (re full scale)."""
    hop = sample_rate // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    rms_db = 10.0 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(rms_db > threshold_db)
    if len(loud) == 0:
        return samples[:0]
    return samples[loud[0] * hop : (loud[-1] + 1) * hop]


def pad_with_silence(
    samples: np.ndarray, sample_rate: int, before_s: float = 1.0, after_s: float = 1.0
) -> np.ndarray:
    """Digital silence before and after: float32 array of shape (S + padding,)."""
    before = np.zeros(round(before_s * sample_rate), dtype=np.float32)
    after = np.zeros(round(after_s * sample_rate), dtype=np.float32)
    return np.concatenate([before, samples.astype(np.float32), after])


def make_speech_clip(
    text: str,
    path: str | Path,
    sample_rate: int = 16000,
    before_s: float = 1.0,
    after_s: float = 1.0,
    engine: str = "flite",
    voice: str | None = None,
) -> SpeechClip:
    """Synthesize, trim the engine's own lead-in/out, pad with silence, write mono wav."""
    path = Path(path)
    raw = synthesize(text, path.with_suffix(".raw.wav"), engine=engine, voice=voice)
    samples, _ = load_wav(raw, sample_rate)
    speech = trim_silence(samples, sample_rate)
    padded = pad_with_silence(speech, sample_rate, before_s, after_s)
    write_wav(path, padded, sample_rate)
    return SpeechClip(
        path=path,
        sample_rate=sample_rate,
        speech_start_s=before_s,
        speech_end_s=before_s + len(speech) / sample_rate,
        duration_s=len(padded) / sample_rate,
        text=text,
    )
