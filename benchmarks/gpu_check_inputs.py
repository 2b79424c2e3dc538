"""The GPU check's inputs: a prepared avatar and a speech clip, made on a CPU machine.

The lent GPU machine has no mediapipe (so no FaceEncoder analysis), no PyAV (so
no engines.audio.decoding) and no network. `prepare` runs here: the real
FaceEncoder analyses the built-in portrait and save_avatar writes it; the speech
is the shared radio recording (or flite when it is absent), written as a 16 kHz
mono 16-bit wav. `load` reads both back with numpy and the stdlib `wave` module
only: loading must not import mediapipe or av (engines.face.avatar imports
numpy, scipy and engines.face.mesh; tests/test_gpu_check.py checks it).

Folder layout (about 7 MB): avatar.npz, speech.wav, inputs.json.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.face.avatar import Avatar, load_avatar, save_avatar

__all__ = ["DEFAULT_INPUTS", "RATE", "GpuCheckInputs", "load", "prepare"]

# Under /out/, which .gitignore already ignores: the device call names it in `carry`.
DEFAULT_INPUTS = Path(__file__).resolve().parent.parent / "out" / "gpu_check_inputs"
RATE = 16000
RADIO = Path("/work/shared/assets/speech/en_male_radio.wav")
FLITE_TEXT = "Hello! I am a portrait that talks. Peter picked a bowl of blue berries."
MAX_SECONDS = 10.0


@dataclass(frozen=True)
class GpuCheckInputs:
    """avatar: the built-in portrait, analysed. speech: float32 (N,) at RATE Hz in [-1, 1]."""

    avatar: Avatar
    speech: np.ndarray
    meta: dict


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM wav -> float32 (N,) mono in [-1, 1], sample rate (stdlib wave only)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        channels, rate = w.getnchannels(), w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    samples = pcm.reshape(-1, channels).astype(np.float32).mean(axis=1) / 32768.0  # N
    return samples, rate


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def _speech(tmp: Path) -> tuple[np.ndarray, str]:
    """About MAX_SECONDS of real speech at RATE: the radio recording, else flite."""
    from scipy.signal import resample_poly

    if RADIO.exists():
        source, label = RADIO, RADIO.name
    else:
        from engines.audio.speech import speak_to_file

        source, label = speak_to_file(FLITE_TEXT, tmp / "flite.wav"), "flite"
    samples, rate = _read_wav(source)
    if rate != RATE:
        samples = resample_poly(samples, RATE, rate).astype(np.float32)
    return samples[: int(MAX_SECONDS * RATE)], label


def prepare(folder: Path) -> Path:
    """Analyse the built-in portrait and write avatar.npz, speech.wav, inputs.json to folder."""
    from engines.face.encoder import ENCODER_VERSION, FaceEncoder, FaceEncoderConfig

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        avatar = FaceEncoder(FaceEncoderConfig(cache_dir=Path(tmp) / "cache")).encode(None)
        speech, label = _speech(Path(tmp))
    save_avatar(avatar, folder / "avatar.npz")
    _write_wav(folder / "speech.wav", speech, RATE)
    meta = {
        "prepared": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "portrait": "la_velata (built-in)",
        "encoder_version": ENCODER_VERSION,
        "avatar_key": avatar.content_hash,  # FaceEncoder's cache key: the plugin matches it
        "image_size": avatar.image_size,
        "speech": label,
        "speech_seconds": round(len(speech) / RATE, 2),
        "rate": RATE,
    }
    (folder / "inputs.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def load(folder: Path) -> GpuCheckInputs:
    """The prepared inputs; FileNotFoundError saying how to make them when absent."""
    missing = [n for n in ("avatar.npz", "speech.wav", "inputs.json") if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {', '.join(missing)}: run `python -m benchmarks.gpu_check --prepare "
            f"{folder}` on a machine with mediapipe (the CPU checkout), then carry that folder"
        )
    speech, rate = _read_wav(folder / "speech.wav")
    if rate != RATE:
        raise ValueError(f"{folder / 'speech.wav'} is {rate} Hz; prepare it again ({RATE} Hz)")
    meta = json.loads((folder / "inputs.json").read_text())
    return GpuCheckInputs(load_avatar(folder / "avatar.npz"), speech, meta)
