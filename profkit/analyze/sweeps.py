"""Derived metrics of a sweep point, from its measured columns (no torch): FLOPs and TFLOP/s of
an attention point by FlashAttention's convention, MFU of a models point by PaLM's count.

The sweep runners (collect) call these through the `derive` argument the CLI hands them, so
every row lands in the results database with its metrics, and collect imports nothing of
analyze. The formulas are analyze/flops.py's (`flash_attention_flops`, `palm_flops`, the peak
table), not copies.
"""

from __future__ import annotations

from typing import Any

from profkit.analyze.flops import PEAKS, flash_attention_flops, palm_flops
from profkit.sizes import SIZES


def attention_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with `{mode}_flops` (4·B·H·T²·d forward, halved when causal, backward 2.5x) and
    `{mode}_tflops_per_s` (FLOPs over the median pass) for fwd, bwd and fwd_bwd.

    >>> r = attention_metrics({"batch_size": 8, "heads": 12, "seq_len": 256, "head_dim": 64, "causal": 0,
    ...                        "fwd_ms": 1.0, "bwd_ms": None, "fwd_bwd_ms": 3.5})
    >>> r["fwd_flops"], r["fwd_tflops_per_s"], r["bwd_tflops_per_s"], r["fwd_bwd_tflops_per_s"]
    (1610612736.0, 1.610612736, None, 1.610612736)
    """
    out = dict(row)
    for mode in ("fwd", "bwd", "fwd_bwd"):
        flops = flash_attention_flops(row["batch_size"], row["heads"], row["seq_len"], row["head_dim"],
                                      causal=bool(row["causal"]), mode=mode)
        ms = row.get(f"{mode}_ms")
        out[f"{mode}_flops"] = flops
        out[f"{mode}_tflops_per_s"] = flops / (ms / 1e3) / 1e12 if ms else None
    return out


def peak_rate(gpu: str | None, dtype: str) -> float | None:
    """The datasheet peak (FLOP/s) of the precision a run's matmuls use: fp32 (torch's default
    keeps TF32 off) or 16-bit for bf16/fp16 autocast; None for a GPU the table lacks (or a CPU)."""
    peak = PEAKS.get(gpu or "")
    if peak is None:
        return None
    return peak.fp32 if dtype == "fp32" else peak.bf16


def model_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with PaLM's FLOPs per step (6·N + 12·L·H·Q·T per token, a third for a forward),
    the peak of its precision and MFU, and MFU of the exact count when a capture gave one.

    >>> r = model_metrics({"model": "small", "mode": "fwd_bwd", "dtype": "bf16", "gpu": "NVIDIA H200",
    ...                    "ms_per_step": 100.0, "params": 128625408, "tokens_per_step": 1024,
    ...                    "context_length": 256, "exact_flops": None})
    >>> round(r["palm_flops"] / 1e9, 1), r["peak_tflops"], round(100 * r["mfu"], 3)
    (819.3, 989.4, 0.828)
    """
    out = dict(row)
    size = SIZES.get(row["model"])
    palm = None
    if size is not None and row.get("params") and row.get("tokens_per_step"):
        palm = palm_flops(row["params"], row["tokens_per_step"], n_layers=size.n_layers, n_heads=size.n_heads,
                          head_dim=size.d_model // size.n_heads, seqlen=row["context_length"], mode=row["mode"])
    rate = peak_rate(row.get("gpu"), row["dtype"])
    secs = row["ms_per_step"] / 1e3 if row.get("ms_per_step") else None
    out["palm_flops"] = palm
    out["peak_tflops"] = rate / 1e12 if rate else None
    out["mfu"] = palm / secs / rate if (palm and secs and rate) else None
    exact = row.get("exact_flops")
    out["mfu_exact"] = exact / secs / rate if (exact and secs and rate) else None
    return out
