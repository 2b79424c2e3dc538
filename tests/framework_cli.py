"""The command line of the scripts that tests/framework_runs.py runs in a framework's venv.

Kept apart from framework_runs (which needs the main venv's engines) so that the
scripts import it in a venv that has only the framework and facecast's client.
"""

from __future__ import annotations

import argparse
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CHUNK_S = 0.02  # the speech goes out in 20 ms chunks, as a streaming TTS sends it


def read_wav(path: Path) -> tuple[bytes, int]:
    """s16le mono PCM and its rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16-bit mono")
        return wav.readframes(wav.getnframes()), wav.getframerate()


def parse_run_arguments(description: str) -> argparse.Namespace:
    """--url of the live server, the two utterances (wavs), the folder to write, the fps,
    and when to interrupt the second utterance (seconds after it starts)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", required=True)
    parser.add_argument("--speech", type=Path, required=True)
    parser.add_argument("--long-speech", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--interrupt-after", type=float, default=0.85)
    return parser.parse_args()


def save_recording(
    out: Path, pixels: Sequence[bytes], size: tuple[int, int], pcm: Sequence[bytes]
) -> np.ndarray:
    """Write the received RGB frames (each width x height x 3 bytes) to out/frames.npy and
    the s16le audio to out/audio.npy, which tests/framework_runs.py reads; returns the
    frames (a memory map)."""
    out.mkdir(parents=True, exist_ok=True)
    width, height = size
    frames = np.lib.format.open_memmap(
        out / "frames.npy", mode="w+", dtype=np.uint8, shape=(len(pixels), height, width, 3)
    )
    for index, image in enumerate(pixels):
        frames[index] = np.frombuffer(image, np.uint8).reshape(height, width, 3)
    frames.flush()
    np.save(out / "audio.npy", np.frombuffer(b"".join(pcm), np.int16))
    return frames
