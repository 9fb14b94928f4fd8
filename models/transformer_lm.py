"""The CS336 transformer language model, annotated for Nsight Systems.

References:
- CS336 (Stanford, 2025), assignment 1 "basics", section 3: pre-norm blocks with RMSNorm,
  SwiGLU feed-forward of width d_ff, rotary position embeddings (RoPE, theta 10,000),
  untied token embedding and LM head, no biases.
- RMSNorm: Zhang & Sennrich 2019. SwiGLU: Shazeer 2020. RoPE: Su et al. 2021.
- Layout and naming follow karpathy/nanoGPT model.py and pytorch-labs/gpt-fast model.py.

NVTX: each inner step is one `with annotate(...)` line; backward ranges are attached from
outside by profkit.collect.hooks.add_backward_ranges.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from profkit.ranges import annotate
from profkit.sizes import ModelSize

from .attention import causal_attention


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Normalise in fp32 (CS336 asks for the upcast), return in the input's dtype.
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight).to(x.dtype)


def rope_tables(head_dim: int, max_len: int, theta: float = 10_000.0) -> tuple[Tensor, Tensor]:
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)  # (hs/2,)
    angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of a (B, nh, T, hs) tensor by position-dependent angles."""
    T = x.size(-2)
    cos, sin = cos[:T].to(x.dtype), sin[:T].to(x.dtype)  # (T, hs/2)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, nh, T, hs/2) each
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class CausalSelfAttention(nn.Module):
    rope_cos: Tensor
    rope_sin: Tensor
    mask: Tensor

    def __init__(self, size: ModelSize, backend: str, tables: tuple[Tensor, Tensor, Tensor]) -> None:
        super().__init__()
        assert size.d_model % size.n_heads == 0
        self.n_heads = size.n_heads
        self.backend = backend
        self.q_proj = nn.Linear(size.d_model, size.d_model, bias=False)
        self.k_proj = nn.Linear(size.d_model, size.d_model, bias=False)
        self.v_proj = nn.Linear(size.d_model, size.d_model, bias=False)
        self.output_proj = nn.Linear(size.d_model, size.d_model, bias=False)
        # RoPE tables and causal mask are made once per model and shared by every layer.
        for name, t in zip(("rope_cos", "rope_sin", "mask"), tables, strict=True):
            self.register_buffer(name, t, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.size()
        with annotate("qkv_proj"):
            q, k, v = (p(x).view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
                       for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, nh, T, hs)
        with annotate("rope"):
            q = apply_rope(q, self.rope_cos, self.rope_sin)
            k = apply_rope(k, self.rope_cos, self.rope_sin)
        y = causal_attention(q, k, v, self.backend, self.mask)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads side by side
        with annotate("out_proj"):
            return self.output_proj(y)


class SwiGLU(nn.Module):
    def __init__(self, size: ModelSize) -> None:
        super().__init__()
        self.w1 = nn.Linear(size.d_model, size.d_ff, bias=False)
        self.w2 = nn.Linear(size.d_ff, size.d_model, bias=False)
        self.w3 = nn.Linear(size.d_model, size.d_ff, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, size: ModelSize, backend: str, tables: tuple[Tensor, Tensor, Tensor]) -> None:
        super().__init__()
        self.ln1 = RMSNorm(size.d_model)
        self.attn = CausalSelfAttention(size, backend, tables)
        self.ln2 = RMSNorm(size.d_model)
        self.mlp = SwiGLU(size)

    def forward(self, x: Tensor) -> Tensor:
        with annotate("attn_norm"):
            h = self.ln1(x)
        with annotate("attention"):
            x = x + self.attn(h)
        with annotate("mlp_norm"):
            h = self.ln2(x)
        with annotate("mlp"):
            return x + self.mlp(h)


class TransformerLM(nn.Module):
    def __init__(self, size: ModelSize, attn: str = "naive") -> None:
        super().__init__()
        self.size = size
        self.token_embeddings = nn.Embedding(size.vocab_size, size.d_model)
        cos, sin = rope_tables(size.d_model // size.n_heads, size.max_context)
        mask = torch.ones(size.max_context, size.max_context, dtype=torch.bool).tril()
        self.layers = nn.ModuleList(Block(size, attn, (cos, sin, mask)) for _ in range(size.n_layers))
        self.ln_final = RMSNorm(size.d_model)
        self.lm_head = nn.Linear(size.d_model, size.vocab_size, bias=False)
        self.apply(_init_weights)

    def forward(self, idx: Tensor) -> Tensor:
        """(B, T) token ids -> (B, T, vocab) logits."""
        with annotate("embed"):
            x = self.token_embeddings(idx)  # (B, T, C)
        for i, block in enumerate(self.layers):
            with annotate(f"layer_{i}"):
                x = block(x)
        with annotate("final_norm"):
            x = self.ln_final(x)
        with annotate("lm_head"):
            return self.lm_head(x)


def _init_weights(module: nn.Module) -> None:
    # CS336's truncated-normal init; any init works for profiling, a sane one keeps fp16 finite.
    if isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.device.type != "meta":
        nn.init.trunc_normal_(module.weight, std=0.02, a=-0.06, b=0.06)
