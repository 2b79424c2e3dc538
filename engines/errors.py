"""Exceptions raised by the engines. Each message says what to do about it."""

from __future__ import annotations

__all__ = [
    "FacecastError",
    "InvalidImageError",
    "NoFaceError",
    "NotAFaceError",
    "FaceTooSmallError",
    "InvalidAudioError",
    "AudioTooLongError",
    "InvalidVideoError",
    "VideoTooLargeError",
    "InvalidControlsError",
    "BackendUnavailableError",
    "SynthesisError",
    "CheckpointError",
]


class FacecastError(Exception):
    """Base of every error facecast raises on purpose; str() is user-facing."""


class InvalidImageError(FacecastError):
    """The file is not an image we can decode (corrupt, truncated, not an image)."""


class NoFaceError(FacecastError):
    """The image decodes but no face was found in it."""


class NotAFaceError(FacecastError):
    """Something face-like was found but the landmarks are not trustworthy (animal, cartoon)."""


class FaceTooSmallError(FacecastError):
    """The face is too small in the image to animate well."""


class InvalidAudioError(FacecastError):
    """The file is not audio we can decode, or holds no samples."""


class AudioTooLongError(InvalidAudioError):
    """The audio is longer than the limit it was given (a file, a queue)."""


class InvalidVideoError(FacecastError):
    """The file is not video we can decode, or holds no video frames."""


class VideoTooLargeError(InvalidVideoError):
    """The video's frames are larger than the limit it was given (verification)."""


class InvalidControlsError(FacecastError, ValueError):
    """A control value is unknown or out of its range (gaze, head distance, emotion)."""


class BackendUnavailableError(FacecastError):
    """An optional inference backend (CUDA, onnxruntime, TensorRT) is not installed or usable."""


class SynthesisError(FacecastError):
    """Corpus synthesis failed: flite is missing, the voice is unknown, or flite failed."""


class CheckpointError(FacecastError):
    """A motion checkpoint is missing, not a facecast checkpoint, or does not fit this build."""
