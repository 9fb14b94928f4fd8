"""What a run.json records about the machine (no host name: exports and runs get shared)."""

from __future__ import annotations

import platform

import torch

import profkit
from profkit.collect.doctor import gpu_driver
from profkit.layout import Environment


def environment(device: torch.device) -> Environment:
    env = Environment(profkit=profkit.__version__, python=platform.python_version(), platform=platform.platform(),
                      torch=torch.__version__, cuda=torch.version.cuda, cpu_threads=torch.get_num_threads())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.gpu, env.gpu_memory_bytes = props.name, props.total_memory
        env.capability, env.driver = f"{props.major}.{props.minor}", gpu_driver()
        env.cudnn = torch.backends.cudnn.version()
    return env
