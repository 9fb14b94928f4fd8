"""Per module, forward against backward: what `profkit report modules` shows (no torch, no I/O).

A module's forward range is `step_i/forward/<path>` and its backward range
`step_i/backward/<path>` (profkit's backward ranges mirror the forward ones), so one row per
`<path>` lines them up:

    step_0/forward/layer_0/attention   (3 ms)   step_0/backward/layer_0/attention (6 ms)
    step_1/forward/layer_0/attention   (3 ms)   step_1/backward/layer_0/attention (6 ms)
    -> layer_0/attention: fwd 3 ms, bwd 6 ms per step, ratio 2.0
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from profkit.analyze.timeline import distinct_texts
from profkit.frames import require

STEP = re.compile(r"step_\d+")
PHASED = re.compile(r"^step_\d+/(forward|backward)/(.+)$")
OP = re.compile(r"(?:^|/)(?:aten::|autograd::)")  # PyTorch's per-op ranges (--pytorch=autograd-nvtx)
COLUMNS = ["module", "fwd_gpu_ns", "bwd_gpu_ns", "bwd_fwd_ratio", "step_pct", "kernels"]


def module_table(ranges: pd.DataFrame) -> pd.DataFrame:
    """One row per module path below `step_i/forward` and `step_i/backward`, mean per measured step.

    Args:
        ranges: project() output (path, name, depth, start_ns, gpu_total_ns, kernels; seq optional).

    Returns:
        module, fwd_gpu_ns and bwd_gpu_ns (GPU time of the kernels under the module's ranges,
        nested ranges and other threads included, all calls of a step added, mean over the
        `step_i` ranges), bwd_fwd_ratio (NaN without forward time), step_pct (forward +
        backward, % of the mean step's GPU time), kernels (mean per step, both phases); in
        forward order, then modules seen only in backward. Empty without `step_i` ranges.
        PyTorch's per-op ranges (aten::, autograd nodes) are left out.

    Raises:
        TypeError: a required column is missing.

    | path                      | gpu_total_ns | kernels | -> | module  | fwd | bwd | ratio | step_pct |
    | step_0                    | 100          | 10      |    |         |     |     |       |          |
    | step_0/forward/layer_0    | 20           | 2       |    | layer_0 | 20  | 40  | 2.0   | 60.0     |
    | step_0/backward/layer_0   | 40           | 4       |    |         |     |     |       |          |
    """
    require(ranges, ["path", "name", "depth", "start_ns", "gpu_total_ns", "kernels"], "ranges")
    top = ranges[ranges["depth"] == 0]
    steps = top[top["name"].astype(str).str.fullmatch(STEP.pattern)]
    n = len(steps)
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype="object" if c == "module" else "float64") for c in COLUMNS})
    step_ns = steps["gpu_total_ns"].sum() / n
    # Each distinct path parsed once (a long capture has a million ranges and far fewer paths;
    # a regular expression costs about a microsecond a row), then taken per range by its code.
    codes, texts = distinct_texts(ranges["path"])
    parts = texts.str.extract(PHASED)
    known = (parts[1].notna() & ~parts[1].fillna("").str.contains(OP)).to_numpy()
    keep = known[codes]
    if "seq" in ranges.columns:
        keep &= ranges["seq"].isna().to_numpy()
    rows = ranges.loc[keep, ["start_ns", "gpu_total_ns", "kernels"]].assign(
        phase=parts[0].to_numpy(dtype=object)[codes[keep]], module=parts[1].to_numpy(dtype=object)[codes[keep]])
    g = rows.groupby(["module", "phase"], sort=False).agg(gpu=("gpu_total_ns", "sum"), kernels=("kernels", "sum"),
                                                          first=("start_ns", "min"))
    wide = g.unstack("phase")
    fwd = _col(wide, "gpu", "forward") / n
    bwd = _col(wide, "gpu", "backward") / n
    kernels = (_col(wide, "kernels", "forward") + _col(wide, "kernels", "backward")) / n
    order = pd.DataFrame({"seen_fwd": _col(wide, "first", "forward", np.nan).isna(),
                          "first": _col(wide, "first", "forward", np.nan).fillna(_col(wide, "first", "backward"))})
    out = pd.DataFrame({
        "module": wide.index.astype(str), "fwd_gpu_ns": fwd, "bwd_gpu_ns": bwd,
        "bwd_fwd_ratio": bwd / fwd.where(fwd > 0),
        "step_pct": 100 * (fwd + bwd) / step_ns if step_ns > 0 else np.nan,
        "kernels": kernels,
    }, index=wide.index)
    rank = order.sort_values(["seen_fwd", "first"], kind="stable").index
    return out.loc[rank, COLUMNS].reset_index(drop=True)


def _col(wide: pd.DataFrame, what: str, phase: str, fill: float = 0.0) -> pd.Series:
    if (what, phase) in wide.columns:
        return wide[(what, phase)].astype("float64").fillna(fill)
    return pd.Series(fill, index=wide.index, dtype="float64")
