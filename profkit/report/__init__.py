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

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from profkit.pipeline import Analysis, Attributed
from profkit.report.compare import compare, labels
from profkit.report.formats import FORMATS, ReportError, att_graph_note, frame_graph_note, render, with_note
from profkit.report.tables import kernels_markdown, modules_markdown, nvtx_markdown, steps_markdown

# report.md (which needs pandas) loads when first used (PEP 562): `report kernels` and `report
# nvtx` import none of it.
if TYPE_CHECKING:
    from profkit.report.capture import capture_markdown

_HOME = {"capture_markdown": "profkit.report.capture"}

__all__ = ["FORMATS", "ReportError", "capture_markdown", "compare", "kernels", "labels", "modules", "nvtx", "render"]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def kernels(a: Analysis | Attributed, *, range_regex: str | None = None, top: int = 20, by: str = "name",
            name: str = "demangled", fmt: str = "markdown") -> str:
    """`profkit report kernels`: kernel time by name (as nsys's cuda_gpu_kern_sum) or category.

    `top` rows, the rest folded into one `others` row in every format (0: every row).
    """
    from profkit.analyze.kernels import matching_paths, rank

    att = a if isinstance(a, Attributed) else a.attributed()
    att.require_kernels()
    k = att.kernels
    rows: slice | np.ndarray = slice(None)  # every kernel: views, no copies
    if range_regex:
        ok = matching_paths(att.ranges.paths, range_regex)
        hit = k.owner >= 0
        rows = np.flatnonzero(hit & ok[att.ranges.path[np.where(hit, k.owner, 0)]]) if len(ok) else np.empty(0, int)
    if by == "category":
        codes, labels = att.category, att.categories
    elif name == "demangled":
        codes, labels = k.name, k.names
    else:
        if att.short is None:
            raise ReportError("short kernel names were not read")
        codes, labels = att.short, att.shorts
    codes = codes[rows]
    # Each row's category: its group's (by category), else that of the group's first kernel.
    categories = list(labels) if by == "category" else [""] * len(labels)
    if by != "category":
        first = np.full(len(labels), len(codes), dtype=np.int64)  # each group's first kernel, in linear time
        np.minimum.at(first, codes, np.arange(len(codes), dtype=np.int64))
        present = np.flatnonzero(first < len(codes))
        for g, i in zip(present.tolist(), att.category[rows][first[present]].tolist(), strict=True):
            categories[g] = att.categories[i]
    ranked = rank(codes, labels, k.dur_ns[rows], categories, top_k=top or None)
    return render(ranked, fmt, with_note(kernels_markdown(ranked, "category" if by == "category" else "name"),
                                         att_graph_note(att)))


def nvtx(a: Analysis | Attributed, *, by: str = "path", steps: str = "each", depth: int | None = None,
         fmt: str = "markdown") -> str:
    """`profkit report nvtx`: projected GPU time per range path or name.

    `steps="merged"` folds the measured steps into one set of paths (per step, largest first,
    warm-up left out); `depth` keeps paths of at most that many parts (below the step when merged).
    """
    from profkit.analyze.nvtx import fold, summarize

    att = a if isinstance(a, Attributed) else a.attributed()
    if steps == "merged":
        if by != "path":
            raise ReportError("--steps merged folds range paths; use it with --by path")
        folded = fold(att.ranges, att.kernels, depth=depth)
        return render(folded, fmt, with_note(steps_markdown(folded, gpu=len(att.kernels.dur_ns) > 0),
                                             att_graph_note(att)))
    summary = summarize(att.ranges, att.kernels, by=by)
    if depth is not None and by == "path":
        summary = summary.take([i for i, p in enumerate(summary["path"]) if p.count("/") < depth])
    return render(summary, fmt, with_note(nvtx_markdown(summary, by), att_graph_note(att)))


def kernels_text(profile: Path, *, rules: Path | None = None, allow_incomplete: bool = False, rank: int | None = None,
                 range_regex: str | None = None, top: int = 20, by: str = "name", name: str = "demangled",
                 fmt: str = "markdown") -> str:
    """`profkit report kernels PROFILE`'s text: kernels() of pipeline.attributed() (what the command
    line and profkit.fastpath.compute() both call)."""
    from profkit.pipeline import attributed

    a = attributed(profile, rules=rules, allow_incomplete=allow_incomplete, nvtx=bool(range_regex),
                   short=name == "short", rank=rank)
    return kernels(a, range_regex=range_regex, top=top, by=by, name=name, fmt=fmt)


def nvtx_text(profile: Path, *, rules: Path | None = None, allow_incomplete: bool = False, rank: int | None = None,
              by: str = "path", steps: str = "each", depth: int | None = None, fmt: str = "markdown") -> str:
    """`profkit report nvtx PROFILE`'s text: nvtx() of pipeline.attributed() (kernels and ranges, no pandas)."""
    from profkit.pipeline import attributed

    a = attributed(profile, rules=rules, allow_incomplete=allow_incomplete, short=False, rank=rank)
    return nvtx(a, by=by, steps=steps, depth=depth, fmt=fmt)


def modules(a: Analysis, *, fmt: str = "markdown") -> str:
    """`profkit report modules`: per module path, forward and backward GPU time per measured step."""
    from profkit import analyze

    a.require_kernels()
    table = analyze.module_table(a.ranges)
    return render(table, fmt, with_note(modules_markdown(table), frame_graph_note(a.kernels)))
