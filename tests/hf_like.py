"""Stand-ins for Hugging Face models, shaped as transformers' are, for CPU tests without it.

`ModelOutput` mimics transformers.utils.ModelOutput: an OrderedDict that is also a dataclass,
whose keys are its fields that are not None, `out.loss` and `out["loss"]` alike. The layers
are called as transformers 5 calls them: keyword arguments, a `(cos, sin)` tuple that needs no
gradient, a mask, and an attention that returns `(output, None)`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ModelOutput(OrderedDict):  # type: ignore[type-arg]
    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v is not None:
                super().__setitem__(f.name, v)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def __reduce__(self) -> Any:  # as transformers': copy.copy keeps the dataclass fields
        callable_, _args, *rest = super().__reduce__()
        return (callable_, tuple(getattr(self, f.name) for f in fields(self)), *rest)  # type: ignore[arg-type]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())


@dataclass
class BaseOutput(ModelOutput):
    last_hidden_state: Tensor | None = None
    past_key_values: Any = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class CausalLMOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    past_key_values: Any = None


class Rotary(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, d, 2).float() / d), persistent=False)

    def forward(self, x: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq  # (B, T, d/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d, bias=False) for _ in range(4))

    def forward(self, hidden_states: Tensor, position_embeddings: tuple[Tensor, Tensor],
                attention_mask: Tensor | None = None, **kwargs: Any) -> tuple[Tensor, None]:
        B, T, d = hidden_states.shape
        cos, sin = position_embeddings
        q, k, v = (p(hidden_states) for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        q, k, v = (t.view(B, T, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, d)), None


class Gate(nn.Module):
    """A keyword-only tensor input that requires grad, and a tensor input that does not."""

    def forward(self, x: Tensor, mask: Tensor, *, scale: Tensor) -> Tensor:
        return x * scale * mask


class MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.act = nn.GELU()  # called twice in one forward

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.act(self.up(x))))


class Layer(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn, self.mlp, self.gate = Attention(d, heads), MLP(d), Gate()
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None = None,
                position_embeddings: tuple[Tensor, Tensor] | None = None, **kwargs: Any) -> Tensor:
        assert position_embeddings is not None
        residual = hidden_states
        h, _ = self.self_attn(hidden_states=self.input_layernorm(hidden_states), attention_mask=attention_mask,
                              position_embeddings=position_embeddings, use_cache=False)
        h = residual + h
        mask = torch.ones_like(h[..., :1])  # requires no grad
        return h + self.gate(self.mlp(self.post_attention_layernorm(h)), mask, scale=self.scale)


class Model(nn.Module):
    def __init__(self, vocab: int, d: int, heads: int, n_layers: int) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(Layer(d, heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d)
        self.rotary_emb = Rotary(d)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> BaseOutput:
        h = self.embed_tokens(input_ids)
        pos = torch.arange(input_ids.shape[1])[None].expand_as(input_ids)
        pe = self.rotary_emb(h, pos)
        for layer in self.layers:
            h = layer(h, attention_mask=attention_mask, position_embeddings=pe)
        return BaseOutput(last_hidden_state=self.norm(h))


class ForCausalLM(nn.Module):
    """Tied embedding and head (shared parameters); the loss computed inside when given labels."""

    def __init__(self, vocab: int = 61, d: int = 16, heads: int = 2, n_layers: int = 2) -> None:
        super().__init__()
        self.model = Model(vocab, d, heads, n_layers)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: Tensor, labels: Tensor | None = None, **kwargs: Any) -> CausalLMOutput:
        out = self.model(input_ids=input_ids)
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if labels is not None:  # as transformers: labels are the inputs, shifted here
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())
        return CausalLMOutput(loss=loss, logits=logits)


def _tokens(batch_size: int, context_length: int, vocab: int = 61) -> Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(vocab, (batch_size, context_length + 1), generator=g)


def causal_lm_with_labels(batch_size: int, context_length: int):
    """make_batch gives keyword arguments with labels: the model computes its own loss."""
    model = ForCausalLM()

    def make_batch(device: torch.device):
        ids = _tokens(batch_size, context_length)[:, :-1].to(device)
        return {"input_ids": ids, "labels": ids}, None

    return model, make_batch


def causal_lm_logits(batch_size: int, context_length: int):
    """No labels: the output has logits only, and profkit takes cross-entropy against the targets."""
    model = ForCausalLM()

    def make_batch(device: torch.device):
        t = _tokens(batch_size, context_length).to(device)
        return {"input_ids": t[:, :-1]}, t[:, 1:]

    return model, make_batch


class Returns(nn.Module):
    """Wraps ForCausalLM and returns its output in another shape."""

    def __init__(self, shape: str) -> None:
        super().__init__()
        self.inner, self.shape = ForCausalLM(), shape

    def forward(self, input_ids: Tensor) -> Any:
        out = self.inner(input_ids, labels=input_ids if self.shape in ("scalar", "tuple_loss") else None)
        return {"dict": lambda: {"logits": out.logits, "hidden": None},
                "tuple": lambda: (out.logits, None),
                "tuple_loss": lambda: (out.loss, out.logits),
                "scalar": lambda: out.loss,
                "tensor": lambda: out.logits,
                "string": lambda: "not a model output",
                "empty": lambda: CausalLMOutput()}[self.shape]()


def returning(shape: str):
    def factory(batch_size: int, context_length: int):
        model = Returns(shape)

        def make_batch(device: torch.device):
            t = _tokens(batch_size, context_length).to(device)
            return t[:, :-1], t[:, 1:]

        return model, make_batch

    return factory


returns_dict, returns_tuple, returns_tuple_loss = returning("dict"), returning("tuple"), returning("tuple_loss")
returns_scalar, returns_tensor = returning("scalar"), returning("tensor")
returns_string, returns_empty = returning("string"), returning("empty")
