"""Contact sheet: frames across one utterance, the mouth at its widest and an eye mid-blink.

Usage: python -m benchmarks.contact_sheet [--portrait P] [--audio A] [-o sheet.png]
Renders with the same engines as `facecast render` so the sheet shows what users get.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from engines.audio.decoding import iter_audio
from engines.audio.speech import speak_to_file
from engines.face.encoder import FaceEncoder
from engines.motion import MOTION_KINDS, MotionConfig, open_motion_source
from engines.motion.space import index_of
from engines.render.renderer import FaceRenderer

TILE = 256
COLUMNS = 6


def source_motion(audio: Path, fps: int, config: MotionConfig, seed: int = 0) -> np.ndarray:
    """Motion (T, D) for a whole file from the motion source config names."""
    source = open_motion_source(config, fps, seed=seed)
    windows = [source.push(chunk).values for chunk in iter_audio(audio, 16000)]
    windows.append(source.flush().values)
    return np.concatenate(windows)


def baseline_motion(audio: Path, fps: int, seed: int = 0) -> np.ndarray:
    """Motion (T, D) for a whole file from the procedural baseline."""
    return source_motion(audio, fps, MotionConfig(kind="baseline"), seed)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.rectangle(tile, (0, 0), (TILE, 16), (0, 0, 0), -1)
    cv2.putText(tile, text, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _zoom(frame: np.ndarray, centre: np.ndarray, half: int) -> np.ndarray:
    x, y = (int(v) for v in centre)
    size = frame.shape[0]
    x, y = min(max(x, half), size - half), min(max(y, half), size - half)
    return cv2.resize(
        frame[y - half : y + half, x - half : x + half], (TILE, TILE), interpolation=cv2.INTER_CUBIC
    )


def contact_sheet(
    portrait: Path | None, audio: Path, fps: int = 25, motion_kind: str = "learned"
) -> np.ndarray:
    avatar = FaceEncoder().encode(portrait)
    renderer = FaceRenderer(avatar)
    # Offline settings, as `facecast render` uses them.
    motion = source_motion(audio, fps, MotionConfig(kind=motion_kind))
    picks = np.linspace(0, len(motion) - 1, 2 * COLUMNS - 2).astype(int)
    jaw = motion[:, index_of("jawOpen")]
    blink = motion[:, index_of("eyeBlinkLeft")]
    widest, blinked = int(jaw.argmax()), int(blink.argmax())
    with torch.inference_mode():
        frames = renderer.render(motion[np.concatenate([picks, [widest, blinked]])])
    tiles = [
        _label(
            cv2.resize(f, (TILE, TILE), interpolation=cv2.INTER_AREA),
            f"t={i / fps:.2f}s jaw={jaw[i]:.2f}",
        )
        for f, i in zip(frames[:-2], picks, strict=True)
    ]
    lm = avatar.landmarks
    tiles.append(
        _label(
            _zoom(frames[-2], 0.5 * (lm[13, :2] + lm[14, :2]), 48), f"mouth jaw={jaw[widest]:.2f}"
        )
    )
    tiles.append(_label(_zoom(frames[-1], lm[473, :2], 32), f"blink={blink[blinked]:.2f}"))
    rows = [np.concatenate(tiles[r : r + COLUMNS], 1) for r in range(0, len(tiles), COLUMNS)]
    return np.concatenate(rows, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portrait", type=Path)
    parser.add_argument("--audio", type=Path, help="speech file (default: flite speaks a sentence)")
    parser.add_argument("--motion", choices=MOTION_KINDS, default="learned")
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("benchmarks/results/contact_sheet.png")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audio = args.audio or speak_to_file(
            "Hello! I am a portrait that talks. Peter picked a bowl of blue berries.",
            Path(tmp) / "s.wav",
        )
        sheet = contact_sheet(args.portrait, audio, motion_kind=args.motion)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
