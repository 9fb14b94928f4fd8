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

import numpy as np
import pandas as pd

from profkit.frames import require
from profkit.parse import pid_of

OPEN_END = np.iinfo(np.int64).max  # a range still open when the capture stopped


def nvtx_tree(nvtx: pd.DataFrame) -> pd.DataFrame:
    """Give each NVTX range its parent, depth and path, across threads (tree_and_timelines()'s
    tree)."""
    return tree_and_timelines(nvtx)[0]


def tree_and_timelines(nvtx: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, dict[int, Timeline]]]:
    """Give each NVTX range its parent, depth and path, across threads; with the tree's
    thread_timelines(), which attribute() takes instead of building them again.

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
    require(nvtx, ["start_ns", "end_ns", "global_tid", "global_pid", "name"], "nvtx")
    r = nvtx.assign(end_ns=nvtx["end_ns"].fillna(OPEN_END).astype("int64"))
    r = r.sort_values(["global_tid", "start_ns", "end_ns"], ascending=[True, True, False], kind="stable")
    r = r.reset_index(drop=True)
    n = len(r)
    starts, ends = r["start_ns"].to_numpy(), r["end_ns"].to_numpy()
    tids, pids = r["global_tid"].to_numpy(), r["global_pid"].to_numpy()
    # The loops below run over plain lists: indexing a numpy array from Python costs several
    # times a list's (115 k ranges: reports/bench.md).
    s_list, e_list, t_list = starts.tolist(), ends.tolist(), tids.tolist()
    parent_list = [-1] * n
    # Same-thread nesting: the parent is the innermost open range that contains the range.
    # Ranges of different NVTX domains (profkit's, PyTorch's per-op ones) need not nest: one
    # that outlives the range open when it started is placed under an outer one that holds it.
    stack: list[int] = []
    for i in range(n):
        if i and t_list[i] != t_list[i - 1]:
            stack = []
        s_i, e_i = s_list[i], e_list[i]
        while stack and e_list[stack[-1]] <= s_i:
            stack.pop()
        for j in reversed(stack):
            if e_list[j] >= e_i:
                parent_list[i] = j
                break
        stack.append(i)
    parent = np.array(parent_list, dtype=np.int64)
    grafted = np.zeros(n, dtype=bool)
    timelines = thread_timelines(r)
    same_thread_parent = parent.copy()
    for root in np.flatnonzero(parent < 0):
        host = _innermost_elsewhere(timelines, same_thread_parent, starts, ends, int(pids[root]), int(tids[root]),
                                    int(starts[root]), int(ends[root]))
        if host >= 0:
            parent[root], grafted[root] = host, True
    names = r["name"].tolist()
    depth = _depths(parent)
    rehome = _backward_op_homes(r, parent, names) if "seq" in r.columns else {}
    paths: list[str | None] = [None] * n
    up = parent.tolist()

    def path_of(i: int) -> str:
        chain = []
        j = i
        while j >= 0 and paths[j] is None and j not in rehome:
            chain.append(j)
            j = up[j]
        if j >= 0 and paths[j] is None:  # a backward op re-homed under its forward op's module
            paths[j] = f"{_as_backward(path_of(rehome[j]))}/{names[j]}"
        prefix = paths[j] if j >= 0 else ""
        for k in reversed(chain):
            prefix = f"{prefix}/{names[k]}" if prefix else names[k]
            paths[k] = prefix
        return paths[i]  # type: ignore[return-value]

    for i in range(n):
        if paths[i] is None:
            path_of(i)
    return r.assign(range_id=np.arange(n), parent=parent, grafted=grafted, depth=depth, path=paths), timelines


def _as_backward(path: str) -> str:
    """step_0/forward/layer_3/mlp -> step_0/backward/layer_3/mlp (or .../backward appended)."""
    parts = path.split("/")
    if "forward" in parts:
        parts[parts.index("forward")] = "backward"
    else:
        parts.append("backward")
    return "/".join(parts)


def _depths(parent: np.ndarray) -> np.ndarray:
    up = parent.tolist()
    depth = [-1] * len(up)
    for i in range(len(up)):
        chain = []
        j = i
        while j >= 0 and depth[j] < 0:
            chain.append(j)
            j = up[j]
        d = depth[j] + 1 if j >= 0 else 0
        for k in reversed(chain):
            depth[k] = d
            d += 1
    return np.array(depth, dtype=np.int64)


WRAPPER = "autograd::engine::evaluate_function: "


def _is_op(name: str, seq: object) -> bool:
    """A range of PyTorch's per-op annotation (emit_nvtx / nsys --pytorch=autograd-nvtx)."""
    return seq is not pd.NA or name.startswith(("aten::", "autograd::"))


def _backward_op_homes(r: pd.DataFrame, parent: np.ndarray, names: list[str]) -> dict[int, int]:
    """Backward op ranges to re-home: range -> the range that holds its forward op.

    With `--pytorch=autograd-nvtx`, each autograd node's range (`MmBackward0, seq = 4211`) shares
    its sequence number with the forward op that created it (`aten::mm, seq = 4211`). When no
    range of the autograd thread places a backward op (no profkit backward ranges: a user's
    model), it goes under the module range that held the forward op, with `forward` read as
    `backward`: step_0/forward/layer_3/mlp/aten::mm -> step_0/backward/layer_3/mlp/MmBackward0.
    """
    seq = r["seq"].tolist()
    if all(sq is pd.NA for sq in seq):
        return {}  # no per-op ranges with sequence numbers: nothing to re-home
    tids, pids, starts = r["global_tid"].tolist(), r["global_pid"].tolist(), r["start_ns"].tolist()
    up = parent.tolist()
    is_op = [_is_op(nm, sq) for nm, sq in zip(names, seq, strict=True)]
    creators: dict[tuple[int, int], int] = {}
    for i, (nm, sq) in enumerate(zip(names, seq, strict=True)):
        if sq is pd.NA or "Backward" in nm:
            continue
        key = (int(pids[i]), int(sq))
        if key not in creators or starts[i] < starts[creators[key]]:
            creators[key] = i  # the outermost op of that sequence number
    # evaluate_function wrappers carry no sequence number: take their node's (the child op range).
    for i in range(len(names)):
        p = int(up[i])
        if seq[i] is not pd.NA and p >= 0 and names[p].startswith(WRAPPER) and seq[p] is pd.NA:
            seq[p] = seq[i]
    homes: dict[int, int] = {}
    for i, (nm, sq) in enumerate(zip(names, seq, strict=True)):
        if sq is pd.NA or "Backward" not in nm:
            continue
        j = int(up[i])
        while j >= 0 and tids[j] == tids[i] and is_op[j]:
            j = int(up[j])
        if j >= 0 and tids[j] == tids[i]:
            continue  # a range of its own thread (profkit's per-layer backward) places it already
        creator = creators.get((int(pids[i]), int(sq)))
        if creator is None:
            continue
        home = int(up[creator])
        while home >= 0 and is_op[home]:
            home = int(up[home])
        if home >= 0:
            homes[i] = home
    return homes


Timeline = tuple[np.ndarray, np.ndarray]  # (boundary times, innermost range_id from that time on, -1 none)


def thread_timelines(ranges: pd.DataFrame) -> dict[int, dict[int, Timeline]]:
    """Per process, per thread: the innermost open range as a step function of time.

    Innermost = the open range that started last, which for nested ranges is the deepest and
    for partly overlapping ones (two NVTX domains on one thread) the most recent. Ranges are
    half-open, [start, end); rows are range ids. A thread whose ranges nest takes a stack walk;
    one whose ranges overlap without nesting, a heap.
    """
    out: dict[int, dict[int, Timeline]] = {}
    starts, ends = ranges["start_ns"].to_numpy(), ranges["end_ns"].to_numpy()
    for (pid, tid), idx in ranges.groupby(["global_pid", "global_tid"], sort=False).indices.items():
        timeline = _nested_timeline(idx, starts, ends)
        out.setdefault(int(pid), {})[int(tid)] = timeline or _overlapping_timeline(idx, starts, ends)
    return out


def _step(times: list[int], owner: list[int]) -> Timeline:
    t = np.asarray(times, dtype=np.int64)
    o = np.asarray(owner, dtype=np.int64)
    keep = np.append(t[1:] != t[:-1], True)  # at one instant, the state after all its events
    return t[keep], o[keep]


def _nested_timeline(idx: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Timeline | None:
    """The step function by a stack walk; None as soon as two ranges overlap without nesting."""
    order = idx[np.lexsort((-ends[idx], starts[idx]))]
    s_of, e_of = starts[order].tolist(), ends[order].tolist()  # lists: see nvtx_tree
    times: list[int] = []
    owner: list[int] = []
    stack: list[int] = []  # positions in `order`
    ids = order.tolist()
    for k, i in enumerate(ids):
        s = s_of[k]
        while stack and e_of[stack[-1]] <= s:
            closed = stack.pop()
            times.append(e_of[closed])
            owner.append(ids[stack[-1]] if stack else -1)
        if stack and e_of[k] > e_of[stack[-1]]:
            return None
        stack.append(k)
        times.append(s)
        owner.append(i)
    while stack:
        closed = stack.pop()
        times.append(e_of[closed])
        owner.append(ids[stack[-1]] if stack else -1)
    return _step(times, owner)


def _overlapping_timeline(idx: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Timeline:
    """The step function by a sweep with a heap of open ranges, latest start on top."""
    times = np.concatenate([ends[idx], starts[idx]])
    kinds = np.concatenate([np.zeros(len(idx), np.int8), np.ones(len(idx), np.int8)])  # ends first
    ids = np.concatenate([idx, idx])
    heap: list[tuple[int, int]] = []
    closed: set[int] = set()
    t_out: list[int] = []
    o_out: list[int] = []
    for e in np.lexsort((kinds, times)):
        i = int(ids[e])
        if kinds[e]:
            heapq.heappush(heap, (-int(starts[i]), -i))
        else:
            closed.add(i)
        while heap and -heap[0][1] in closed:
            heapq.heappop(heap)
        t_out.append(int(times[e]))
        o_out.append(-heap[0][1] if heap else -1)
    return _step(t_out, o_out)


def innermost_at(timeline: Timeline, t: np.ndarray) -> np.ndarray:
    """Range id open innermost at each time in `t` (-1 where none)."""
    times, owner = timeline
    idx = np.searchsorted(times, t, side="right") - 1
    return np.where(idx >= 0, owner[np.clip(idx, 0, None)], -1)


def _innermost_elsewhere(timelines: dict[int, dict[int, Timeline]], parent: np.ndarray, starts: np.ndarray,
                         ends: np.ndarray, pid: int, tid: int, start: int, end: int) -> int:
    """Innermost range on another thread of `pid` that contains [start, end]; -1 if none.

    On each other thread, the range open at `start`, walked out through its same-thread
    `parent`s to the first one still open at `end`; of those, the one opened last.
    """
    best = -1
    for other, timeline in timelines.get(pid, {}).items():
        if other == tid:
            continue
        cand = int(innermost_at(timeline, np.array([start]))[0])
        while cand >= 0 and ends[cand] < end:
            cand = int(parent[cand])
        if cand >= 0 and (best < 0 or starts[cand] > starts[best]):
            best = cand
    return best


def attribute(kernels: pd.DataFrame, tree: pd.DataFrame,
              timelines: dict[int, dict[int, Timeline]] | None = None) -> np.ndarray:
    """The owner range_id of each kernel (-1: launched outside every range, or launch unknown).

    Same thread first; then, for launches no range of their thread covers, the innermost range
    open at that moment on another thread of the same process (latest start wins). `timelines`:
    thread_timelines(tree), when the caller has them (tree_and_timelines()).
    """
    require(kernels, ["launch_ns", "launch_tid"], "kernels")
    owner = np.full(len(kernels), -1, dtype=np.int64)
    if tree.empty or kernels.empty:
        return owner
    if timelines is None:
        timelines = thread_timelines(tree)
    starts = tree["start_ns"].to_numpy()
    launch_ns = kernels["launch_ns"].to_numpy()
    launch_tid = kernels["launch_tid"].to_numpy()
    launch_pid = pid_of(launch_tid)
    for pid, threads in timelines.items():
        in_pid = np.flatnonzero((launch_pid == pid) & (launch_tid >= 0))
        if in_pid.size == 0:
            continue
        for tid, timeline in threads.items():
            mine = in_pid[launch_tid[in_pid] == tid]
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


def project(kernels: pd.DataFrame, tree: pd.DataFrame, owner: np.ndarray) -> pd.DataFrame:
    """Per range: its own and its subtree's kernel time, kernel count and GPU span.

    Returns tree with gpu_self_ns, gpu_total_ns (the range and everything nested in it, across
    threads), kernels (count, same scope), gpu_start_ns / gpu_end_ns (first kernel start, last
    kernel end; -1 when none) and gpu_span_ns (end - start, 0 when none).
    """
    n = len(tree)
    dur = kernels["dur_ns"].to_numpy()
    ks, ke = kernels["start_ns"].to_numpy(), kernels["end_ns"].to_numpy()
    hit = owner >= 0
    total = np.bincount(owner[hit], weights=dur[hit], minlength=n).astype(np.int64)
    self_ns = total.copy()
    count = np.bincount(owner[hit], minlength=n).astype(np.int64)
    first = np.full(n, OPEN_END, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    np.minimum.at(first, owner[hit], ks[hit])
    np.maximum.at(last, owner[hit], ke[hit])
    parent, depth = tree["parent"].to_numpy(), tree["depth"].to_numpy()
    for d in range(int(depth.max()) if n else 0, 0, -1):
        rows = np.flatnonzero(depth == d)
        p = parent[rows]
        np.add.at(total, p, total[rows])
        np.add.at(count, p, count[rows])
        np.minimum.at(first, p, first[rows])
        np.maximum.at(last, p, last[rows])
    has = last >= 0
    return tree.assign(gpu_self_ns=self_ns, gpu_total_ns=total, kernels=count,
                       gpu_start_ns=np.where(has, first, -1), gpu_end_ns=last,
                       gpu_span_ns=np.where(has, last - first, 0))


def nvtx_summary(projected: pd.DataFrame, kernels: pd.DataFrame, *, by: str = "path") -> pd.DataFrame:
    """One row per range path (or per range name, all its paths added).

    Args:
        projected: project() output.
        kernels: kernel_frame() rows with their `owner` (attribute()'s range id) as a column.
        by: `path` or `name`.

    Returns:
        path|name, instances, cpu_total_ns (range durations added; ranges left open excluded),
        gpu_total_ns (kernels launched inside, nested ranges and other threads included),
        gpu_span_ns (first kernel start to last kernel end, per instance, added), kernels,
        top_kernel (the kernel name with most time inside), in range start order.
    """
    require(projected, ["path", "name", "gpu_total_ns", "gpu_span_ns", "kernels", "start_ns", "end_ns"], "ranges")
    require(kernels, ["owner", "name", "dur_ns", "start_ns", "end_ns"], "kernels")
    owner = kernels["owner"].to_numpy()
    key = projected[by]
    closed = projected["end_ns"] < OPEN_END
    cpu = (projected["end_ns"] - projected["start_ns"]).where(closed, 0)
    g = projected.assign(_cpu=cpu, _key=key).groupby("_key", sort=False)
    out = pd.DataFrame({
        "instances": g.size(), "cpu_total_ns": g["_cpu"].sum(), "gpu_total_ns": g["gpu_total_ns"].sum(),
        "gpu_span_ns": g["gpu_span_ns"].sum(), "kernels": g["kernels"].sum(), "first_ns": g["start_ns"].min(),
    })
    if by == "path":
        out = pd.concat([out, _prefix_rows(projected, kernels, owner, set(out.index))])
    out["top_kernel"] = _top_kernel(projected, kernels, owner, by).reindex(out.index)
    out = out.sort_values("first_ns", kind="stable").drop(columns="first_ns")
    out.index.name = by
    return out.reset_index()


def _prefix_rows(projected: pd.DataFrame, kernels: pd.DataFrame, owner: np.ndarray, known: set[str]) -> pd.DataFrame:
    """Rows for path prefixes that no range has but kernels sit under (re-homed backward ops:
    step_0/backward/layer_3 when only step_0/backward/layer_3/mlp/MmBackward0 exists), with
    instances 0 and kernel-derived GPU figures."""
    paths = projected["path"].to_numpy()
    missing = {"/".join(p.split("/")[:i]) for p in set(paths) for i in range(1, p.count("/") + 1)} - known
    cols = ["instances", "cpu_total_ns", "gpu_total_ns", "gpu_span_ns", "kernels", "first_ns"]
    if not missing:
        return pd.DataFrame(columns=cols)
    hit = owner >= 0
    own = pd.Series(paths[owner[hit]])
    dur, ks, ke = (kernels[c].to_numpy()[hit] for c in ("dur_ns", "start_ns", "end_ns"))
    rows = {}
    for prefix in missing:
        under = (own == prefix) | own.str.startswith(prefix + "/")
        m = under.to_numpy()
        first = projected.loc[projected["path"].str.startswith(prefix + "/"), "start_ns"].min()
        rows[prefix] = [0, 0, int(dur[m].sum()), int(ke[m].max() - ks[m].min()) if m.any() else 0, int(m.sum()),
                        first]
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols)


def _top_kernel(projected: pd.DataFrame, kernels: pd.DataFrame, owner: np.ndarray, by: str) -> pd.Series:
    """Per group key, the kernel name with the most time launched inside that group's ranges."""
    hit = owner >= 0
    if not hit.any():
        return pd.Series(dtype="object")
    path_codes, uniq_paths = pd.factorize(projected["path"])
    name = kernels["name"].astype("category")  # kernel_frame's already is: no copy
    name_codes, name_cats = np.asarray(name.cat.codes), name.cat.categories
    per = pd.DataFrame({"path": path_codes[owner[hit]], "name": name_codes[hit],
                        "dur": kernels["dur_ns"].to_numpy()[hit]}).groupby(["path", "name"], sort=False)["dur"].sum()
    per.index = per.index.set_levels([pd.Index(uniq_paths, dtype=object)[per.index.levels[0]],
                                      pd.Index(name_cats, dtype=object)[per.index.levels[1]]])
    rows: list[tuple[str, str, int]] = []
    for (path, name), dur in per.items():
        parts = path.split("/")
        # Every enclosing group gets this time once (a name repeated in a path counts once).
        keys = {"/".join(parts[: i + 1]) for i in range(len(parts))} if by == "path" else set(parts)
        rows.extend((k, name, dur) for k in keys)
    t = pd.DataFrame(rows, columns=["key", "name", "dur"]).groupby(["key", "name"], sort=False)["dur"].sum()
    t = t.reset_index().sort_values(["dur", "name"], ascending=[False, True], kind="stable")
    return t.drop_duplicates("key").set_index("key")["name"]


STEP = r"^step_(\d+)(?:/|$)"


def step_of(paths: pd.Series) -> pd.Series:
    """The measured step a range path lies in (`step_3/forward/...` -> 3), NA outside the steps.

    >>> step_of(pd.Series(["step_3/forward", "warmup/forward", "step_12"])).tolist()
    [3, <NA>, 12]
    """
    return pd.to_numeric(paths.astype(str).str.extract(STEP)[0]).astype("Int64")


def fold_steps(projected: pd.DataFrame, kernels: pd.DataFrame, *, depth: int | None = None) -> pd.DataFrame:
    """nvtx_summary by path for the measured steps, steps merged: `step_3/forward/layer_2` and
    `step_4/forward/layer_2` make one row `forward/layer_2`, every figure per measured step.
    Warm-up, compile and whatever else lies outside the step_i ranges is left out, and so are
    the step_i rows themselves (the step-time line has them).

    Args:
        projected: project() output.
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
    require(projected, ["path"], "ranges")
    paths = projected["path"].astype(str)
    step = step_of(paths)
    n_steps = int(step.nunique()) if step.notna().any() else 0
    inside = (step.notna() & paths.str.contains("/")).to_numpy()
    outside = "\x01outside/"  # a prefix no range name has: what lies outside the steps goes there, then out
    folded = np.where(inside, paths.str.replace(STEP, "", regex=True).to_numpy(object),
                      (outside + paths).to_numpy(object))
    summary = nvtx_summary(projected.assign(path=folded), kernels, by="path")
    summary = summary[~summary["path"].astype(str).str.startswith(outside[0])]  # and its prefix rows
    if depth is not None:
        summary = summary[summary["path"].astype(str).str.count("/") < depth]
    cols = ["path", "steps", "instances_per_step", "cpu_ns_per_step", "gpu_ns_per_step", "kernels_per_step",
            "top_kernel"]
    if summary.empty or not n_steps:
        return pd.DataFrame(columns=cols)
    steps_with = pd.Series(step[inside].to_numpy(), index=folded[inside]).groupby(level=0).nunique()
    out = pd.DataFrame({
        "path": summary["path"], "steps": summary["path"].map(steps_with).fillna(0).astype(int),
        "instances_per_step": summary["instances"] / n_steps, "cpu_ns_per_step": summary["cpu_total_ns"] / n_steps,
        "gpu_ns_per_step": summary["gpu_total_ns"] / n_steps, "kernels_per_step": summary["kernels"] / n_steps,
        "top_kernel": summary["top_kernel"]})
    out = out.sort_values(["gpu_ns_per_step", "cpu_ns_per_step", "path"], ascending=[False, False, True],
                          kind="stable")
    return out[cols].reset_index(drop=True)
