"""FLOP/time ratios per NVTX path: peaks, achieved TFLOP/s, roofline, MFU, floor (no torch).

The FLOPs and bytes come from flops.json (`profkit flops`, made by replaying the step on the
`meta` device); the time from the capture's projected GPU time per path. Formulas follow
flash-attention's benchmarks/benchmark_flash_attention.py (`flops()`, `efficiency()`) and
nanoGPT's `estimate_mfu` (PaLM, Chowdhery et al. 2022, Appendix B).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from profkit import peaks
from profkit.columns import GRAPH_NAME
from profkit.frames import require

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8")


@dataclass(frozen=True, slots=True)
class Peak:
    """Dense (no sparsity) peak rates in FLOP/s per precision and memory bandwidth in B/s."""

    fp32: float
    tf32: float
    bf16: float
    fp8: float | None
    bandwidth: float
    source: str
    fp16: float | None = None
    """None: the same as bf16 (as on every datasheet here); measured ceilings differ a little."""

    def rate(self, precision: str) -> float:
        value = getattr(self, precision)
        return float(value if value is not None else self.bf16)


T, TB = 1e12, 1e12
# Keyed by TARGET_INFO_GPU.name as nsys stores it (the fixtures: "NVIDIA H100 80GB HBM3", "NVIDIA H200").
PEAKS: dict[str, Peak] = {
    # NVIDIA H100 Tensor Core GPU datasheet (2023), SXM column; tensor figures halved (the sheet gives sparsity).
    "NVIDIA H100 80GB HBM3": Peak(67 * T, 494.7 * T, 989.4 * T, 1978.9 * T, 3.35 * TB, "H100 SXM datasheet"),
    # same datasheet, PCIe column.
    "NVIDIA H100 PCIe": Peak(51.2 * T, 378 * T, 756 * T, 1513 * T, 2.0 * TB, "H100 PCIe datasheet"),
    # NVIDIA H200 Tensor Core GPU datasheet (2024), SXM column: H100's compute, 4.8 TB/s HBM3e.
    "NVIDIA H200": Peak(67 * T, 494.7 * T, 989.4 * T, 1978.9 * T, 4.8 * TB, "H200 SXM datasheet"),
    # NVIDIA A100 Tensor Core GPU datasheet (2021): 19.5 fp32, 156 tf32, 312 bf16; no fp8.
    "NVIDIA A100-SXM4-40GB": Peak(19.5 * T, 156 * T, 312 * T, None, 1.555 * TB, "A100 40GB SXM datasheet"),
    "NVIDIA A100-SXM4-80GB": Peak(19.5 * T, 156 * T, 312 * T, None, 2.039 * TB, "A100 80GB SXM datasheet"),
    "NVIDIA A100 80GB PCIe": Peak(19.5 * T, 156 * T, 312 * T, None, 1.935 * TB, "A100 80GB PCIe datasheet"),
    # NVIDIA L4 datasheet (2023), dense: 30.3 fp32, 60 tf32, 121 bf16, 242.5 fp8, 300 GB/s.
    "NVIDIA L4": Peak(30.3 * T, 60 * T, 121 * T, 242.5 * T, 0.3 * TB, "L4 datasheet"),
    # NVIDIA L40S datasheet (2023), dense: 91.6 fp32, 183 tf32, 362 bf16, 733 fp8, 864 GB/s.
    "NVIDIA L40S": Peak(91.6 * T, 183 * T, 362 * T, 733 * T, 0.864 * TB, "L40S datasheet"),
    # NVIDIA Ada GPU architecture whitepaper (2023), Appendix A, fp32 accumulate: 4090 82.6/82.6/165.2/330.3, 1008 GB/s.
    "NVIDIA GeForce RTX 4090": Peak(82.6 * T, 82.6 * T, 165.2 * T, 330.3 * T, 1.008 * TB, "Ada whitepaper, RTX 4090"),
    # same whitepaper's RTX 4070 column (29.1 fp32, 58.3 bf16 with fp32 accumulate), 504 GB/s.
    "NVIDIA GeForce RTX 4070": Peak(29.1 * T, 29.1 * T, 58.3 * T, 116.6 * T, 0.504 * TB, "Ada whitepaper, RTX 4070"),
}
# Measured on this project's H200 by the lead (large random matmuls and a device copy, medians),
# used by `--peaks measured` where this machine's cache has no `profkit doctor --measure-peaks` entry.
MEASURED: dict[str, Peak] = {
    "NVIDIA H200": Peak(50 * T, 404 * T, 772 * T, None, 4.16 * TB, "measured on the project's H200 (profkit's "
                        "built-in table; no `profkit doctor --measure-peaks` entry for it in this cache)",
                        fp16=745 * T),
}


def peak_for(gpu: str | None, *, measured: bool = False) -> Peak:
    """The peak table's row for a TARGET_INFO_GPU name.

    Raises:
        KeyError: a GPU the table does not hold (the message lists the ones it does).

    >>> peak_for("NVIDIA H200").bandwidth
    4800000000000.0
    """
    table = MEASURED if measured else PEAKS
    if gpu not in table:
        raise KeyError(f"no {'measured ' if measured else ''}peak for GPU {gpu!r}; known: {', '.join(table)}")
    return table[gpu]


def measured_peak(m: peaks.Measured, *, driver: str | None = None) -> Peak:
    """A `profkit doctor --measure-peaks` measurement as a Peak (fp8 unmeasured: None).

    `driver` is the capture's: when it differs from the measurement's, the source says so.
    """
    other = f"; the capture ran on driver {driver}" if driver is not None and driver != m.driver else ""
    source = f"measured by `profkit doctor --measure-peaks` on {m.measured_at}, driver {m.driver}{other}"
    f = m.flops
    return Peak(f["fp32"], f["tf32"], f["bf16"], None, m.bandwidth, source, fp16=f["fp16"])


_FP8 = re.compile(r"e4m3|e5m2|fp8", re.IGNORECASE)
_FP32 = re.compile(r"ffma|sgemm|gemv2T_kernel_val<int, int, float|gemmSN_", re.IGNORECASE)
_TF32 = re.compile(r"tf32|xmma_gemm_f32f32(?!.*ffma)", re.IGNORECASE)
_HALF = re.compile(r"nvjet|_h_|bf16|fp16|half|bfloat16|flash|fmha|cudnn|hmma|s16816|_16x", re.IGNORECASE)


def kernel_precision(name: str) -> str | None:
    """The precision a matmul/attention kernel runs at, from its name (None: not a tensor op).

    fp32 GEMMs on CUDA cores (FFMA: `sm80_xmma_gemm_f32f32_..._ffma`, `ampere_sgemm`) are told
    from TF32 and 16-bit tensor-core ones (`*_tf32_*`, Hopper's `nvjet_*_h_*`, flash).

    >>> [kernel_precision(n) for n in ("sm80_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize64x64x8_ffma_x",
    ...  "nvjet_sm90_tst_96x64_64x8_1x2_h_bz_NNN", "flash_fwd_kernel", "elementwise_kernel")]
    ['fp32', 'bf16', 'bf16', None]
    """
    if _FP8.search(name):
        return "fp8"
    if _FP32.search(name):
        return "fp32"
    if _TF32.search(name):
        return "tf32"
    if _HALF.search(name):
        return "bf16"
    return None


def flash_attention_flops(batch: int, heads: int, seqlen: int, head_dim: int, *, causal: bool,
                          mode: str = "fwd") -> float:
    """FlashAttention's count (flash-attention benchmarks/benchmark_flash_attention.py `flops()`):
    4·B·H·T²·d forward, halved when causal, backward 2.5x forward.

    >>> flash_attention_flops(8, 12, 256, 64, causal=False)
    1610612736.0
    >>> flash_attention_flops(8, 12, 256, 64, causal=True, mode="fwd_bwd")
    2818572288.0
    """
    f = 4.0 * batch * heads * seqlen**2 * head_dim / (2 if causal else 1)
    return f if mode == "fwd" else (2.5 * f if mode == "bwd" else 3.5 * f)


def palm_flops(n_params: int, tokens: int, *, n_layers: int, n_heads: int, head_dim: int, seqlen: int,
               mode: str) -> float:
    """Model FLOPs per step, PaLM Appendix B: (6·N + 12·L·H·Q·T) per token for forward+backward
    (nanoGPT's estimate_mfu), a third of it for a forward alone.

    >>> palm_flops(1, 1, n_layers=1, n_heads=1, head_dim=1, seqlen=1, mode="fwd_bwd")
    18.0
    """
    per_token = 6.0 * n_params + 12.0 * n_layers * n_heads * head_dim * seqlen
    return per_token * tokens / (3 if mode == "fwd" else 1)


def path_precision(kernels: pd.DataFrame, *, graphs: str | None = None) -> pd.DataFrame:
    """The precision each path's matmul/attention kernels ran at (the one with most time).

    Args:
        kernels: rows with name, dur_ns and range_path (steps folded or not).
        graphs: the precision of whole CUDA-graph replays (`CUDA graph G (exec E)`), whose name
            does not tell: the run's autocast dtype; None counts them as no tensor op.

    Returns:
        path, precision (NaN for paths without tensor-op kernels: their rate is fp32's).
    """
    require(kernels, ["name", "dur_ns", "range_path"], "kernels")
    rows = []
    # every prefix of a kernel's path holds it (paths are inclusive): time per (path, name) first,
    # on codes a chunk at a time, then each distinct pair's prefixes (no row or string per kernel)
    for (path, name), dur in _pair_ns(kernels["range_path"], kernels["name"], kernels["dur_ns"]).items():
        precision = graphs if GRAPH_NAME.match(name) else kernel_precision(name)
        if precision is None or pd.isna(precision):
            continue
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            rows.append(("/".join(parts[:i]), precision, dur))
    if not rows:
        return pd.DataFrame({"path": pd.Series(dtype=object), "precision": pd.Series(dtype=object)})
    t = pd.DataFrame(rows, columns=["path", "precision", "dur_ns"]).groupby(["path", "precision"])["dur_ns"].sum()
    best = t.reset_index().sort_values("dur_ns", ascending=False).drop_duplicates("path")
    return best[["path", "precision"]].reset_index(drop=True)


PAIR_CHUNK = 1 << 20


def _pair_ns(paths: pd.Series, names: pd.Series, dur: pd.Series) -> dict[tuple[str, str], int]:
    """Kernel time per (path, name) text pair, kernels without a path left out."""
    import numpy as np

    p = paths.astype("category")  # the analysis's already are: no copy
    n = names.astype("category")
    p_codes, n_codes = p.cat.codes.to_numpy(), n.cat.codes.to_numpy()
    d = dur.to_numpy()
    width = len(n.cat.categories) + 1
    sums: dict[int, int] = {}
    for lo in range(0, len(d), PAIR_CHUNK):
        pc, nc = p_codes[lo:lo + PAIR_CHUNK], n_codes[lo:lo + PAIR_CHUNK]
        keep = pc >= 0
        pair = pc[keep].astype(np.int64) * width + nc[keep] + 1  # a name code of -1 (NaN) stays its own
        uniq, inverse = np.unique(pair, return_inverse=True)
        total = np.zeros(len(uniq), dtype=np.int64)
        np.add.at(total, inverse.reshape(-1), d[lo:lo + PAIR_CHUNK][keep])
        for key, ns in zip(uniq.tolist(), total.tolist(), strict=True):
            sums[key] = sums.get(key, 0) + ns
    path_text = [str(c) for c in p.cat.categories]
    name_text = ["nan", *(str(c) for c in n.cat.categories)]  # as astype(str) writes a missing name
    out: dict[tuple[str, str], int] = {}
    for key, ns in sums.items():
        pair_key = (path_text[key // width], name_text[key % width])
        out[pair_key] = out.get(pair_key, 0) + ns
    return out


def _exclusive(paths: pd.DataFrame, col: str) -> pd.Series:
    """A path's own share of an inclusive column: itself minus its direct children."""
    val = paths.set_index("path")[col]
    parent = pd.Series([p.rpartition("/")[0] for p in val.index], index=val.index)
    children = val.groupby(parent.to_numpy()).sum()
    return (val - children.reindex(val.index).fillna(0)).clip(lower=0)


def flops_table(flops: dict[str, Any], steps: pd.DataFrame, precision: pd.DataFrame, peak: Peak) -> pd.DataFrame:
    """Per path of flops.json: FLOPs, useful FLOPs, bytes, GPU ns per step, achieved TFLOP/s,
    % of the peak of the precision its kernels used, intensity and the bound from the ridge.

    Args:
        flops: flops.json's object (paths under `step_0/`).
        steps: fold_steps() rows (path below the step, gpu_ns_per_step).
        precision: path_precision() of the folded kernel paths.
        peak: the GPU's peak row.

    Returns:
        path (below the step), flops, useful_flops, vector_flops, bytes, gpu_ns, precision,
        tflops_per_s, pct_of_peak, intensity, bound, floor_ns (own share: children excluded).

    | flops | bytes | gpu_ns | -> | tflops_per_s | intensity | bound          |
    | 1e12  | 1e9   | 2e6    |    | 500          | 1000      | compute-bound  |
    """
    rows = pd.DataFrame(flops["paths"])
    rows = rows[rows["path"].str.startswith("step_0/")].copy()
    rows["path"] = rows["path"].str.removeprefix("step_0/")
    rows["useful_flops"] = rows["flops"] - rows["attention_flops"] + rows["useful_attention_flops"]
    gpu = steps.set_index("path")["gpu_ns_per_step"] if not steps.empty else pd.Series(dtype=float)
    rows["gpu_ns"] = rows["path"].map(gpu).astype(float)
    prec = precision.set_index("path")["precision"] if not precision.empty else pd.Series(dtype=object)
    rows["precision"] = rows["path"].map(prec).where(lambda s: s.notna(), None)
    rate = rows["precision"].map(lambda p: peak.rate(p) if isinstance(p, str) else peak.fp32)
    secs = rows["gpu_ns"] / 1e9
    rows["tflops_per_s"] = (rows["flops"] / secs / 1e12).where(rows["gpu_ns"] > 0)
    rows["pct_of_peak"] = (100 * rows["flops"] / secs / rate).where(rows["gpu_ns"] > 0)
    rows["intensity"] = (rows["flops"] + rows["vector_flops"]) / rows["bytes"].where(rows["bytes"] > 0)
    ridge = rate / peak.bandwidth
    rows["bound"] = (rows["intensity"] >= ridge).map({True: "compute-bound", False: "memory-bound"})
    rows.loc[rows["intensity"].isna(), "bound"] = None
    # floor: own FLOPs at the path's rate (vector FLOPs at fp32's), against own bytes at the bandwidth
    own = {c: _exclusive(rows, c).reindex(rows["path"]).to_numpy() for c in ("flops", "vector_flops", "bytes")}
    compute_s = own["flops"] / rate.to_numpy() + own["vector_flops"] / peak.fp32
    rows["floor_ns"] = 1e9 * pd.Series(compute_s).combine(pd.Series(own["bytes"] / peak.bandwidth), max).to_numpy()
    cols = ["path", "flops", "useful_flops", "vector_flops", "bytes", "gpu_ns", "precision", "tflops_per_s",
            "pct_of_peak", "intensity", "bound", "floor_ns"]
    return rows[cols].reset_index(drop=True)


@dataclass(frozen=True, slots=True)
class StepFlops:
    step_ms: float
    exact_flops: float
    palm_flops: float | None
    mfu_exact: float
    mfu_palm: float | None
    floor_ms: float
    peak_rate: float
    precision: str


def step_summary(flops: dict[str, Any], table: pd.DataFrame, step_ms: float, peak: Peak) -> StepFlops:
    """Whole-step MFU two ways (the exact count, and PaLM's 6·N·tokens + attention) against the
    peak of the step's main precision, and the floor: the sum of the paths' own floors."""
    prec = table["precision"].dropna()
    precision = str(prec.mode().iloc[0]) if not prec.empty else "fp32"
    rate = peak.rate(precision)
    shape = flops.get("shape")
    cfg = flops["config"]
    palm = (palm_flops(flops["params"], flops["tokens"], n_layers=shape["n_layers"], n_heads=shape["n_heads"],
                       head_dim=shape["head_dim"], seqlen=cfg["context_length"], mode=cfg["mode"])
            if shape else None)
    secs = step_ms / 1e3
    exact = float(flops["total_flops"])
    return StepFlops(step_ms=step_ms, exact_flops=exact, palm_flops=palm, mfu_exact=exact / secs / rate,
                     mfu_palm=palm / secs / rate if palm is not None else None,
                     floor_ms=float(table["floor_ns"].sum()) / 1e6, peak_rate=rate, precision=precision)


GAP_COMPONENTS = ("floor", "kernels below their roof", "copies, memsets and overlap", "GPU idle in its span",
                  "rest of the measured step")


def floor_gap(floor_ns: float, *, kernel_ns: float, busy_ns: float, span_ns: float, step_ns: float) -> pd.DataFrame:
    """The measured step as floor + what stands between it and the floor, per step. Exact:
    the components add up to `step_ns`.

    Args:
        floor_ns: the sum over paths of max(FLOPs / peak, bytes / bandwidth) (flops_table's floor_ns).
        kernel_ns: the step's kernel time (sum of the durations of the kernels under step_i).
        busy_ns, span_ns: the step's GPU busy time (union of kernels, copies, memsets) and GPU span
            (first start to last end), as `profkit report timeline` computes them.
        step_ns: the measured step (run.json's median under the profiler; the span without one).

    Returns:
        component (GAP_COMPONENTS), ns, pct_of_step, what: one row each.

    | floor | kernels | busy | span | step | -> | floor | below roof | copies | idle | rest |
    | 4     | 10      | 11   | 13   | 14   |    | 4     | 6          | 1      | 2    | 1    |
    """
    values = [floor_ns, kernel_ns - floor_ns, busy_ns - kernel_ns, span_ns - busy_ns, step_ns - span_ns]
    what = ["sum over paths of max(FLOPs / peak, bytes / bandwidth)",
            "kernel time minus the floor: kernels running below their roof",
            "GPU busy time minus kernel time: copies and memsets, less the time kernels overlapped",
            "GPU span minus busy time (`profkit report timeline`): the GPU waited inside the step",
            "measured step minus the GPU span: before the step's first and after its last GPU work"]
    return pd.DataFrame({"component": list(GAP_COMPONENTS), "ns": values,
                         "pct_of_step": [100 * v / step_ns if step_ns else float("nan") for v in values],
                         "what": what})


def phase_floors(table: pd.DataFrame) -> pd.DataFrame:
    """flops_table() summed per top-level phase (forward, backward, optimizer): floor (own
    floors of every path under it), kernel time, and the time below the roof.

    Returns:
        phase, floor_ns, gpu_ns, below_roof_ns, floor_pct (of its kernel time).
    """
    require(table, ["path", "gpu_ns", "floor_ns"], "flops table")
    phase = table["path"].str.split("/").str[0]
    top = table[~table["path"].str.contains("/")].set_index("path")["gpu_ns"]
    out = table.assign(phase=phase).groupby("phase", sort=False)["floor_ns"].sum().reset_index()
    out["gpu_ns"] = out["phase"].map(top).fillna(0.0)
    out["below_roof_ns"] = out["gpu_ns"] - out["floor_ns"]
    out["floor_pct"] = (100 * out["floor_ns"] / out["gpu_ns"]).where(out["gpu_ns"] > 0)
    return out
