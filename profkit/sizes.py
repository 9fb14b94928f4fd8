"""Named model sizes: one table, no torch, so config validation and FLOP counts can read it.

References:
- CS336 (Stanford, spring 2025), assignment 2 "systems", table 1 (model sizes; vocab 10,000,
  batch 4, context 256 for the benchmarks). The 2026 edition renamed its sizes; its `xl` and
  `10B` are kept here as `cs336-2026-xl` and `cs336-2026-10b` so they cannot be mistaken for
  the 2025 rows.
- nanoGPT (karpathy/nanoGPT, model.py GPTConfig): 12 layers, 12 heads, 768 wide, no bias,
  block 1024, on the 65-token shakespeare_char vocabulary, as in the seeds' nanoGPT study.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["cs336", "nanogpt"]

ATTN_BACKENDS = ("naive", "math", "flash", "efficient", "cudnn")
"""`naive` spells attention out; the others are scaled_dot_product_attention backends."""


@dataclass(frozen=True, slots=True)
class ModelSize:
    family: Family
    """Architecture: `cs336` (pre-norm RMSNorm, SwiGLU, RoPE, untied head, no biases) or
    `nanogpt` (GPT-2: LayerNorm, GELU MLP, learned positions, tied head)."""
    d_model: int
    d_ff: int
    n_layers: int
    n_heads: int
    vocab_size: int
    max_context: int
    """Longest context the model is built for (RoPE tables, position embeddings, mask)."""
    batch_size: int
    """Default batch for runs of this size (the source's benchmark setting)."""
    context_length: int
    """Default context for runs of this size (the source's benchmark setting)."""
    note: str = ""


def _cs336(d: int, ff: int, layers: int, heads: int, note: str = "") -> ModelSize:
    # CS336 benchmarks use batch 4 and context 256; RoPE tables are cheap, so the models are
    # built for 2,048 tokens to leave room for context-length sweeps.
    return ModelSize("cs336", d, ff, layers, heads, vocab_size=10_000, max_context=2048,
                     batch_size=4, context_length=256, note=note)


SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize("cs336", 64, 256, 2, 4, vocab_size=512, max_context=128,
                      batch_size=2, context_length=32, note="for CPU tests"),
    "small": _cs336(768, 3072, 12, 12, "CS336 2025"),
    "medium": _cs336(1024, 4096, 24, 16, "CS336 2025"),
    "large": _cs336(1280, 5120, 36, 20, "CS336 2025"),
    "xl": _cs336(1600, 6400, 48, 25, "CS336 2025"),
    "2.7B": _cs336(2560, 10240, 32, 32, "CS336 2025"),
    "cs336-2026-xl": _cs336(2560, 10240, 32, 32, "CS336 2026 edition's xl"),
    "cs336-2026-10b": _cs336(4608, 12288, 50, 36, "CS336 2026 edition; never run here"),
    "nanogpt": ModelSize("nanogpt", 768, 3072, 12, 12, vocab_size=65, max_context=1024,
                         batch_size=6, context_length=1024, note="seed 000's nanoGPT study"),
}


def is_user_model(name: str) -> bool:
    """`package.module:factory` names a user's model rather than a built-in size."""
    return ":" in name


def block_params(size: ModelSize) -> int:
    """Parameters of one transformer block of a built-in size (the unit FSDP2 shards and gathers).

    cs336: q, k, v, output projections (4 d^2), SwiGLU w1, w2, w3 (3 d d_ff), two RMSNorm weights;
    nanogpt: c_attn (3 d^2), c_proj (d^2), c_fc and c_proj (2 d d_ff), two LayerNorm weights (no bias).

    >>> block_params(SIZES["small"])
    9438720
    """
    d, ff = size.d_model, size.d_ff
    return 4 * d * d + (2 if size.family == "nanogpt" else 3) * d * ff + 2 * d
