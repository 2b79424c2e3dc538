"""Faces: image loading, landmarks, the FaceEncoder (portrait -> Avatar), mesh, expression basis.

Runs once per portrait; the Avatar it makes is cached on disk by content hash.
"""

__all__ = ["avatar", "encoder", "expression_basis", "image_io", "landmarks", "mesh"]
