"""Markdown out of profkit's results (run.json records today; nsys exports as they land)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f}"


def markdown_table(header: list[str], rows: Iterable[list[str]], align: str | None = None) -> str:
    """A GitHub table; `align` is one character per column, `l` or `r` (default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines) + "\n"


def runs_table(results: list[dict[str, Any]]) -> str:
    """One row per run: config, ms/step, tokens/s, peak memory; a failed run shows its error.

    Each result is {"config": {...}, "run": run.json record or None, "error": str or None}.
    """
    rows = []
    for r in results:
        c, run = r["config"], r.get("run")
        label = [c["mode"], c["dtype"], c["attn"] + (" + compile" if c.get("compile") else "")]
        if run is None:
            rows.append([*label, "—", "—", "—", "—", f"refused: {r['error']}"])
            continue
        s = run["summary"]
        rows.append([*label, f"{s['mean_ms']:.2f} ± {s['std_ms']:.2f}", f"{s['median_ms']:.2f}",
                     f"{s['tokens_per_s']:,.0f}", _mib(run["peak_memory_bytes"]), ""])
    header = ["mode", "dtype", "attention", "ms/step (mean ± std)", "median ms", "tokens/s", "peak MiB", "note"]
    return markdown_table(header, rows, align="lllrrrrl")


# --- nsys export reports ----------------------------------------------------------------

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


def kernels_markdown(ranked: Any, by: str = "name") -> str:
    """The kernel ranking as a table; by category, one column names the category."""
    rows = [[short_kernel_name(str(r.name)), str(r.category), f"{int(r.instances):,}", _ms(r.total_ns), _us(r.avg_ns),
             _us(r.median_ns), _us(r.min_ns), _us(r.max_ns), f"{r.time_pct:.1f}"] for r in ranked.itertuples()]
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
