"""Analysis: pure functions over ProfileData's DataFrames (no torch, no I/O), one module a topic.

- `nvtx`: the NVTX range tree across threads, kernel attribution, projection, range summaries;
- `kernels`: kernel names and categories per row, the ranking, category shares, filters;
- `categories`: the ordered rule table that names each kernel's category;
- `modules`: per module path, forward against backward GPU time per step.
"""

from __future__ import annotations

from profkit.analyze.categories import categorize, load_rules, triton_fuses
from profkit.analyze.kernels import (
    category_shares,
    compare_shares,
    in_ranges,
    kernel_frame,
    lookup_categorical,
    rank_kernels,
    unattributed_pct,
    with_owner,
)
from profkit.analyze.modules import module_table
from profkit.analyze.nvtx import OPEN_END, attribute, innermost_at, nvtx_summary, nvtx_tree, project, thread_timelines

__all__ = ["OPEN_END", "attribute", "categorize", "category_shares", "compare_shares", "in_ranges", "innermost_at",
           "kernel_frame", "load_rules", "lookup_categorical", "module_table", "nvtx_summary", "nvtx_tree", "project",
           "rank_kernels", "thread_timelines", "triton_fuses", "unattributed_pct", "with_owner"]
