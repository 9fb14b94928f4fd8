"""Is the GPU busy? Per phase of a training step (or per range name): wall time, GPU span, GPU
busy time (the union of the execution intervals of the work the range launched, not their sum,
since streams overlap), idle share, launch rate, the launch-to-start queue, and a verdict.

Anchors: HTA's temporal breakdown (idle / compute / communication per rank) and nsys's
`analyze` rules gpu_gaps and gpu_time_util, which say it for a whole run; here it is said per
phase (forward, backward, optimizer) of the measured steps, with the evidence for each verdict.

    wall      |<------------------ step_3 (CPU, push to pop) ------------------>|
    span          |<------------- first start .. last end ------------->|
    busy          [k1][k2]  [k3]     [k4===k5]   [k6]      (k4, k5 overlap: counted once)
    queue     launch -> start of each kernel (near 0 when the GPU waits for the CPU)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from profkit.analyze.nvtx import OPEN_END
from profkit.columns import search_sorted

if TYPE_CHECKING:
    import pandas as pd

PHASES = ("step", "forward", "backward", "optimizer")
# The verdict rule (README: "What bounds the step"). The GPU idle share is of the phase's GPU span.
LAUNCH_BOUND_IDLE_PCT = 50.0
"""At least this share of the span idle ..."""
LAUNCH_BOUND_QUEUE_NS = 50_000
"""... and the median kernel starts within this long of its launch call: the GPU waits on the CPU."""
GPU_BOUND_IDLE_PCT = 20.0
"""At most this share idle: the GPU is the bottleneck."""


def union_ns(starts: np.ndarray, ends: np.ndarray) -> int:
    """Total length of the union of intervals [start, end).

    >>> union_ns(np.array([0, 5, 20]), np.array([10, 12, 30]))
    22
    """
    if len(starts) == 0:
        return 0
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)
    new = np.r_[True, s[1:] > reach[:-1]]  # a segment starts where nothing before still runs
    first = np.flatnonzero(new)
    seg_end = np.maximum.reduceat(e, first)
    return int((seg_end - s[first]).sum())


def _starts(lo: np.ndarray, hi: np.ndarray) -> npt.NDArray[np.int64]:
    """Where each slice [lo, hi) (none empty) begins in _gather()'s output."""
    return np.concatenate([[0], np.cumsum(hi - lo)[:-1]]).astype(np.int64)


def _gather(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the slices [lo_k, hi_k) one after another, and the slice k of each.

    >>> [a.tolist() for a in _gather(np.array([2, 0]), np.array([4, 1]))]
    [[2, 3, 0], [0, 0, 1]]
    """
    n = np.maximum(hi - lo, 0)
    seg = np.repeat(np.arange(len(n)), n)
    if not len(seg):
        return np.zeros(0, np.int64), seg
    first = np.concatenate([[0], np.cumsum(n)[:-1]])
    return (np.arange(len(seg)) - first[seg] + lo[seg]).astype(np.int64), seg


def _unions(s: np.ndarray, e: np.ndarray, seg: np.ndarray, lo_t: np.ndarray, hi_t: np.ndarray) -> np.ndarray:
    """union_ns() of each segment's intervals at once: segments are moved apart in time (each
    starts past the previous one's end), so one sweep merges within them and never across.
    Integer arithmetic: the same result as union_ns() per segment."""
    width = hi_t - lo_t + 1
    if float(width.astype(np.float64).sum()) + float(np.abs(lo_t).max()) > 2.0**62:  # would overflow: one by one
        bounds = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1], True])
        return np.array([union_ns(s[a:b], e[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)],
                        dtype=np.int64)
    offset = np.concatenate([[0], np.cumsum(width)[:-1]]) - lo_t
    ss, ee = s + offset[seg], e + offset[seg]
    order = np.argsort(ss, kind="stable")  # segments stay in order: their times do not interleave
    ss, ee = ss[order], ee[order]
    reach = np.maximum.accumulate(ee)
    new = np.r_[True, ss[1:] > reach[:-1]]
    first = np.flatnonzero(new)
    run = np.maximum.reduceat(ee, first) - ss[first]
    run_seg = seg[order][first]  # nondecreasing; every segment has at least one run
    return np.add.reduceat(run, np.flatnonzero(np.r_[True, run_seg[1:] != run_seg[:-1]]))


PACK_ROWS = 1 << 32
"""timeline() packs (preorder position, row) in one int64 below this many work rows, else sorts an index."""
GATHER_ROWS = 1 << 18
"""About this many work rows are gathered at once per phase in timeline(): sums are additive,
so a phase's instances are taken a chunk at a time and peak memory stays bounded."""
I32 = np.iinfo(np.int32)
"""The queues' 32-bit range: timeline() keeps them in 32 bits while every one fits."""


def _chunks(sizes: np.ndarray, limit: int) -> list[slice]:
    """Consecutive slices of `sizes`, a new one wherever the running total (before an item)
    crosses a multiple of `limit`: each slice holds under `limit` plus one item.

    >>> _chunks(np.array([3, 3, 3, 9, 1]), 6)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    if not len(sizes):
        return []
    before = np.concatenate([[0], np.cumsum(sizes)[:-1]]) // limit
    cuts = np.flatnonzero(np.r_[True, before[1:] != before[:-1]]).tolist() + [len(sizes)]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _euler(parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Preorder entry index and last descendant's entry index of each node of a forest (children,
    and roots, visited in index order), a depth level at a time in numpy: subtree sizes bottom-up,
    then each node's entry = its parent's + 1 + the sizes of its earlier siblings (a walk in Python
    cost 1.7 s on 1.15 M ranges, eight times its time on a tenth of them).

    >>> [a.tolist() for a in _euler(np.array([-1, 0, 0, 1, -1]))]
    [[0, 1, 3, 2, 4], [3, 2, 3, 2, 4]]
    """
    n = len(parent)
    parent = parent.astype(np.int64, copy=False)
    depth = np.zeros(n, dtype=np.int64)
    rows = np.flatnonzero(parent >= 0)
    up = parent[rows]
    while len(rows):  # each node's number of ancestors, one level per pass
        depth[rows] += 1
        up = parent[up]
        keep = up >= 0
        rows, up = rows[keep], up[keep]
    by_depth = np.argsort(depth, kind="stable")  # index order within a level
    levels = np.split(by_depth, np.cumsum(np.bincount(depth))[:-1]) if n else []
    size = np.ones(n, dtype=np.int64)
    for level in reversed(levels[1:]):  # subtree sizes, deepest level first
        np.add.at(size, parent[level], size[level])
    tin = np.zeros(n, dtype=np.int64)
    for d, level in enumerate(levels):
        if d:  # siblings side by side in index order, each group's entries from its parent's on
            level = level[np.argsort(parent[level], kind="stable")]
            up = parent[level]
            base = tin[up] + 1
        else:
            up, base = np.zeros(len(level), dtype=np.int64), np.zeros(len(level), dtype=np.int64)
        before = np.cumsum(size[level]) - size[level]  # sizes of the earlier rows of the level
        first = np.flatnonzero(np.r_[True, up[1:] != up[:-1]]) if len(level) else np.zeros(0, dtype=np.int64)
        start_of = np.repeat(before[first], np.diff(np.r_[first, len(level)]))
        tin[level] = base + before - start_of
    return tin, tin + size - 1


def distinct_texts(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """(code per row, the distinct values as text): `values.astype(str)` is `texts[codes]`, made
    without a string per row (a Categorical's own codes, NaN's -1 pointing at a last text for it).

    >>> import pandas as pd
    >>> codes, texts = distinct_texts(pd.Series(["ab", "c", "ab"]))
    >>> codes.tolist(), texts.tolist()
    ([0, 1, 0], ['ab', 'c'])
    """
    import pandas as pd

    if isinstance(values.dtype, pd.CategoricalDtype):  # its codes, no code per row made: NaN (-1) tested last
        texts = pd.Series([*values.cat.categories.tolist(), np.nan], dtype=object).astype(str)
        return values.cat.codes.to_numpy(), texts
    codes, uniq = pd.factorize(values, use_na_sentinel=False)
    return codes, pd.Series(uniq, dtype=object).astype(str)


def per_distinct(values: pd.Series, test: Callable[[pd.Series], pd.Series]) -> np.ndarray:
    """`test(values.astype(str))` as a boolean array, computed once per distinct value (a million
    kernels carry a few hundred names and paths; string methods cost a microsecond a row).

    >>> import pandas as pd
    >>> per_distinct(pd.Series(["ab", None, "ab", "c"]), lambda s: s.str.startswith("a")).tolist()
    [True, False, True, False]
    """
    codes, texts = distinct_texts(values)
    return np.asarray(test(texts), dtype=bool)[codes]


def phase_of(ranges: pd.DataFrame) -> pd.Series:
    """Each range's phase: `step` for a top-level step_i, `forward`/`backward`/`optimizer` for
    those directly under a step_i, else None (phases are profkit's runner ranges). Decided once
    per distinct path."""
    import pandas as pd

    codes, texts = distinct_texts(ranges["path"])
    phases: list[str | None] = []
    for path in texts:
        parts = str(path).split("/")
        top = re.match(r"^step_\d+$", parts[0]) is not None
        phase = "step" if top and len(parts) == 1 else parts[1] if top and len(parts) == 2 and parts[1] in PHASES[1:] \
            else None
        phases.append(phase)
    return pd.Series(np.array(phases, dtype=object)[codes] if len(codes) else [], index=ranges.index, dtype=object)


@dataclass(frozen=True, slots=True)
class Work:
    """One source of GPU work, as arrays of equal length (views of a frame's columns, not copies):
    kernels, or memcpy and memset rows. timeline() takes several, one after another."""

    start_ns: np.ndarray
    end_ns: np.ndarray
    owner: np.ndarray
    """Owner range id, -1 outside every range."""
    launch_ns: np.ndarray
    """Start of the launching call, -1 when unknown."""
    is_kernel: np.ndarray | bool
    """Per row, or one value for all the rows."""

    @staticmethod
    def of(frame: pd.DataFrame, is_kernel: bool | None = None) -> Work:
        """A frame's columns (its `is_kernel` column unless `is_kernel` is given)."""
        return Work(frame["start_ns"].to_numpy(), frame["end_ns"].to_numpy(), frame["owner"].to_numpy(),
                    frame["launch_ns"].to_numpy(),
                    frame["is_kernel"].to_numpy() if is_kernel is None else is_kernel)


def _take(parts: list[Work], field: str, idx: np.ndarray) -> np.ndarray:
    """parts' `field` at rows `idx` of the parts one after another, without concatenating them."""
    arrays = [np.broadcast_to(np.asarray(getattr(w, field)), len(w.owner)) for w in parts]
    kinds = [a for a in arrays if len(a)]
    out = np.empty(len(idx), dtype=np.result_type(*kinds) if kinds else np.int64)
    off = 0
    for a in arrays:
        m = (idx >= off) & (idx < off + len(a))
        out[m] = a[idx[m] - off]
        off += len(a)
    return out


def timeline(ranges: pd.DataFrame, activity: pd.DataFrame | list[Work], *, by: str = "phase") -> pd.DataFrame:
    """Busy and idle GPU time per phase of the measured steps (or per range name).

    Args:
        ranges: analyze.project() rows (range_id order, with parent, path, name, start_ns, end_ns).
        activity: GPU work with its owner range id: kernels, memcpy and memset rows with start_ns,
            end_ns, owner (-1 outside every range), launch_ns (-1 unknown) and is_kernel; or that
            work as several Work parts, one after another (no concatenated copy of the frames).
        by: `phase` (step, forward, backward, optimizer of the step_i ranges) or `name`.

    Returns:
        One row per phase or name, all instances added: name, instances, wall_ns, gpu_span_ns,
        gpu_busy_ns, gpu_idle_pct (of the span), kernels, launches_per_ms (kernels over wall time),
        median_queue_ns (kernel start minus its launch call, all instances), verdict.
    """
    import pandas as pd

    from profkit.frames import require

    require(ranges, ["parent", "path", "name", "start_ns", "end_ns"], "ranges")
    if isinstance(activity, pd.DataFrame):
        require(activity, ["start_ns", "end_ns", "owner", "launch_ns", "is_kernel"], "activity")
        activity = [Work.of(activity)]
    keys = phase_of(ranges) if by == "phase" else ranges["name"].astype(object)
    tin, tout = _euler(ranges["parent"].to_numpy()) if len(ranges) else (np.zeros(0, np.int64),) * 2
    # The owned work in preorder of its owner: each row's preorder position (int32 while it fits),
    # unowned rows last; only the sort order and the sorted positions are kept, nothing gathered.
    pos_type = np.int32 if len(ranges) < np.iinfo(np.int32).max else np.int64
    last = np.iinfo(pos_type).max
    tin_p = tin.astype(pos_type)
    total = sum(len(w.owner) for w in activity)
    packed = len(tin_p) < np.iinfo(np.int32).max and total < PACK_ROWS
    # packed: the positions are written straight into the int64 array they are packed in (no 32-bit copy beside it)
    pos_all = np.empty(total, dtype=np.int64 if packed else pos_type)
    off = 0
    for w in activity:
        o = w.owner
        at = pos_all[off:off + len(o)]
        at[:] = last
        owned = o >= 0
        if len(tin_p):
            at[owned] = tin_p[o[owned]]
        off += len(o)
    n_owned = int(np.count_nonzero(pos_all != last))
    # Per range, vectorized: its work is the slice [lo, hi) of the activity in preorder. The order is
    # kept as one int64 per owned row, (preorder position << 32) | row, sorted in place: the stable order
    # and the sorted positions in one array, no index array or position array beside it.
    if packed:
        ordered = pos_all.view(np.int64)  # already int64: the same memory, typed
        del pos_all
        for a in range(0, len(ordered), GATHER_ROWS):  # the row numbers, a chunk at a time (no arange beside it)
            ordered[a:a + GATHER_ROWS] <<= 32
            ordered[a:a + GATHER_ROWS] |= np.arange(a, min(a + GATHER_ROWS, len(ordered)), dtype=np.int64)
        # stable: a merge of the runs (work comes in its owners' order, mostly), linear; the default
        # quicksort is n log n: 0.71 s against 0.05 s at 10 M kernels, 0.06 against 0.007 at 1 M
        ordered.sort(kind="stable")  # the keys are distinct: the same order either way
        ordered = ordered[:n_owned]
        lo = search_sorted(ordered, tin.astype(np.int64) << 32, "left")
        hi = search_sorted(ordered, (tout.astype(np.int64) << 32) | 0xFFFFFFFF, "right")
    else:
        ordered = np.argsort(pos_all, kind="stable")[:n_owned].copy()  # the order itself
        pos = pos_all[ordered]
        del pos_all
        lo = search_sorted(pos, tin, "left")
        hi = search_sorted(pos, tout, "right")
        del pos
    del tin, tout, tin_p  # each range's slice [lo, hi) is all that is needed of the preorder from here
    r_start, r_end = ranges["start_ns"].to_numpy(), ranges["end_ns"].to_numpy()
    wall_r = np.where(r_end < OPEN_END, r_end - r_start, 0)
    rows = []
    for key, idx in pd.Series(np.arange(len(ranges))).groupby(keys.to_numpy(), sort=False).groups.items():
        if key is None:
            continue
        idx = np.asarray(idx)
        instances, wall = len(idx), int(wall_r[idx].sum())
        busy_at = idx[hi[idx] > lo[idx]]  # the instances with GPU work, a chunk of them at a time
        span = busy = kernels = filled = 0
        sizes = hi[busy_at] - lo[busy_at]
        # the queues, filled chunk by chunk (no list, no concatenation), in 32 bits while they fit (2.1 s)
        q = np.empty(int(sizes.sum()), dtype=np.int32)
        for part in _chunks(sizes, GATHER_ROWS):
            chunk = busy_at[part]
            g, seg = _gather(lo[chunk], hi[chunk])
            rows_at = ordered[g] & 0xFFFFFFFF if packed else ordered[g]
            del g
            s, e = _take(activity, "start_ns", rows_at), _take(activity, "end_ns", rows_at)
            is_k, launch = _take(activity, "is_kernel", rows_at), _take(activity, "launch_ns", rows_at)
            at = _starts(lo[chunk], hi[chunk])
            s_first, e_last = np.minimum.reduceat(s, at), np.maximum.reduceat(e, at)
            span += int((e_last - s_first).sum())
            busy += int(_unions(s, e, seg, s_first, e_last).sum())
            kernels += int(is_k.sum())
            queued = (s - launch)[is_k & (launch >= 0)]
            if q.dtype != queued.dtype and len(queued) and not (I32.min <= queued.min() and queued.max() <= I32.max):
                q = q.astype(queued.dtype)  # a queue longer than 32 bits hold: the rest in 64
            q[filled:filled + len(queued)] = queued
            filled += len(queued)
        q = q[:filled]
        idle = 100.0 * (span - busy) / span if span else 0.0
        median_q = float(np.median(q, overwrite_input=True)) if len(q) else float("nan")  # q is ours to reorder
        rows.append({"name": key, "instances": instances, "wall_ns": wall, "gpu_span_ns": span,
                     "gpu_busy_ns": busy, "gpu_idle_pct": idle, "kernels": kernels,
                     "launches_per_ms": kernels / (wall / 1e6) if wall else 0.0, "median_queue_ns": median_q,
                     "verdict": verdict(idle, median_q, span)})
    out = pd.DataFrame(rows, columns=["name", "instances", "wall_ns", "gpu_span_ns", "gpu_busy_ns", "gpu_idle_pct",
                                      "kernels", "launches_per_ms", "median_queue_ns", "verdict"])
    if by == "phase":
        out = out.set_index("name").reindex([p for p in PHASES if p in set(out["name"])]).reset_index()
    return out


def verdict(idle_pct: float, median_queue_ns: float, span_ns: int) -> str:
    """`launch-bound`, `GPU-bound` or `mixed` (`no GPU work` when nothing ran).

    | GPU idle of span | median launch-to-start | verdict      |
    | >= 50%           | < 50 us                | launch-bound |
    | <= 20%           | any                    | GPU-bound    |
    | otherwise        |                        | mixed        |

    >>> verdict(80.0, 3_000, 10), verdict(5.0, 900_000, 10), verdict(35.0, 10_000, 10), verdict(0.0, 0, 0)
    ('launch-bound', 'GPU-bound', 'mixed', 'no GPU work')
    """
    if span_ns <= 0:
        return "no GPU work"
    if idle_pct >= LAUNCH_BOUND_IDLE_PCT and median_queue_ns < LAUNCH_BOUND_QUEUE_NS:
        return "launch-bound"
    if idle_pct <= GPU_BOUND_IDLE_PCT:
        return "GPU-bound"
    return "mixed"


# A share of the step's GPU time above which a cost is worth naming.
NOTABLE_PCT = 10.0


def what_to_try(phases: pd.DataFrame, kernels: pd.DataFrame, *, attn: str | None = None, builtin: bool = True,
                compiled: bool = False, fused_optimizer: bool = False, peak_bytes: int | None = None,
                gpu_bytes: int | None = None) -> list[str]:
    """Suggestions the capture holds evidence for, each naming its evidence.

    Args:
        phases: timeline(by="phase") rows.
        kernels: kernel rows of the measured steps (name, category, dur_ns, range_path).
        attn, builtin, compiled, fused_optimizer, peak_bytes, gpu_bytes: what the run record says, when
            known (`builtin`: one of profkit's models, whose attention `--attn` chooses).
    """
    out: list[str] = []
    step = phases.set_index("name").loc["step"] if "step" in set(phases["name"]) else None
    # masks over the kernels' columns, no copy of the rows: the kernels of the measured steps, and among them ...
    in_steps = (per_distinct(kernels["range_path"], lambda p: p.str.match(r"^step_\d+(/|$)"))
                if len(kernels) else np.zeros(0, dtype=bool))
    dur = kernels["dur_ns"].to_numpy() if len(kernels) else np.zeros(0, dtype=np.int64)

    def ns(mask: np.ndarray) -> int:
        return int(dur.sum(where=mask))

    total = float(ns(in_steps)) if in_steps.any() else 0.0
    if step is not None and step["verdict"] == "launch-bound":
        if not compiled:
            out.append(f"CUDA graphs or `torch.compile` (`--compile`): the GPU is idle {step['gpu_idle_pct']:.0f}% "
                       f"of the step and each kernel starts {step['median_queue_ns'] / 1e3:.1f} us (median) after its "
                       f"launch, {step['launches_per_ms']:.0f} launches per ms: the CPU cannot launch fast enough")
        if peak_bytes and gpu_bytes and peak_bytes < gpu_bytes / 4:
            out.append(f"a larger batch: launch-bound, and the peak ({peak_bytes / 2**30:.1f} GiB) uses "
                       f"{100 * peak_bytes / gpu_bytes:.0f}% of the GPU's {gpu_bytes / 2**30:.0f} GiB")
    if total:
        names = kernels["name"]
        foreach = in_steps & per_distinct(names, lambda n: n.str.contains("multi_tensor_apply_kernel", regex=False))
        opt_pct = 100.0 * ns(foreach) / total
        if not fused_optimizer and opt_pct >= NOTABLE_PCT:
            out.append(f"`torch.optim.AdamW(fused=True)`: the foreach optimizer runs {int(foreach.sum()):,} "
                       f"multi_tensor_apply kernels, {opt_pct:.1f}% of the steps' kernel time")
        casts = in_steps & per_distinct(names, lambda n: n.str.contains(r"(?:bfloat16|float16)_copy_kernel",
                                                                          regex=True))
        cast_pct = 100.0 * ns(casts) / total
        if cast_pct >= 5.0:
            out.append(f"bf16 weights (or a cast cache): autocast's fp32→16-bit copies are {cast_pct:.1f}% of the "
                       f"steps' kernel time ({int(casts.sum()):,} kernels)")
        if attn == "naive" and builtin:
            # softmax inside attention only: a model's loss runs a (log-)softmax over the vocabulary too
            in_attention = per_distinct(kernels["range_path"],
                                        lambda p: p.str.contains(r"/attention(?:/|$)|attn_softmax"))
            soft = in_steps & per_distinct(kernels["category"], lambda c: c == "softmax") & in_attention
            soft_pct = 100.0 * ns(soft) / total
            if soft_pct >= 2.0:
                out.append(f"an SDPA backend (`--attn flash`): naive attention's softmax alone is {soft_pct:.1f}% of "
                           "the steps' kernel time, and its T x T scores go through memory")
    return out
