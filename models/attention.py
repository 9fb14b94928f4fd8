"""Causal self-attention cores, one per backend, chosen per run.

`naive` spells attention out (scores, softmax, final matmul; each its own NVTX range, as in
CS336 assignment 2's annotated attention and nanoGPT's non-flash path). The others call
`F.scaled_dot_product_attention` pinned to one backend with `torch.nn.attention.sdpa_kernel`,
so a run measures the backend it names or fails, never a silent fallback.
"""

from __future__ import annotations

import math
import re
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from profkit.ranges import annotate
from profkit.sizes import ATTN_BACKENDS

SDPA_BACKENDS: dict[str, SDPBackend] = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
assert ATTN_BACKENDS == ("naive", *SDPA_BACKENDS)
CUDA_ONLY = ("flash", "efficient", "cudnn")


class AttentionBackendError(ValueError):
    """The chosen attention backend cannot run this dtype, device or shape."""


def causal_attention(q: Tensor, k: Tensor, v: Tensor, backend: str, mask: Tensor) -> Tensor:
    """Causal attention over (B, nh, T, hs) tensors; `mask` is a (≥T, ≥T) lower-triangular bool."""
    if backend != "naive":
        with annotate("sdpa"), sdpa_kernel(SDPA_BACKENDS[backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.size(-2)
    with annotate("attn_scores"):
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, T)
        att = att.masked_fill(~mask[:T, :T], float("-inf"))
    with annotate("attn_softmax"):
        att = F.softmax(att, dim=-1)
    with annotate("attn_final_matmul"):
        return att @ v  # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)


def check_backend(backend: str, device: torch.device, dtype: torch.dtype, *, seq_len: int, head_dim: int,
                  probe: bool = True) -> None:
    """Raise AttentionBackendError, naming the reason, if `backend` cannot run this case.

    Runs one tiny forward of the pinned backend at the run's head size and length, in the
    run's compute dtype, before any real work starts, and reports PyTorch's own reason
    (its warnings say why each backend declined). `probe=False` checks only the device.
    """
    if backend not in ATTN_BACKENDS:
        raise AttentionBackendError(f"unknown attention backend {backend!r}; choose from {', '.join(ATTN_BACKENDS)}")
    if backend in CUDA_ONLY and device.type != "cuda":
        # PyTorch's CPU build accepts FLASH_ATTENTION with a C++ port of the algorithm; it is
        # not the FlashAttention kernels this backend exists to profile, so refuse it.
        raise AttentionBackendError(
            f"attention backend {backend!r} is a CUDA kernel and the device is {device.type}; use --attn naive or math")
    if backend == "naive" or not probe:
        return
    q = torch.randn(1, 1, seq_len, head_dim, device=device, dtype=dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with sdpa_kernel(SDPA_BACKENDS[backend]):
                F.scaled_dot_product_attention(q, q, q, is_causal=True)
            return
        except RuntimeError as e:
            error = _clean(str(e))
    reason = declined_because(backend, [str(w.message) for w in caught]) or error
    raise AttentionBackendError(
        f"attention backend {backend!r} cannot run {str(dtype).removeprefix('torch.')} "
        f"with head size {head_dim} and length {seq_len} on {device}: {reason}")


def _clean(message: str) -> str:
    """First line of a PyTorch message, without its '(Triggered internally at ...)' tail."""
    return re.sub(r"\s*\(Triggered internally at [^)]*\)\.?", "", message.strip()).splitlines()[0].strip()


_SECTION = re.compile(r"^(.*) kernel not used because:$", re.IGNORECASE)
_SECTION_NAMES = {"flash": "flash attention", "efficient": "memory efficient", "cudnn": "cudnn attention"}


def declined_because(backend: str, messages: list[str]) -> str | None:
    """PyTorch's reason for declining `backend`, from the warnings of a failed SDPA call.

    When no enabled backend can run, PyTorch warns a header per fused backend
    ("Flash attention kernel not used because:") followed by one warning per failed check
    (including "... has been runtime disabled" for those sdpa_kernel switched off).
    Returns the first check under `backend`'s header that is not about being disabled.

    >>> declined_because("flash", ["Memory efficient kernel not used because:",
    ...     "Memory Efficient attention has been runtime disabled.",
    ...     "Flash attention kernel not used because:", "Expected query, key and value to all be of dtype: {Half}."])
    'Expected query, key and value to all be of dtype: {Half}.'
    """
    section = None
    for message in map(_clean, messages):
        header = _SECTION.match(message)
        if header:
            section = header.group(1).lower()
        elif section == _SECTION_NAMES.get(backend) and "disabled" not in message:
            return message
    return None
