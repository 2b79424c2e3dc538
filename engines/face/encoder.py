"""FaceEncoder: portrait image -> Avatar, cached on disk by content hash."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import FaceTooSmallError, NoFaceError, NotAFaceError
from ..paths import avatar_cache_dir, default_portrait_path
from . import landmarks as fl
from .avatar import Avatar, load_avatar, save_avatar
from .face_check import FaceAssessment, assess_face
from .image_io import LUMA_WEIGHTS, load_portrait
from .mesh import build_warp_mesh

__all__ = [
    "FaceEncoderConfig",
    "FaceEncoder",
]

logger = logging.getLogger(__name__)

# Bump when the encoder's output changes so stale cache entries are not reused.
ENCODER_VERSION = 2


@dataclass(frozen=True)
class FaceEncoderConfig:
    image_size: int = 512
    field_size: int = 256
    # Crop side as a multiple of the face's larger extent: room for hair and head motion.
    crop_scale: float = 2.1
    # The least crop side the head needs (same unit), where the picture has no more room.
    min_crop_scale: float = 1.6
    min_face_width_px: int = 40
    cache_dir: Path | None = None
    # Avatars kept on disk (a few MB each); the least recently used go first.
    max_cache_entries: int = 64


def _mtime_or_zero(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed by another process meanwhile
        return 0.0


class FaceEncoder:
    """Prepares a portrait once; a second call with the same file is a cache read."""

    def __init__(self, config: FaceEncoderConfig | None = None) -> None:
        self.config = config or FaceEncoderConfig()
        self.cache_dir = self.config.cache_dir or avatar_cache_dir()

    def encode(self, source: str | Path | bytes | None = None) -> Avatar:
        """Portrait file path or bytes (None: the built-in portrait) -> Avatar."""
        data = (
            Path(source or default_portrait_path()).read_bytes()
            if not isinstance(source, bytes)
            else source
        )
        key = self._cache_key(data)
        cached = self.cache_dir / f"{key}.npz"
        if cached.exists():
            try:
                avatar = load_avatar(cached)
                os.utime(cached)  # recently used: evicted last
                return avatar
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("ignoring unreadable avatar cache %s: %s", cached, exc)
        avatar = self._encode_uncached(data, source, key)
        try:
            save_avatar(avatar, cached)
            self._prune_cache()
        except OSError as exc:
            logger.warning("could not cache avatar at %s: %s", cached, exc)
        return avatar

    def forget(self, data: bytes) -> None:
        """Delete the cached avatar of these image bytes (a portrait its owner deleted)."""
        (self.cache_dir / f"{self._cache_key(data)}.npz").unlink(missing_ok=True)

    def _prune_cache(self) -> None:
        """Keep the newest max_cache_entries avatars on disk."""
        entries = sorted(self.cache_dir.glob("*.npz"), key=_mtime_or_zero, reverse=True)
        for stale in entries[self.config.max_cache_entries :]:
            stale.unlink(missing_ok=True)

    def _cache_key(self, data: bytes) -> str:
        c = self.config
        salt = f"v{ENCODER_VERSION}:{c.image_size}:{c.field_size}:{c.crop_scale}:{c.min_crop_scale}"
        return hashlib.sha256(salt.encode() + data).hexdigest()

    def _encode_uncached(self, data: bytes, source: object, key: str) -> Avatar:
        name = "portrait" if isinstance(source, bytes) or source is None else str(source)
        # A path gives errors that name the file; bytes are an upload.
        portrait = load_portrait(
            data if isinstance(source, bytes) else Path(str(source or default_portrait_path()))
        )
        notes = list(portrait.notes)
        face = self._pick_face(portrait.rgb, name, notes)
        crop, crop_box = _crop_square(portrait.rgb, face, self.config)
        landmarks = fl.face_mesh(crop)
        if landmarks is None:
            raise NotAFaceError(
                f"a face was detected in {name} but its landmarks could not be traced; "
                "facecast animates human faces: use a clearer, front-facing portrait"
            )
        mask = _person_mask(crop, landmarks)
        mesh = build_warp_mesh(landmarks, self.config.image_size, self.config.field_size)
        for note in notes:
            logger.info("%s: %s", name, note)
        return Avatar(
            image=crop,
            person_mask=mask,
            background=_background_plate(crop, mask),
            landmarks=landmarks,
            pose=estimate_pose(landmarks),
            expression=estimate_expression(landmarks),
            mesh=mesh,
            content_hash=key,
            notes=tuple(notes),
            crop_box=crop_box,
        )

    def _pick_face(self, rgb: np.ndarray, name: str, notes: list[str]) -> fl.FaceDetection:
        faces = fl.detect_faces(rgb)
        if not faces:
            raise NoFaceError(
                f"no face found in {name}; use a photo or painting in which one face is "
                "clearly visible (frontal or three-quarter view, not too small)"
            )
        if len(faces) > 1:
            notes.append(f"found {len(faces)} faces; animating the largest")
        # Size first: a tiny real face also scores low, and 'too small' is the useful advice.
        large = [f for f in faces if f.width >= self.config.min_face_width_px]
        if not large:
            raise FaceTooSmallError(
                f"the face in {name} is only {faces[0].width:.0f} px wide; use a larger or closer "
                f"photo (at least {self.config.min_face_width_px} px, ideally 200 px or more)"
            )
        # The raw detector score flips with JPEG quality and scale (issue 13): the largest
        # faces are assessed on a normalised crop instead, and the first human one is taken.
        refused: list[FaceAssessment] = []
        for face in large[:3]:
            assessment = assess_face(rgb, face)
            if assessment.is_human:
                return face
            refused.append(assessment)
        raise NotAFaceError(
            f"the face-like shape in {name} is not a recognisable human face "
            f"({refused[0].reason}); facecast animates human faces in photos and "
            "paintings, not animals or drawings"
        )


def _crop_square(
    rgb: np.ndarray, face: fl.FaceDetection, config: FaceEncoderConfig
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Square crop around the face, resampled to image_size, kept inside the image.

    The square slides (and shrinks, down to min_crop_scale) to stay inside the
    picture; only what still lies outside is filled, by _fill_outside, never by
    repeating edge pixels (those streaks shimmer as the head moves).
    """
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = face.box
    extent = max(x1 - x0, y1 - y0) * 1.25  # detector boxes are tighter than the head
    least = config.min_crop_scale * extent
    side = min(config.crop_scale * extent, max(least, float(min(w, h))))
    margin = 0.5 * (least - extent)  # the head's own room on every side
    left = _slide_inside(0.5 * (x0 + x1) - side / 2, side, w, x0 - margin, x1 + margin)
    centre_y = 0.5 * (y0 + y1) - 0.04 * extent  # a little more hair room than neck
    top = _slide_inside(centre_y - side / 2, side, h, y0 - margin, y1 + margin)
    size = config.image_size
    image = rgb
    pre = 1.0
    if side > 2 * size:  # area-downscale first so cubic warping does not alias
        pre = 2 * size / side
        image = cv2.resize(rgb, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
    s = size / (side * pre)
    matrix = np.array([[s, 0, -left * pre * s], [0, s, -top * pre * s]], dtype=np.float64)
    # Reflected, not replicated, only so the interpolation at the edge reads real pixels;
    # everything outside the picture is replaced below.
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101
    )
    inside = cv2.warpAffine(
        np.ones(image.shape[:2], np.float32),
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0.0,),
    )
    if inside.min() < 0.999:
        crop = _fill_outside(crop, inside)
    return crop, (float(left), float(top), float(side))


def _slide_inside(start: float, side: float, length: int, keep_lo: float, keep_hi: float) -> float:
    """Start of a window of `side` along an axis of `length`: as near `start` as it can be
    while lying inside [0, length] (or covering it, if longer), and never leaving out
    [keep_lo, keep_hi] (the face with its margin)."""
    lo, hi = sorted((0.0, length - side))
    start = min(max(start, lo), hi)
    return min(max(start, keep_hi - side), keep_lo)


def _fill_outside(crop: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Replace what lies outside the picture (inside < 1) with a soft continuation of it.

    A softened mirror image continues the texture at the edge and fades into a
    push-pull pyramid's smooth spread of the nearby colours (no direction is
    preferred, so no streaks); grain of the picture's own strength is added to
    luma only, so a grayscale or sepia portrait stays so.
    """
    valid = cv2.erode((inside > 0.999).astype(np.float32), np.ones((3, 3), np.uint8))
    image = crop.astype(np.float32)
    # Next to the picture the mirrored picture (what `crop` holds out there), softened,
    # so its texture goes on; further out the pyramid's smooth colour field takes over.
    distance = cv2.distanceTransform((valid < 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    far = np.clip(distance / (0.04 * crop.shape[0]), 0.0, 1.0)[..., None]
    mirrored = cv2.GaussianBlur(image, (0, 0), 2.5)
    smooth = cv2.GaussianBlur(_push_pull(image, valid), (0, 0), 3.0)
    filled = mirrored * (1.0 - far) + smooth * far
    luma = image @ LUMA_WEIGHTS
    residual = luma - cv2.GaussianBlur(luma, (0, 0), 1.0)
    grain_sigma = 1.4826 * float(np.median(np.abs(residual[valid > 0]))) if valid.any() else 0.0
    # Seeded: the same portrait always makes the same avatar (and cache key).
    noise = np.random.default_rng(0).standard_normal(luma.shape).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 0.6).astype(np.float32)
    noise *= grain_sigma / max(float(noise.std()), 1e-6)
    filled += noise[..., None]
    alpha = cv2.GaussianBlur(valid, (0, 0), 1.5)[..., None]
    return np.clip(image * alpha + filled * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)


def _push_pull(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill where weight is 0 with weighted averages from coarser levels (H, W, C float32)."""
    levels = []
    colour, cover = image * weight[..., None], weight
    while min(cover.shape) > 2:
        levels.append((colour, cover))
        half = (max(1, cover.shape[1] // 2), max(1, cover.shape[0] // 2))
        colour = cv2.resize(colour, half, interpolation=cv2.INTER_AREA)
        cover = cv2.resize(cover, half, interpolation=cv2.INTER_AREA)
    mean = colour.reshape(-1, 3).sum(0) / max(float(cover.sum()), 1e-6)
    filled = np.where(cover[..., None] > 1e-6, colour / np.maximum(cover, 1e-6)[..., None], mean)
    for colour, cover in reversed(levels):
        up = cv2.resize(filled, (cover.shape[1], cover.shape[0]), interpolation=cv2.INTER_LINEAR)
        known = colour / np.maximum(cover, 1e-6)[..., None]
        share = np.clip(cover, 0.0, 1.0)[..., None]
        filled = known * share + up * (1.0 - share)
    return filled.astype(np.float32)


def _person_mask(crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Selfie segmentation, forced to cover the face itself (paintings can confuse it)."""
    mask = fl.person_mask(crop)
    region = np.zeros(mask.shape, np.uint8)
    hull = cv2.convexHull(landmarks[list(fl.FACE_OVAL), :2].astype(np.int32))
    cv2.fillConvexPoly(region, hull, 255)  # type: ignore[call-overload]  # stubs miss int32 hulls
    face_region = cv2.GaussianBlur(region, (0, 0), 3).astype(np.float32) / 255.0
    return np.maximum(mask, face_region).astype(np.float32)


def _background_plate(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Inpaint the person away at low resolution: only edges of it are ever seen."""
    size = crop.shape[0]
    small = 128
    hole = cv2.dilate((mask > 0.3).astype(np.uint8), np.ones((15, 15), np.uint8))
    small_img = cv2.resize(crop, (small, small), interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole, (small, small), interpolation=cv2.INTER_NEAREST)
    filled = cv2.inpaint(small_img, small_hole, 5, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(filled, (0, 0), 2)
    filled = cv2.resize(filled, (size, size), interpolation=cv2.INTER_CUBIC)
    keep = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), 4)[..., None]
    plate = crop * (1 - keep) + filled * keep
    return np.clip(plate, 0, 255).astype(np.uint8)


def estimate_pose(landmarks: np.ndarray) -> np.ndarray:
    """Head yaw, pitch, roll (radians) of the portrait from the landmarks' 3D axes.

    Same sign conventions as the motion space: +yaw turns to the subject's
    left, +pitch looks up, +roll tilts the head counter-clockwise in the image.
    """
    x_axis = landmarks[263] - landmarks[33]
    x_axis /= np.linalg.norm(x_axis)
    y_axis = landmarks[152] - landmarks[10]
    y_axis -= x_axis * float(y_axis @ x_axis)
    y_axis /= np.linalg.norm(y_axis)
    yaw = float(np.arcsin(np.clip(x_axis[2], -1, 1)))
    pitch = float(-np.arcsin(np.clip(y_axis[2], -1, 1)))
    roll = float(-np.arctan2(x_axis[1], x_axis[0]))
    return np.array([yaw, pitch, roll], dtype=np.float32)


def estimate_expression(landmarks: np.ndarray) -> dict[str, float]:
    """Coarse starting expression: mouth opening and eye closure, ARKit-named."""
    jaw = np.clip((fl.inner_lip_gap(landmarks) - 0.01) / 0.12, 0.0, 1.0)
    expression = {"jawOpen": float(jaw)}
    for side, upper, lower in (
        ("Right", fl.RIGHT_EYE_UPPER, fl.RIGHT_EYE_LOWER),
        ("Left", fl.LEFT_EYE_UPPER, fl.LEFT_EYE_LOWER),
    ):
        width = np.linalg.norm(landmarks[upper[-1], :2] - landmarks[upper[0], :2])
        opening = np.linalg.norm(landmarks[upper[4], :2] - landmarks[lower[4], :2])
        # An open eye's aperture is roughly a third of its width.
        expression[f"eyeBlink{side}"] = float(np.clip(1.0 - (opening / width) / 0.3, 0.0, 1.0))
    return expression
