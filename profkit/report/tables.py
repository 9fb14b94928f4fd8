"""Markdown building blocks: tables, units, readable kernel names (no pandas import needed)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from profkit.analyze.categories import triton_fuses
from profkit.layout import RunRecord


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


def short_kernel_name(name: str, width: int = 70) -> str:
    """A readable kernel name for tables: template arguments and parameters folded.

    >>> short_kernel_name("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, "
    ...                   "std::array<char *, 3>>(int, T2, T3)")
    'at::native::vectorized_elementwise_kernel<…>'
    """
    s = name.removeprefix("void ").strip()
    out, depth = [], 0
    for ch in s:
        if ch in "<(":
            if depth == 0:
                out.append("<…>" if ch == "<" else "")
            depth += 1
        elif ch in ">)":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(ch)
    short = "".join(out).strip() or s
    return short if len(short) <= width else short[: width - 1] + "…"


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
    """The kernel ranking as a table; by category, one column names the category."""
    rows = [[short_kernel_name(str(r.name)), category_label(str(r.name), str(r.category)), f"{int(r.instances):,}",
             _ms(r.total_ns), _us(r.avg_ns), _us(r.median_ns), _us(r.min_ns), _us(r.max_ns), f"{r.time_pct:.1f}"]
            for r in ranked.itertuples()]
    header = ["kernel", "category", "instances", "total ms", "avg us", "median us", "min us", "max us", "time %"]
    if by == "category":
        return markdown_table(["category", *header[2:]], [[r[0], *r[2:]] for r in rows], align="lrrrrrrr")
    return markdown_table(header, rows, align="llrrrrrrr")


def nvtx_markdown(summary: Any, by: str = "path") -> str:
    rows = [[str(getattr(r, by)), f"{int(r.instances):,}", _ms(r.cpu_total_ns), _ms(r.gpu_total_ns),
             _ms(r.gpu_span_ns), f"{int(r.kernels):,}",
             short_kernel_name(r.top_kernel, 50) if isinstance(r.top_kernel, str) else "—"]
            for r in summary.itertuples()]
    return markdown_table([by, "instances", "CPU ms", "GPU kernel ms", "GPU span ms", "kernels", "top kernel"], rows,
                          align="lrrrrrl")


def categories_markdown(shares: Any) -> str:
    rows = [[str(r.category), _ms(r.total_ns), f"{r.pct:.1f}"] for r in shares.itertuples()]
    return markdown_table(["category", "GPU ms", "share %"], rows)


def _fixed(x: float, digits: int) -> str:
    return "—" if x != x else f"{x:,.{digits}f}"  # NaN: no forward time, or no step time


def modules_markdown(table: Any) -> str:
    """analyze.module_table() as a table: per module, mean per measured step."""
    rows = [[str(r.module), _ms(r.fwd_gpu_ns), _ms(r.bwd_gpu_ns), _fixed(r.bwd_fwd_ratio, 2), _fixed(r.step_pct, 1),
             f"{r.kernels:,.1f}"] for r in table.itertuples()]
    return markdown_table(["module", "fwd GPU ms", "bwd GPU ms", "bwd/fwd", "step %", "kernels"], rows)
