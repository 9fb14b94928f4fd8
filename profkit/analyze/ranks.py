"""Several ranks: communication by collective, hidden against exposed, waits, bus bandwidth, alignment.

Pure functions over small frames. One rank's GPU timeline (its device) splits into compute
kernels and NCCL kernels; per rank, over the measured steps:

    compute   [=====]   [========]        [===]
    comm         [======]     [==]  [====]
    hidden       [==]         [==]                 comm while some compute kernel runs
    exposed         [===]           [====]         comm while no compute kernel runs

    hidden  = |C| + |K| - |C u K|     (|X|: length of the union of X's intervals)
    exposed = |C u K| - |K|  = |C| - hidden

Across ranks, NCCL issues the same collectives in the same order on every rank, so the k-th
kernel of a kind on one rank is the k-th of that kind on every other. A collective's kernel
starts when its rank gets there and ends when the last rank's data is in, so on one clock:

    rank 0   s0 [.........wait.........|==transfer==]  e
    rank 1   s1                        [==transfer==]  e      (rank 1 arrived last)
    wait_r = max_q(s_q) - s_r          transfer = e - max_q(s_q)

Bus bandwidth follows nccl-tests (doc/PERFORMANCE.md): algbw = S / t, busbw = algbw * factor,
factor 2(n-1)/n for all-reduce, (n-1)/n for all-gather, reduce-scatter and all-to-all, 1 for
broadcast, reduce and send/recv; S is the collective's size as nccl-tests counts it: the
buffer for all-reduce and broadcast, n times the per-rank part for all-gather and
reduce-scatter (NCCL's NVTX payload records the per-rank part there), and t the transfer time.
S comes from NCCL's NVTX payload where the export has it; nsys 2025.3.1 exports NCCL 2.28's
ranges with a NULL payload (NVTX_EVENTS.binaryData and jsonText), so S is otherwise derived from
the run record (model_sizes): DDP all-reduces every gradient once per backward (the parameters'
dtype: fp32, autocast leaves them alone); FSDP2 all-gathers each block's parameters in forward and
again in backward, the root's once (fully_shard keeps the root unsharded between forward and
backward), in bf16 under `--dtype bf16` (MixedPrecisionPolicy param_dtype) else fp32, and
reduce-scatters fp32 gradients (reduce_dtype). FSDP2's padding of dim 0 to a multiple of n is
left out (fewer than n rows per parameter).

Clocks: each rank's export counts from its own session start. Ranks are aligned on the end of
the first collective every rank takes part in (it ends together on every rank), else on the
sessions' wall-clock starts; an export holding every rank (one clock) needs neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from profkit import sizes
from profkit.analyze.kernels import graph_replays_of
from profkit.analyze.timeline import per_distinct
from profkit.frames import require

PAYLOAD = "NVTX payload"

COLLECTIVES = ("all-reduce", "reduce-scatter", "all-gather", "broadcast", "reduce", "all-to-all", "send/recv",
               "other")
_KINDS = [("all-reduce", r"all_?reduce"), ("reduce-scatter", r"reduce_?scatter"), ("all-gather", r"all_?gather"),
          ("broadcast", r"broadcast|bcast"), ("all-to-all", r"all_?to_?all"),
          ("send/recv", r"send_?recv|(?<![a-z])send|(?<![a-z])recv|nccl_?send|nccl_?recv"), ("reduce", r"reduce")]
_NCCL = re.compile(r"nccl", re.I)


def collective_kind(names: pd.Series) -> pd.Series:
    """The collective of each NCCL kernel or NCCL range name; None for a name that is not NCCL's.

    >>> collective_kind(pd.Series(["ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
    ...     "ncclKernel_ReduceScatter_RING_LL_Sum_bfloat16", "ncclAllGather", "ncclDevKernel_SendRecv",
    ...     "ncclDevKernel_Broadcast_RING_LL", "ncclGroupEnd", "ampere_sgemm_128x64_tn"])).tolist()
    ['all-reduce', 'reduce-scatter', 'all-gather', 'send/recv', 'broadcast', 'other', None]
    """
    out = np.full(len(names), None, dtype=object)
    uniq, codes = np.unique(names.fillna("").astype(str).to_numpy(), return_inverse=True)
    kinds: list[str | None] = []
    for name in uniq:
        if not _NCCL.search(name):
            kinds.append(None)
            continue
        bare = re.sub(r"^nccl(Dev)?(Kernel)?_?", "", name.split("(")[0])
        bare = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", bare).lower()  # AllReduce -> all_reduce
        kinds.append(next((k for k, p in _KINDS if re.search(p, bare)), "other"))
    if len(uniq):
        out[:] = np.array(kinds, dtype=object)[codes]
    return pd.Series(out, index=names.index, dtype=object)


def bus_factor(kind: str, n: int) -> float:
    """nccl-tests' busbw / algbw for `kind` on `n` ranks.

    >>> bus_factor("all-reduce", 2), bus_factor("all-gather", 4), bus_factor("broadcast", 8)
    (1.0, 0.75, 1.0)
    """
    if kind == "all-reduce":
        return 2 * (n - 1) / n
    if kind in ("all-gather", "reduce-scatter", "all-to-all"):
        return (n - 1) / n
    return 1.0


def size_factor(kind: str, n: int) -> int:
    """nccl-tests' size S over NCCL's payload message size (the per-rank part for all-gather and
    reduce-scatter, the buffer otherwise)."""
    return n if kind in ("all-gather", "reduce-scatter") else 1


def model_sizes(strategy: str | None, dtype: str, params: int, *, model: str = "",
                grad_accum: int = 1) -> dict[str, tuple[int, str]]:
    """nccl-tests' S per step of each collective a strategy issues, derived from the run record,
    with the label the report prints (module docstring: what each strategy moves).

    Args:
        model: the run's --model; a built-in size gives FSDP2's split into blocks and root, a user's
            model does not (its all-gather stays unknown).
        grad_accum: micro-batches per step (each runs its own forward and backward).

    >>> model_sizes("ddp", "bf16", 1000)
    {'all-reduce': (4000, 'model: 1,000 params x 4 bytes')}
    >>> model_sizes("fsdp2", "bf16", 128_625_408, model="small")["all-gather"][0]
    483780096
    """
    if not params or strategy not in ("ddp", "fsdp2"):
        return {}
    times = f" x {grad_accum} micro-batches" if grad_accum > 1 else ""
    grads = (params * 4 * grad_accum, f"model: {params:,} params x 4 bytes{times}")
    if strategy == "ddp":
        return {"all-reduce": grads}
    out = {"reduce-scatter": grads}
    size = sizes.SIZES.get(model)
    if size is not None:
        blocks = size.n_layers * sizes.block_params(size)
        gathered = 2 * blocks + (params - blocks)
        width = 2 if dtype == "bf16" else 4
        out["all-gather"] = (gathered * width * grad_accum,
                             f"model: {gathered:,} params x {width} bytes{times} (the blocks' {blocks:,} in forward "
                             f"and backward, the root's {params - blocks:,} once)")
    return out


def kernel_kinds(names: pd.Series) -> np.ndarray:
    """Each kernel's collective as an int8 index into COLLECTIVES, -1 for a compute kernel:
    collective_kind() once per distinct name (10 M kernels carry a few hundred; a string per row
    would cost gigabytes, np.unique over them minutes)."""
    if isinstance(names.dtype, pd.CategoricalDtype):
        codes, uniq = names.cat.codes.to_numpy(), pd.Series(names.cat.categories, dtype=object)
    else:
        codes, index = pd.factorize(names, use_na_sentinel=True)
        uniq = pd.Series(index, dtype=object)
    table = np.array([-1 if k is None else COLLECTIVES.index(k) for k in collective_kind(uniq)] + [-1], dtype=np.int8)
    return table[codes]  # code -1 (NaN): the last entry, compute


UNION_CHUNK = 1 << 20
"""Rows union_lengths() takes at a time: its temporaries stay a few MB however many kernels there are."""


def union_lengths(start: np.ndarray, end: np.ndarray, label: np.ndarray, groups: list[list[int]]) -> list[int]:
    """|X| of each group: the length of the union of the intervals whose label is in the group.

    One pass over the rows in start order, a chunk at a time; each group carries its open
    segment (start, reach) from one chunk to the next, so the result equals union_ns() of the
    group's rows whatever the chunking.

    >>> union_lengths(np.array([20, 0, 5]), np.array([30, 10, 12]), np.array([1, 0, 1]), [[0], [1], [0, 1]])
    [10, 17, 22]
    """
    order = None if is_sorted(start) else np.argsort(start, kind="stable")
    totals = [0] * len(groups)
    carry: list[tuple[int, int] | None] = [None] * len(groups)
    for lo in range(0, len(start), UNION_CHUNK):
        rows = slice(lo, lo + UNION_CHUNK) if order is None else order[lo:lo + UNION_CHUNK]
        s_all, e_all, lab = start[rows], end[rows], label[rows]
        for g, group in enumerate(groups):
            pick = np.isin(lab, group)
            s, e = s_all[pick], e_all[pick]
            if not len(s):
                continue
            if (open_ := carry[g]) is not None:
                s, e = np.r_[open_[0], s], np.r_[open_[1], e]
            reach = np.maximum.accumulate(e)
            first = np.flatnonzero(np.r_[True, s[1:] > reach[:-1]])  # a segment starts where nothing before runs
            seg_end = np.maximum.reduceat(e, first)
            totals[g] += int((seg_end[:-1] - s[first[:-1]]).sum())  # the last may go on in the next chunk
            carry[g] = (int(s[first[-1]]), int(seg_end[-1]))
    return [t + (c[1] - c[0] if c is not None else 0) for t, c in zip(totals, carry, strict=True)]


def is_sorted(values: np.ndarray) -> bool:
    """Whether values never decrease (a chunk at a time: no temporary the array's length)."""
    for lo in range(0, max(len(values) - 1, 0), UNION_CHUNK):
        part = values[lo:lo + UNION_CHUNK + 1]
        if bool((part[1:] < part[:-1]).any()):
            return False
    return True


@dataclass(slots=True)
class RankComm:
    """One rank's GPU time over its measured steps, totals (not per step)."""

    compute_ns: int
    comm_ns: int
    comm_hidden_ns: int
    comm_exposed_ns: int
    by_collective: pd.DataFrame
    """collective, count, gpu_ns (kernel time added), busy_ns (their union), hidden_ns, exposed_ns."""


def rank_comm(kernels: pd.DataFrame, rows: np.ndarray | None = None) -> RankComm:
    """Compute against communication on one rank's device (the module docstring's sketch).

    Args:
        kernels: start_ns, end_ns, name of the kernels of one device (one rank).
        rows: which of them count (a boolean per kernel; None: all), so that no subset is copied.
    """
    require(kernels, ["start_ns", "end_ns", "name"], "rank_comm")
    kind = kernel_kinds(kernels["name"])
    return _comm(kernels["start_ns"].to_numpy(np.int64), kernels["end_ns"].to_numpy(np.int64),
                 kind if rows is None else np.where(rows, kind, np.int8(-2)))


def _comm(start: np.ndarray, end: np.ndarray, kind: np.ndarray) -> RankComm:
    """rank_comm() of kernels by their kernel_kinds() codes (-2: a kernel that does not count)."""
    counts = np.bincount(kind.astype(np.intp) + 2, minlength=len(COLLECTIVES) + 2)[2:]
    present = [i for i in range(len(COLLECTIVES)) if counts[i]]
    groups = [[-1], present, [-1, *present]] + [g for i in present for g in ([i], [i, -1])]
    lengths = union_lengths(start, end, kind, groups)
    k_ns, c_ns, both = lengths[:3]
    table_rows = []
    for j, i in enumerate(present):  # COLLECTIVES' order
        busy, with_compute = lengths[3 + 2 * j], lengths[4 + 2 * j]
        mine = np.flatnonzero(kind == i)
        h = busy + k_ns - with_compute
        table_rows.append({"collective": COLLECTIVES[i], "count": len(mine),
                           "gpu_ns": int((end[mine] - start[mine]).sum()), "busy_ns": busy, "hidden_ns": h,
                           "exposed_ns": busy - h})
    cols = {"collective": "object", "count": "int64", "gpu_ns": "int64", "busy_ns": "int64", "hidden_ns": "int64",
            "exposed_ns": "int64"}
    table = pd.DataFrame(table_rows, columns=list(cols)).astype(cols)
    hidden = c_ns + k_ns - both
    return RankComm(k_ns, c_ns, hidden, c_ns - hidden, table)


def sequence(comm: pd.DataFrame) -> pd.DataFrame:
    """A rank's communication kernels in issue order, numbered per collective (`ordinal`)."""
    s = comm.sort_values(["start_ns", "end_ns"], kind="stable").reset_index(drop=True)
    return s.assign(ordinal=s.groupby("collective", sort=False).cumcount().astype("int64"))


def first_common_end(seqs: dict[int, pd.DataFrame]) -> tuple[dict[int, int], str] | None:
    """The end, on each rank's own clock, of the first collective every rank took part in (the
    earliest on the first rank among the (collective, ordinal) pairs all ranks have), and its kind."""
    if not seqs or any(s.empty for s in seqs.values()):
        return None
    keys: set[tuple[str, int]] | None = None
    for s in seqs.values():
        k = set(zip(s["collective"], s["ordinal"], strict=True))
        keys = k if keys is None else keys & k
    if not keys:
        return None
    s0 = seqs[min(seqs)]
    pick = s0[[(c, o) in keys for c, o in zip(s0["collective"], s0["ordinal"], strict=True)]].iloc[0]
    kind, ordinal = str(pick["collective"]), int(pick["ordinal"])
    out = {}
    for rank, s in seqs.items():
        out[rank] = int(s.loc[(s["collective"] == kind) & (s["ordinal"] == ordinal), "end_ns"].iloc[0])
    return out, kind


def clock_offsets(seqs: dict[int, pd.DataFrame], session_starts: dict[int, int | None], *,
                  one_clock: bool) -> tuple[dict[int, int], str]:
    """Nanoseconds to add to each rank's times to put every rank on the first rank's clock, and how.

    One clock (an export holding every rank): zero. Else the end of the first common collective,
    else the sessions' wall-clock starts, else zero (said so).

    >>> s0 = pd.DataFrame({"collective": ["all-reduce"], "ordinal": [0], "start_ns": [10], "end_ns": [50]})
    >>> s1 = s0.assign(start_ns=[1_000], end_ns=[1_030])   # rank 1's clock runs 980 ns ahead
    >>> clock_offsets({0: s0, 1: s1}, {0: None, 1: None}, one_clock=False)
    ({0: 0, 1: -980}, 'aligned on the end of the first all-reduce every rank took part in')
    """
    ranks = sorted(seqs)
    if one_clock or not ranks:
        return {r: 0 for r in ranks}, "one export, one clock"
    found = first_common_end(seqs)
    if found is not None:
        ends, kind = found
        ref = ends[ranks[0]]
        return {r: ref - ends[r] for r in ranks}, f"aligned on the end of the first {kind} every rank took part in"
    starts = [session_starts.get(r) for r in ranks]
    if all(v is not None for v in starts):
        base = int(starts[0])  # type: ignore[arg-type]
        return ({r: int(v) - base for r, v in zip(ranks, starts, strict=True)},  # type: ignore[arg-type]
                "aligned on the captures' wall-clock start times (no collective kernel common to every rank)")
    return {r: 0 for r in ranks}, "not aligned (no common collective, no session start times)"


def waits(seqs: dict[int, pd.DataFrame], offsets: dict[int, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per rank the time its collectives waited for the last rank, and per collective instance
    the transfer time; only instances every rank has are matched.

    Returns:
        (per rank: rank, wait_ns, matched; per instance: collective, ordinal, last_rank, transfer_ns)
    """
    parts = [s.assign(rank=r, start_ns=s["start_ns"] + offsets[r], end_ns=s["end_ns"] + offsets[r])
             for r, s in seqs.items() if not s.empty]
    n = len(seqs)
    empty_rank = pd.DataFrame({"rank": sorted(seqs), "wait_ns": 0, "matched": 0}).astype("int64")
    empty_inst = pd.DataFrame({"collective": pd.Series(dtype=object), "ordinal": pd.Series(dtype="int64"),
                               "last_rank": pd.Series(dtype="int64"), "transfer_ns": pd.Series(dtype="int64")})
    if len(parts) < n or n < 2:
        return empty_rank, empty_inst
    allk = pd.concat(parts, ignore_index=True)
    g = allk.groupby(["collective", "ordinal"], sort=False)
    allk = allk.assign(ranks=g["rank"].transform("nunique"))
    allk = allk[allk["ranks"] == n]
    if allk.empty:
        return empty_rank, empty_inst
    g = allk.groupby(["collective", "ordinal"], sort=False)
    last = g["start_ns"].transform("max")
    allk = allk.assign(wait_ns=last - allk["start_ns"], last_start=last)
    per_rank = (allk.groupby("rank")
                .agg(wait_ns=("wait_ns", "sum"), matched=("wait_ns", "size"))
                .reindex(sorted(seqs), fill_value=0).reset_index().astype("int64"))
    idx = allk.groupby(["collective", "ordinal"], sort=False)["start_ns"].idxmax()
    inst = allk.loc[idx, ["collective", "ordinal", "rank", "last_start"]].rename(columns={"rank": "last_rank"})
    end = allk.groupby(["collective", "ordinal"], sort=False)["end_ns"].max()
    inst = inst.set_index(["collective", "ordinal"]).assign(end_ns=end).reset_index()
    inst = inst.assign(transfer_ns=(inst["end_ns"] - inst["last_start"]).clip(lower=0))
    return per_rank, inst[["collective", "ordinal", "last_rank", "transfer_ns"]].reset_index(drop=True)


def bandwidth(nccl: dict[int, pd.DataFrame], inst: pd.DataFrame, seqs: dict[int, pd.DataFrame],
              n: int, model: dict[str, tuple[int, str]] | None = None, steps: int = 1) -> pd.DataFrame:
    """Bytes and bus bandwidth per collective kind, the way nccl-tests defines them.

    Args:
        nccl: per rank, NCCL's NVTX ranges of the measured steps (collective, bytes; -1 unknown).
        inst: waits()'s instances (transfer time on the aligned clocks); empty with one rank.
        seqs: per rank, its communication kernels (for one rank: the kernels' own time).
        n: ranks.
        model: model_sizes()'s S per step and label, used for a collective whose payload sizes
            are missing (any range without one).
        steps: the measured steps the times add over (model S is per step).

    Returns:
        collective, instances, bytes (NCCL's per-rank message sizes, first rank; -1 unknown),
        size_bytes (nccl-tests' S, added), source ("NVTX payload", the model's label, "" when
        unknown), time_ns, algbw_gbps, busbw_gbps (NaN where S is unknown).
    """
    model = model or {}
    rows = []
    first = min(nccl) if nccl else None
    for kind in COLLECTIVES[:-1]:
        ranges = nccl[first] if first is not None else pd.DataFrame({"collective": [], "bytes": []})
        mine = ranges[ranges["collective"] == kind] if not ranges.empty else ranges
        known = mine[mine["bytes"] >= 0] if not mine.empty else mine
        if not inst.empty:
            t = inst.loc[inst["collective"] == kind, "transfer_ns"]
            count, time_ns = len(t), int(t.sum())
        else:
            s = seqs.get(first if first is not None else -1, pd.DataFrame({"collective": []}))
            k = s[s["collective"] == kind] if not s.empty else s
            count = len(k)
            time_ns = int((k["end_ns"] - k["start_ns"]).sum()) if count else 0
        if not count and mine.empty:
            continue
        nbytes = int(known["bytes"].sum()) if len(known) else -1
        complete = len(known) == len(mine) and len(mine) > 0  # every call's size: S is the step's bytes
        size, source = (nbytes * size_factor(kind, n), PAYLOAD) if complete else (-1, "")
        if not complete and kind in model:
            size, source = model[kind][0] * steps, model[kind][1]
        alg = size / time_ns if size >= 0 and time_ns > 0 else float("nan")  # bytes/ns = GB/s
        rows.append({"collective": kind, "instances": count, "bytes": nbytes, "size_bytes": size, "source": source,
                     "time_ns": time_ns, "algbw_gbps": alg,
                     "busbw_gbps": alg * bus_factor(kind, n) if alg == alg else float("nan")})
    cols = ["collective", "instances", "bytes", "size_bytes", "source", "time_ns", "algbw_gbps", "busbw_gbps"]
    return pd.DataFrame(rows, columns=cols)


@dataclass(slots=True)
class RankInput:
    """What one rank's export gives the merge (small: no compute kernel rows)."""

    rank: int
    steps_ms: list[float]
    n_steps: int
    comm: RankComm
    seq: pd.DataFrame
    """Its communication kernels in order (collective, ordinal, start_ns, end_ns)."""
    nccl: pd.DataFrame
    """NCCL's NVTX ranges of its measured steps (name, collective, start_ns, end_ns, bytes)."""
    session_start_ns: int | None = None
    lanes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"lane": pd.Series(dtype=object), "start_ns": pd.Series(dtype="int64"), "end_ns": pd.Series(dtype="int64")}))
    """One step's merged intervals, lane compute or communication (for the timeline PNG)."""
    step_window: tuple[int, int] | None = None
    graphs: tuple[int, int] = (0, 0)
    """Whole CUDA-graph replays among its kernels (kernels.graph_replays: count, ns), counted as compute."""


def merged(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals as disjoint sorted intervals.

    >>> [a.tolist() for a in merged(np.array([5, 0, 20]), np.array([12, 10, 30]))]
    [[0, 20], [12, 30]]
    """
    if not len(starts):
        return starts.astype(np.int64), ends.astype(np.int64)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)
    new = np.r_[True, s[1:] > reach[:-1]]
    first = np.flatnonzero(new)
    return s[first], np.maximum.reduceat(e, first)


def rank_input(rank: int, kernels: pd.DataFrame, steps: pd.DataFrame, nccl: pd.DataFrame, *,
               steps_ms: list[float] | None = None, session_start: int | None = None) -> RankInput:
    """One rank's part of the merge, from its kernels (start_ns, end_ns, name, range_path), its
    measured `step_i` ranges (name, start_ns, end_ns) and NCCL's ranges (name, start_ns, end_ns, bytes).

    Kernels launched inside a measured step count (all of them when there are no step ranges);
    NCCL ranges count between the first step's start and the last step's end.
    """
    # Each kernel's collective once, as a code (-2: outside the measured steps); no subset of the
    # kernels copied but the few communication kernels.
    start, end = kernels["start_ns"].to_numpy(np.int64), kernels["end_ns"].to_numpy(np.int64)
    kind = kernel_kinds(kernels["name"])
    counted = kind
    if not steps.empty and "range_path" in kernels.columns:  # per distinct path: no string per kernel
        counted = np.where(per_distinct(kernels["range_path"], lambda p: p.str.match(r"step_\d+(/|$)")), kind,
                           np.int8(-2))
    comm = _comm(start, end, counted)
    picked = np.flatnonzero(counted >= 0)
    seq = sequence(pd.DataFrame({"start_ns": start[picked], "end_ns": end[picked],
                                 "collective": np.array(COLLECTIVES, dtype=object)[counted[picked]]}))
    r = nccl.assign(collective=collective_kind(nccl["name"])) if not nccl.empty else nccl.assign(collective=None)
    if not steps.empty and not r.empty:
        r = r[(r["start_ns"] >= steps["start_ns"].min()) & (r["start_ns"] <= steps["end_ns"].max())]
    r = r[r["collective"].notna()] if not r.empty else r
    times = steps_ms if steps_ms is not None else ((steps["end_ns"] - steps["start_ns"]) / 1e6).tolist()
    lanes, window = _lanes(kernels, steps, kind)
    return RankInput(rank, [float(t) for t in times], max(len(steps), 1), comm, seq, r.reset_index(drop=True),
                     session_start, lanes, window, graph_replays_of(kernels) if "category" in kernels else (0, 0))


def _lanes(kernels: pd.DataFrame, steps: pd.DataFrame, kind: np.ndarray) -> tuple[pd.DataFrame, tuple[int, int] | None]:
    """The middle measured step's window and its merged compute and communication intervals
    (`kind`: each kernel's kernel_kinds() code)."""
    empty = pd.DataFrame({"lane": pd.Series(dtype=object), "start_ns": pd.Series(dtype="int64"),
                          "end_ns": pd.Series(dtype="int64")})
    if steps.empty:
        return empty, None
    ordered = steps.assign(i=steps["name"].astype(str).str.extract(r"(\d+)$")[0].astype(int)).sort_values("i")
    mid = ordered.iloc[len(ordered) // 2]
    name = str(mid["name"])
    window = (int(mid["start_ns"]), int(mid["end_ns"]))
    if kernels.empty or "range_path" not in kernels.columns:
        return empty, window
    mine = per_distinct(kernels["range_path"], lambda p: p.str.match(rf"{re.escape(name)}(/|$)"))
    start, end = kernels["start_ns"].to_numpy(np.int64), kernels["end_ns"].to_numpy(np.int64)
    parts = []
    for lane, rows in (("compute", mine & (kind < 0)), ("communication", mine & (kind >= 0))):
        s, e = merged(start[rows], end[rows])
        parts.append(pd.DataFrame({"lane": lane, "start_ns": s, "end_ns": e}))
    if mine.any():
        window = (min(window[0], int(start[mine].min())), max(window[1], int(end[mine].max())))
    return pd.concat(parts, ignore_index=True), window


@dataclass(slots=True)
class RanksResult:
    table: pd.DataFrame
    """One row per rank (the JSON keys): rank, steps, step_ms (median), step_min_ms, step_max_ms,
    compute_ns, comm_ns, comm_hidden_ns, comm_exposed_ns, wait_ns (per measured step), by_collective."""
    collectives: pd.DataFrame
    """Per rank and collective: rank, collective, count, gpu_ns, hidden_ns, exposed_ns (per step)."""
    bandwidth: pd.DataFrame
    alignment: str
    slowest: dict[str, object]
    spread: dict[str, float]
    lanes: pd.DataFrame
    """rank, lane, start_ns, end_ns of one step on the aligned clock, relative to its earliest start."""
    graphs: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Per rank with whole CUDA-graph replays among its kernels: their count and ns (the whole capture)."""


def merge(inputs: list[RankInput], *, one_clock: bool,
          model: dict[str, tuple[int, str]] | None = None) -> RanksResult:
    """Every rank's RankInput into the ranks report (per measured step); `model`: model_sizes()
    of the run, the sizes used where NCCL's payload gives none."""
    inputs = sorted(inputs, key=lambda x: x.rank)
    n = len(inputs)
    seqs = {x.rank: x.seq for x in inputs}
    offsets, how = clock_offsets(seqs, {x.rank: x.session_start_ns for x in inputs}, one_clock=one_clock)
    per_rank, inst = waits(seqs, offsets)
    wait = dict(zip(per_rank["rank"], per_rank["wait_ns"], strict=True))
    rows, coll = [], []
    for x in inputs:
        st = pd.Series(x.steps_ms, dtype=float)
        by = x.comm.by_collective
        per = {r["collective"]: {"count": int(r["count"]) / x.n_steps, "gpu_ns": int(r["gpu_ns"]) // x.n_steps,
                                 "hidden_ns": int(r["hidden_ns"]) // x.n_steps,
                                 "exposed_ns": int(r["exposed_ns"]) // x.n_steps} for _, r in by.iterrows()}
        rows.append({"rank": x.rank, "steps": len(x.steps_ms), "step_ms": float(st.median()) if len(st) else np.nan,
                     "step_min_ms": float(st.min()) if len(st) else np.nan,
                     "step_max_ms": float(st.max()) if len(st) else np.nan,
                     "compute_ns": x.comm.compute_ns // x.n_steps, "comm_ns": x.comm.comm_ns // x.n_steps,
                     "comm_hidden_ns": x.comm.comm_hidden_ns // x.n_steps,
                     "comm_exposed_ns": x.comm.comm_exposed_ns // x.n_steps,
                     "wait_ns": int(wait.get(x.rank, 0)) // x.n_steps, "by_collective": per})
        coll += [{"rank": x.rank, "collective": k, **v} for k, v in per.items()]
    table = pd.DataFrame(rows)
    collectives = pd.DataFrame(coll, columns=["rank", "collective", "count", "gpu_ns", "hidden_ns", "exposed_ns"])
    steps = inputs[0].n_steps if inputs else 1
    bw = bandwidth({x.rank: x.nccl for x in inputs}, inst, seqs, n, model, steps)
    if not bw.empty:  # per measured step, as every other figure (the bandwidths are ratios: unchanged)
        bw = bw.assign(instances=bw["instances"] / steps, time_ns=bw["time_ns"] // steps,
                       bytes=bw["bytes"].where(bw["bytes"] < 0, bw["bytes"] // steps),
                       size_bytes=bw["size_bytes"].where(bw["size_bytes"] < 0, bw["size_bytes"] // steps))
    return RanksResult(table, collectives, bw, how, slowest(table), spread(table, collectives),
                       _aligned_lanes(inputs, offsets), {x.rank: x.graphs for x in inputs if x.graphs[0]})


def slowest(table: pd.DataFrame) -> dict[str, object]:
    """The rank the others wait for, and why: with collectives matched, the rank that waited least
    (it arrives last at each collective); else the largest median step time."""
    if table.empty:
        return {}
    waited = table["wait_ns"].sum() > 0
    row = table.loc[table["wait_ns"].idxmin()] if waited else table.loc[table["step_ms"].idxmax()]
    others = table[table["rank"] != row["rank"]]
    out: dict[str, object] = {"rank": int(row["rank"]), "by": "waits" if waited else "step time",
                              "step_ms": float(row["step_ms"]), "compute_ns": int(row["compute_ns"]),
                              "wait_ns": int(row["wait_ns"])}
    if not others.empty:
        out["others_compute_ns"] = int(others["compute_ns"].median())
        out["others_wait_ns"] = int(others["wait_ns"].median())
        out["others_step_ms"] = float(others["step_ms"].median())
    return out


def spread(table: pd.DataFrame, collectives: pd.DataFrame) -> dict[str, float]:
    """(max - min) across ranks: of the median step (ms), and of each collective's GPU time (ns)."""
    if table.empty:
        return {}
    out = {"step_ms": float(table["step_ms"].max() - table["step_ms"].min()),
           "compute_ns": float(table["compute_ns"].max() - table["compute_ns"].min())}
    for kind, g in collectives.groupby("collective"):
        out[f"{kind}_gpu_ns"] = float(g["gpu_ns"].max() - g["gpu_ns"].min())
    return out


def _aligned_lanes(inputs: list[RankInput], offsets: dict[int, int]) -> pd.DataFrame:
    parts = []
    for x in inputs:
        if x.step_window is None:
            continue
        off = offsets.get(x.rank, 0)
        lanes = x.lanes.assign(start_ns=x.lanes["start_ns"] + off, end_ns=x.lanes["end_ns"] + off)
        w = pd.DataFrame({"lane": ["step"], "start_ns": [x.step_window[0] + off], "end_ns": [x.step_window[1] + off]})
        parts.append(pd.concat([w, lanes], ignore_index=True).assign(rank=x.rank))
    if not parts:
        return pd.DataFrame({"rank": pd.Series(dtype="int64"), "lane": pd.Series(dtype=object),
                             "start_ns": pd.Series(dtype="int64"), "end_ns": pd.Series(dtype="int64")})
    out = pd.concat(parts, ignore_index=True)
    t0 = int(out["start_ns"].min())
    return out.assign(start_ns=out["start_ns"] - t0, end_ns=out["end_ns"] - t0)[["rank", "lane", "start_ns",
                                                                                  "end_ns"]]
