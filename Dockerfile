# facecast on an NVIDIA GPU: torch (CUDA build), onnxruntime-gpu and TensorRT 10.
#
#   docker build -t facecast .
#   docker run --gpus all --network host -v facecast-data:/data facecast
#
# torch==2.13.0 from PyPI is the CUDA 13.0 build: its CUDA runtime, cuBLAS and cuDNN
# come as pip packages, and onnxruntime-gpu (>= 1.27) and tensorrt-cu13 use the same
# CUDA 13 packages. So the image carries no CUDA libraries of its own; the `base`
# flavour only sets up the NVIDIA container runtime. The host needs a driver for
# CUDA 13 (>= 580) and the NVIDIA Container Toolkit. WebRTC media goes over UDP
# ports aiortc picks at random: --network host is simplest (or publish 8000 and
# give the server ICE servers with FACECAST_ICE_SERVERS).
#
# Python 3.12 (Ubuntu 24.04's). pocketsphinx 5.1 has no cp312 wheel, so the build
# stage compiles it; the runtime stage gets the finished virtual environment only.

ARG CUDA_BASE=nvidia/cuda:13.0.0-base-ubuntu24.04

FROM ${CUDA_BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev build-essential ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first and pinned, as in .ci/install; from PyPI it is the CUDA build.
RUN pip install torch==2.13.0
WORKDIR /app
COPY . .
# Editable, as in .ci/install: the server serves web_client/ from the source tree.
# TensorRT's wheels are on NVIDIA's index (the PyPI names are stubs that fetch them).
RUN pip install --extra-index-url https://pypi.nvidia.com -e ".[gpu]"
# No GPU while building: check the wheels' builds without touching a device.
RUN python -c "import torch; assert torch.version.cuda, 'torch is a CPU build'" \
    && python -c "import importlib.metadata as m; print(m.version('tensorrt-cu13'))"

FROM ${CUDA_BASE}
ENV DEBIAN_FRONTEND=noninteractive
# flite and espeak-ng: the built-in TTS; ffmpeg: audio in any format; libgl1 and
# libglib2.0: mediapipe's OpenCV.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 flite espeak-ng ffmpeg libgl1 libglib2.0-0t64 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
RUN useradd --create-home --uid 10001 facecast \
    && mkdir -p /data && chown facecast:facecast /data
USER facecast
WORKDIR /app
# Portraits, avatars, exported graphs and TensorRT plans are cached here; mount a volume to keep them.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 FACECAST_DATA_DIR=/data \
    FACECAST_CACHE_DIR=/data/avatars FACECAST_ENGINE_CACHE_DIR=/data/engines
VOLUME /data
EXPOSE 8000
CMD ["facecast", "serve", "--host", "0.0.0.0", "--port", "8000", "--backend", "torch-cuda"]
