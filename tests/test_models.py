from __future__ import annotations

import math

import pytest
import torch
from profkit.models.attention import causal_attention
from profkit.models.transformer_lm import RMSNorm, SwiGLU, apply_rope, rope_tables
from torch import nn

from profkit import models
from profkit.sizes import SIZES


def cs336_params(V: int, d: int, ff: int, L: int) -> int:
    """CS336 count: untied embedding and head, per layer 4 d² attention + 3 d·ff SwiGLU + 2 norms."""
    return 2 * V * d + L * (4 * d * d + 3 * d * ff + 2 * d) + d


# Seed 002's table (CS336 2025 on a 4090D): small 0.128625 B, medium 0.423183 B, large 0.969412 B.
@pytest.mark.parametrize("name,expected", [
    ("small", 128_625_408),
    ("medium", 423_183_360),
    ("large", 969_411_840),
    ("xl", 1_998_235_200),
    ("2.7B", 3_406_809_600),
    ("cs336-2026-xl", 3_406_809_600),
    ("cs336-2026-10b", 12_832_823_808),
    ("tiny", 196_928),
])
def test_cs336_sizes_build_on_meta_with_exact_param_count(name: str, expected: int) -> None:
    s = SIZES[name]
    assert cs336_params(s.vocab_size, s.d_model, s.d_ff, s.n_layers, ) == expected
    model = models.build(name, device="meta")
    assert models.count_params(model) == expected
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and all(t.device.type == "meta" for t in tensors)  # nothing allocated


def test_seed_002_small_count_to_six_decimals() -> None:
    assert round(models.count_params(models.build("small", device="meta")) / 1e9, 6) == 0.128625


def test_nanogpt_counts_85_00M_as_nanogpt_does() -> None:
    model = models.build("nanogpt", device="meta")
    assert model.num_params() == 85_003_776  # nanoGPT prints "number of parameters: 85.00M"
    assert f"{model.num_params() / 1e6:.2f}M" == "85.00M"
    assert model.lm_head.weight is model.wte.weight  # tied
    assert SIZES["nanogpt"].vocab_size == 65 and SIZES["nanogpt"].max_context == 1024


def test_cs336_architecture() -> None:
    model = models.build("tiny")
    assert not any(isinstance(m, nn.Linear) and m.bias is not None for m in model.modules())
    assert not any(isinstance(m, (nn.LayerNorm)) for m in model.modules())
    assert sum(isinstance(m, RMSNorm) for m in model.modules()) == 2 * 2 + 1
    assert sum(isinstance(m, SwiGLU) for m in model.modules()) == 2
    assert model.lm_head.weight.data_ptr() != model.token_embeddings.weight.data_ptr()  # untied
    # RoPE tables and the causal mask are one tensor shared by every layer.
    assert model.layers[0].attn.mask is model.layers[1].attn.mask


def test_rmsnorm_matches_definition() -> None:
    norm = RMSNorm(8)
    x = torch.randn(3, 8, dtype=torch.float64)
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(norm(x.float()).double(), expected, rtol=1e-5, atol=1e-6)


def test_rope_keeps_norms_and_depends_on_offset_only() -> None:
    cos, sin = rope_tables(16, 64)
    q = torch.randn(16, dtype=torch.float64)
    k = torch.randn(16, dtype=torch.float64)

    def at(v: torch.Tensor, pos: int) -> torch.Tensor:
        x = v.float().expand(1, 1, pos + 1, 16)  # (B, nh, T, hs)
        return apply_rope(x, cos, sin)[0, 0, pos].double()

    torch.testing.assert_close(at(q, 7).norm(), q.norm(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(at(q, 9) @ at(k, 4), at(q, 15) @ at(k, 10), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(at(q, 9) @ at(k, 4), at(q, 9) @ at(k, 8))


@pytest.mark.parametrize("name", ["tiny", "small", "nanogpt"])
def test_naive_and_math_attention_agree(name: str) -> None:
    """At each size's own head count and head size (the mask built for a longer context, as the models do)."""
    torch.manual_seed(0)
    size = SIZES[name]
    q, k, v = (torch.randn(2, size.n_heads, 16, size.d_model // size.n_heads) for _ in range(3))  # (B, nh, T, hs)
    mask = torch.ones(32, 32, dtype=torch.bool).tril()
    naive = causal_attention(q, k, v, "naive", mask)
    torch.testing.assert_close(causal_attention(q, k, v, "math", mask), naive, rtol=1e-5, atol=1e-5)
    # Causal: the first position attends to itself only.
    torch.testing.assert_close(naive[:, :, 0], v[:, :, 0])


@pytest.mark.parametrize("name", ["tiny", "nanogpt"])
def test_models_give_logits_and_a_finite_loss(name: str) -> None:
    torch.manual_seed(0)
    size = SIZES[name]
    if name == "nanogpt":
        size_model = models.build(name, attn="math")
        T = 16
    else:
        size_model = models.build(name)
        T = size.context_length
    idx = torch.randint(size.vocab_size, (2, T))
    logits = size_model(idx)
    assert logits.shape == (2, T, size.vocab_size)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), idx.flatten())
    assert math.isfinite(loss.item())
    # Freshly initialised: the loss is close to uniform guessing.
    assert abs(loss.item() - math.log(size.vocab_size)) < 0.5


def test_backend_reason_is_cleaned() -> None:
    from profkit.models.attention import _clean

    raw = ("Expected query, key and value to all be of dtype: {Half, BFloat16}. Got Query dtype: float, "
           "Key dtype: float, and Value dtype: float instead. (Triggered internally at "
           "/pytorch/aten/src/ATen/native/transformers/sdp_utils_cpp.h:113.)\nsecond line")
    assert _clean(raw) == ("Expected query, key and value to all be of dtype: {Half, BFloat16}. Got Query dtype: "
                           "float, Key dtype: float, and Value dtype: float instead.")


def test_declined_because_reads_the_backend_section() -> None:
    from profkit.models.attention import declined_because

    trailer = " (Triggered internally at /pytorch/aten/src/ATen/native/transformers/cuda/sdp_utils.cpp:986.)"
    messages = [
        "Memory efficient kernel not used because:" + trailer,
        "Memory Efficient attention has been runtime disabled." + trailer,
        "Flash attention kernel not used because:" + trailer,
        "Expected query, key and value to all be of dtype: {Half, BFloat16}. Got Query dtype: float." + trailer,
        "CuDNN attention kernel not used because:" + trailer,
        "cuDNN attention has been runtime disabled." + trailer,
        "Expected query, key and value to all be of dtype: {Half, BFloat16}. Got Query dtype: float." + trailer,
    ]
    assert declined_because("flash", messages) == (
        "Expected query, key and value to all be of dtype: {Half, BFloat16}. Got Query dtype: float.")
    assert declined_because("efficient", messages) is None  # only 'disabled' under its header
    assert declined_because("cudnn", messages[:4]) is None


@pytest.mark.parametrize("backend", ["naive", "math"])
def test_backends_that_run_on_cpu_pass_the_check(backend: str) -> None:
    from profkit.models.attention import check_backend

    check_backend(backend, torch.device("cpu"), torch.float32, seq_len=16, head_dim=8)
    check_backend(backend, torch.device("cpu"), torch.bfloat16, seq_len=16, head_dim=8)
