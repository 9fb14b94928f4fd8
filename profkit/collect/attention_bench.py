"""`profkit sweep attention`'s measurement of one point: forward, backward and forward+backward
time and memory of one attention implementation on one shape.

Timing follows triton.testing.do_bench: warm-up passes first (not timed), an estimate from them
sets how many timed passes fit in `max_seconds` (at most `reps`, at least 3), each timed pass
between CUDA events with L2 flushed before it (a 256 MB buffer zeroed, as do_bench does), the
median kept; on CPU time.perf_counter around each pass. `bwd` times `out.backward` on a graph
kept from one forward (`retain_graph`, as flash-attention's benchmark_backward); `fwd` runs with
inputs that require grad (what training runs). Memory (CUDA): an untimed forward then backward
from a reset peak: the peak of each, and what is allocated and reserved between them (seed
002's "Memory Allocated/Reserved"), all absolute (q, k, v included).

A point that runs out of memory is recorded `oom` (its tensors freed, the sweep goes on); an SDPA
backend that refuses the shape is `refused` with PyTorch's reason (the warnings it gives saying
why each backend declined).
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import sdpa_kernel

from profkit.models.attention import SDPA_BACKENDS, AttentionBackendError, check_backend, declined_because
from profkit.sweeps import AttentionPoint, AttentionSettings

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
L2_FLUSH_BYTES = 256 * 2**20  # triton.testing.do_bench's cache buffer; far over any GPU's L2
Attention = Callable[[Tensor, Tensor, Tensor, bool], Tensor]


def naive(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    """Scores, (masked) softmax, final matmul: CS336's and nanoGPT's explicit attention."""
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, T)
    if causal:
        T = q.size(-2)
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        att = att.masked_fill(~mask, float("-inf"))
    return F.softmax(att, dim=-1) @ v  # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)


def _sdpa(backend: str) -> Attention:
    def attend(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
        with sdpa_kernel(SDPA_BACKENDS[backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return attend


IMPLS: dict[str, Attention] = {"naive": naive, **{b: _sdpa(b) for b in SDPA_BACKENDS}}


class Refused(Exception):
    """The backend declined the shape; the message is PyTorch's reason."""


def is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and ("out of memory" in str(e).lower() or "can't allocate memory" in str(e)))


def first_line(message: str) -> str:
    text = message.strip()
    return (text.splitlines()[0] if text else "")[:300]


class _Clock:
    """Times one pass: CUDA events (L2 flushed before) on the GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=device) if self.cuda else None

    def run(self, fn: Callable[[], Any], n: int) -> list[float]:
        if not self.cuda:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1e3)
            return out
        assert self.flush is not None
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for start, end in events:
            self.flush.zero_()  # evict q, k, v and the last pass's outputs from L2
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return [a.elapsed_time(b) for a, b in events]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bench(clock: _Clock, fn: Callable[[], Any], s: AttentionSettings, device: torch.device) -> tuple[list[float], int]:
    """Warm-up passes, then as many timed passes as fit in max_seconds (3..reps)."""
    t0 = time.perf_counter()
    for _ in range(s.warmup):
        fn()
    _sync(device)
    est = (time.perf_counter() - t0) / s.warmup if s.warmup else 0.0
    n = s.reps if est <= 0 else max(3, min(s.reps, int(s.max_seconds / est)))
    return clock.run(fn, n), n


def _call(attend: Attention, point: AttentionPoint, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """One forward, turning an SDPA backend's refusal into Refused(PyTorch's reason)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return attend(q, k, v, point.causal)
        except RuntimeError as e:
            if is_oom(e) or point.impl not in SDPA_BACKENDS:
                raise
            reason = declined_because(point.impl, [str(w.message) for w in caught]) or first_line(str(e))
            raise Refused(reason) from None


def measure(point: AttentionPoint, settings: AttentionSettings,
            impls: dict[str, Attention] | None = None) -> dict[str, Any]:
    """Measure one point; returns its metric columns (results.ATTENTION_COLUMNS) with its status.

    `impls` replaces the implementations by name (tests pass fakes that raise).
    """
    table = IMPLS if impls is None else impls
    device = torch.device(point.device)
    row: dict[str, Any] = {"status": "ok", "reason": None, "failed_mode": None,
                           "timer": "cuda_events" if device.type == "cuda" else "perf_counter",
                           "l2_flush": device.type == "cuda"}
    if point.impl in SDPA_BACKENDS and impls is None:
        try:
            check_backend(point.impl, device, DTYPES[point.dtype], seq_len=point.seq_len, head_dim=point.head_dim,
                          probe=False)
        except AttentionBackendError as e:
            return {**row, "status": "refused", "reason": str(e), "failed_mode": "fwd"}
    if device.type == "cuda":  # the last point's tensors (freed by now) leave the cache: reserved is this point's
        gc.collect()
        torch.cuda.empty_cache()
    tensors: list[Tensor] = []
    try:
        if point.impl == "compiled":
            import torch._dynamo as dynamo

            dynamo.reset()  # each shape compiles afresh: no recompile limit, no dynamic shapes
            attend: Attention = torch.compile(table.get("compiled", naive), dynamic=False)
        else:
            attend = table[point.impl]
        gen = torch.Generator(device).manual_seed(settings.seed)
        shape = (point.batch_size, point.heads, point.seq_len, point.head_dim)
        q, k, v, dout = (torch.randn(shape, device=device, dtype=DTYPES[point.dtype], generator=gen,
                                     requires_grad=i < 3) for i in range(4))
        tensors += [q, k, v, dout]
        # A compiled backward donates its buffers unless told not to, and `bwd` reruns one graph's backward.
        patch = (torch._functorch.config.patch(donated_buffer=False) if point.impl == "compiled"
                 else contextlib.nullcontext())
        with patch:
            row.update(_run(attend, point, settings, device, (q, k, v, dout), row))
    except Refused as e:
        row.update(status="refused", reason=str(e), failed_mode=row.get("failed_mode") or "fwd")
    except Exception as e:  # noqa: BLE001 - every failure of a point is recorded, the sweep goes on
        row.update(status="oom" if is_oom(e) else "error",
                   reason=first_line(str(e)) or type(e).__name__, failed_mode=row.get("failed_mode") or "setup")
    finally:
        tensors.clear()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def _run(attend: Attention, point: AttentionPoint, s: AttentionSettings, device: torch.device,
         qkv: tuple[Tensor, Tensor, Tensor, Tensor], row: dict[str, Any]) -> dict[str, Any]:
    """The measurements; `row["failed_mode"]` says which mode is running, for a failure's record."""
    q, k, v, dout = qkv
    cuda = device.type == "cuda"
    out: dict[str, Any] = {}

    def clear() -> None:
        q.grad = k.grad = v.grad = None

    row["failed_mode"] = "fwd"
    if point.impl == "compiled":  # the compile (forward and backward graphs), timed apart
        t0 = time.perf_counter()
        _call(attend, point, q, k, v).backward(dout)
        _sync(device)
        out["compile_s"] = time.perf_counter() - t0
        clear()
    # memory: one untimed forward, then its backward, from a reset peak
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    y = _call(attend, point, q, k, v)
    if cuda:
        torch.cuda.synchronize()
        out["peak_fwd_bytes"] = torch.cuda.max_memory_allocated(device)
        out["allocated_before_bwd_bytes"] = torch.cuda.memory_allocated(device)
        out["reserved_before_bwd_bytes"] = torch.cuda.memory_reserved(device)
    row["failed_mode"] = "bwd"
    y.backward(dout)
    del y
    clear()
    if cuda:
        torch.cuda.synchronize()
        out["peak_fwd_bwd_bytes"] = torch.cuda.max_memory_allocated(device)

    clock = _Clock(device)
    row["failed_mode"] = "fwd"
    times, n = _bench(clock, lambda: _call(attend, point, q, k, v), s, device)
    out.update(fwd_ms=statistics.median(times), fwd_mean_ms=statistics.fmean(times), fwd_reps=n)

    row["failed_mode"] = "bwd"
    graph = [_call(attend, point, q, k, v)]  # one forward's graph, its backward rerun

    def backward() -> None:
        clear()
        graph[0].backward(dout, retain_graph=True)

    times, n = _bench(clock, backward, s, device)
    out.update(bwd_ms=statistics.median(times), bwd_mean_ms=statistics.fmean(times), bwd_reps=n)
    graph.clear()
    clear()

    row["failed_mode"] = "fwd_bwd"

    def fwd_bwd() -> None:
        clear()
        _call(attend, point, q, k, v).backward(dout)

    times, n = _bench(clock, fwd_bwd, s, device)
    out.update(fwd_bwd_ms=statistics.median(times), fwd_bwd_mean_ms=statistics.fmean(times), fwd_bwd_reps=n)
    row["failed_mode"] = None
    clock.flush = None
    return out
