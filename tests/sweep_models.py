"""A `--model package.module:factory` for the models sweep's tests: a model that runs out of memory."""

from __future__ import annotations

import torch
from torch import nn


class OutOfMemory(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")


def oom(batch_size: int, context_length: int) -> tuple[nn.Module, object]:
    def make_batch(device: torch.device) -> tuple[torch.Tensor, None]:
        return torch.zeros(batch_size, 4, device=device), None

    return OutOfMemory(), make_batch
