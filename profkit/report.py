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
