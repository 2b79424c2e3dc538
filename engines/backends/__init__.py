"""Inference backends: one small interface over torch, onnxruntime and TensorRT.

Every neural stage is a graph with named inputs and outputs (the ONNX tensor
names); a backend runs it: `run(feeds) -> outputs`, both dicts keyed by those
names. The same contract test runs over every backend that is installed.
Each `*_backend.py` module is one backend family and defines its PROVIDER: the
names it answers to, its availability check and the stages it builds;
engines.backends.registry finds them and picks a session's from its config.
TensorRT is imported inside tensorrt_backend's functions (it needs a GPU).
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
