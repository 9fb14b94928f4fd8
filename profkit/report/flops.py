"""`profkit report flops`: FLOPs beside GPU time per NVTX path, MFU and the floor (no torch).

The FLOPs come from flops.json (written by `profkit flops --out`); this module only reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from profkit import analyze, layout
from profkit.analyze import flops as af
from profkit.errors import ProfkitError
from profkit.pipeline import Analysis
from profkit.report.formats import render

KEYS = ["path", "flops", "useful_flops", "bytes", "gpu_ns", "tflops_per_s", "pct_of_peak", "intensity", "bound"]


class FlopsMissing(ProfkitError):
    """The capture has no flops.json."""


def flops_file(profile: Path) -> Path:
    """Where a capture's flops.json lives: in the capture folder (beside its profile.sqlite)."""
    folder = profile if profile.is_dir() else profile.parent
    return folder / layout.FLOPS_FILE


def read_flops(profile: Path) -> dict[str, Any]:
    """The capture's flops.json.

    Raises:
        FlopsMissing: no flops.json, with the command that writes it.
    """
    path = flops_file(profile)
    if not path.is_file():
        raise FlopsMissing(f"{path} does not exist; write it with `profkit flops --model ... --mode ... --dtype ... "
                           f"--attn ... --out {path.parent}` (the capture's config), or install torch so that "
                           "`report flops` counts it from run.json")
    try:
        data = json.loads(path.read_text())
        data["paths"], data["total_flops"]  # noqa: B018 - the keys the report needs
    except (ValueError, KeyError, TypeError):
        raise ProfkitError(f"{path} is not a flops.json written by `profkit flops`") from None
    return data  # type: ignore[no-any-return]


def table(a: Analysis, flops: dict[str, Any], *, measured: bool = False) -> tuple[pd.DataFrame, af.StepFlops, af.Peak]:
    a.require_kernels()
    gpu = str(a.data.gpus["name"].iloc[0]) if not a.data.gpus.empty else None
    try:
        peak = af.peak_for(gpu, measured=measured)
    except KeyError as e:
        raise ProfkitError(str(e.args[0])) from None
    steps = analyze.fold_steps(a.ranges, a.kernels)
    paths = a.kernels["range_path"]
    folded = paths.astype(str).str.replace(r"^step_\d+/", "", regex=True).where(paths.notna())
    precision = af.path_precision(a.kernels.assign(range_path=folded))
    t = af.flops_table(flops, steps, precision, peak)
    if a.run is not None:
        step_ms = a.run.summary.median_ms
    else:
        top = t[~t["path"].str.contains("/")]
        step_ms = float(top["gpu_ns"].sum()) / 1e6
    return t, af.step_summary(flops, t, step_ms, peak), peak


def _num(x: Any, fmt: str) -> str:
    return "" if x is None or (isinstance(x, float) and pd.isna(x)) else format(x, fmt)


def markdown(t: pd.DataFrame, s: af.StepFlops, peak: af.Peak, flops: dict[str, Any], gpu: str) -> str:
    cfg = flops["config"]
    lines = [f"# FLOPs per range: {cfg['model']} {cfg['mode']} {cfg['dtype']} {cfg['attn']}", "",
             f"Peak: {gpu}, {peak.source}: {peak.rate(s.precision) / 1e12:.1f} TFLOP/s {s.precision} (the step's "
             f"main precision), {peak.fp32 / 1e12:.1f} fp32, {peak.bandwidth / 1e12:.2f} TB/s.", "",
             f"- step (median, run.json): {s.step_ms:.2f} ms; floor (sum over paths of max(FLOPs/peak, "
             f"bytes/bandwidth)): {s.floor_ms:.2f} ms ({100 * s.floor_ms / s.step_ms:.1f}% of the step)",
             f"- MFU, exact count (FlopCounterMode, {s.exact_flops / 1e9:,.1f} GFLOP): {100 * s.mfu_exact:.2f}%"]
    if s.mfu_palm is not None and s.palm_flops is not None:
        lines.append(f"- MFU, PaLM (6·N·tokens + 12·L·H·Q·T·tokens, {s.palm_flops / 1e9:,.1f} GFLOP): "
                     f"{100 * s.mfu_palm:.2f}%")
    lines += ["", "`flops`: executed matmul/attention FLOPs as FlopCounterMode counts them (a causal mask is not "
              "subtracted); `useful`: with attention's causal half removed (FlashAttention's convention). Bytes: each "
              "input read once, each output written once, per op. Time: kernel time per measured step.", "",
              "| path | GFLOP | useful GFLOP | MB | GPU ms | precision | TFLOP/s | % of peak | FLOP/B | bound |",
              "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    for r in t.itertuples():
        gpu_ms = r.gpu_ns / 1e6 if r.gpu_ns == r.gpu_ns else None
        prec = r.precision if isinstance(r.precision, str) else ""
        bound = r.bound if isinstance(r.bound, str) else ""
        lines.append(f"| {r.path} | {r.flops / 1e9:,.2f} | {r.useful_flops / 1e9:,.2f} | {r.bytes / 1e6:,.1f} | "
                     f"{_num(gpu_ms, '.3f')} | {prec} | {_num(r.tflops_per_s, '.1f')} | "
                     f"{_num(r.pct_of_peak, '.1f')} | {_num(r.intensity, '.1f')} | {bound} |")
    return "\n".join(lines) + "\n"


def report(a: Analysis, flops: dict[str, Any], *, fmt: str = "markdown", measured: bool = False) -> str:
    """`profkit report flops`: one row per path below the step (JSON/CSV keys: KEYS)."""
    t, s, peak = table(a, flops, measured=measured)
    gpu = str(a.data.gpus["name"].iloc[0])
    return render(t[KEYS], fmt, markdown(t, s, peak, flops, gpu) if fmt == "markdown" else "")


def roofline_png(t: pd.DataFrame, peak: af.Peak, precision: str, out: Path) -> str:  # pragma: no cover
    """One point per path (sized by its time) under the roof; a note instead when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "roofline PNG skipped: matplotlib is not installed (pip install matplotlib)"
    d = t.dropna(subset=["intensity", "tflops_per_s"])
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [10 ** (i / 10) for i in range(-20, 41)]
    rate = peak.rate(precision)
    ax.plot(xs, [min(rate, x * peak.bandwidth) / 1e12 for x in xs], "k-", label=f"roof ({precision})")
    ax.scatter(d["intensity"], d["tflops_per_s"], s=5 + 200 * d["gpu_ns"] / d["gpu_ns"].max(), alpha=0.5)
    ax.set(xscale="log", yscale="log", xlabel="FLOP/byte", ylabel="TFLOP/s")
    ax.legend()
    fig.savefig(out, dpi=120)
    return f"roofline: {out}"
