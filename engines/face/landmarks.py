"""MediaPipe face detection, 478-point face mesh and person segmentation.

Uses the legacy `mediapipe.solutions` graphs of mediapipe 0.10.21, whose
.tflite weights ship inside the wheel, so nothing is downloaded at run time.
Also holds the landmark index groups (lips, lids, brows, irises) that the
encoder, the renderer and the tests share.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FaceDetection",
    "detect_faces",
    "face_mesh",
    "person_mask",
    "LIPS_INNER_UPPER",
    "LIPS_INNER_LOWER",
    "LIPS_OUTER_UPPER",
    "LIPS_OUTER_LOWER",
    "RIGHT_EYE_UPPER",
    "RIGHT_EYE_LOWER",
    "LEFT_EYE_UPPER",
    "LEFT_EYE_LOWER",
    "RIGHT_IRIS",
    "LEFT_IRIS",
    "RIGHT_BROW",
    "LEFT_BROW",
    "FACE_OVAL",
    "NUM_LANDMARKS",
    "inner_lip_gap",
]

logger = logging.getLogger(__name__)

NUM_LANDMARKS = 478

# Contours ordered from image-left to image-right so curves can be evaluated
# as functions of x. "Right" is the subject's right (image left), as in MediaPipe.
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (362, 398, 384, 385, 386, 387, 388, 466, 263)
LEFT_EYE_LOWER = (362, 382, 381, 380, 374, 373, 390, 249, 263)
RIGHT_IRIS = (468, 469, 470, 471, 472)  # centre first
LEFT_IRIS = (473, 474, 475, 476, 477)
RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (336, 296, 334, 293, 300, 285, 295, 282, 283, 276)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip

# The legacy graphs are not thread-safe and are slow to build, so one of each
# is built lazily and shared behind a lock.
_lock = threading.Lock()
_graphs: dict[str, object] = {}


def _graph(name: str) -> object:
    import mediapipe as mp

    if name not in _graphs:
        if name == "detect_near":
            _graphs[name] = mp.solutions.face_detection.FaceDetection(
                model_selection=0, min_detection_confidence=0.3
            )
        elif name == "detect_far":
            _graphs[name] = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=0.3
            )
        elif name == "mesh":
            _graphs[name] = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, refine_landmarks=True, max_num_faces=1,
                min_detection_confidence=0.3,
            )  # fmt: skip
        elif name == "selfie":
            _graphs[name] = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
    return _graphs[name]


@dataclass(frozen=True)
class FaceDetection:
    """A detected face: box (x0, y0, x1, y1) in pixels of the searched image, score in [0, 1]."""

    box: tuple[float, float, float, float]
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def detect_faces(rgb: np.ndarray) -> list[FaceDetection]:
    """All faces in an RGB uint8 image of shape (H, W, 3), largest first.

    Runs both the short-range and the full-range detector (the latter finds
    small faces in wide shots) and merges overlapping boxes, keeping the
    higher score.
    """
    h, w = rgb.shape[:2]
    found: list[FaceDetection] = []
    with _lock:
        results = [_graph(n).process(rgb) for n in ("detect_near", "detect_far")]  # type: ignore[attr-defined]
    for result in results:
        for det in result.detections or []:
            b = det.location_data.relative_bounding_box
            box = (b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h)
            found.append(FaceDetection(box=box, score=float(det.score[0])))
    return _merge_overlapping(found)


def _merge_overlapping(faces: list[FaceDetection]) -> list[FaceDetection]:
    merged: list[FaceDetection] = []
    for face in sorted(faces, key=lambda f: -f.score):
        # The two detectors sometimes box the same face loosely and tightly:
        # nested boxes are one face, kept at the better score.
        match = next(
            (m for m in merged if _iou(m.box, face.box) > 0.3 or _centre_inside(face.box, m.box)),
            None,
        )
        if match is None:
            merged.append(face)
    return sorted(merged, key=lambda f: -f.area)


def _centre_inside(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """True if the centre of a lies in b or the centre of b lies in a."""

    def inside(p: tuple[float, float], box: tuple[float, ...]) -> bool:
        return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]

    ca = (0.5 * (a[0] + a[2]), 0.5 * (a[1] + a[3]))
    cb = (0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3]))
    return inside(ca, b) or inside(cb, a)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def face_mesh(rgb: np.ndarray) -> np.ndarray | None:
    """478 landmarks of the most prominent face, or None.

    Returns float32 array of shape (478, 3): x, y in pixels, z in pixels on the
    x scale (MediaPipe normalises z by image width), smaller z = nearer.
    """
    h, w = rgb.shape[:2]
    with _lock:
        result = _graph("mesh").process(rgb)  # type: ignore[attr-defined]
    if not result.multi_face_landmarks:
        return None
    pts = result.multi_face_landmarks[0].landmark
    return np.array([[p.x * w, p.y * h, p.z * w] for p in pts], dtype=np.float32)


def person_mask(rgb: np.ndarray) -> np.ndarray:
    """Soft person segmentation: float32 array of shape (H, W) in [0, 1]."""
    with _lock:
        result = _graph("selfie").process(rgb)  # type: ignore[attr-defined]
    return np.clip(result.segmentation_mask.astype(np.float32), 0.0, 1.0)


def inner_lip_gap(landmarks: np.ndarray) -> float:
    """Mouth opening relative to face height: inner-lip distance at the centre across the
    lip line / (forehead-chin).

    landmarks: array of shape (478, 3) or (478, 2). Used by tests and
    benchmarks as an independent read of the rendered mouth.
    """
    # Across the lip line (mouth corner to corner) only: on a turned head the shut
    # lips' centres lie at different depths and project side by side, which is not
    # an opening.
    corners = landmarks[291, :2] - landmarks[61, :2]
    across = np.array([-corners[1], corners[0]]) / max(float(np.linalg.norm(corners)), 1e-6)
    gap = abs(float((landmarks[14, :2] - landmarks[13, :2]) @ across))
    face_height = float(np.linalg.norm(landmarks[152, :2] - landmarks[10, :2]))
    return gap / max(face_height, 1e-6)
