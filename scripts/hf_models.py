"""Hugging Face models built from their configs (no weights, no download), for `--model`.

    profkit profile --model scripts.hf_models:llama --mode step --dtype bf16 --nvtx-depth 4 \
        --batch-size 4 --context-length 1024
    profkit profile --model scripts.hf_models:gpt2 --mode step --dtype bf16 --nvtx-depth 3

Run from the repository root (so `scripts` imports); needs `transformers` (5.x on the
project's GPU machine). Each factory follows README's contract: make_batch gives keyword
arguments with `labels` (the input ids: the model shifts them) and no targets, so the loss is
the model's own. Sizes:

- `gpt2`: GPT-2 small (12 layers, 768 wide, 12 heads, vocab 50,257), learned positions;
- `llama`: 8 Llama layers, hidden 1024, 16 query heads over 4 key/value heads (GQA),
  SwiGLU width 2816, vocab 32,000, RoPE, SDPA attention (so `--attn` pins its backend).
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from torch import nn

GPT2 = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257)
LLAMA = dict(num_hidden_layers=8, hidden_size=1024, num_attention_heads=16, num_key_value_heads=4,
             intermediate_size=2816, vocab_size=32000)


def build(kind: str, batch_size: int, context_length: int, **overrides: Any) -> tuple[nn.Module, Any]:
    """(model, make_batch) for `gpt2` or `llama`; `overrides` change the config (tests shrink it)."""
    if kind == "gpt2":
        config: Any = transformers.GPT2Config(**{**GPT2, "n_positions": max(1024, context_length),
                                                 "use_cache": False, "attn_implementation": "sdpa", **overrides})
        model: nn.Module = transformers.GPT2LMHeadModel(config)
    elif kind == "llama":
        config = transformers.LlamaConfig(**{**LLAMA, "max_position_embeddings": max(2048, context_length),
                                             "use_cache": False, "attn_implementation": "sdpa", **overrides})
        model = transformers.LlamaForCausalLM(config)
    else:
        raise ValueError(f"unknown kind {kind!r}; choose gpt2 or llama")
    vocab = config.vocab_size
    ids = torch.randint(vocab, (batch_size, context_length), generator=torch.Generator().manual_seed(0))

    def make_batch(device: torch.device) -> tuple[dict[str, torch.Tensor], None]:
        x = ids.to(device)
        return {"input_ids": x, "labels": x}, None

    return model, make_batch


def gpt2(batch_size: int, context_length: int) -> tuple[nn.Module, Any]:
    return build("gpt2", batch_size, context_length)


def llama(batch_size: int, context_length: int) -> tuple[nn.Module, Any]:
    return build("llama", batch_size, context_length)
