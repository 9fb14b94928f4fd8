"""Markdown building blocks: tables, units, readable kernel names (no pandas import needed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from profkit.analyze.categories import triton_fuses
from profkit.layout import RunRecord
from profkit.report.names import readable_name, unique_names


def mib(n: int | None) -> str:
    """Bytes as MiB for tables and the terminal.

    >>> mib(3 * 2**20 + 2**19), mib(None)
    ('3.5', 'n/a')
    """
    return "n/a" if n is None else f"{n / 2**20:,.1f}"


def markdown_table(header: list[str], rows: Iterable[list[str]], align: str | None = None) -> str:
    """A GitHub table; `align` is one character per column, `l` or `r` (default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines) + "\n"


def runs_table(results: list[tuple[dict[str, Any], RunRecord | None, str | None]]) -> str:
    """One row per run: config, ms/step, tokens/s, peak memory; a failed run shows its error.

    Each result is (config: mode, dtype, attn[, compile]; the run's record or None; the error or None).
    """
    rows = []
    for c, run, error in results:
        label = [c["mode"], c["dtype"], c["attn"] + (" + compile" if c.get("compile") else "")]
        if run is None:
            rows.append([*label, "—", "—", "—", "—", f"refused: {error}"])
            continue
        s = run.summary
        rows.append([*label, f"{s.mean_ms:.2f} ± {s.std_ms:.2f}", f"{s.median_ms:.2f}",
                     f"{s.tokens_per_s:,.0f}", mib(run.peak_memory_bytes), ""])
    header = ["mode", "dtype", "attention", "ms/step (mean ± std)", "median ms", "tokens/s", "peak MiB", "note"]
    return markdown_table(header, rows, align="lllrrrrl")


def _ms(ns: float) -> str:
    return f"{ns / 1e6:,.3f}"


def _us(ns: float) -> str:
    return "—" if ns != ns else f"{ns / 1e3:,.1f}"  # NaN for the folded 'others' row


def category_label(name: str, category: str) -> str:
    """The category cell: for inductor's kernels, what they fuse as well (read from the name).

    >>> category_label("triton_poi_fused__to_copy_add_mul_0", "triton")
    'triton (pointwise: _to_copy_add_mul)'
    >>> category_label("ampere_sgemm_128x64_tn", "gemm")
    'gemm'
    """
    fuses = triton_fuses(name) if category == "triton" else None
    return f"{category} ({fuses})" if fuses else category


def kernels_markdown(ranked: Any, by: str = "name") -> str:
    """The kernel ranking as a table; by category, one column names the category.

    Kernel names are readable_name()s, numbered where two kernels would read the same; CSV and
    JSON keep the full demangled names."""
    labels = unique_names([str(n) for n in ranked["name"]]) if by != "category" else list(ranked["name"])
    rows = [[label, category_label(str(r.name), str(r.category)), f"{int(r.instances):,}",
             _ms(r.total_ns), _us(r.avg_ns), _us(r.median_ns), _us(r.min_ns), _us(r.max_ns), f"{r.time_pct:.1f}"]
            for label, r in zip(labels, ranked.itertuples(), strict=True)]
    header = ["kernel", "category", "instances", "total ms", "avg us", "median us", "min us", "max us", "time %"]
    if by == "category":
        return markdown_table(["category", *header[2:]], [[r[0], *r[2:]] for r in rows], align="lrrrrrrr")
    return markdown_table(header, rows, align="llrrrrrrr")


def nvtx_markdown(summary: Any, by: str = "path") -> str:
    rows = [[str(getattr(r, by)), f"{int(r.instances):,}", _ms(r.cpu_total_ns), _ms(r.gpu_total_ns),
             _ms(r.gpu_span_ns), f"{int(r.kernels):,}",
             readable_name(r.top_kernel, 50) if isinstance(r.top_kernel, str) else "—"]
            for r in summary.itertuples()]
    return markdown_table([by, "instances", "CPU ms", "GPU kernel ms", "GPU span ms", "kernels", "top kernel"], rows,
                          align="lrrrrrl")


def category_steps_markdown(per_step: Any) -> str:
    """category_steps() rows: mean per step, the steps' min and max, share."""
    rows = [[str(r.category), _ms(r.mean_ns), _ms(r.min_ns), _ms(r.max_ns), f"{r.pct:.1f}"]
            for r in per_step.itertuples()]
    return markdown_table(["category", "GPU ms per step", "min ms", "max ms", "share %"], rows)


def categories_markdown(shares: Any) -> str:
    rows = [[str(r.category), _ms(r.total_ns), f"{r.pct:.1f}"] for r in shares.itertuples()]
    return markdown_table(["category", "GPU ms", "share %"], rows)


def steps_markdown(folded: Any, *, gpu: bool = True, top: int | None = None) -> str:
    """fold_steps() rows: per measured step, largest first (host time only when `gpu` is False)."""
    rows_in = folded.head(top) if top else folded
    if gpu:
        rows = [[str(r.path), f"{r.instances_per_step:,.1f}", _ms(r.cpu_ns_per_step), _ms(r.gpu_ns_per_step),
                 f"{r.kernels_per_step:,.1f}",
                 readable_name(r.top_kernel, 50) if isinstance(r.top_kernel, str) else "—"]
                for r in rows_in.itertuples()]
        return markdown_table(["path (steps merged)", "instances", "CPU ms", "GPU kernel ms", "kernels",
                               "top kernel"], rows, align="lrrrrl")
    rows = [[str(r.path), f"{r.instances_per_step:,.1f}", _ms(r.cpu_ns_per_step)] for r in rows_in.itertuples()]
    return markdown_table(["path (steps merged)", "instances", "CPU ms"], rows)


def _fixed(x: float, digits: int) -> str:
    return "—" if x != x else f"{x:,.{digits}f}"  # NaN: no forward time, or no step time


def modules_markdown(table: Any) -> str:
    """analyze.module_table() as a table: per module, mean per measured step."""
    rows = [[str(r.module), _ms(r.fwd_gpu_ns), _ms(r.bwd_gpu_ns), _fixed(r.bwd_fwd_ratio, 2), _fixed(r.step_pct, 1),
             f"{r.kernels:,.1f}"] for r in table.itertuples()]
    return markdown_table(["module", "fwd GPU ms", "bwd GPU ms", "bwd/fwd", "step %", "kernels"], rows)
