"""The visible "AI-generated" label: white text on a dark box in a corner of the frame.

Drawn after rendering and before encoding, when an operator asks for it (off by
default; the invisible mark is always there unless turned off). The text and
its box are drawn once per frame size; each frame then costs one small blend.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["LABEL_TEXT", "LabelOverlay", "label_box"]

LABEL_TEXT = "AI-generated"
_BOX_OPACITY = 0.6  # the box darkens what is under it; the text is opaque
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_box(height: int, width: int, text: str = LABEL_TEXT) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the label in the bottom-right corner of an H x W frame."""
    scale, thickness, margin, pad = _metrics(width)
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    box_w, box_h = text_w + 2 * pad, text_h + baseline + 2 * pad
    x1, y1 = width - margin, height - margin
    return max(0, y1 - box_h), y1, max(0, x1 - box_w), x1


def _metrics(width: int) -> tuple[float, int, int, int]:
    """Font scale, stroke, margin and padding for a frame `width` px wide (0.5 at 512)."""
    scale = max(0.3, width / 1024)
    return scale, max(1, round(width / 512)), max(2, width // 64), max(2, width // 128)


@dataclass
class _Patch:
    box: tuple[int, int, int, int]
    alpha: np.ndarray  # (h, w, 1) float32 in [0, 1]: how much of the label replaces the frame
    colour: np.ndarray  # (h, w, 3) float32: the label's own pixels


class LabelOverlay:
    """Draws `text` in the bottom-right corner; one per stream (it caches the patch)."""

    def __init__(self, text: str = LABEL_TEXT) -> None:
        if not text or not text.isascii() or len(text) > 40:
            raise ValueError(f"the label must be 1-40 ASCII characters, got {text!r}")
        self.text = text
        self._patches: dict[tuple[int, int], _Patch] = {}

    def _patch(self, height: int, width: int) -> _Patch:
        patch = self._patches.get((height, width))
        if patch is None:
            y0, y1, x0, x1 = label_box(height, width, self.text)
            scale, thickness, _, pad = _metrics(width)
            text_mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            _, baseline = cv2.getTextSize(self.text, _FONT, scale, thickness)
            origin = (pad, y1 - y0 - pad - baseline)
            cv2.putText(text_mask, self.text, origin, _FONT, scale, (255,), thickness, cv2.LINE_AA)
            ink = (text_mask.astype(np.float32) / 255.0)[..., None]  # (h, w, 1)
            alpha = _BOX_OPACITY + (1.0 - _BOX_OPACITY) * ink
            colour = np.repeat(255.0 * ink, 3, axis=2) / np.maximum(alpha, 1e-6)
            patch = _Patch((y0, y1, x0, x1), alpha.astype(np.float32), colour.astype(np.float32))
            self._patches[(height, width)] = patch
        return patch

    def draw(self, rgb: np.ndarray, in_place: bool = False) -> np.ndarray:
        """(H, W, 3) uint8 in, the (H, W, 3) uint8 frame with the label out (a new one
        unless `in_place`)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"draw takes (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        patch = self._patch(rgb.shape[0], rgb.shape[1])
        y0, y1, x0, x1 = patch.box
        out = rgb if in_place else rgb.copy()
        region = out[y0:y1, x0:x1].astype(np.float32)
        blended = region * (1.0 - patch.alpha) + patch.colour * patch.alpha
        out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out
