"""Reports: an Analysis in, text out (markdown tables, CSV, JSON), one function per command.

- `formats`: one table as markdown, CSV or JSON;
- `tables`: markdown building blocks (tables, units, readable kernel names);
- `capture`: a capture folder's report.md;
- `compare`: several captures side by side;
- `memory`: a memory snapshot's report (markdown, JSON, HTML) and its PNG (`png`, no plotting package).

Every number comes from profkit.analyze; nothing here computes what a table shows, it only
chooses the rows and formats them.
"""

from __future__ import annotations

from profkit import analyze
from profkit.pipeline import Analysis
from profkit.report.capture import capture_markdown
from profkit.report.compare import compare, labels
from profkit.report.formats import FORMATS, ReportError, render
from profkit.report.tables import kernels_markdown, modules_markdown, nvtx_markdown, steps_markdown

__all__ = ["FORMATS", "ReportError", "capture_markdown", "compare", "kernels", "labels", "modules", "nvtx", "render"]


def kernels(a: Analysis, *, range_regex: str | None = None, top: int = 20, by: str = "name",
            name: str = "demangled", fmt: str = "markdown") -> str:
    """`profkit report kernels`: kernel time by name (as nsys's cuda_gpu_kern_sum) or category.

    `top` rows, the rest folded into one `others` row in every format (0: every row).
    """
    a.require_kernels()
    rows = analyze.in_ranges(a.kernels, range_regex) if range_regex else a.kernels
    column = "category" if by == "category" else ("name" if name == "demangled" else "short_name")
    ranked = analyze.rank_kernels(rows, by=column, top_k=top or None)
    return render(ranked, fmt, kernels_markdown(ranked, "category" if by == "category" else "name"))


def nvtx(a: Analysis, *, by: str = "path", steps: str = "each", depth: int | None = None,
         fmt: str = "markdown") -> str:
    """`profkit report nvtx`: projected GPU time per range path or name.

    `steps="merged"` folds the measured steps into one set of paths (per step, largest first,
    warm-up left out); `depth` keeps paths of at most that many parts (below the step when merged).
    """
    if steps == "merged":
        if by != "path":
            raise ReportError("--steps merged folds range paths; use it with --by path")
        folded = analyze.fold_steps(a.ranges, a.kernels, depth=depth)
        return render(folded, fmt, steps_markdown(folded, gpu=not a.kernels.empty))
    summary = analyze.nvtx_summary(a.ranges, a.kernels, by=by)
    if depth is not None:
        summary = summary[summary[by].astype(str).str.count("/") < depth] if by == "path" else summary
    return render(summary, fmt, nvtx_markdown(summary, by))


def modules(a: Analysis, *, fmt: str = "markdown") -> str:
    """`profkit report modules`: per module path, forward and backward GPU time per measured step."""
    a.require_kernels()
    table = analyze.module_table(a.ranges)
    return render(table, fmt, modules_markdown(table))
