"""Kernels: names and categories per row, the ranking nsys's cuda_gpu_kern_sum gives, category
shares, and the filters the reports apply (pure functions, no torch, no I/O)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from profkit.errors import ProfkitError
from profkit.table import Table

if TYPE_CHECKING:
    import pandas as pd


def _dense(ids: np.ndarray) -> bool:
    """Whether integer ids are small enough for a table indexed by id (StringIds ids are)."""
    return bool(ids.size and ids.dtype.kind in "iu" and ids.min() >= 0 and ids.max() < max(1 << 20, 4 * ids.size))


def unique_inverse(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(ids, return_inverse=True) for integer ids, without its sort when the ids are
    small non-negative integers (StringIds ids): a table of which are present, in linear time.

    >>> [a.tolist() for a in unique_inverse(np.array([7, 3, 7, 5]))]
    [[3, 5, 7], [2, 0, 2, 1]]
    """
    if _dense(ids):
        present = np.zeros(int(ids.max()) + 1, dtype=bool)
        present[ids] = True
        rank = np.cumsum(present) - 1
        return np.flatnonzero(present), rank[ids]
    uniq, codes = np.unique(ids, return_inverse=True)
    return uniq, codes.reshape(-1)


def lookup_categorical(ids: pd.Series | np.ndarray, table: pd.Series, missing: str) -> pd.Categorical:
    """`table[ids]` as a Categorical: each distinct text stored once, not once per row.

    A million kernels share a few dozen names of up to kilobytes each; strings per row would
    cost gigabytes (pandas 3 copies each into its string column).
    """
    import pandas as pd

    ids = np.asarray(ids)
    dense = _dense(ids)
    if dense:  # one int32 code per row through a table by id: no per-row temporaries but the codes
        present = np.zeros(int(ids.max()) + 1, dtype=bool)
        present[ids] = True
        uniq = np.flatnonzero(present)
    else:
        uniq, inverse = np.unique(ids, return_inverse=True)
    texts = table.reindex(uniq).fillna(missing).astype(object).to_numpy()
    cats, remap = np.unique(texts.astype(str), return_inverse=True)  # two ids may share a text
    if dense:
        by_id = np.full(len(present), -1, dtype=np.int32)
        by_id[uniq] = remap
        codes = by_id[ids]
    else:
        codes = remap.astype(np.int32)[inverse.reshape(-1)]
    return pd.Categorical.from_codes(codes, categories=pd.Index(cats, dtype=object))


def kernel_frame(kernels: pd.DataFrame, names: pd.Series, categories: pd.Series) -> pd.DataFrame:
    """Kernels with their demangled `name`, `short_name` and `category` (categories: per name id),
    as Categoricals."""
    from profkit.frames import require

    require(kernels, ["name_id", "short_id", "dur_ns"], "kernels")
    return kernels.assign(name=lookup_categorical(kernels["name_id"], names, "<unknown>"),
                          short_name=lookup_categorical(kernels["short_id"], names, "<unknown>"),
                          category=lookup_categorical(kernels["name_id"], categories, "other"))


RANK_COLUMNS = ["name", "category", "instances", "total_ns", "avg_ns", "median_ns", "min_ns", "max_ns", "stddev_ns",
                "time_pct"]


def _squared_deviations(d: np.ndarray, mean: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Per group, the sum of (d - the group's mean)^2; d sorted by group, group g's values from lo[g].
    FIRST_CHUNK values at a time, so the temporaries stay a few MB at any size (one array the
    kernels' length is fresh memory at 10 M kernels: dearer per kernel than at 1 M)."""
    ss = np.zeros(len(lo))
    for a in range(0, len(d), FIRST_CHUNK):
        b = min(a + FIRST_CHUNK, len(d))
        g = np.searchsorted(lo, np.arange(a, b), side="right") - 1
        dev = d[a:b] - mean[g]
        dev *= dev
        ss += np.bincount(g, weights=dev, minlength=len(lo))
    return ss


def rank(codes: np.ndarray, labels: list[str], dur: np.ndarray, categories: list[str], *,
         top_k: int | None = None) -> Table:
    """Time per group, largest first, as `nsys stats -r cuda_gpu_kern_sum` (rank_kernels()'s rows).

    Args:
        codes: each kernel's group, an index into `labels` (distinct texts).
        dur: each kernel's duration (ns).
        categories: each label's category.
        top_k: keep the k largest and fold the rest into one row named `others`.
    """
    m = len(labels)
    count = np.bincount(codes, minlength=m)
    groups = np.flatnonzero(count)
    # Durations sorted within each group: one sort of (group, duration) packed in one integer
    # when both fit, else a two-key sort.
    if len(dur) and int(dur.min()) >= 0 and int(dur.max()) < 1 << 40 and m < 1 << 22:
        d = codes.astype(np.int64)  # the key built, sorted and unpacked in place: one array the kernels' length
        d <<= 40
        d |= dur
        d.sort()
        d &= (1 << 40) - 1
    else:
        d = dur[np.lexsort((dur, codes))]
    n = count[groups]
    lo = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64) if len(groups) else np.empty(0, dtype=np.int64)
    total = np.add.reduceat(d, lo) if len(d) else np.empty(0, dtype=np.int64)
    mean = total / n
    mid = lo + (n - 1) // 2
    upper = d[np.minimum(mid + 1, max(len(d) - 1, 0))] if len(d) else d
    median = np.where(n % 2 == 1, d[mid].astype(float), (d[mid].astype(float) + upper) / 2) if len(d) else np.empty(0)
    ss = _squared_deviations(d, mean, lo)
    std = np.where(n > 1, np.sqrt(ss / np.maximum(n - 1, 1)), 0.0)
    all_ns = int(total.sum())
    pct = 100.0 * total / all_ns if all_ns else np.zeros(len(groups))
    names = [labels[g] for g in groups.tolist()]
    order = sorted(range(len(groups)), key=lambda i: (-int(total[i]), names[i]))
    cols: dict[str, list[object]] = {
        "name": [names[i] for i in order], "category": [categories[groups[i]] for i in order],
        "instances": n[order].tolist(), "total_ns": total[order].tolist(), "avg_ns": mean[order].tolist(),
        "median_ns": median[order].tolist(), "min_ns": d[lo][order].tolist(), "max_ns": d[lo + n - 1][order].tolist(),
        "stddev_ns": std[order].tolist(), "time_pct": np.asarray(pct)[order].tolist()}
    if top_k is not None and len(order) > top_k:
        rest = {c: v[top_k:] for c, v in cols.items()}
        cols = {c: v[:top_k] for c, v in cols.items()}
        instances, rest_ns = sum(rest["instances"]), sum(rest["total_ns"])  # type: ignore[arg-type]
        fold = {"name": "others", "category": "", "instances": instances, "total_ns": rest_ns,
                "avg_ns": rest_ns / instances, "median_ns": float("nan"), "min_ns": min(rest["min_ns"]),  # type: ignore[type-var]
                "max_ns": max(rest["max_ns"]), "stddev_ns": float("nan"),  # type: ignore[type-var]
                "time_pct": float(np.sum(np.array(rest["time_pct"], dtype=float)))}
        for c in cols:
            cols[c].append(fold[c])
    return Table({c: np.array(v, dtype=np.int64) if c in ("instances", "total_ns", "min_ns", "max_ns")
                  else np.array(v, dtype=float) if c not in ("name", "category") else v for c, v in cols.items()})


def rank_kernels(kernels: pd.DataFrame, *, by: str = "name", top_k: int | None = None) -> pd.DataFrame:
    """Time per kernel name (or category), largest first, as `nsys stats -r cuda_gpu_kern_sum`.

    Args:
        kernels: kernel_frame() rows.
        by: `name` (demangled), `short_name` or `category`.
        top_k: keep the k largest and fold the rest into one row named `others`.

    Returns:
        One row per group: name, category, instances, total_ns, avg_ns, median_ns, min_ns, max_ns,
        stddev_ns (sample, 0 for a single instance), time_pct (of all kernel time).

    | name  | dur_ns |  ->  | name  | instances | total_ns | time_pct |
    | gemm1 | 30     |      | gemm1 | 2         | 60       | 75.0     |
    | gemm1 | 30     |      | relu  | 1         | 20       | 25.0     |
    | relu  | 20     |
    """
    from profkit.frames import require

    require(kernels, [by, "dur_ns", "category"], "kernels")
    codes, labels = column_codes(kernels[by])
    return rank(codes, labels, kernels["dur_ns"].to_numpy(np.int64), _first_category(codes, labels, kernels),
                top_k=top_k).to_frame()


def column_codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """A column's values as codes into its distinct texts: a Categorical's own codes, in its own
    integer type (int8 for up to 127 texts: no copy the kernels' length), else int32."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):  # a few hundred names, ten million kernels
        codes, cats = column.cat.codes.to_numpy(), [str(c) for c in column.cat.categories]
    else:
        c, u = pd.factorize(column.astype(str))
        codes, cats = c.astype(np.int32), [str(x) for x in u]
    index: dict[str, int] = {}
    remap = np.array([index.setdefault(c, len(index)) for c in cats], dtype=np.int32)
    if len(index) == len(cats):  # every text once: the codes as they are
        return codes, cats
    return (remap[codes] if len(codes) else codes), list(index)


def _first_category(codes: np.ndarray, labels: list[str], kernels: pd.DataFrame) -> list[str]:
    """Per label, the category of its first kernel."""
    cat_codes, cats = column_codes(kernels["category"])
    first = np.full(len(labels), len(codes), dtype=np.int64)  # each label's first kernel, a chunk at a time
    for lo in range(0, len(codes), FIRST_CHUNK):  # linear (no sort), its index array 2 MB
        chunk = codes[lo:lo + FIRST_CHUNK]
        np.minimum.at(first, chunk, np.arange(lo, lo + len(chunk)))
    present = np.flatnonzero(first < len(codes))
    first = first[present]
    out = [""] * len(labels)
    for g, i in zip(present.tolist(), first.tolist(), strict=True):
        out[g] = cats[cat_codes[i]]
    return out


def category_shares(kernels: pd.DataFrame, memcpy: pd.DataFrame | None = None,
                    memset: pd.DataFrame | None = None) -> pd.DataFrame:
    """Time per category, memcpy and memset (from their own tables) included: category, total_ns, pct."""
    import pandas as pd

    parts = [kernels.groupby("category", observed=True)["dur_ns"].sum()]
    for name, frame in (("memcpy", memcpy), ("memset", memset)):
        if frame is not None and not frame.empty:
            parts.append(pd.Series({name: frame["dur_ns"].sum()}))
    s = pd.concat(parts).groupby(level=0).sum().sort_values(ascending=False)
    total = s.sum()
    return pd.DataFrame({"category": s.index, "total_ns": s.to_numpy(),
                         "pct": 100.0 * s.to_numpy() / total if total else 0.0})


class RangeFilterError(ProfkitError):
    """A --range pattern that is not a regular expression."""


def matching_paths(paths: list[str], pattern: str) -> np.ndarray:
    """Which paths the regular expression `pattern` finds a match in (re.search).

    Raises:
        RangeFilterError: `pattern` does not compile.
    """
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise RangeFilterError(f"--range {pattern!r} is not a regular expression: {e}") from None
    return np.array([regex.search(p) is not None for p in paths], dtype=bool)


def in_ranges(kernels: pd.DataFrame, pattern: str) -> pd.DataFrame:
    """The kernels whose owner range's path matches the regular expression `pattern`.

    Raises:
        RangeFilterError: `pattern` does not compile.

    | range_path              |  --range 'backward$'  ->  kept |
    | step_0/forward          |                               |
    | step_0/backward         |                               yes |
    | step_0/backward/layer_1 |                               |
    """
    from profkit.frames import require

    require(kernels, ["range_path"], "kernels")
    paths = kernels["range_path"].astype("category")
    cats = [str(p) for p in paths.cat.categories]
    matching = [p for p, ok in zip(cats, matching_paths(cats, pattern).tolist(), strict=True) if ok]
    return kernels[paths.isin(matching).to_numpy()]


def graph_replays(category: np.ndarray, categories: list[str], dur: np.ndarray) -> tuple[int, int]:
    """(count, total ns) of the whole CUDA-graph replays among kernel rows (their category is
    categories.GRAPH_CATEGORY), given each row's category code into `categories`.

    >>> graph_replays(np.array([0, 1, 1]), ["gemm", "cuda graph"], np.array([5, 7, 9]))
    (2, 16)
    """
    from profkit.analyze.categories import GRAPH_CATEGORY

    if GRAPH_CATEGORY not in categories:
        return 0, 0
    mine = category == categories.index(GRAPH_CATEGORY)
    return int(mine.sum()), int(dur[mine].sum())


def graph_replays_of(kernels: pd.DataFrame) -> tuple[int, int]:
    """graph_replays() of kernel_frame() rows."""
    if kernels.empty:
        return 0, 0
    codes, cats = column_codes(kernels["category"])
    return graph_replays(codes, cats, kernels["dur_ns"].to_numpy())


def unattributed_pct(kernels: pd.DataFrame) -> float:
    """Share of kernel time launched outside every NVTX range (owner -1), in percent.

    >>> import pandas as pd
    >>> unattributed_pct(pd.DataFrame({"dur_ns": [30, 10], "owner": [0, -1]}))
    25.0
    """
    from profkit.frames import require

    require(kernels, ["dur_ns", "owner"], "kernels")
    total = kernels["dur_ns"].sum()
    return float(100.0 * kernels["dur_ns"][kernels["owner"] < 0].sum() / total) if total else 0.0


def with_owner(kernels: pd.DataFrame, ranges: pd.DataFrame, owner: np.ndarray) -> pd.DataFrame:
    """Kernels with their `owner` range id and that range's `range_path` as columns
    (`range_path` a Categorical, NaN for kernels outside every range)."""
    import pandas as pd

    from profkit.frames import require

    require(ranges, ["path"], "ranges")
    path_codes, uniq = pd.factorize(ranges["path"])
    codes = np.full(len(owner), -1, dtype=np.int32)
    if len(path_codes):  # a chunk of kernels at a time: the gather's temporaries stay a few MB
        for lo in range(0, len(owner), OWNER_PATH_CHUNK):
            o = owner[lo:lo + OWNER_PATH_CHUNK]
            codes[lo:lo + len(o)] = np.where(o >= 0, path_codes[np.clip(o, 0, None)], -1)
    return kernels.assign(owner=owner, range_path=pd.Categorical.from_codes(
        codes, categories=pd.Index(uniq, dtype=object)))


OWNER_PATH_CHUNK = 1 << 20


def compare_shares(shares: list[pd.DataFrame], steps: list[int], labels: list[str]) -> pd.DataFrame:
    """Category time of several captures in one long table, per measured step, with deltas
    against the first, so that captures of different step counts compare.

    Args:
        shares: category_shares() of each capture (totals over the capture).
        steps: each capture's number of measured steps (1 where it has no step_i ranges).
        labels: one distinct label per capture.

    Returns:
        One row per (category, capture): category, capture, steps, total_ns (the capture's),
        per_step_ns, pct, delta_ns (per step, against the first capture; 0 for the first) and
        delta_pp; categories ordered by the first capture's time, captures in the order given.
    """
    import pandas as pd

    indexed = [s.set_index("category") for s in shares]
    order = sorted(set().union(*(s.index for s in indexed)), key=lambda c: (-indexed[0]["total_ns"].get(c, 0), c))
    rows = []
    for c in order:
        base = float(indexed[0]["total_ns"].get(c, 0)) / steps[0]
        base_pct = float(indexed[0]["pct"].get(c, 0.0))
        for label, s, n in zip(labels, indexed, steps, strict=True):
            ns, pct = int(s["total_ns"].get(c, 0)), float(s["pct"].get(c, 0.0))
            rows.append((c, label, n, ns, ns / n, pct, ns / n - base, pct - base_pct))
    return pd.DataFrame(rows, columns=["category", "capture", "steps", "total_ns", "per_step_ns", "pct", "delta_ns",
                                       "delta_pp"])


def compare_kernels(ranked: list[pd.DataFrame], steps: list[int], labels: list[str], *,
                    top: int = 10) -> pd.DataFrame:
    """The kernels that matter in any capture, matched by name, time per step in each, deltas
    against the first: the `top` largest of each capture, largest in the first capture first.

    Args:
        ranked: rank_kernels() of each capture (all rows, not folded).
        steps: measured steps of each capture.

    Returns:
        One row per kernel name: name, category, then `<label> per_step_ns` per capture and
        `<label> delta_ns` per capture after the first.
    """
    import pandas as pd

    names: list[str] = []
    for r in ranked:
        names += [n for n in r["name"].head(top).astype(str) if n not in names]
    out = pd.DataFrame({"name": names})
    cats: dict[str, str] = {}
    for r in ranked:
        cats.update({str(n): str(c) for n, c in zip(r["name"], r["category"], strict=True) if str(n) not in cats})
    out["category"] = out["name"].map(cats)
    per = []
    for label, r, n in zip(labels, ranked, steps, strict=True):
        t = r.assign(name=r["name"].astype(str)).set_index("name")["total_ns"]
        col = out["name"].map(t).fillna(0).astype(float) / n
        out[f"{label} per_step_ns"] = col
        per.append(col)
    for label, col in zip(labels[1:], per[1:], strict=True):
        out[f"{label} delta_ns"] = col - per[0]
    first = out[f"{labels[0]} per_step_ns"]
    return out.assign(_first=first, _max=pd.concat(per, axis=1).max(axis=1)).sort_values(
        ["_first", "_max", "name"], ascending=[False, False, True], kind="stable").drop(
        columns=["_first", "_max"]).reset_index(drop=True)


STEP_CHUNK = 1 << 20
"""Rows category_steps() sums at a time."""
FIRST_CHUNK = 1 << 18
"""Rows _first_category() and _squared_deviations() look at a time (an index array of 2 MB: in cache, from
the heap again each time)."""


def category_steps(kernels: pd.DataFrame, transfers: pd.DataFrame, ranges: pd.DataFrame) -> pd.DataFrame:
    """Time per category in each measured step (kernels, memcpy and memset under a step_i range):
    category, mean_ns (per step), min_ns, max_ns (over the steps), pct (of the steps' GPU time).
    Empty when the capture has no step_i ranges.

    | step | category | dur_ns |  ->  | category | mean_ns | min_ns | max_ns |
    | 0    | gemm     | 10     |      | gemm     | 11      | 10     | 12     |
    | 1    | gemm     | 12     |      |          |         |        |        |
    """
    import pandas as pd

    from profkit.analyze.nvtx import step_of
    from profkit.frames import require

    require(kernels, ["owner", "category", "dur_ns"], "kernels")
    step_by_range = np.asarray(step_of(ranges["path"]).fillna(-1), dtype=np.int64)
    # Categories as codes (memcpy and memset after the kernels' own; one text, one code), no string per
    # row; each part summed into a (category, step) table on its own (no million-row concatenation).
    k_codes, labels = column_codes(kernels["category"])
    index = {c: i for i, c in enumerate(labels)}
    parts = [(k_codes, kernels["owner"].to_numpy(), kernels["dur_ns"].to_numpy(np.int64))]
    if len(transfers):
        t_codes, kinds = column_codes(transfers["kind"])
        remap = np.array([index.setdefault(k, len(index)) for k in kinds], dtype=np.int64)
        parts.append((remap[t_codes] if len(t_codes) else t_codes, transfers["owner"].to_numpy(),
                      transfers["dur_ns"].to_numpy(np.int64)))
    labels = list(index)
    sums: dict[tuple[int, int], int] = {}
    # a chunk of rows at a time: the temporaries (a step, a pair, a duration per row) stay a few MB
    chunks = [(c[lo:lo + STEP_CHUNK], o[lo:lo + STEP_CHUNK], d[lo:lo + STEP_CHUNK]) for c, o, d in parts
              for lo in range(0, len(o), STEP_CHUNK)]
    for code, own, dur in chunks:
        step = np.where(own >= 0, step_by_range[np.maximum(own, 0)], -1) if len(step_by_range) else own[:0]
        rows = np.flatnonzero(step >= 0)
        if not len(rows):
            continue
        step = step[rows]
        lo = int(step.min())
        width = int(step.max()) - lo + 1
        total = np.zeros(len(labels) * width, dtype=np.int64)  # (category, step) sums, in place
        pair = code[rows].astype(np.int64) * width + (step - lo)
        np.add.at(total, pair, dur[rows])
        seen = np.zeros(len(total), dtype=bool)
        seen[pair] = True  # a pair whose work all took 0 ns is still there
        for p in np.flatnonzero(seen).tolist():
            key = (p // width, p % width + lo)
            sums[key] = sums.get(key, 0) + int(total[p])
    cols = ["category", "mean_ns", "min_ns", "max_ns", "pct"]
    if not sums:
        return pd.DataFrame(columns=cols)
    present = sorted({c for c, _ in sums})
    steps = sorted({st for _, st in sums})
    per = np.array([[sums.get((c, st), 0) for st in steps] for c in present], dtype=np.int64)  # 0 where none ran
    out = pd.DataFrame({"category": pd.array([labels[c] for c in present], dtype=object),
                        "mean_ns": per.sum(axis=1) / len(steps), "min_ns": per.min(axis=1), "max_ns": per.max(axis=1)})
    total = out["mean_ns"].sum()
    out["pct"] = 100.0 * out["mean_ns"] / total if total else 0.0
    return out.sort_values(["mean_ns", "category"], ascending=[False, True], kind="stable").reset_index(drop=True)
