"""profkit: profile PyTorch transformer models with NVIDIA Nsight Systems.

The package follows the pipeline: `collect` runs workloads (torch), then exports are parsed,
analyzed and reported (no torch needed for those).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["RunConfig", "__version__"]


def __getattr__(name: str) -> object:
    """RunConfig on first use: `import profkit` stays cheap for a cached report (profkit.fastpath)."""
    if name == "RunConfig":
        from profkit.config import RunConfig

        return RunConfig
    raise AttributeError(f"module 'profkit' has no attribute {name!r}")
