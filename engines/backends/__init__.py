"""Inference backends: one small interface over torch, onnxruntime and TensorRT.

Every neural stage is a graph with named inputs and outputs (the ONNX tensor
names); a backend runs it: `run(feeds) -> outputs`, both dicts keyed by those
names. The same contract test runs over every backend that is installed.
TensorRT lives in tensorrt_backend, imported on use (it needs a GPU);
engines.backends.registry picks backends for a session from its config.
"""

from .base import InferenceBackend, TensorSpec
from .denoiser import BackendDenoiser
from .onnxruntime_backend import OnnxRuntimeBackend
from .torch_backend import TorchBackend

__all__ = [
    "BackendDenoiser",
    "InferenceBackend",
    "OnnxRuntimeBackend",
    "TensorSpec",
    "TorchBackend",
]
