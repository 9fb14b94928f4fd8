"""`profkit report compare`: category shares and top kernels of several captures side by side."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from profkit import analyze, layout
from profkit.pipeline import Analysis
from profkit.report.formats import render
from profkit.report.tables import kernels_markdown, markdown_table


def labels(paths: list[Path]) -> list[str]:
    """One distinct column label per capture: its folder (or file) name, numbered when repeated.

    >>> labels([Path("a/small"), Path("b/small"), Path("x/profile.sqlite")])
    ['small (1)', 'small (2)', 'x']
    """
    names = []
    for p in paths:
        folder = p.parent if p.name == layout.EXPORT else p
        names.append(folder.stem if folder.suffix in (".sqlite", ".nsys-rep") else folder.name)
    return [f"{n} ({names[:i].count(n) + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def compare(analyses: list[Analysis], names: list[str], *, top: int = 10, fmt: str = "markdown") -> str:
    """Category shares side by side with deltas against the first; in markdown, each one's top kernels."""
    for a in analyses:
        a.require_kernels()
    shares = [analyze.category_shares(a.kernels, a.data.memcpy, a.data.memset) for a in analyses]
    table = analyze.compare_shares(shares, names)
    return render(table, fmt, _markdown(table, analyses, names, top))


def _markdown(table: pd.DataFrame, analyses: list[Analysis], names: list[str], top: int) -> str:
    header = ["category"] + [f"{n} ms (%)" for n in names] + [f"Δ {n} ms (pp)" for n in names[1:]]
    rows = []
    for category, g in table.groupby("category", sort=False):
        cells = [str(category)] + [f"{r.total_ns / 1e6:,.3f} ({r.pct:.1f}%)" for r in g.itertuples()]
        cells += [f"{r.delta_ns / 1e6:+,.3f} ({r.delta_pp:+.1f})" for r in list(g.itertuples())[1:]]
        rows.append(cells)
    totals = table.groupby("capture", sort=False)["total_ns"].sum().reindex(names)
    rows.append(["**all kernels**"] + [f"{t / 1e6:,.3f}" for t in totals]
                + [f"{(t - totals.iloc[0]) / 1e6:+,.3f}" for t in totals.iloc[1:]])
    parts = ["## Categories", "", markdown_table(header, rows), "", "## Top kernels", ""]
    for name, a in zip(names, analyses, strict=True):
        parts += [f"### {name}", "", kernels_markdown(analyze.rank_kernels(a.kernels, top_k=top)), ""]
    return "\n".join(parts)
