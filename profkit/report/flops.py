"""`profkit report flops`: FLOPs beside GPU time per NVTX path, MFU and the floor (no torch).

The FLOPs come from flops.json (written by `profkit flops --out`); this module only reads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from profkit import analyze, layout, peaks
from profkit.analyze import flops as af
from profkit.analyze.timeline import per_distinct
from profkit.errors import ProfkitError
from profkit.pipeline import Analysis
from profkit.report import timeline as report_timeline
from profkit.report.formats import frame_graph_note, render, with_note

KEYS = ["path", "flops", "useful_flops", "bytes", "gpu_ns", "tflops_per_s", "pct_of_peak", "intensity", "bound"]


class FlopsMissing(ProfkitError):
    """The capture has no flops.json."""


def flops_file(profile: Path) -> Path:
    """Where a capture's flops.json lives: in the capture folder (beside its profile.sqlite)."""
    folder = profile if profile.is_dir() else profile.parent
    return folder / layout.FLOPS_FILE


def flops_stamp(profile: Path) -> str | None:
    """The digest of the capture's flops.json (None: none), for report.md's cache key."""
    try:
        return hashlib.sha256(flops_file(profile).read_bytes()).hexdigest()
    except OSError:
        return None


def _count(x: Any) -> bool:
    """A whole or real number, finite and not negative (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 and x != float("inf")


def _positive(x: Any) -> bool:
    return _count(x) and bool(x > 0)


PATH_COUNTS = ("flops", "vector_flops", "bytes", "attention_flops", "useful_attention_flops")


def flops_problem(data: Any) -> str | None:
    """What makes `data` not a flops.json that the report can read (None: nothing), in words.

    >>> flops_problem({"config": {"mode": "fwd"}, "params": 1, "tokens": 2, "total_flops": 3, "paths": []})
    >>> flops_problem({"config": {"mode": "fwd"}, "params": -1, "tokens": 2, "total_flops": 3, "paths": []})
    'params is -1, not a count'
    """
    if not isinstance(data, dict):
        return "not a JSON object"
    if not isinstance(data.get("config"), dict) or not isinstance(data["config"].get("mode"), str):
        return "no config with a mode"
    for key in ("params", "tokens", "total_flops"):
        if not _count(data.get(key)):
            return f"{key} is {data.get(key)!r}, not a count"
    shape = data.get("shape")
    if shape is not None:
        if not isinstance(shape, dict) or not all(_positive(shape.get(k)) for k in ("n_layers", "n_heads", "head_dim")):
            return f"shape is {shape!r}, not n_layers, n_heads and head_dim"
        if not _positive(data["config"].get("context_length")):
            return "config has no context_length"
    paths = data.get("paths")
    if not isinstance(paths, list):
        return "no list of paths"
    for row in paths:
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            return f"a path row is {row!r}"
        bad = next((k for k in PATH_COUNTS if not _count(row.get(k))), None)
        if bad is not None:
            return f"path {row['path']!r}: {bad} is {row.get(bad)!r}, not a count"
    return None


def read_flops(profile: Path) -> dict[str, Any]:
    """The capture's flops.json.

    Raises:
        FlopsMissing: no flops.json, with the command that writes it.
        ProfkitError: a flops.json that is not one (flops_problem() says why).
    """
    path = flops_file(profile)
    if not path.is_file():
        raise FlopsMissing(f"{path} does not exist; write it with `profkit flops --model ... --mode ... --dtype ... "
                           f"--attn ... --out {path.parent}` (the capture's config), or install torch so that "
                           "`report flops` counts it from run.json")
    try:
        data = json.loads(path.read_text())
        problem = flops_problem(data)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        problem = f"not readable JSON: {e}"
    if problem is not None:
        raise ProfkitError(f"{path} is not a flops.json written by `profkit flops` ({problem}); write it again "
                           f"with `profkit flops ... --out {path.parent}`")
    return data  # type: ignore[no-any-return]


def resolve_peak(a: Analysis, *, measured: bool = False) -> tuple[af.Peak, str]:
    """The peak to compare with, and the GPU's name: the datasheet's, or (`measured`) this
    GPU's `profkit doctor --measure-peaks` entry in the cache, else profkit's built-in
    measurement of that GPU.

    Raises:
        ProfkitError: the GPU is in neither table (the message says what to run).
    """
    gpu = str(a.data.gpus["name"].iloc[0]) if not a.data.gpus.empty else None
    if measured:
        driver = a.run.environment.driver if a.run is not None else None
        m = peaks.lookup(gpu, driver)
        if m is not None:
            return af.measured_peak(m, driver=driver), str(gpu)
        if gpu not in af.MEASURED:
            raise ProfkitError(f"no measured peaks for GPU {gpu!r} in {peaks.folder()}; run `profkit doctor "
                               "--measure-peaks` on a machine with that GPU, or use --peaks datasheet")
    try:
        return af.peak_for(gpu, measured=measured), str(gpu)
    except KeyError as e:
        raise ProfkitError(str(e.args[0])) from None


def table(a: Analysis, flops: dict[str, Any], *, measured: bool = False) -> tuple[pd.DataFrame, af.StepFlops, af.Peak]:
    a.require_kernels()
    peak, _ = resolve_peak(a, measured=measured)
    steps = analyze.fold_steps(a.ranges, a.kernels)
    folded = fold_paths(a.kernels["range_path"])
    # A whole CUDA-graph replay's name says nothing of its matmuls: under autocast they run in its dtype.
    graphs = {"bf16": "bf16", "fp16": "fp16"}.get(str(flops["config"].get("dtype")))
    precision = af.path_precision(a.kernels.assign(range_path=folded), graphs=graphs)
    if flops["config"].get("dtype") == "fp16":  # kernel names do not tell fp16 from bf16; the run's dtype does
        precision = precision.assign(precision=precision["precision"].replace("bf16", "fp16"))
    t = af.flops_table(flops, steps, precision, peak)
    if a.run is not None:
        step_ms = a.run.summary.median_ms
    else:
        top = t[~t["path"].str.contains("/")]
        step_ms = float(top["gpu_ns"].sum()) / 1e6
    return t, af.step_summary(flops, t, step_ms, peak), peak


def fold_paths(paths: pd.Series) -> pd.Series:
    """Range paths without their `step_N/` (NaN stays NaN), as a Categorical: folded once per
    distinct path, not once per kernel.

    >>> fold_paths(pd.Series(["step_0/forward", None, "step_1/forward", "warmup"], dtype="category")).tolist()
    ['forward', nan, 'forward', 'warmup']
    """
    import re

    import numpy as np

    cats = paths.astype("category")  # the analysis's already is: no copy
    texts = [re.sub(r"^step_\d+/", "", str(c)) for c in cats.cat.categories]
    uniq = list(dict.fromkeys(texts))
    index = {t: i for i, t in enumerate(uniq)}
    remap = np.array([*(index[t] for t in texts), -1], dtype=np.int32)  # code -1 (NaN): the last entry
    codes = remap[cats.cat.codes.to_numpy()]
    return pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(uniq, dtype=object)), index=paths.index)


def gap(a: Analysis, t: pd.DataFrame, s: af.StepFlops) -> pd.DataFrame:
    """floor_gap() of a capture, per measured step: kernel time under the step_i ranges, busy
    time and span of the timeline's `step` phase, the step from run.json (else the span)."""
    phases = report_timeline.phases(a)
    row = phases[phases["name"] == "step"]
    if row.empty:
        raise ProfkitError("the capture has no measured step_i ranges: no floor-and-gap to show")
    r = row.iloc[0]
    n = int(r["instances"])
    in_step = per_distinct(a.kernels["range_path"], lambda p: p.str.match(r"^step_\d+(/|$)"))  # NaN: "nan"
    kernel_ns = float(a.kernels["dur_ns"].to_numpy().sum(where=in_step)) / n
    span = float(r["gpu_span_ns"]) / n
    step_ns = s.step_ms * 1e6 if a.run is not None else span
    return af.floor_gap(s.floor_ms * 1e6, kernel_ns=kernel_ns, busy_ns=float(r["gpu_busy_ns"]) / n, span_ns=span,
                        step_ns=step_ns)


def gap_markdown(g: pd.DataFrame, t: pd.DataFrame) -> list[str]:
    """The floor-and-gap table, then the floor per phase."""
    step = float(g["ns"].sum())
    lines = [f"Measured step {step / 1e6:.2f} ms = " + " + ".join(
        f"{name} {ns / 1e6:.2f}" for name, ns in zip(g["component"], g["ns"], strict=True)) + " ms.", "",
        "| component | ms per step | % of step | what |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {r.component} | {r.ns / 1e6:,.3f} | {r.pct_of_step:.1f} | {r.what} |" for r in g.itertuples()]
    ph = af.phase_floors(t)
    lines += ["", "| phase | floor ms | kernel ms | below the roof ms | floor % of kernel time |",
              "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.phase} | {r.floor_ns / 1e6:,.3f} | {r.gpu_ns / 1e6:,.3f} | {r.below_roof_ns / 1e6:,.3f} | "
              f"{_num(r.floor_pct, '.1f')} |" for r in ph.itertuples()]
    return lines


def _num(x: Any, fmt: str) -> str:
    return "" if x is None or (isinstance(x, float) and pd.isna(x)) else format(x, fmt)


def peak_line(peak: af.Peak, s: af.StepFlops, gpu: str) -> str:
    return (f"Peak: {gpu}, {peak.source}: {peak.rate(s.precision) / 1e12:.1f} TFLOP/s {s.precision} (the step's "
            f"main precision), {peak.fp32 / 1e12:.1f} fp32, {peak.bandwidth / 1e12:.2f} TB/s.")


def markdown(t: pd.DataFrame, s: af.StepFlops, peak: af.Peak, flops: dict[str, Any], gpu: str,
             g: pd.DataFrame | None = None) -> str:
    cfg = flops["config"]
    lines = [f"# FLOPs per range: {cfg['model']} {cfg['mode']} {cfg['dtype']} {cfg['attn']}", "",
             peak_line(peak, s, gpu), "",
             f"- step (median, run.json): {s.step_ms:.2f} ms; floor (sum over paths of max(FLOPs/peak, "
             f"bytes/bandwidth)): {s.floor_ms:.2f} ms ({100 * s.floor_ms / s.step_ms:.1f}% of the step)",
             f"- MFU, exact count (FlopCounterMode, {s.exact_flops / 1e9:,.1f} GFLOP): {100 * s.mfu_exact:.2f}%"]
    if s.mfu_palm is not None and s.palm_flops is not None:
        lines.append(f"- MFU, PaLM (6·N·tokens + 12·L·H·Q·T·tokens, {s.palm_flops / 1e9:,.1f} GFLOP): "
                     f"{100 * s.mfu_palm:.2f}%")
    if g is not None:
        lines += ["", "## The floor and the gap", ""] + gap_markdown(g, t)
    lines += ["", "## Per path", "",
              "`flops`: executed matmul/attention FLOPs as FlopCounterMode counts them (a causal mask is not "
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
    if fmt != "markdown":
        return render(t[KEYS], fmt, "")
    _, gpu = resolve_peak(a, measured=measured)
    return with_note(markdown(t, s, peak, flops, gpu, gap(a, t, s)), frame_graph_note(a.kernels))


def section(a: Analysis) -> list[str]:
    """report.md's FLOPs section, when the capture folder has a flops.json (datasheet peaks)."""
    if not flops_file(a.data.path).is_file() or not a.data.has_kernel_table or a.kernels.empty:
        return []
    try:
        flops = read_flops(a.data.path)
        t, s, peak = table(a, flops)
        g = gap(a, t, s)
        _, gpu = resolve_peak(a)
    except ProfkitError as e:
        return ["## FLOPs, the floor and the gap", "", f"Not shown: {e}", ""]
    top = t[t["path"].str.count("/") <= 1]
    lines = ["## FLOPs, the floor and the gap", "", peak_line(peak, s, gpu) + " `profkit report flops --peaks "
             "measured` compares with this GPU's measured ceilings.", "",
             f"MFU {100 * s.mfu_exact:.2f}% (exact count, {s.exact_flops / 1e9:,.1f} GFLOP per step)"
             + (f", {100 * s.mfu_palm:.2f}% (PaLM's 6·N·tokens + attention)" if s.mfu_palm is not None else "")
             + f"; the floor is {s.floor_ms:.2f} ms of the {s.step_ms:.2f} ms step.", ""]
    lines += gap_markdown(g, t) + ["", "| path | GFLOP | GPU ms | TFLOP/s | % of peak | bound |",
                                   "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in top.itertuples():
        lines.append(f"| {r.path} | {r.flops / 1e9:,.2f} | {_num(r.gpu_ns / 1e6, '.3f')} | "
                     f"{_num(r.tflops_per_s, '.1f')} | {_num(r.pct_of_peak, '.1f')} | "
                     f"{r.bound if isinstance(r.bound, str) else ''} |")
    return lines + ["", "Every path: `profkit report flops`.", ""]


def waterfall_png(g: pd.DataFrame, out: Path, *, title: str = "") -> str:
    """The measured step as a waterfall: floor, then each component stacked on it, then the step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "waterfall PNG skipped: matplotlib is not installed (pip install matplotlib)"
    ms = (g["ns"] / 1e6).tolist()
    names = [str(c) for c in g["component"]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bottom = 0.0
    colors = ["tab:green", "tab:orange", "tab:purple", "tab:red", "tab:gray"]
    for i, v in enumerate(ms):
        ax.bar(i, v, bottom=bottom if v >= 0 else bottom + v, color=colors[i % len(colors)])
        ax.text(i, bottom + max(v, 0), f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        bottom += v
    ax.bar(len(names), bottom, color="tab:blue")
    ax.text(len(names), bottom, f"{bottom:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names) + 1), [n.replace(" ", "\n", 2) for n in names] + ["measured\nstep"], fontsize=8)
    ax.set_ylabel("ms per step")
    ax.set_title(title or "the floor and the gap")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return f"waterfall: {out}"


def roofline_png(t: pd.DataFrame, peak: af.Peak, precision: str, out: Path) -> str:
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
    plt.close(fig)
    return f"roofline: {out}"
