"""Analysis: pure functions over ProfileData's DataFrames (no torch, no I/O), one module a topic.

- `nvtx`: the NVTX range tree across threads, kernel attribution, projection, range summaries;
- `kernels`: kernel names and categories per row, the ranking, category shares, filters;
- `categories`: the ordered rule table that names each kernel's category;
- `timeline`: GPU busy and idle time per phase, the verdict, and what to try.
- `modules`: per module path, forward against backward GPU time per step;
- `memory`: a memory snapshot's allocator replay, placement under range paths, categories (imported as
  `profkit.analyze.memory`: its names are its own).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Loaded when first used (PEP 562), so that a module of this package that needs no pandas (the
# NVTX tree, the kernel ranking) can be imported without the rest, which needs it.
if TYPE_CHECKING:
    from profkit.analyze.categories import categorize, load_rules, triton_fuses
    from profkit.analyze.kernels import (
        category_shares,
        category_steps,
        compare_kernels,
        compare_shares,
        in_ranges,
        kernel_frame,
        lookup_categorical,
        rank_kernels,
        unattributed_pct,
        with_owner,
    )
    from profkit.analyze.modules import module_table
    from profkit.analyze.nvtx import (
        OPEN_END,
        attribute,
        fold_steps,
        innermost_at,
        nvtx_summary,
        nvtx_tree,
        project,
        step_of,
        thread_timelines,
    )
    from profkit.analyze.timeline import timeline, union_ns, what_to_try

_NAMES = {
    "categories": ["categorize", "load_rules", "triton_fuses"],
    "kernels": ["category_shares", "category_steps", "compare_kernels", "compare_shares", "in_ranges", "kernel_frame",
                "lookup_categorical", "rank_kernels", "unattributed_pct", "with_owner"],
    "modules": ["module_table"],
    "nvtx": ["OPEN_END", "attribute", "fold_steps", "innermost_at", "nvtx_summary", "nvtx_tree", "project", "step_of",
             "thread_timelines"],
    "timeline": ["union_ns", "what_to_try"],
}
_HOME = {name: f"{__name__}.{module}" for module, names in _NAMES.items() for name in names}

# `timeline` names a function and its module: imported now, so that importing the module later
# (profkit.analyze.timeline's constants) cannot leave the module where the function should be.
from profkit.analyze.timeline import timeline  # noqa: E402


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


__all__ = ["OPEN_END", "attribute", "categorize", "category_shares", "category_steps", "compare_kernels",
           "compare_shares", "fold_steps", "in_ranges", "innermost_at", "kernel_frame", "load_rules",
           "lookup_categorical", "module_table", "nvtx_summary", "nvtx_tree", "project", "rank_kernels", "step_of",
           "thread_timelines", "timeline", "triton_fuses", "unattributed_pct", "union_ns", "what_to_try",
           "with_owner"]
