"""The FaceRenderer: 3D-aware warp, mouth, eyes, composite; torch ops, CPU and CUDA."""

__all__ = ["eyes", "mouth", "renderer", "warp_ops"]
