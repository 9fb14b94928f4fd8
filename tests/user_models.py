"""A user's own model, as README documents: factory(batch_size=, context_length=) -> (model, make_batch)."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, vocab: int = 97, d: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=64, batch_first=True, dropout=0.0)
            for _ in range(2))
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def make_encoder(batch_size: int, context_length: int):
    model = Encoder()

    def make_batch(device: torch.device):
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(97, (batch_size, context_length + 1), generator=g).to(device)
        return tokens[:, :-1], tokens[:, 1:]

    return model, make_batch


def not_a_factory(batch_size: int, context_length: int):
    return 42


class _OnRank(nn.Module):
    """The encoder, except that on rank 1 (torchrun's RANK) its forward fails or never returns."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.inner, self.how = Encoder(), how

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        import os
        import time

        if os.environ.get("RANK") == "1":
            if self.how == "fail":
                raise SystemExit("Error: rank 1 of the test model gave up on purpose")
            time.sleep(3600)  # the other rank waits for it in DDP's gradient all-reduce
        return self.inner(idx)


def fail_on_rank1(batch_size: int, context_length: int):
    _, make_batch = make_encoder(batch_size, context_length)
    return _OnRank("fail"), make_batch


def hang_on_rank1(batch_size: int, context_length: int):
    _, make_batch = make_encoder(batch_size, context_length)
    return _OnRank("hang"), make_batch
