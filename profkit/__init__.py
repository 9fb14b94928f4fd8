"""profkit: profile PyTorch transformer models with NVIDIA Nsight Systems.

The package follows the pipeline: `collect` runs workloads (torch), then exports are parsed,
analyzed and reported (no torch needed for those).
"""

from __future__ import annotations

__version__ = "0.1.0"

from profkit.config import RunConfig  # noqa: E402

__all__ = ["RunConfig", "__version__"]
