"""Transformer LMs for profkit: named sizes (models.sizes) and the builder used by `profkit run`.

Importing this package does not import torch (profkit's config validation reads the sizes);
`build` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.sizes import ATTN_BACKENDS, SIZES, ModelSize, is_user_model

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ATTN_BACKENDS", "SIZES", "ModelSize", "build", "count_params", "is_user_model"]


def build(name: str, *, attn: str = "naive", device: torch.device | str = "cpu") -> nn.Module:
    """Build a named size directly on `device` (`meta` allocates nothing)."""
    import torch

    size = SIZES[name]
    with torch.device(device):
        if size.family == "nanogpt":
            from models.nanogpt import GPT
            return GPT(size, attn)
        from models.transformer_lm import TransformerLM
        return TransformerLM(size, attn)


def count_params(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor counted once (as CS336 and nanoGPT count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
