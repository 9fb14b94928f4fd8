"""What a run.json records about the machine (no host name: exports and runs get shared)."""

from __future__ import annotations

import platform
import shutil
import subprocess
from typing import Any

import torch

import profkit


def gpu_driver() -> str | None:
    """The NVIDIA driver version, from nvidia-smi (torch does not expose it)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "profkit": profkit.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "gpu": None,
        "gpu_memory_bytes": None,
        "driver": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_bytes=props.total_memory,
                   capability=f"{props.major}.{props.minor}", driver=gpu_driver(),
                   cudnn=torch.backends.cudnn.version())
    return env
