"""nanoGPT's GPT-2 model, annotated for Nsight Systems: the configuration of seed 000's study.

References:
- karpathy/nanoGPT model.py (GPT-2 small shape: LayerNorm without bias, GELU MLP of 4x width,
  learned position embeddings, LM head tied to the token embedding).
- Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2).

Dropout is left out: profiling runs use p=0, and nanoGPT's default for the study was 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from profkit.ranges import annotate
from profkit.sizes import ModelSize

from .attention import causal_attention


class CausalSelfAttention(nn.Module):
    mask: Tensor

    def __init__(self, size: ModelSize, backend: str, mask: Tensor) -> None:
        super().__init__()
        assert size.d_model % size.n_heads == 0
        self.n_heads = size.n_heads
        self.backend = backend
        self.c_attn = nn.Linear(size.d_model, 3 * size.d_model, bias=False)  # q, k, v in one GEMM
        self.c_proj = nn.Linear(size.d_model, size.d_model, bias=False)
        self.register_buffer("mask", mask, persistent=False)  # shared by every layer

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.size()
        with annotate("qkv_proj"):
            q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
                       for t in self.c_attn(x).split(C, dim=2))  # (B, nh, T, hs)
        y = causal_attention(q, k, v, self.backend, self.mask)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        with annotate("out_proj"):
            return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, size: ModelSize) -> None:
        super().__init__()
        self.c_fc = nn.Linear(size.d_model, size.d_ff, bias=False)
        self.c_proj = nn.Linear(size.d_ff, size.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, size: ModelSize, backend: str, mask: Tensor) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(size.d_model, bias=False)
        self.attn = CausalSelfAttention(size, backend, mask)
        self.ln_2 = nn.LayerNorm(size.d_model, bias=False)
        self.mlp = MLP(size)

    def forward(self, x: Tensor) -> Tensor:
        with annotate("attn_norm"):
            h = self.ln_1(x)
        with annotate("attention"):
            x = x + self.attn(h)
        with annotate("mlp_norm"):
            h = self.ln_2(x)
        with annotate("mlp"):
            return x + self.mlp(h)


class GPT(nn.Module):
    def __init__(self, size: ModelSize, attn: str = "naive") -> None:
        super().__init__()
        self.size = size
        self.wte = nn.Embedding(size.vocab_size, size.d_model)
        self.wpe = nn.Embedding(size.max_context, size.d_model)
        mask = torch.ones(size.max_context, size.max_context, dtype=torch.bool).tril()
        self.layers = nn.ModuleList(Block(size, attn, mask) for _ in range(size.n_layers))
        self.ln_f = nn.LayerNorm(size.d_model, bias=False)
        self.lm_head = nn.Linear(size.d_model, size.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as in nanoGPT
        self.apply(_init_weights)

    def forward(self, idx: Tensor) -> Tensor:
        """(B, T) token ids -> (B, T, vocab) logits."""
        T = idx.size(1)
        with annotate("embed"):
            pos = torch.arange(T, device=idx.device)
            x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for i, block in enumerate(self.layers):
            with annotate(f"layer_{i}"):
                x = block(x)
        with annotate("final_norm"):
            x = self.ln_f(x)
        with annotate("lm_head"):
            return self.lm_head(x)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count as nanoGPT reports it: position embeddings left out."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.device.type != "meta":
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
