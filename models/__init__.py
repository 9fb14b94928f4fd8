"""profkit.models: the built-in transformer LMs and the builder used by `profkit run`.

The folder `models/` at the top of the repository is installed as `profkit.models`
(pyproject's package-dir), so it never collides with a user's own `models` package.
The sizes live in `profkit.sizes` (no torch); importing this package does not import
torch either, `build` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from profkit.sizes import ATTN_BACKENDS, SIZES, ModelSize, is_user_model

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
            from .nanogpt import GPT
            return GPT(size, attn)
        from .transformer_lm import TransformerLM
        return TransformerLM(size, attn)


def count_params(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor counted once (as CS336 and nanoGPT count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
