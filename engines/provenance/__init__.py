"""Provenance: the invisible mark every generated frame carries, and its detector.

`WatermarkEmbedder(payload).embed(rgb)` after rendering and before encoding;
`WatermarkDetector().add(frame)` over a video's frames, then `.result()`.
The design and the measured comparison with `invisible-watermark` are in
watermark.py's docstring and benchmarks/results/bench_watermark.md.
"""

from .code import CODED_BITS, CORRECTABLE_ERRORS, PAYLOAD_BITS
from .watermark import (
    DEFAULT_KEY,
    Detection,
    WatermarkConfig,
    WatermarkDetector,
    WatermarkEmbedder,
    detect,
    make_payload,
    split_payload,
)

__all__ = [
    "CODED_BITS",
    "CORRECTABLE_ERRORS",
    "DEFAULT_KEY",
    "PAYLOAD_BITS",
    "Detection",
    "WatermarkConfig",
    "WatermarkDetector",
    "WatermarkEmbedder",
    "detect",
    "make_payload",
    "split_payload",
]
