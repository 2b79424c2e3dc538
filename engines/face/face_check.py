"""Is the detected face a human face? A decision that recompression and resizing cannot flip.

One verb, `assess_face`. The raw detector score on the uploaded image moves with
its JPEG quality and its scale (a dog photo scored 0.80 and flipped either way),
so nothing is decided on it. Instead the face is cut out with a fixed margin and
resampled to a fixed size (the normalised crop), and two independent signals are
measured there:

- detector score: the median face-detector score over five deterministic
  variants of the normalised crop (as is, JPEG q70, blurred, mirrored, and a
  96 px round trip). The input's own compression and scale are small next to
  these, so they cannot move the median much. Measured medians: human photos
  and paintings 0.80-0.96, the cat (skimage chelsea) <= 0.62, a flat cartoon
  <= 0.73, a shaded cartoon 0.77-0.88 (which is why a second signal is needed).
- skin texture: the median absolute Laplacian of the luminance over the skin
  that the 478-point mesh outlines (cheeks, forehead, nose; eyes, brows and
  lips cut out), on the normalised crop. Photos and paintings carry grain,
  pores, brushwork and uneven shading: 0.60-4.9 over JPEG q60-95, 0.3x-3x,
  greyscale and sepia; drawings are flat or smoothly shaded: <= 0.23.

A face that the mesh cannot trace on the normalised crop is not a human face
either (most crops of the cat). Thresholds sit in the gaps between those ranges;
`format_below` prints a refused value and its threshold so they never read equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import landmarks as fl

__all__ = [
    "FaceCheckConfig",
    "FaceAssessment",
    "assess_face",
    "format_below",
]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class FaceCheckConfig:
    # Median detector score over the variants; humans measured >= 0.80, cat <= 0.62.
    min_detector_score: float = 0.72
    # Median |Laplacian| on the skin; humans measured >= 0.60 (0.43 blurred hard),
    # drawings <= 0.23. Nearer the drawings: refusing a real portrait costs more.
    min_skin_texture: float = 0.3
    crop_size: int = 256
    # Normalised crop side as a multiple of the detector box's larger extent.
    crop_scale: float = 2.0


@dataclass(frozen=True)
class FaceAssessment:
    """What `assess_face` measured; skin_texture is None where it was not needed or traceable.

    traced: whether the face mesh found the face on the normalised crop (False
        also when it was not tried because the detector score already refused).
    """

    detector_score: float
    traced: bool
    skin_texture: float | None
    config: FaceCheckConfig

    @property
    def is_human(self) -> bool:
        return (
            self.detector_score >= self.config.min_detector_score
            and self.traced
            and self.skin_texture is not None
            and self.skin_texture >= self.config.min_skin_texture
        )

    @property
    def reason(self) -> str:
        """Why it was refused, numbers included ("" if accepted): for the user-facing error."""
        c = self.config
        if self.detector_score < c.min_detector_score:
            shown, needed = format_below(self.detector_score, c.min_detector_score)
            return f"human-face score {shown}, needs {needed}"
        if not self.traced or self.skin_texture is None:
            return "its landmarks could not be traced"
        if self.skin_texture < c.min_skin_texture:
            shown, needed = format_below(self.skin_texture, c.min_skin_texture)
            return f"skin texture {shown}, needs {needed}: it looks drawn, not photographed"
        return ""


def assess_face(
    rgb: np.ndarray, face: fl.FaceDetection, config: FaceCheckConfig | None = None
) -> FaceAssessment:
    """Measure whether `face`, found in `rgb` (uint8, shape (H, W, 3)), is a human face.

    Cheap signals first: the mesh and the texture are measured only if the
    detector score passes (about 0.15 s in all on two CPU cores).
    """
    config = config or FaceCheckConfig()
    crop, box = _normalised_crop(rgb, face.box, config)
    score = _detector_score(crop, box)
    if score < config.min_detector_score:
        return FaceAssessment(score, traced=False, skin_texture=None, config=config)
    landmarks = fl.face_mesh(crop)
    if landmarks is None:
        return FaceAssessment(score, traced=False, skin_texture=None, config=config)
    return FaceAssessment(score, True, _skin_texture(crop, landmarks), config)


def format_below(value: float, threshold: float) -> tuple[str, str]:
    """`value` and `threshold` printed with the fewest digits (2 to 6) that keep value < threshold.

    A refusal must never read "0.80 < 0.8": if value < threshold the two strings differ.
    """
    for digits in range(2, 7):
        shown, needed = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if float(shown) < float(needed):
            return shown, needed
    return f"{value:.6f}", f"{threshold:.6f}"


def _normalised_crop(rgb: np.ndarray, box: Box, config: FaceCheckConfig) -> tuple[np.ndarray, Box]:
    """Square crop of side crop_scale * box extent around the box, resampled to crop_size.

    Returns the crop, uint8 of shape (S, S, 3), and the face box in its pixels.
    """
    x0, y0, x1, y1 = box
    side = config.crop_scale * max(x1 - x0, y1 - y0, 1.0)
    size = config.crop_size
    left, top = 0.5 * (x0 + x1) - side / 2, 0.5 * (y0 + y1) - side / 2
    image, pre = rgb, 1.0
    if side > size:  # area-downscale first: the warp then resamples at about 1:1
        pre = size / side
        image = cv2.resize(rgb, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
    s = size / side
    matrix = np.array([[s / pre, 0, -left * s], [0, s / pre, -top * s]], dtype=np.float64)
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return crop, ((x0 - left) * s, (y0 - top) * s, (x1 - left) * s, (y1 - top) * s)


def _variants(crop: np.ndarray) -> list[np.ndarray]:
    """The normalised crop, re-encoded as JPEG q70, blurred, and at 96 px and back."""
    size = crop.shape[0]
    ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 70])
    jpeg = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if ok else crop
    small = cv2.resize(crop, (96, 96), interpolation=cv2.INTER_AREA)
    return [
        crop,
        np.ascontiguousarray(jpeg),
        cv2.GaussianBlur(crop, (0, 0), 1.0),
        cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR),
    ]


def _detector_score(crop: np.ndarray, box: Box) -> float:
    """Median score of the face at `box` over the variants and the mirror image; 0 if missed."""
    size = crop.shape[1]
    mirrored = (size - box[2], box[1], size - box[0], box[3])
    scored = [(v, box) for v in _variants(crop)] + [(np.ascontiguousarray(crop[:, ::-1]), mirrored)]
    scores = [
        max((f.score for f in fl.detect_faces(image) if _overlaps(f.box, expected)), default=0.0)
        for image, expected in scored
    ]
    return float(np.median(scores))


def _overlaps(a: Box, b: Box) -> bool:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return union > 0 and ix * iy / union > 0.3


def _skin_texture(crop: np.ndarray, landmarks: np.ndarray) -> float:
    """Median |Laplacian| of the lightly blurred luminance over the skin, in grey levels.

    crop: uint8 (S, S, 3); landmarks: (478, 3) in crop pixels.
    """
    luma = cv2.GaussianBlur(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
    skin = _skin_mask(landmarks, luma.shape)
    if not skin.any():
        return 0.0
    return float(np.median(np.abs(cv2.Laplacian(luma, cv2.CV_32F))[skin]))


def _skin_mask(landmarks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bool (S, S): the face oval shrunk a little, without eyes, brows and lips."""
    kernel = np.ones((max(3, shape[0] // 28),) * 2, np.uint8)
    oval = _hull(landmarks, fl.FACE_OVAL, shape)
    features = np.zeros(shape[:2], np.uint8)
    for group in (
        fl.RIGHT_EYE_UPPER + fl.RIGHT_EYE_LOWER + fl.RIGHT_BROW,
        fl.LEFT_EYE_UPPER + fl.LEFT_EYE_LOWER + fl.LEFT_BROW,
        fl.LIPS_OUTER_UPPER + fl.LIPS_OUTER_LOWER,
    ):
        features |= _hull(landmarks, group, shape)
    return (cv2.erode(oval, kernel) > 0) & (cv2.dilate(features, kernel) == 0)


def _hull(landmarks: np.ndarray, indices: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    hull = cv2.convexHull(landmarks[list(indices), :2].astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)  # type: ignore[call-overload]  # stubs miss int32 hulls
    return mask
