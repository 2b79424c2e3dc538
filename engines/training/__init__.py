"""The data engine and training: speech corpus, phone timings, targets, the training loop,
and the lip-sync judge's measures.

Never imported by a live server (tests/test_boundaries.py checks it); `facecast train`
and the benchmarks use it.
"""

__all__ = ["aligned_speech", "corpus", "metrics", "phone_align", "targets", "train", "visemes"]
