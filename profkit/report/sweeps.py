"""`profkit sweep ... --report DIR`: the results database's rows as markdown tables shaped like
the seeds' and PNG plots (no torch; matplotlib optional, as the roofline PNG).

attention.md: per grid, one table per implementation in seed 002's shape (the varying config
columns, Forward/Backward (100 passes), Memory Reserved/Allocated, then per-mode medians, TFLOP/s
and the peak), and, for a grid with one varying axis, seed 003's transposed table (the axis across,
time, TFLOP/s and peak memory down). Plots per grid: time, TFLOP/s and memory against its axis,
one line per implementation (and per value of any other varying column), log scales for the
powers-of-two axes, time and memory.

models.md: every point; seed 000's table (compile time, first iteration, average ms/iter with
and without the first, memory) beside the seed's own figures for the nanoGPT study; seed 002's
sizes table (forward, forward+backward, backward estimated as their difference, step) where a
grid has several modes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from profkit import layout
from profkit.errors import ProfkitError
from profkit.sizes import SIZES
from profkit.sweeps import AttentionGrid

ATTN_CONFIG = ["impl", "batch_size", "heads", "seq_len", "head_dim", "embed", "causal", "dtype", "device"]
MODEL_CONFIG = ["model", "mode", "dtype", "attn", "compile", "compile_mode", "grad_accum", "optimizer", "batch_size",
                "context_length", "warmup", "steps", "device", "seed", "profiled"]
HEAD = {"impl": "impl", "batch_size": "batch", "heads": "heads", "seq_len": "seq len", "head_dim": "head dim",
        "embed": "embed dim", "causal": "causal", "dtype": "dtype", "device": "device", "model": "model",
        "mode": "mode", "attn": "attn", "compile": "compile", "compile_mode": "compile mode",
        "grad_accum": "micro-batches", "optimizer": "optimizer", "context_length": "context", "warmup": "warm-up",
        "steps": "steps", "seed": "seed", "profiled": "profiled"}
MODES = {"fwd": "Forward", "bwd": "Backward", "fwd_bwd": "Forward+backward"}
PASSES = 100  # seed 002's "Forward (100 passes)"
MiB = 2**20

# Seed 000's own figures, ms/iter averaged over 500 iterations except the first (its tables).
SEED_000 = {"RTX 4070": {("naive", False): 1360, ("naive", True): 690, ("math", False): 779, ("math", True): 793,
                         ("flash", False): 475, ("flash", True): 490, ("efficient", False): 485,
                         ("efficient", True): 500},
            "A100-40G": {("naive", False): 505, ("naive", True): 245, ("math", False): 290, ("math", True): 292,
                         ("flash", False): 171, ("flash", True): 188, ("efficient", False): 205,
                         ("efficient", True): 219}}


class SweepReportError(ProfkitError):
    """A sweep report profkit cannot write as asked."""


def _fmt(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return ""
    return format(x, spec)


def _table(header: list[str], rows: Iterable[list[str]], right_from: int = 0) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _varying(df: pd.DataFrame, cols: list[str]) -> list[str]:
    return [c for c in cols if c in df and df[c].astype(str).nunique() > 1]


def _fixed(df: pd.DataFrame, cols: list[str]) -> str:
    parts = []
    for c in cols:
        if c in df and df[c].astype(str).nunique() == 1:
            v = df[c].iloc[0]
            parts.append(f"{HEAD[c]} {'yes' if v == 1 and c in ('causal', 'compile', 'profiled') else v}"
                         if c not in ("causal", "compile", "profiled") else f"{HEAD[c]} {'yes' if v else 'no'}")
    return ", ".join(parts)


def _status_cell(r: Any) -> str:
    return {"oom": "OOM", "refused": "refused", "error": "error", "timeout": "timeout"}.get(r.status, r.status)


def _env_line(df: pd.DataFrame) -> str:
    first = df.iloc[0]
    gpu = first.get("gpu") or f"CPU ({first.get('platform')})"
    return (f"Measured on {gpu}, torch {first.get('torch')}, CUDA {first.get('cuda') or '-'}, profkit "
            f"{first.get('profkit_version')}; {df['timestamp'].min()} to {df['timestamp'].max()} (UTC).")


# -- attention ---------------------------------------------------------------------------------

def attention_sections(rows: list[dict[str, Any]], grids: list[AttentionGrid] | None) -> list[tuple[str, pd.DataFrame,
                                                                                                      str]]:
    """(name, rows, axis) per grid: a preset's sub-grids, else every row as one grid along seq_len."""
    df = pd.DataFrame(rows)
    if df.empty:
        return []
    if not grids:
        return [("all points", df, "seq_len")]
    out = []
    for g in grids:
        device = df["device"].iloc[0]
        ids = {p.id for p in g.points(device)}
        part = df[df["point_id"].isin(ids)]
        if not part.empty:
            out.append((g.name, part, g.axis))
    return out


def _attention_rows_table(part: pd.DataFrame, vary: list[str]) -> list[str]:
    header = [HEAD[c] for c in vary] + [f"Forward ({PASSES} passes) ms", f"Backward ({PASSES} passes) ms",
                                        "Memory Reserved MiB", "Memory Allocated MiB", "fwd ms", "bwd ms",
                                        "fwd+bwd ms", "fwd TFLOP/s", "bwd TFLOP/s", "fwd+bwd TFLOP/s",
                                        "peak fwd+bwd MiB"]
    body = []
    for r in part.itertuples():
        cfg = [str(getattr(r, c)) for c in vary]
        if r.status != "ok":
            body.append(cfg + [_status_cell(r)] * 11)
            continue
        body.append(cfg + [_fmt(PASSES * r.fwd_mean_ms, ",.2f"), _fmt(PASSES * r.bwd_mean_ms, ",.2f"),
                           _fmt(_mib(r.reserved_before_bwd_bytes), ",.2f"),
                           _fmt(_mib(r.allocated_before_bwd_bytes), ",.2f"),
                           _fmt(r.fwd_ms, ".3f"), _fmt(r.bwd_ms, ".3f"), _fmt(r.fwd_bwd_ms, ".3f"),
                           _fmt(r.fwd_tflops_per_s, ".3g"), _fmt(r.bwd_tflops_per_s, ".3g"),
                           _fmt(r.fwd_bwd_tflops_per_s, ".3g"), _fmt(_mib(r.peak_fwd_bwd_bytes), ",.1f")])
    return _table(header, body, right_from=len(vary))


def _mib(b: Any) -> float | None:
    return None if b is None or b != b else float(b) / MiB


def _attention_transposed(part: pd.DataFrame, axis: str) -> list[str]:
    """Seed 003's shape: the axis across, per implementation time, TFLOP/s and peak memory down."""
    values = sorted(part[axis].unique())
    header = [HEAD[axis], *(str(v) for v in values)]
    body = []
    for impl, g in part.groupby("impl", sort=True, observed=True):
        by = g.set_index(axis)
        for mode in ("fwd", "bwd", "fwd_bwd"):
            for col, unit, spec in ((f"{mode}_ms", "time ms", ".3f"), (f"{mode}_tflops_per_s", "TFLOP/s", ".3g")):
                cells = []
                for v in values:
                    r = by.loc[v] if v in by.index else None
                    cells.append("" if r is None else (_fmt(r[col], spec) if r["status"] == "ok"
                                                       else _status_cell(r)))
                body.append([f"({impl}) {MODES[mode]} {unit}", *cells])
        cells = [("" if v not in by.index else _fmt(_mib(by.loc[v]["peak_fwd_bwd_bytes"]), ",.1f")
                  if by.loc[v]["status"] == "ok" else _status_cell(by.loc[v])) for v in values]
        body.append([f"({impl}) peak memory MiB", *cells])
    return _table(header, body, right_from=1)


def attention_markdown(rows: list[dict[str, Any]], grids: list[AttentionGrid] | None, *, source: str = "",
                       pngs: dict[str, list[str]] | None = None) -> str:
    """attention.md's text (`pngs`: grid name -> the PNG file names to link)."""
    df = pd.DataFrame(rows)
    if df.empty:
        return "# Attention sweep\n\nNo points in the database yet.\n"
    counts = df["status"].value_counts()
    lines = ["# Attention sweep", "", source and f"Preset: {source}." or "", _env_line(df), "",
             f"{len(df)} points in the database: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".", "",
             "Times: the median of the timed passes (CUDA events with L2 flushed before each pass on a GPU, "
             "time.perf_counter on a CPU; warm-up passes excluded). "
             f"`Forward ({PASSES} passes)` is {PASSES} x the mean pass, seed 002's column. FLOPs by FlashAttention's "
             "convention (4·B·H·T²·d forward, halved when causal, backward 2.5x), TFLOP/s over the median. Memory "
             "(CUDA): allocated and reserved after one forward, before its backward (seed 002's columns), and the "
             "peak through the backward; all absolute, q, k, v included. OOM: out of memory; refused: the backend "
             "declined the shape (reasons below each grid).", ""]
    for name, part, axis in attention_sections(rows, grids):
        part = part.sort_values([c for c in ("impl", "batch_size", "heads", "head_dim", "embed", "seq_len")
                                 if c != axis] + [axis], kind="stable")
        part = part.assign(impl=pd.Categorical(part["impl"], list(dict.fromkeys(r["impl"] for r in rows))))
        vary = [c for c in _varying(part, ATTN_CONFIG) if c != "impl"]
        if axis == "embed" and "head_dim" in vary:
            vary.remove("head_dim")
        lines += [f"## {name}", "", f"Fixed: {_fixed(part, ATTN_CONFIG)}.", ""]
        for png in (pngs or {}).get(name, []):
            lines += [f"![{png}]({png})", ""]
        for impl, g in part.groupby("impl", sort=True, observed=True):
            lines += [f"### {impl}", "", *_attention_rows_table(g, vary), ""]
        if vary == [axis] or (axis == "embed" and set(vary) <= {"embed", "head_dim"}):
            lines += [f"By {HEAD[axis]} (seed 003's shape):", "", *_attention_transposed(part, axis), ""]
        failed = part[part["status"] != "ok"]
        if not failed.empty:
            lines += ["Not measured:", ""]
            for r in failed.itertuples():
                lines.append(f"- {r.impl} B{r.batch_size} H{r.heads} T{r.seq_len} d{r.head_dim}: {r.status} "
                             f"({r.failed_mode}): {r.reason}")
            lines.append("")
    return "\n".join(lines).replace("\n\n\n", "\n\n")


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def attention_pngs(rows: list[dict[str, Any]], grids: list[AttentionGrid] | None, out: Path,
                   prefix: str = "attention") -> dict[str, list[Path]]:
    """Per grid: {prefix}-{grid}-time.png, -tflops.png, -memory.png; {} without matplotlib."""
    plt = _plt()
    if plt is None:
        return {}
    written: dict[str, list[Path]] = {}
    for name, part, axis in attention_sections(rows, grids):
        ok = part[part["status"] == "ok"]
        if ok.empty:
            continue
        others = [c for c in _varying(ok, ATTN_CONFIG) if c not in ("impl", axis)
                  and not (axis == "embed" and c == "head_dim") and not (axis == "heads" and c == "head_dim")]
        series = list(ok.groupby(["impl", *others], sort=False))
        slug = layout.check_name(name.replace(" ", "-"))
        paths = []
        for metric, cols, ylabel, logy in (
                ("time", ["fwd_ms", "bwd_ms", "fwd_bwd_ms"], "ms (median pass)", True),
                ("tflops", ["fwd_tflops_per_s", "bwd_tflops_per_s", "fwd_bwd_tflops_per_s"], "TFLOP/s", False),
                ("memory", ["peak_fwd_bwd_bytes"], "peak memory, MiB (fwd+bwd)", True)):
            if metric == "memory" and ok["peak_fwd_bwd_bytes"].isna().all():
                continue  # a CPU run has no allocator statistics
            fig, axes = plt.subplots(1, len(cols), figsize=(4.5 * len(cols), 4), squeeze=False)
            for ax, col in zip(axes[0], cols, strict=True):
                for key, g in series:
                    g = g.sort_values(axis)
                    label = " ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
                    y = g[col] / MiB if metric == "memory" else g[col]
                    ax.plot(g[axis], y, marker="o", label=label)
                title = {"fwd": "forward", "bwd": "backward", "fwd_bwd": "forward+backward"}.get(
                    col.rsplit("_", 2)[0] if metric != "memory" else "", "")
                title = next((MODES[m] for m in ("fwd_bwd", "bwd", "fwd") if col.startswith(m + "_")), title)
                ax.set(xlabel=HEAD[axis], ylabel=ylabel, title=title if metric != "memory" else name)
                if axis in ("seq_len", "embed", "heads", "head_dim", "batch_size"):
                    ax.set_xscale("log", base=2)
                if logy:
                    ax.set_yscale("log")
                ax.grid(True, which="both", alpha=0.3)
            axes[0][0].legend(fontsize=7)
            fig.suptitle(f"{name}: {_fixed(ok, ATTN_CONFIG)}", fontsize=8)
            fig.tight_layout()
            path = out / f"{prefix}-{slug}-{metric}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
        written[name] = paths
    return written


# -- models ------------------------------------------------------------------------------------

def _point_cells(r: Any, vary: list[str]) -> list[str]:
    return [str(getattr(r, c)) for c in vary]


def models_markdown(rows: list[dict[str, Any]], *, source: str = "", pngs: list[str] | None = None) -> str:
    df = pd.DataFrame(rows)
    if df.empty:
        return "# Models sweep\n\nNo points in the database yet.\n"
    counts = df["status"].value_counts()
    vary = _varying(df, MODEL_CONFIG)
    lines = ["# Models sweep", "", source and f"Preset: {source}." or "", _env_line(df), "",
             f"{len(df)} points, each a fresh `profkit run`: " + ", ".join(f"{n} {s}" for s, n in counts.items())
             + f". Fixed: {_fixed(df, MODEL_CONFIG)}.", "",
             "ms/step: the median measured step (CUDA events); a step is --grad-accum micro-batches (forward and "
             "backward each) and one optimizer step. MFU: PaLM's FLOPs (6·N·tokens + 12·L·H·Q·T·tokens, a third for "
             "a forward) over the median step, against the datasheet peak of the run's precision (fp32, or 16-bit "
             "for bf16/fp16 autocast). Peak: torch.cuda.max_memory_allocated over the measured steps.", ""]
    for png in pngs or []:
        lines += [f"![{png}]({png})", ""]
    header = [HEAD[c] for c in vary] + ["status", "ms/step", "ms/micro-batch", "tokens/s", "MFU %", "peak MiB",
                                        "1st step ms", "compile s"]
    profiled = bool(df.get("profiled", pd.Series([0])).fillna(0).astype(int).any())
    if profiled:
        header += ["verdict", "MFU exact %"]
    body = []
    for r in df.itertuples():
        cells = _point_cells(r, vary) + [r.status, _fmt(r.ms_per_step, ".2f"), _fmt(r.ms_per_micro_batch, ".2f"),
                                         _fmt(r.tokens_per_s, ",.0f"), _fmt(_pct(r.mfu), ".1f"),
                                         _fmt(_mib(r.peak_memory_bytes), ",.0f"), _fmt(r.first_step_ms, ",.0f"),
                                         _fmt(r.compile_s, ".1f")]
        if profiled:
            cells += [r.verdict if isinstance(r.verdict, str) else "", _fmt(_pct(r.mfu_exact), ".1f")]
        body.append(cells)
    lines += ["## Every point", "", *_table(header, body, right_from=len(vary) + 1), ""]
    lines += _seed000(df)
    lines += _sizes(df)
    failed = df[df["status"] != "ok"]
    if not failed.empty:
        lines += ["Not measured:", ""]
        lines += [f"- {r.model} {r.mode} {r.dtype} {r.attn}{' compiled' if r.compile else ''}: {r.status}: "
                  f"{r.reason}" for r in failed.itertuples()]
        lines.append("")
    return "\n".join(lines).replace("\n\n\n", "\n\n")


def _pct(x: Any) -> float | None:
    return None if x is None or x != x else 100 * float(x)


def _seed000(df: pd.DataFrame) -> list[str]:
    """Seed 000's table per dtype for the nanoGPT study's points, the seed's figures beside."""
    study = df[(df["model"] == "nanogpt") & (df["mode"] == "step") & (df["grad_accum"] == 5)
               & (df["batch_size"] == 6) & (df["context_length"] == 1024)]
    if study.empty:
        return []
    lines = ["## nanoGPT study (seed 000's columns)", "",
             "One iteration: 5 micro-batches of 6 x 1024 tokens (forward and backward each) and one AdamW step "
             "(weight decay 1e-2). `avg ms/iter` is the seed's average over 500 iterations with the first: "
             "(1st iter + 499 x the mean of the measured iterations) / 500, computed; `except 1st` is the mean of "
             "the measured ones (after warm-up). `RTX 4070` and `A100-40G`: the seed's own ms/iter except the "
             "first.", ""]
    for dtype, g in study.groupby("dtype", sort=False):
        vary = [c for c in _varying(g, ["compile_mode", "optimizer"])]
        header = ["Attn type", "compile", *[HEAD[c] for c in vary], "compile time s", "1st iter ms",
                  "avg ms/iter", "avg ms/iter (except 1st)", "ms/micro-batch", "RAM MiB", "MFU %",
                  "RTX 4070 (seed)", "A100-40G (seed)"]
        body = []
        for r in g.sort_values(["attn", "compile"], key=lambda s: s.map(_attn_order) if s.name == "attn" else s,
                               kind="stable").itertuples():
            seed = [str(SEED_000[gpu].get((r.attn, bool(r.compile)), "")) for gpu in SEED_000]
            if r.status != "ok":
                body.append([r.attn, "Yes" if r.compile else "No", *[str(getattr(r, c)) for c in vary],
                             *[_status_cell(r)] * 7, *seed])
                continue
            avg = (r.first_step_ms + 499 * r.mean_ms) / 500 if r.first_step_ms == r.first_step_ms else None
            body.append([r.attn, "Yes" if r.compile else "No", *[str(getattr(r, c)) for c in vary],
                         _fmt(r.compile_s, ".1f") if r.compile else "-", _fmt(r.first_step_ms, ",.0f"),
                         _fmt(avg, ",.1f"), _fmt(r.mean_ms, ",.1f"), _fmt(r.ms_per_micro_batch, ".2f"),
                         _fmt(_mib(r.peak_memory_bytes), ",.0f"), _fmt(_pct(r.mfu), ".1f"), *seed])
        lines += [f"### {dtype}", "", *_table(header, body, right_from=2 + len(vary)), ""]
    return lines


def _attn_order(a: str) -> int:
    order = ["naive", "math", "flash", "efficient", "cudnn"]
    return order.index(a) if a in order else len(order)


def _sizes(df: pd.DataFrame) -> list[str]:
    """Seed 002's sizes table: one row per size, its modes side by side (backward = fwd_bwd - fwd)."""
    ok = df[df["status"] == "ok"]
    if ok["mode"].nunique() < 2:
        return []
    keys = [c for c in _varying(ok, MODEL_CONFIG) if c not in ("model", "mode")]
    lines = ["## By size (seed 002's table)", "",
             "Seconds per step as seed 002 gives them; backward is estimated as forward+backward minus forward. "
             "Parameters: profkit's count of the built model.", ""]
    for key, g in ok.groupby(keys, sort=False) if keys else [((), ok)]:
        title = ", ".join(f"{HEAD[k]} {v}" for k, v in zip(keys, key if isinstance(key, tuple) else (key,),
                                                            strict=True))
        header = ["size", "d_model", "d_ff", "layers", "heads", "params (B)", "forward s", "forward+backward s",
                  "backward (estimate) s", "step s", "step MFU %", "step peak MiB"]
        body = []
        for model, m in g.groupby("model", sort=False):
            by = m.set_index("mode")
            s = SIZES.get(str(model))
            t = {mode: float(by.loc[mode]["ms_per_step"]) / 1e3 if mode in by.index else None
                 for mode in ("fwd", "fwd_bwd", "step")}
            bwd = t["fwd_bwd"] - t["fwd"] if t["fwd"] is not None and t["fwd_bwd"] is not None else None
            step = by.loc["step"] if "step" in by.index else None
            params = float(m["params"].iloc[0]) / 1e9
            body.append([str(model), *(str(x) for x in ((s.d_model, s.d_ff, s.n_layers, s.n_heads) if s
                                                       else ("", "", "", ""))), f"{params:.6f}",
                         _fmt(t["fwd"], ".6f"), _fmt(t["fwd_bwd"], ".6f"), _fmt(bwd, ".4f"), _fmt(t["step"], ".6f"),
                         _fmt(_pct(step["mfu"]) if step is not None else None, ".1f"),
                         _fmt(_mib(step["peak_memory_bytes"]) if step is not None else None, ",.0f")])
        lines += [f"### {title}" if title else "### all", "", *_table(header, body, right_from=1), ""]
    return lines


def models_pngs(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """models-step.png: ms/step and MFU of every measured point (bars); [] without matplotlib."""
    plt = _plt()
    df = pd.DataFrame(rows)
    if plt is None or df.empty or (df["status"] == "ok").sum() == 0:
        return []
    ok = df[df["status"] == "ok"]
    vary = _varying(ok, MODEL_CONFIG)
    labels = [" ".join(str(getattr(r, c)) for c in vary) or r.model for r in ok.itertuples()]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.3 * len(ok) + 1.5), squeeze=False)
    axes[0][0].barh(labels, ok["ms_per_step"])
    axes[0][0].set(xlabel="ms/step (median)", xscale="log")
    axes[0][1].barh(labels, 100 * ok["mfu"].astype(float).fillna(0))
    axes[0][1].set(xlabel="MFU % (PaLM FLOPs)")
    axes[0][1].set_yticklabels([])
    for ax in axes[0]:
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path = out / "models-step.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


# -- writing -----------------------------------------------------------------------------------

def write_report(kind: str, rows: list[dict[str, Any]], out: Path, *, grids: list[AttentionGrid] | None = None,
                 source: str = "", force: bool = False, html: bool = False, db: str = "") -> list[str]:
    """Write {kind}.md and its PNGs into `out` (created), and {kind}.html with `html` (one
    self-contained page: the same tables, plots drawn by the page); returns lines saying what
    was written.

    Raises:
        SweepReportError: `out` is a file, or {kind}.md ({kind}.html with `html`) exists there and not `force`.
    """
    if out.exists() and not out.is_dir():
        raise SweepReportError(f"--report {out} is a file; give a folder")
    md = out / f"{kind}.md"
    page_path = out / f"{kind}.html"
    for path in (md, page_path) if html else (md,):
        if path.exists() and not force:
            raise SweepReportError(f"{path} exists; pass --force to replace it and its plots, or give another "
                                   "--report")
    page = None
    if html:  # made before anything is written
        from profkit.report.html import sweep_page

        page = sweep_page(kind, rows, grids=grids, source=source, db=db)
    out.mkdir(parents=True, exist_ok=True)
    said = []
    if kind == "attention":
        pngs = attention_pngs(rows, grids, out)
        text = attention_markdown(rows, grids, source=source, pngs={k: [p.name for p in v] for k, v in pngs.items()})
        files = [p for v in pngs.values() for p in v]
    else:
        files = models_pngs(rows, out)
        text = models_markdown(rows, source=source, pngs=[p.name for p in files])
    layout.write_text(md, text)
    said.append(f"report: {md}")
    if page is not None:
        layout.write_text(page_path, page)
        said.append(f"html: {page_path}")
    said += [f"plot: {p}" for p in files]
    if _plt() is None:
        said.append("plots skipped: matplotlib is not installed (pip install matplotlib)")
    return said


def rows_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=1, default=str) + "\n"
