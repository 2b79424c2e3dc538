"""Provenance: the invisible mark every generated frame carries, its detector, the visible
label, and the signed C2PA manifest of MP4s.

`FrameMarker(config, instance_id, stream_id).mark(rgb)` after rendering and
before encoding; `verify_video(path)` reads a video back (mark and manifest);
`sign_mp4` embeds the manifest. `WatermarkConfig.key` is the public DEFAULT_KEY
unless a deployment sets a private one; reports name it 'public' or 'private',
never the key. The mark's design and the measured comparison
with `invisible-watermark` are in watermark.py's docstring and
benchmarks/results/bench_watermark.md.
"""

from .code import CODED_BITS, CORRECTABLE_ERRORS, PAYLOAD_BITS
from .credentials import DEV_ORGANIZATION, SigningCredentials, load_credentials
from .label import LABEL_TEXT, LabelOverlay, label_box
from .manifest import (
    DIGITAL_SOURCE_TYPE,
    ManifestReport,
    manifest_definition,
    read_manifest,
    sign_mp4,
)
from .marker import (
    FrameMarker,
    ProvenanceConfig,
    format_mark,
    instance_id_of,
    parse_instance_id,
    stream_mark,
    with_instance_id,
)
from .verify import VerifyLimits, VerifyReport, WatermarkReport, verify_video
from .watermark import (
    DEFAULT_KEY,
    Detection,
    WatermarkConfig,
    WatermarkDetector,
    WatermarkEmbedder,
    detect,
    key_kind,
    make_payload,
    split_payload,
)

__all__ = [
    "CODED_BITS",
    "CORRECTABLE_ERRORS",
    "DEFAULT_KEY",
    "DEV_ORGANIZATION",
    "DIGITAL_SOURCE_TYPE",
    "LABEL_TEXT",
    "PAYLOAD_BITS",
    "Detection",
    "FrameMarker",
    "LabelOverlay",
    "ManifestReport",
    "ProvenanceConfig",
    "SigningCredentials",
    "VerifyLimits",
    "VerifyReport",
    "WatermarkConfig",
    "WatermarkDetector",
    "WatermarkEmbedder",
    "WatermarkReport",
    "detect",
    "format_mark",
    "instance_id_of",
    "key_kind",
    "label_box",
    "load_credentials",
    "make_payload",
    "manifest_definition",
    "parse_instance_id",
    "read_manifest",
    "sign_mp4",
    "split_payload",
    "stream_mark",
    "verify_video",
    "with_instance_id",
]
