"""Where the GPU time went: pure functions over ProfileData's DataFrames (no torch, no I/O).

NVTX projection, done right. A range's GPU time is the summed duration of the kernels
launched while it was open. `nsys stats -r nvtx_kern_sum` counts only launches on the thread
that pushed the range, so PyTorch's backward, launched from its autograd thread, lands in no
range. Here every kernel gets an owner:

1. the innermost range open at its launch on the launching thread;
2. else the innermost range open at that moment on another thread of the same process: a
   range that spans a blocking call (the main thread's `backward`) covers what other threads
   launch while it is open.

Ranges nest the same way: a range with no parent on its own thread (the per-layer backward
ranges on the autograd thread) is grafted under the innermost range of another thread of the
process that contains it, so its path reads `step_3/backward/layer_11/attention`.

    main thread    |--step_3----------------------------------------------|
                   |--forward--|  |--backward------------------|
    autograd thread                 |--layer_11--| |--layer_10--|
    kernels            k1  k2        k3   k4   k5    k6    k7
    owners: k1,k2 -> forward; k3..k5 -> layer_11 (path step_3/backward/layer_11); k6,k7 -> layer_10
"""

from __future__ import annotations

import heapq
import re
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from profkit.columns import OPEN_END, pid_of, search_sorted
from profkit.table import Table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OPEN_END", "Owned", "Projected", "Tree", "attribute", "fold", "fold_steps", "innermost_at",
           "nvtx_summary", "nvtx_tree", "owners", "project", "project_arrays", "range_tree", "step_of", "summarize",
           "thread_timelines", "tree_and_timelines"]

Timeline = tuple[np.ndarray, np.ndarray]  # (boundary times, innermost range_id from that time on, -1 none)


# --- the tree, over plain arrays ------------------------------------------------------------------------------

@dataclass(slots=True)
class Tree:
    """NVTX ranges as a tree across threads, sorted by (thread, start, end descending): row i is
    range_id i. Names and paths are indices into `names` and `paths` (each distinct text once)."""

    order: np.ndarray
    """The input row of each range."""
    start_ns: np.ndarray
    end_ns: np.ndarray
    """OPEN_END for a range still open when the capture stopped."""
    global_tid: np.ndarray
    global_pid: np.ndarray
    name: np.ndarray
    names: list[str]
    parent: np.ndarray
    """range_id of the parent, -1 for a root."""
    grafted: np.ndarray
    """The parent is on another thread."""
    depth: np.ndarray
    path: np.ndarray
    paths: list[str]
    timelines: dict[int, dict[int, Timeline]]
    """Per process, per thread: the innermost open range as a step function of time."""


def range_tree(start: np.ndarray, end: np.ndarray, tid: np.ndarray, pid: np.ndarray, name: np.ndarray,
               names: list[str], seq: np.ndarray | None = None) -> Tree:
    """Give each NVTX range its parent, depth and path, across threads.

    Args:
        start, end: nanoseconds (end OPEN_END while open); tid, pid: globalTid and its process;
        name: index into `names`; seq: the autograd sequence number of PyTorch's per-op ranges
        (-1: none), or None.

    Same-thread nesting first: the parent is the innermost open range that contains the range
    (ranges of different NVTX domains need not nest: one that outlives the range open when it
    started goes under an outer one that holds it). A range with no parent on its thread is
    grafted under the innermost range of another thread of its process that contains it. With
    PyTorch's per-op ranges, backward ops no range of their thread places are re-homed under the
    module of their forward op (_backward_op_homes).
    """
    order = np.lexsort((-end, start, tid))
    s, e, t, p, nm = start[order], end[order], tid[order], pid[order], name[order]
    parent, timelines = _nest(s, e, t, p)
    grafted = _graft(parent, s, e, t, p, timelines)
    depth = _depths(parent)
    homes: dict[int, int] = {}
    if seq is not None and (seq >= 0).any():
        homes = _backward_op_homes(nm, names, seq[order], t, p, s, parent)
    path, paths = _paths(parent, depth, nm, names, homes)
    return Tree(order, s, e, t, p, nm, names, parent, grafted, depth, path, paths, timelines)


def _nest(s: np.ndarray, e: np.ndarray, t: np.ndarray,
          p: np.ndarray) -> tuple[np.ndarray, dict[int, dict[int, Timeline]]]:
    """Same-thread parents and each thread's timeline, in one stack walk per thread (rows sorted by
    thread, start, end descending). A thread whose ranges overlap without nesting takes a heap
    for its timeline (_overlapping_timeline)."""
    n = len(s)
    s_list: list[int] = []
    e_list: list[int] = []
    parent = np.full(n, -1, dtype=np.int64)
    timelines: dict[int, dict[int, Timeline]] = {}
    bounds = np.flatnonzero(np.diff(t)) + 1 if n else np.empty(0, dtype=np.int64)
    for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), n], strict=True):
        if a == b:
            continue
        fast = _nest_nested(s[a:b], e[a:b])
        if fast is not None:  # properly nested (every thread's ranges, as pushes and pops make them)
            up, (times_a, owner_a) = fast
            parent[a:b] = np.where(up >= 0, up + a, -1)
            timelines.setdefault(int(p[a]), {})[int(t[a])] = (times_a, np.where(owner_a >= 0, owner_a + a, -1))
            continue
        if not s_list:  # plain lists, made once: indexing a numpy array from Python costs several times a list's
            s_list, e_list = s.tolist(), e.tolist()
        stack: list[int] = []
        par = [-1] * (b - a)  # this thread's parents (a list: item writes from Python are cheap)
        # Packed 64-bit arrays, not lists: 8 bytes an event instead of a pointer and an int object.
        times = array("q")
        owner = array("q")
        nested = True
        for i in range(a, b):
            s_i, e_i = s_list[i], e_list[i]
            while stack and e_list[stack[-1]] <= s_i:
                closed = stack.pop()
                if nested:
                    times.append(e_list[closed])
                    owner.append(stack[-1] if stack else -1)
            if stack:
                if e_list[stack[-1]] >= e_i:
                    par[i - a] = stack[-1]
                else:
                    nested = False
                    for j in reversed(stack):
                        if e_list[j] >= e_i:
                            par[i - a] = j
                            break
            stack.append(i)
            if nested:
                times.append(s_i)
                owner.append(i)
        if nested:
            while stack:
                closed = stack.pop()
                times.append(e_list[closed])
                owner.append(stack[-1] if stack else -1)
            timeline = _step(times, owner)
        else:
            timeline = _overlapping_timeline(np.arange(a, b), s, e)
        parent[a:b] = par
        timelines.setdefault(int(p[a]), {})[int(t[a])] = timeline
    return parent, timelines


def _nest_nested(s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, Timeline] | None:
    """_nest's stack walk for one thread in numpy, when its ranges nest (None when they do not:
    the walk then handles them). Rows sorted by start, end descending; returns each row's parent
    (local index, -1: none) and the thread's timeline (owners as local indices).

    The walk's stack when row i is pushed is {j < i: e_j > s_i} when everything before i nested,
    so i's depth is that set's size and its parent the last row before it one level up. The first
    row where the walk would find no nesting (its parent ends before it does) fails the check
    below, which makes the answer the walk's or None. The innermost range open at time t (after
    all events at t): the last range started by t, or its first ancestor still open after t.
    """
    m = len(s)
    if m and bool((e < s).any()):
        return None
    i = np.arange(m)
    zero = e == s
    cz = np.concatenate([[0], np.cumsum(zero)])
    block_end = search_sorted(s, s, "right")
    # rows j >= i with e_j <= s_i: zero-length rows starting at s_i, the last of i's start block
    later = cz[block_end] - cz[i]
    depth = i - (search_sorted(np.sort(e, kind="stable"), s, "right") - later)  # stable: merges e's runs
    if m and (depth.min() < 0 or depth[0] != 0):
        return None
    parent = np.full(m, -1, dtype=np.int64)
    for d in range(1, int(depth.max()) + 1 if m else 0):
        rows = np.flatnonzero(depth == d)
        ups = np.flatnonzero(depth == d - 1)
        pos = np.searchsorted(ups, rows) - 1
        if not len(ups) or (pos < 0).any():
            return None
        parent[rows] = ups[pos]
    has = parent >= 0
    if (e[parent[has]] < e[has]).any() or (e[parent[has]] <= s[has]).any():
        return None
    times = np.concatenate([s, e])
    # stable: two runs, s's and (mostly) e's, merged; then each value once (np.unique hashes: several
    # times slower on these)
    times.sort(kind="stable")
    times = times[np.concatenate([[True], times[1:] != times[:-1]])] if m else times
    owner = search_sorted(s, times, "right") - 1
    while True:
        closed = np.flatnonzero(owner >= 0)
        closed = closed[e[owner[closed]] <= times[closed]]
        if not len(closed):
            break
        owner[closed] = parent[owner[closed]]
    return parent, (times, owner)


def _step(times: Sequence[int], owner: Sequence[int]) -> Timeline:
    tm = np.frombuffer(times, dtype=np.int64) if isinstance(times, array) else np.asarray(times, dtype=np.int64)
    o = np.frombuffer(owner, dtype=np.int64) if isinstance(owner, array) else np.asarray(owner, dtype=np.int64)
    keep = np.append(tm[1:] != tm[:-1], True)  # at one instant, the state after all its events
    return tm[keep], o[keep]


def _overlapping_timeline(idx: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Timeline:
    """The step function by a sweep with a heap of open ranges, latest start on top."""
    times = np.concatenate([ends[idx], starts[idx]])
    kinds = np.concatenate([np.zeros(len(idx), np.int8), np.ones(len(idx), np.int8)])  # ends first
    ids = np.concatenate([idx, idx])
    heap: list[tuple[int, int]] = []
    closed: set[int] = set()
    t_out: list[int] = []
    o_out: list[int] = []
    for ev in np.lexsort((kinds, times)):
        i = int(ids[ev])
        if kinds[ev]:
            heapq.heappush(heap, (-int(starts[i]), -i))
        else:
            closed.add(i)
        while heap and -heap[0][1] in closed:
            heapq.heappop(heap)
        t_out.append(int(times[ev]))
        o_out.append(-heap[0][1] if heap else -1)
    return _step(t_out, o_out)


def innermost_at(timeline: Timeline, t: np.ndarray) -> np.ndarray:
    """Range id open innermost at each time in `t` (-1 where none)."""
    times, owner = timeline
    idx = search_sorted(times, t, "right") - 1
    return np.where(idx >= 0, owner[np.clip(idx, 0, None)], -1)


def _graft(parent: np.ndarray, s: np.ndarray, e: np.ndarray, t: np.ndarray, p: np.ndarray,
           timelines: dict[int, dict[int, Timeline]]) -> np.ndarray:
    """Graft each root under the innermost range of another thread of its process that contains
    it (in place); returns which were grafted.

    On each other thread, the range open at the root's start, walked out through its same-thread
    parents to the first one still open at the root's end; of those, the one opened last.
    """
    same = parent.copy()
    grafted = np.zeros(len(parent), dtype=bool)
    roots = np.flatnonzero(parent < 0)
    for pid, threads in timelines.items():
        if len(threads) < 2:
            continue
        mine = roots[p[roots] == pid]
        best = np.full(len(mine), -1, dtype=np.int64)
        for tid, timeline in threads.items():
            cand = innermost_at(timeline, s[mine])
            cand[t[mine] == tid] = -1
            while True:
                out = np.flatnonzero(cand >= 0)
                out = out[e[cand[out]] < e[mine[out]]]
                if not len(out):
                    break
                cand[out] = same[cand[out]]
            better = (cand >= 0) & ((best < 0) | (s[np.clip(cand, 0, None)] > s[np.clip(best, 0, None)]))
            best = np.where(better, cand, best)
        hit = best >= 0
        parent[mine[hit]] = best[hit]
        grafted[mine[hit]] = True
    return grafted


def _depths(parent: np.ndarray) -> np.ndarray:
    """Ancestors of each range, by following every range's chain one level per pass."""
    depth = np.zeros(len(parent), dtype=np.int64)
    rows = np.flatnonzero(parent >= 0)
    up = parent[rows]
    for _ in range(len(parent)):
        if not len(rows):
            break
        depth[rows] += 1
        up = parent[up]
        keep = up >= 0
        rows, up = rows[keep], up[keep]
    return depth


def _paths(parent: np.ndarray, depth: np.ndarray, name: np.ndarray, names: list[str],
           homes: dict[int, int]) -> tuple[np.ndarray, list[str]]:
    """Each range's path (its parent's path / its own name), as an index into the distinct paths;
    built a depth level at a time, each distinct (parent path, name) pair joined once."""
    index: dict[str, int] = {}
    texts: list[str] = []

    def code(text: str) -> int:
        c = index.get(text)
        if c is None:
            c = index[text] = len(texts)
            texts.append(text)
        return c

    if homes:
        return np.array([code(x) for x in _rehomed_paths(parent, name, names, homes)], dtype=np.int64), texts
    n = len(parent)
    path = np.full(n, -1, dtype=np.int64)
    width = max(len(names), 1)
    by_depth = np.argsort(depth, kind="stable")
    lo = 0
    for hi in (np.cumsum(np.bincount(depth)).tolist() if n else []):
        rows = by_depth[lo:hi]
        lo = hi
        up = parent[rows]
        key = np.where(up >= 0, path[np.maximum(up, 0)], -1) * width + name[rows]  # roots: negative
        uniq, inv = np.unique(key, return_inverse=True)
        codes = []
        for k in uniq.tolist():
            prefix, own = ("", k + width) if k < 0 else (texts[k // width], k % width)
            codes.append(code(f"{prefix}/{names[own]}" if prefix else names[own]))
        path[rows] = np.array(codes, dtype=np.int64)[inv.reshape(-1)]
    return path, texts


def _rehomed_paths(parent: np.ndarray, name: np.ndarray, names: list[str], homes: dict[int, int]) -> list[str]:
    """Paths when backward ops are re-homed: a re-homed range's path is its home's, read as
    backward (_as_backward), then its own name."""
    n = len(parent)
    row_names = [names[i] for i in name.tolist()]
    paths: list[str | None] = [None] * n
    up = parent.tolist()

    def path_of(i: int) -> str:
        chain = []
        j = i
        while j >= 0 and paths[j] is None and j not in homes:
            chain.append(j)
            j = up[j]
        if j >= 0 and paths[j] is None:  # a backward op re-homed under its forward op's module
            paths[j] = f"{_as_backward(path_of(homes[j]))}/{row_names[j]}"
        prefix = paths[j] if j >= 0 else ""
        for k in reversed(chain):
            prefix = f"{prefix}/{row_names[k]}" if prefix else row_names[k]
            paths[k] = prefix
        return paths[i]  # type: ignore[return-value]

    for i in range(n):
        if paths[i] is None:
            path_of(i)
    return paths  # type: ignore[return-value]


def _as_backward(path: str) -> str:
    """step_0/forward/layer_3/mlp -> step_0/backward/layer_3/mlp (or .../backward appended)."""
    parts = path.split("/")
    if "forward" in parts:
        parts[parts.index("forward")] = "backward"
    else:
        parts.append("backward")
    return "/".join(parts)


WRAPPER = "autograd::engine::evaluate_function: "


def _is_op(name: str, seq: int | None) -> bool:
    """A range of PyTorch's per-op annotation (emit_nvtx / nsys --pytorch=autograd-nvtx)."""
    return seq is not None or name.startswith(("aten::", "autograd::"))


def _backward_op_homes(name: np.ndarray, names: list[str], seq_codes: np.ndarray, tid: np.ndarray, pid: np.ndarray,
                       start: np.ndarray, parent: np.ndarray) -> dict[int, int]:
    """Backward op ranges to re-home: range -> the range that holds its forward op.

    With `--pytorch=autograd-nvtx`, each autograd node's range (`MmBackward0, seq = 4211`) shares
    its sequence number with the forward op that created it (`aten::mm, seq = 4211`). When no
    range of the autograd thread places a backward op (no profkit backward ranges: a user's
    model), it goes under the module range that held the forward op, with `forward` read as
    `backward`: step_0/forward/layer_3/mlp/aten::mm -> step_0/backward/layer_3/mlp/MmBackward0.
    """
    row_names = [names[i] for i in name.tolist()]
    seq: list[int | None] = [None if x < 0 else x for x in seq_codes.tolist()]
    tids, pids, starts = tid.tolist(), pid.tolist(), start.tolist()
    up = parent.tolist()
    is_op = [_is_op(nm, sq) for nm, sq in zip(row_names, seq, strict=True)]
    creators: dict[tuple[int, int], int] = {}
    for i, (nm, sq) in enumerate(zip(row_names, seq, strict=True)):
        if sq is None or "Backward" in nm:
            continue
        key = (pids[i], sq)
        if key not in creators or starts[i] < starts[creators[key]]:
            creators[key] = i  # the outermost op of that sequence number
    # evaluate_function wrappers carry no sequence number: take their node's (the child op range).
    for i in range(len(row_names)):
        p = up[i]
        if seq[i] is not None and p >= 0 and row_names[p].startswith(WRAPPER) and seq[p] is None:
            seq[p] = seq[i]
    homes: dict[int, int] = {}
    for i, (nm, sq) in enumerate(zip(row_names, seq, strict=True)):
        if sq is None or "Backward" not in nm:
            continue
        j = up[i]
        while j >= 0 and tids[j] == tids[i] and is_op[j]:
            j = up[j]
        if j >= 0 and tids[j] == tids[i]:
            continue  # a range of its own thread (profkit's per-layer backward) places it already
        creator = creators.get((pids[i], sq))
        if creator is None:
            continue
        home = up[creator]
        while home >= 0 and is_op[home]:
            home = up[home]
        if home >= 0:
            homes[i] = home
    return homes


# --- attribution and projection -------------------------------------------------------------------------------

def owners(launch_ns: np.ndarray, launch_tid: np.ndarray, timelines: dict[int, dict[int, Timeline]],
           starts: np.ndarray) -> np.ndarray:
    """The owner range_id of each launch (-1: outside every range, or launch unknown).

    Same thread first; then, for launches no range of their thread covers, the innermost range
    open at that moment on another thread of the same process (latest start wins). `starts`:
    each range's start, by range_id.
    """
    owner = np.full(len(launch_ns), -1, dtype=owner_dtype(len(starts)))
    if not len(starts) or not len(launch_ns):
        return owner
    # Each launch's owner depends on that launch alone: a chunk at a time, the temporaries below
    # (a dozen arrays the chunk's length) stay a few MB however many kernels there are.
    for lo in range(0, len(launch_ns), OWNER_CHUNK):
        hi = lo + OWNER_CHUNK
        owner[lo:hi] = _owners(launch_ns[lo:hi], launch_tid[lo:hi], timelines, starts)
    return owner


OWNER_CHUNK = 1 << 18


def owner_dtype(ranges: int) -> type[np.signedinteger]:
    """An owner per kernel in 32 bits (half a 64-bit column: 40 MB at 10 M kernels) while range ids fit."""
    return np.int32 if ranges < np.iinfo(np.int32).max else np.int64


def _owners(launch_ns: np.ndarray, launch_tid: np.ndarray, timelines: dict[int, dict[int, Timeline]],
            starts: np.ndarray) -> np.ndarray:
    owner = np.full(len(launch_ns), -1, dtype=np.int64)
    launch_pid = pid_of(launch_tid)
    for pid, threads in timelines.items():
        in_pid = np.flatnonzero((launch_pid == pid) & (launch_tid >= 0))
        if in_pid.size == 0:
            continue
        tids = launch_tid[in_pid]
        if len(threads) == 1:
            ((tid, timeline),) = threads.items()
            mine = in_pid[tids == tid]
            owner[mine] = innermost_at(timeline, launch_ns[mine])
        else:
            for tid, timeline in threads.items():
                mine = in_pid[tids == tid]
                owner[mine] = innermost_at(timeline, launch_ns[mine])
        rest = in_pid[owner[in_pid] < 0]
        if rest.size == 0:
            continue
        best = np.full(rest.size, -1, dtype=np.int64)
        for tid, timeline in threads.items():
            cand = innermost_at(timeline, launch_ns[rest])
            cand[launch_tid[rest] == tid] = -1
            better = (cand >= 0) & ((best < 0) | (starts[np.clip(cand, 0, None)] > starts[np.clip(best, 0, None)]))
            best = np.where(better, cand, best)
        owner[rest] = best
    return owner


PROJECT_CHUNK = 1 << 20
"""Kernels project_arrays() takes at a time (sums, counts, minima and maxima: exact in any order)."""


def project_arrays(owner: np.ndarray, dur: np.ndarray, ks: np.ndarray, ke: np.ndarray, parent: np.ndarray,
                   depth: np.ndarray) -> dict[str, np.ndarray]:
    """Per range: gpu_self_ns, gpu_total_ns (its subtree's, across threads), kernels (same scope),
    gpu_start_ns / gpu_end_ns (first kernel start, last kernel end; -1 when none), gpu_span_ns."""
    n = len(parent)
    total = np.zeros(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    first = np.full(n, OPEN_END, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    for lo in range(0, len(owner), PROJECT_CHUNK):  # a chunk of kernels at a time: temporaries of a few MB
        part = slice(lo, lo + PROJECT_CHUNK)
        hit = owner[part] >= 0
        own = owner[part][hit]
        np.add.at(total, own, dur[part][hit])
        count += np.bincount(own, minlength=n)
        np.minimum.at(first, own, ks[part][hit])
        np.maximum.at(last, own, ke[part][hit])
    self_ns = total.copy()
    for d in range(int(depth.max()) if n else 0, 0, -1):
        rows = np.flatnonzero(depth == d)
        p = parent[rows]
        np.add.at(total, p, total[rows])
        np.add.at(count, p, count[rows])
        np.minimum.at(first, p, first[rows])
        np.maximum.at(last, p, last[rows])
    has = last >= 0
    return {"gpu_self_ns": self_ns, "gpu_total_ns": total, "kernels": count, "gpu_start_ns": np.where(has, first, -1),
            "gpu_end_ns": last, "gpu_span_ns": np.where(has, last - first, 0)}


# --- summaries, over plain arrays -----------------------------------------------------------------------------

@dataclass(slots=True)
class Projected:
    """Ranges with their projected GPU time, by range_id (a Tree plus project_arrays())."""

    start_ns: np.ndarray
    end_ns: np.ndarray
    """OPEN_END while open."""
    name: np.ndarray
    names: list[str]
    path: np.ndarray
    paths: list[str]
    gpu_total_ns: np.ndarray
    gpu_span_ns: np.ndarray
    kernels: np.ndarray


@dataclass(slots=True)
class Owned:
    """Kernels with their owner range (-1: none) and their demangled names."""

    dur_ns: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray
    owner: np.ndarray
    name: np.ndarray
    names: list[str]


SUMMARY_COLUMNS = ["instances", "cpu_total_ns", "gpu_total_ns", "gpu_span_ns", "kernels"]


def summarize(r: Projected, k: Owned, *, by: str = "path") -> Table:
    """One row per range path (or per range name, all its paths added): nvtx_summary()'s rows."""
    key, labels = (r.path, r.paths) if by == "path" else (r.name, r.names)
    m = len(labels)
    cpu = np.where(r.end_ns < OPEN_END, r.end_ns - r.start_ns, 0)
    sums = {c: np.zeros(m, dtype=np.int64) for c in SUMMARY_COLUMNS}
    sums["instances"] = np.bincount(key, minlength=m).astype(np.int64)
    for c, v in (("cpu_total_ns", cpu), ("gpu_total_ns", r.gpu_total_ns), ("gpu_span_ns", r.gpu_span_ns),
                 ("kernels", r.kernels)):
        np.add.at(sums[c], key, v)
    first = np.full(m, OPEN_END, dtype=np.int64)
    np.minimum.at(first, key, r.start_ns)
    present, at = np.unique(key, return_index=True)
    groups = present[np.argsort(at, kind="stable")]  # first appearance, as groupby(sort=False)
    rows = {c: sums[c][groups].tolist() for c in SUMMARY_COLUMNS}
    keys = [labels[g] for g in groups.tolist()]
    firsts = first[groups].tolist()
    if by == "path":
        for prefix, values in _prefix_rows(r, k).items():
            keys.append(prefix)
            firsts.append(values.pop())
            for column, value in zip(SUMMARY_COLUMNS, values, strict=True):
                rows[column].append(value)
    top = _top_kernel(r, k, by)
    order = sorted(range(len(keys)), key=firsts.__getitem__)  # stable: ties keep their order
    return Table({by: [keys[i] for i in order], **{c: np.array([rows[c][i] for i in order], dtype=np.int64)
                                                   for c in SUMMARY_COLUMNS},
                  "top_kernel": [top.get(keys[i]) for i in order]})


def _kernels_per_path(r: Projected, k: Owned) -> tuple[np.ndarray, ...]:
    """Per path: kernel time, count, first start and last end of the kernels its ranges own."""
    m = len(r.paths)
    dur = np.zeros(m, dtype=np.int64)
    count = np.zeros(m, dtype=np.int64)
    first = np.full(m, OPEN_END, dtype=np.int64)
    last = np.full(m, -1, dtype=np.int64)
    for rows in _kernel_chunks(k):  # sums, minima and maxima: a chunk of kernels at a time
        hit = k.owner[rows] >= 0
        path = r.path[k.owner[rows][hit]]
        np.add.at(dur, path, k.dur_ns[rows][hit])
        count += np.bincount(path, minlength=m)
        np.minimum.at(first, path, k.start_ns[rows][hit])
        np.maximum.at(last, path, k.end_ns[rows][hit])
    return dur, count, first, last


KERNEL_CHUNK = 1 << 20
"""Kernels the per-path sums take at a time (their temporaries: a few arrays this long)."""


def _kernel_chunks(k: Owned) -> list[slice]:
    return [slice(lo, lo + KERNEL_CHUNK) for lo in range(0, len(k.owner), KERNEL_CHUNK)]


def _prefix_rows(r: Projected, k: Owned) -> dict[str, list[int]]:
    """Rows for path prefixes that no range has but kernels sit under (re-homed backward ops:
    step_0/backward/layer_3 when only step_0/backward/layer_3/mlp/MmBackward0 exists): instances
    0, cpu 0, the GPU figures of the kernels below, and the first start of a range below (last),
    in prefix order."""
    known = set(r.paths)
    under: dict[str, list[int]] = {}
    for code, p in enumerate(r.paths):
        parts = p.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix not in known:
                under.setdefault(prefix, []).append(code)
    if not under:
        return {}
    dur, count, k_first, k_last = _kernels_per_path(r, k)
    r_first = np.full(len(r.paths), OPEN_END, dtype=np.int64)
    np.minimum.at(r_first, r.path, r.start_ns)
    out = {}
    for prefix in sorted(under):
        codes = np.array(under[prefix], dtype=np.int64)
        n = int(count[codes].sum())
        span = int(k_last[codes].max() - k_first[codes].min()) if n else 0
        out[prefix] = [0, 0, int(dur[codes].sum()), span, n, int(r_first[codes].min())]
    return out


def _top_kernel(r: Projected, k: Owned, by: str) -> dict[str, str]:
    """Per group key, the kernel name with the most time launched inside that group's ranges
    (ties: the name first in order)."""
    hits = int(np.count_nonzero(k.owner >= 0))
    if not hits:
        return {}
    width = max(len(k.names), 1)
    if len(r.paths) * width <= 4 * hits + (1 << 20):  # (path, name) pairs few: a table, no sort
        table = np.zeros(len(r.paths) * width, dtype=np.int64)
        seen = np.zeros(len(table), dtype=bool)
        for rows in _kernel_chunks(k):  # a chunk of kernels at a time: sums are additive
            hit = k.owner[rows] >= 0
            pair = r.path[k.owner[rows][hit]] * width + k.name[rows][hit]
            np.add.at(table, pair, k.dur_ns[rows][hit])
            seen[pair] = True
        uniq = np.flatnonzero(seen)
        dur = table[uniq]
    else:  # each chunk's pairs and sums, then the pairs of all chunks summed
        found, sums = [], []
        for rows in _kernel_chunks(k):
            hit = k.owner[rows] >= 0
            u, inv = np.unique(r.path[k.owner[rows][hit]] * width + k.name[rows][hit], return_inverse=True)
            part = np.zeros(len(u), dtype=np.int64)
            np.add.at(part, inv.reshape(-1), k.dur_ns[rows][hit])
            found.append(u)
            sums.append(part)
        uniq, inv = np.unique(np.concatenate(found), return_inverse=True)
        dur = np.zeros(len(uniq), dtype=np.int64)
        np.add.at(dur, inv.reshape(-1), np.concatenate(sums))
    per: dict[tuple[str, int], int] = {}
    for p, d in zip(uniq.tolist(), dur.tolist(), strict=True):
        path, name = divmod(p, width)
        parts = r.paths[path].split("/")
        # Every enclosing group gets this time once (a name repeated in a path counts once).
        keys = {"/".join(parts[: i + 1]) for i in range(len(parts))} if by == "path" else set(parts)
        for key in keys:
            per[(key, name)] = per.get((key, name), 0) + d
    best: dict[str, tuple[int, str]] = {}
    for (key, name), d in per.items():
        cand = (-d, k.names[name])
        if key not in best or cand < best[key]:
            best[key] = cand
    return {key: name for key, (_, name) in best.items()}


STEP = r"^step_(\d+)(?:/|$)"
_STEP = re.compile(STEP)
FOLD_COLUMNS = ["path", "steps", "instances_per_step", "cpu_ns_per_step", "gpu_ns_per_step", "kernels_per_step",
                "top_kernel"]


def step_number(path: str) -> int:
    """The measured step a range path lies in (`step_3/forward/...` -> 3), -1 outside the steps.

    >>> [step_number(p) for p in ["step_3/forward", "warmup/forward", "step_12"]]
    [3, -1, 12]
    """
    m = _STEP.search(path)
    return int(m.group(1)) if m else -1


def fold(r: Projected, k: Owned, *, depth: int | None = None) -> Table:
    """fold_steps()'s rows: the measured steps merged, every figure per measured step."""
    steps = np.array([step_number(p) for p in r.paths], dtype=np.int64)
    # Every per-range figure below is a function of the range's path code, so it is worked out once
    # per distinct code present (no sort of the ranges: the cost stays linear in them).
    present = np.zeros(len(r.paths), dtype=bool)
    if len(r.path):
        present[r.path] = True
    n_steps = len({s for s in steps[present].tolist() if s >= 0})
    outside = "\x01outside/"  # a prefix no range name has: what lies outside the steps goes there, then out
    inside_path = [s >= 0 and "/" in p for s, p in zip(steps.tolist(), r.paths, strict=True)]
    index: dict[str, int] = {}
    remap = np.array([index.setdefault(_STEP.sub("", p) if inside else outside + p, len(index))
                      for p, inside in zip(r.paths, inside_path, strict=True)], dtype=np.int64)
    folded = Projected(r.start_ns, r.end_ns, r.name, r.names, remap[r.path] if len(r.path) else r.path, list(index),
                       r.gpu_total_ns, r.gpu_span_ns, r.kernels)
    summary = summarize(folded, k, by="path")
    keep = [i for i, p in enumerate(summary["path"]) if not p.startswith(outside[0])
            and (depth is None or p.count("/") < depth)]
    if not keep or not n_steps:
        return Table({c: [] for c in FOLD_COLUMNS})
    summary = summary.take(keep)
    pairs = {(int(remap[c]), int(steps[c])) for c in np.flatnonzero(present & np.array(inside_path, dtype=bool))}
    steps_with = Counter(folded_path for folded_path, _ in pairs)  # in how many measured steps its ranges lie
    codes = [index.get(p, -1) for p in summary["path"]]  # a prefix row (no range has its path): in no step
    out = Table({
        "path": list(summary["path"]), "steps": np.array([int(steps_with.get(c, 0)) for c in codes], dtype=np.int64),
        "instances_per_step": np.asarray(summary["instances"]) / n_steps,
        "cpu_ns_per_step": np.asarray(summary["cpu_total_ns"]) / n_steps,
        "gpu_ns_per_step": np.asarray(summary["gpu_total_ns"]) / n_steps,
        "kernels_per_step": np.asarray(summary["kernels"]) / n_steps, "top_kernel": list(summary["top_kernel"])})
    gpu, cpu, paths = out["gpu_ns_per_step"].tolist(), out["cpu_ns_per_step"].tolist(), out["path"]  # type: ignore[union-attr]
    return out.take(sorted(range(len(out)), key=lambda i: (-gpu[i], -cpu[i], paths[i])))


# --- the same over DataFrames (the analysis profkit.pipeline hands the reports) --------------------------------

def nvtx_tree(nvtx: pd.DataFrame) -> pd.DataFrame:
    """Give each NVTX range its parent, depth and path, across threads (tree_and_timelines()'s
    tree)."""
    return tree_and_timelines(nvtx)[0]


def tree_and_timelines(nvtx: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, dict[int, Timeline]]]:
    """Give each NVTX range its parent, depth and path, across threads (range_tree()); with the
    tree's thread timelines, which attribute() takes instead of building them again.

    Args:
        nvtx: ranges with start_ns, end_ns (NaN/NA when still open), global_tid, global_pid, name.

    Returns:
        A copy, sorted by (global_tid, start_ns), with range_id (0..n-1), end_ns filled
        (open ranges end at OPEN_END), parent (range_id or -1), grafted (parent is on another
        thread), depth (0 for roots) and path.

    Raises:
        TypeError: a required column is missing.

    | name     | tid | start | end | -> | parent   | path              |
    | step_0   | 1   | 0     | 100 |    | -1       | step_0            |
    | backward | 1   | 40    | 90  |    | step_0   | step_0/backward   |
    | layer_1  | 2   | 45    | 60  |    | backward | step_0/backward/layer_1 (grafted) |
    """
    import pandas as pd

    from profkit.frames import require

    require(nvtx, ["start_ns", "end_ns", "global_tid", "global_pid", "name"], "nvtx")
    end = nvtx["end_ns"].fillna(OPEN_END).astype("int64").to_numpy()
    codes, uniq = pd.factorize(nvtx["name"])
    seq = None
    if "seq" in nvtx.columns:
        seq = np.asarray(pd.array(nvtx["seq"], dtype="Int64").fillna(-1), dtype=np.int64)
    t = range_tree(nvtx["start_ns"].to_numpy(np.int64), end, nvtx["global_tid"].to_numpy(np.int64),
                   nvtx["global_pid"].to_numpy(np.int64), codes.astype(np.int64), [str(u) for u in uniq], seq)
    r = nvtx.iloc[t.order].reset_index(drop=True)
    return r.assign(end_ns=t.end_ns, range_id=np.arange(len(r)), parent=t.parent, grafted=t.grafted, depth=t.depth,
                    path=np.array(t.paths, dtype=object)[t.path] if len(r) else np.array([], dtype=object)), \
        t.timelines


def thread_timelines(ranges: pd.DataFrame) -> dict[int, dict[int, Timeline]]:
    """Per process, per thread: the innermost open range as a step function of time.

    Innermost = the open range that started last, which for nested ranges is the deepest and
    for partly overlapping ones (two NVTX domains on one thread) the most recent. Ranges are
    half-open, [start, end); rows are range ids. A thread whose ranges nest takes a stack walk;
    one whose ranges overlap without nesting, a heap.
    """
    s, e = ranges["start_ns"].to_numpy(np.int64), ranges["end_ns"].to_numpy(np.int64)
    t, p = ranges["global_tid"].to_numpy(np.int64), ranges["global_pid"].to_numpy(np.int64)
    order = np.lexsort((-e, s, t))
    _, timelines = _nest(s[order], e[order], t[order], p[order])
    return {pid: {tid: (times, np.where(owner >= 0, order[np.maximum(owner, 0)], -1)) for tid, (times, owner)
                  in threads.items()} for pid, threads in timelines.items()}


def attribute(kernels: pd.DataFrame, tree: pd.DataFrame,
              timelines: dict[int, dict[int, Timeline]] | None = None) -> np.ndarray:
    """The owner range_id of each kernel (-1: launched outside every range, or launch unknown):
    owners() over a tree frame. `timelines`: thread_timelines(tree), when the caller has them
    (tree_and_timelines())."""
    from profkit.frames import require

    require(kernels, ["launch_ns", "launch_tid"], "kernels")
    if tree.empty or kernels.empty:
        return np.full(len(kernels), -1, dtype=owner_dtype(len(tree)))
    if timelines is None:
        timelines = thread_timelines(tree)
    return owners(kernels["launch_ns"].to_numpy(np.int64), kernels["launch_tid"].to_numpy(np.int64), timelines,
                  tree["start_ns"].to_numpy(np.int64))


def project(kernels: pd.DataFrame, tree: pd.DataFrame, owner: np.ndarray) -> pd.DataFrame:
    """Per range: its own and its subtree's kernel time, kernel count and GPU span.

    Returns tree with gpu_self_ns, gpu_total_ns (the range and everything nested in it, across
    threads), kernels (count, same scope), gpu_start_ns / gpu_end_ns (first kernel start, last
    kernel end; -1 when none) and gpu_span_ns (end - start, 0 when none).
    """
    return tree.assign(**project_arrays(owner, kernels["dur_ns"].to_numpy(), kernels["start_ns"].to_numpy(),
                                        kernels["end_ns"].to_numpy(), tree["parent"].to_numpy(),
                                        tree["depth"].to_numpy()))


def projected(ranges: pd.DataFrame) -> Projected:
    """project()'s frame as the arrays summarize() and fold() take."""
    import pandas as pd

    path_codes, paths = pd.factorize(ranges["path"])
    name_codes, names = pd.factorize(ranges["name"])
    end = ranges["end_ns"]
    return Projected(ranges["start_ns"].to_numpy(np.int64), end.fillna(OPEN_END).astype("int64").to_numpy()
                     if end.hasnans else end.to_numpy(np.int64), name_codes.astype(np.int64),
                     [str(x) for x in names], path_codes.astype(np.int64), [str(x) for x in paths],
                     ranges["gpu_total_ns"].to_numpy(np.int64), ranges["gpu_span_ns"].to_numpy(np.int64),
                     ranges["kernels"].to_numpy(np.int64))


def owned(kernels: pd.DataFrame) -> Owned:
    """kernel_frame() rows with `owner` as the arrays summarize() and fold() take."""
    name = kernels["name"].astype("category")  # kernel_frame's already is: no copy
    codes, cats = np.asarray(name.cat.codes, dtype=np.int32), [str(c) for c in name.cat.categories]  # as read: int32
    if len(set(cats)) < len(cats):  # two categories of one text: one name
        index: dict[str, int] = {}
        remap = np.array([index.setdefault(c, len(index)) for c in cats], dtype=np.int32)
        codes, cats = remap[codes], list(index)
    return Owned(kernels["dur_ns"].to_numpy(np.int64), kernels["start_ns"].to_numpy(np.int64),
                 kernels["end_ns"].to_numpy(np.int64), np.asarray(kernels["owner"].to_numpy()), codes, cats)


def nvtx_summary(projected_ranges: pd.DataFrame, kernels: pd.DataFrame, *, by: str = "path") -> pd.DataFrame:
    """One row per range path (or per range name, all its paths added).

    Args:
        projected_ranges: project() output.
        kernels: kernel_frame() rows with their `owner` (attribute()'s range id) as a column.
        by: `path` or `name`.

    Returns:
        path|name, instances, cpu_total_ns (range durations added; ranges left open excluded),
        gpu_total_ns (kernels launched inside, nested ranges and other threads included),
        gpu_span_ns (first kernel start to last kernel end, per instance, added), kernels,
        top_kernel (the kernel name with most time inside), in range start order; with `path`,
        also the path prefixes no range has but kernels sit under (re-homed backward ops).
    """
    from profkit.frames import require

    require(projected_ranges, ["path", "name", "gpu_total_ns", "gpu_span_ns", "kernels", "start_ns", "end_ns"],
            "ranges")
    require(kernels, ["owner", "name", "dur_ns", "start_ns", "end_ns"], "kernels")
    return summarize(projected(projected_ranges), owned(kernels), by=by).to_frame()


def step_of(paths: pd.Series) -> pd.Series:
    """The measured step a range path lies in (`step_3/forward/...` -> 3), NA outside the steps.

    >>> import pandas as pd
    >>> step_of(pd.Series(["step_3/forward", "warmup/forward", "step_12"])).tolist()
    [3, <NA>, 12]
    """
    import pandas as pd

    codes, uniq = pd.factorize(paths.astype(str))
    steps = pd.array([step_number(p) for p in uniq], dtype="Int64")
    steps[steps < 0] = pd.NA
    return pd.Series(steps[codes] if len(codes) else pd.array([], dtype="Int64"), index=paths.index)


def fold_steps(projected_ranges: pd.DataFrame, kernels: pd.DataFrame, *, depth: int | None = None) -> pd.DataFrame:
    """nvtx_summary by path for the measured steps, steps merged: `step_3/forward/layer_2` and
    `step_4/forward/layer_2` make one row `forward/layer_2`, every figure per measured step.
    Warm-up, compile and whatever else lies outside the step_i ranges is left out, and so are
    the step_i rows themselves (the step-time line has them).

    Args:
        projected_ranges: project() output.
        kernels: kernel_frame() rows with `owner`.
        depth: keep paths of at most this many parts below the step (None: all).

    Returns:
        path, steps (in how many steps it occurs), instances_per_step, cpu_ns_per_step,
        gpu_ns_per_step, kernels_per_step, top_kernel; largest GPU time first.

    | path                  | gpu_total_ns |  ->  | path           | gpu_ns_per_step |
    | step_0/forward        | 10           |      | forward        | 11              |
    | step_1/forward        | 12           |      |                |                 |
    | warmup/forward        | 99           |      |                |                 |
    """
    from profkit.frames import require

    require(projected_ranges, ["path"], "ranges")
    return fold(projected(projected_ranges), owned(kernels), depth=depth).to_frame()
