"""Motion: the motion space, controls, the procedural baseline, the diffusion sampler, the
learned model and the motion sources that turn speech into motion frames.

`open_motion_source(config, fps)` gives the source a MotionConfig names; every source
has the MotionSource interface (engines.motion.source).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .baseline import BaselineMotion
from .config import MOTION_KINDS, MotionConfig
from .source import MotionSource

if TYPE_CHECKING:
    from ..backends.registry import BackendConfig

__all__ = ["MOTION_KINDS", "MotionConfig", "MotionSource", "BaselineMotion", "open_motion_source"]


def open_motion_source(
    config: MotionConfig, fps: float, seed: int = 0, backend: BackendConfig | None = None
) -> MotionSource:
    """The source config.kind names; the learned one loads its checkpoint once per process
    and runs its networks on backend (default torch-cpu). The baseline has no network."""
    if config.kind == "baseline":
        return BaselineMotion(config.baseline, config.features, fps, seed)
    # Imported here: the learned source loads torch and the backends, which importing
    # engines.motion (its space, its controls) must not.
    from .learned import LearnedMotion

    return LearnedMotion(config, fps, seed, backend=backend)
