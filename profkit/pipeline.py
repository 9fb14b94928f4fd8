"""The pipeline, input to Analysis: resolve what the user named, parse it, analyze it.

    path (capture folder | .sqlite | .nsys-rep)
      -> resolve_input  (a .nsys-rep is exported beside itself with profkit.nsys, never over a file)
      -> parse.load     (ProfileData: DataFrames, read-only)
      -> analyze        (categories, NVTX tree, each kernel's owner range and its path)
      -> Analysis       (everything a report needs; no formatting here: that is profkit.report)

`check_capture` is the launcher's test of a fresh export (kernels present, profkit's ranges
recorded, analysis complete), so `profkit profile` refuses a capture the reports could not use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from profkit import cache, frame_store, layout
from profkit.errors import ProfkitError

# parse and analyze (pandas, numpy: a third of a second to import) load when first needed, so a
# report served from the cache never imports them.
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from profkit import parse
    from profkit.analyze.nvtx import Owned, Projected
    from profkit.analyze.timeline import Work

DEMO = "h100_small_step_fp32.sqlite"
SLIM_DROPS = ("correlation_id", "global_pid", "launch_tid")
"""Kernel columns Analysis.slim() leaves out."""


class InputError(ProfkitError):
    """What the user named cannot be reported on."""


@dataclass(slots=True)
class Analysis:
    data: parse.ProfileData
    kernels: pd.DataFrame
    """One row per kernel: parse's columns plus name, short_name, category, owner (range id,
    -1 outside every range) and range_path (the owner's path, NaN when none)."""
    ranges: pd.DataFrame
    """One row per NVTX range: analyze.project() (path, parent, GPU time of its subtree)."""
    transfers: pd.DataFrame
    """memcpy and memset rows (start_ns, end_ns, dur_ns, kind) with their owner range id."""
    run: layout.RunRecord | None
    """The capture's run.json, when the input is a capture folder (or the packaged demo)."""

    @property
    def unattributed_pct(self) -> float:
        from profkit import analyze

        return analyze.unattributed_pct(self.kernels)

    def activity(self) -> pd.DataFrame:
        """All GPU work with its owner: kernels, then memcpy and memset (start_ns, end_ns, owner,
        launch_ns, is_kernel)."""
        import pandas as pd

        cols = ["start_ns", "end_ns", "owner", "launch_ns"]
        return pd.concat([self.kernels[cols].assign(is_kernel=True), self.transfers[cols].assign(is_kernel=False)],
                         ignore_index=True)

    def slim(self) -> Analysis:
        """This analysis without the kernel columns only parsing and attribution read
        (correlation_id, global_pid, launch_tid; ~24 MB a million kernels): report.md's sections
        read the rest. The frames share the remaining columns, nothing is copied."""
        import dataclasses

        def lean(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.drop(columns=[c for c in SLIM_DROPS if c in frame.columns])

        return Analysis(dataclasses.replace(self.data, kernels=lean(self.data.kernels)), lean(self.kernels),
                        self.ranges, self.transfers, self.run)

    def work(self) -> list[Work]:
        """activity() as two parts, kernels then transfers, viewing this analysis's columns (no
        concatenated copy: a million kernels' would be ~35 MB): what analyze.timeline() takes."""
        from profkit.analyze.timeline import Work

        return [Work.of(self.kernels, is_kernel=True), Work.of(self.transfers, is_kernel=False)]

    def require_kernels(self) -> None:
        """Raises InputError when the export has no kernels table."""
        require_kernels(self.data.path, self.data.has_kernel_table)

    def attributed(self) -> Attributed:
        """The arrays `report kernels` and `report nvtx` take, from this analysis's frames."""
        import numpy as np

        from profkit.analyze.kernels import column_codes
        from profkit.analyze.nvtx import owned, projected

        k = self.kernels
        short, shorts = column_codes(k["short_name"])
        category, categories = column_codes(k["category"])
        short, category = short.astype(np.int32, copy=False), category.astype(np.int32, copy=False)
        return Attributed(self.data.path, self.data.has_kernel_table, owned(k), short, shorts, category, categories,
                          projected(self.ranges))


def require_kernels(path: Path, has_kernel_table: bool) -> None:
    """Refuse a kernel report on an export without a kernels table (InputError, what to capture instead)."""
    if not has_kernel_table:
        raise InputError(f"{path} has no kernels table: nsys recorded no CUDA kernels (its analysis failed, or the "
                         "capture traced no CUDA); capture again with --trace including cuda")


@dataclass(slots=True)
class Attributed:
    """What `report kernels` and `report nvtx` take, as numpy arrays and lists (no pandas): each
    kernel's duration, names, category and owner range; the ranges with their projected GPU time.
    Made by attributed() straight from the export, or by Analysis.attributed()."""

    path: Path
    has_kernel_table: bool
    kernels: Owned
    """Durations, starts, ends, owners and demangled names (codes into distinct texts)."""
    short: np.ndarray | None
    """Short names, as codes into `shorts` (None when not read)."""
    shorts: list[str]
    category: np.ndarray
    categories: list[str]
    ranges: Projected

    def require_kernels(self) -> None:
        """Raises InputError when the export has no kernels table."""
        require_kernels(self.path, self.has_kernel_table)


def attributed(path: Path, *, rules: Path | None = None, allow_incomplete: bool = False, nvtx: bool = True,
               short: bool = True, rank: int | None = None) -> Attributed:
    """Read and attribute one export for `report kernels` and `report nvtx`, without pandas (the
    same figures as load(): the same readers and the same array functions underneath).

    Reads the kernels' start, end and names (short ones when `short`) and, when `nvtx`, their
    launches and the NVTX ranges; nothing else (no memcpy, memset or GPU tables). `rank`: as in
    load(); one rank's process of a --single-file export goes through load().

    Raises:
        ProfkitError: the input, its rules, or an incomplete export (unless allow_incomplete).
    """

    import numpy as np

    from profkit import columns as col
    from profkit.analyze.categories import category_of, load_rules
    from profkit.analyze.kernels import unique_inverse
    from profkit.analyze.nvtx import Owned, Projected, owner_dtype, owners, project_arrays, range_tree

    export = resolve_input(path, rank)
    if process_of(path, export, rank) is not None:  # one rank's process of an export of several: load() selects it
        return load(path, rules=rules, allow_incomplete=allow_incomplete, nvtx=nvtx, activity=False,
                    rank=rank).attributed()
    with col.reading(export) as (db, tables, reader):
        fields = ["start_ns", "end_ns", "name_id", *(["short_id"] if short else [])]
        k = col.read_kernels(reader, tables, fields, launches=nvtx, processes=False, compact=True)
        for joined in ("correlation_id", "global_pid"):  # read for the launch join and the repeat check only
            k.pop(joined, None)
        strings = col.read_names(db)
        if nvtx:
            ranges, range_names = col.read_nvtx(reader, tables)
            closed = ranges["end_ns"][ranges["end_ns"] < col.OPEN_END]
            last = int(closed.max()) if len(closed) else None
        else:
            ranges, range_names = col.read_nvtx(reader, set())
            last = col.nvtx_last_end(db, tables)
    if not allow_incomplete and (error := col.incomplete(export, k["end_ns"], last)) is not None:
        raise error
    rule_list = load_rules(rules)

    def texts(ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """StringIds ids as codes into their distinct texts (two ids may share a text)."""
        uniq, inverse = unique_inverse(ids)
        index: dict[str, int] = {}
        if missing := [i for i in uniq.tolist() if i not in strings]:
            raise col.ProfileError(f"{export} is damaged: {len(missing):,} kernel name ids (e.g. {missing[0]}) are not "
                                   "in StringIds; export the capture again with nsys export --type sqlite")
        remap = np.array([index.setdefault(strings[i], len(index)) for i in uniq.tolist()], dtype=np.int32)
        return (remap[inverse] if len(ids) else ids.astype(np.int32)), list(index)

    name, names = texts(k.pop("name_id"))
    short_codes, shorts = texts(k.pop("short_id")) if short else (None, [])
    cat_index: dict[str, int] = {}
    name_cat = np.array([cat_index.setdefault(category_of(n, rule_list), len(cat_index)) for n in names],
                        dtype=np.int32)
    tree = range_tree(ranges["start_ns"], ranges["end_ns"], ranges["global_tid"], ranges["global_pid"],
                      ranges["name"], range_names, ranges["seq"])
    owner = (owners(k.pop("launch_ns"), k.pop("launch_tid"), tree.timelines, tree.start_ns) if nvtx
             else np.full(len(name), -1, dtype=owner_dtype(len(tree.start_ns))))
    proj = project_arrays(owner, k["dur_ns"], k["start_ns"], k["end_ns"], tree.parent, tree.depth)
    return Attributed(export, col.KERNEL_TABLE in tables or col.GRAPH_TABLE in tables,
                      Owned(k["dur_ns"], k["start_ns"], k["end_ns"], owner, name, names), short_codes, shorts,
                      name_cat[name] if len(name) else name, list(cat_index),
                      Projected(tree.start_ns, tree.end_ns, tree.name, tree.names, tree.path, tree.paths,
                                proj["gpu_total_ns"], proj["gpu_span_ns"], proj["kernels"]))


def rank_note(profile: Path) -> str | None:
    """The stderr note of a report on a multi-rank capture named without --rank: which rank it is of."""
    ranks = capture_ranks(profile)
    if not ranks:
        return None
    return (f"note: {profile} holds {len(ranks)} ranks; this is rank {ranks[0]}'s (--rank R for another, "
            "profkit report ranks for all of them)")


def capture_ranks(path: Path) -> list[int]:
    """The ranks of a multi-rank capture folder (its rank{R}.sqlite/.nsys-rep, else its
    rank{R}.run.json beside one profile.sqlite); empty for anything else."""
    if not path.is_dir():
        return []
    found = set(layout.rank_files(path, layout.RANK_EXPORT)) | set(layout.rank_files(path, layout.RANK_REPORT))
    return sorted(found or layout.rank_files(path, layout.RANK_RUN))


def single_file(path: Path) -> bool:
    """A multi-rank capture folder of one export holding every rank (--single-file)."""
    return bool(capture_ranks(path)) and not layout.rank_files(path, layout.RANK_EXPORT) \
        and not layout.rank_files(path, layout.RANK_REPORT)


def resolve_input(path: Path, rank: int | None = None) -> Path:
    """The export to read: a .sqlite, a capture folder's profile.sqlite, or a .nsys-rep's export;
    in a multi-rank folder, rank `rank`'s (rank 0 when None; one export for every rank when
    captured --single-file).

    A .nsys-rep is exported to the .sqlite beside it (needs nsys) unless that file exists.

    Raises:
        InputError: a folder without an export, a rank the capture does not have, or a .nsys-rep
            that cannot be exported.
    """
    ranks = capture_ranks(path)
    if ranks and not single_file(path):
        r = ranks[0] if rank is None else rank
        if r not in ranks:
            raise InputError(f"{path} has no rank {r}; its ranks are {', '.join(map(str, ranks))}")
        sqlite = path / layout.RANK_EXPORT.format(rank=r)
        return sqlite if sqlite.exists() else resolve_input(path / layout.RANK_REPORT.format(rank=r))
    if rank is not None and not ranks and path.is_dir():
        raise InputError(f"--rank {rank}: {path} is a capture of one process, not of several ranks")
    if path.is_dir():
        if (path / layout.EXPORT).exists():
            return path / layout.EXPORT
        if (path / layout.NSYS_REPORT).exists():
            return resolve_input(path / layout.NSYS_REPORT)
        raise InputError(f"{path} is a folder without {layout.EXPORT}; give a capture folder (profiles/NAME), "
                         "a .sqlite or a .nsys-rep")
    if path.suffix == ".nsys-rep" and path.is_file():
        out = path.with_suffix(".sqlite")
        if out.exists():
            return out
        from profkit.nsys import NsysNotFound, find_nsys
        from profkit.nsys import export as nsys_export

        try:
            return nsys_export(find_nsys(), path, out)
        except NsysNotFound as e:
            raise InputError(f"{path} is an nsys report; exporting it to SQLite needs nsys: {e}") from None
    return path


def demo_path() -> Path:
    """The real H100 export that ships inside the package (scrubbed), for `profkit report --demo`."""
    from importlib import resources  # here: it imports tempfile and shutil, which a report rarely needs

    return Path(str(resources.files("profkit").joinpath("data", DEMO)))


def demo_run() -> layout.RunRecord:
    """The demo export's run record."""
    return layout.RunRecord.from_dict(json.loads(demo_path().with_suffix(".run.json").read_text()))


def load_demo() -> Analysis:
    """The Analysis of the packaged demo export and its run record."""
    from profkit import parse

    return analyze_data(parse.load(demo_path()), run=demo_run())


def run_of(path: Path, rank: int | None = None) -> layout.RunRecord | None:
    """The run record beside an input: a capture folder's (rank R's in a multi-rank one, rank 0's
    when not given), or the folder holding its export."""
    folder = path if path.is_dir() else path.parent
    ranks = capture_ranks(folder) if path.is_dir() else []
    if ranks:
        return layout.find_run(folder, ranks[0] if rank is None else rank)
    return layout.find_run(folder) if path.is_dir() or path.name == layout.EXPORT else None


def process_of(path: Path, export: Path, rank: int | None) -> int | None:
    """The process (global_pid) holding rank `rank` in an export of every rank, None when the
    export is one rank's (or one process's) own.

    Raises:
        InputError: the export has no process of that rank.
    """
    if (rank is None or capture_ranks(path)) and not single_file(path):  # one export per rank: all of it
        return None
    from profkit.parse_ranks import process_ranks

    pids = process_ranks(export)
    if not pids:
        if rank is None:
            return None
        raise InputError(f"--rank {rank}: {export} holds no profkit rank (no profkit/rank{{R}} NVTX domain)")
    by_rank = {r: p for p, r in pids.items()}
    r = min(by_rank) if rank is None else rank
    if r not in by_rank:
        raise InputError(f"{export} has no rank {r}; its ranks are {', '.join(map(str, sorted(by_rank)))}")
    return by_rank[r]


def only_process(data: parse.ProfileData, pid: int) -> parse.ProfileData:
    """The part of an export of several processes that one process made."""
    import dataclasses

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["global_pid"].to_numpy() == pid].reset_index(drop=True) if "global_pid" in frame else frame

    return dataclasses.replace(data, kernels=keep(data.kernels), nvtx=keep(data.nvtx), memcpy=keep(data.memcpy),
                               memset=keep(data.memset))


def load(path: Path, *, rules: Path | None = None, allow_incomplete: bool = False, nvtx: bool = True,
         activity: bool = True, use_cache: bool = False, rank: int | None = None, compact: bool = False) -> Analysis:
    """Parse and analyze one export.

    Args:
        path: a capture folder, a .sqlite export or a .nsys-rep.
        rules: extra category rules (TOML), tried before profkit's own.
        allow_incomplete: report an export whose analysis stopped early instead of refusing it.
        nvtx: attribute kernels to NVTX ranges (needs each kernel's launch); False skips that work
            and leaves every kernel's owner -1.
        activity: read memcpy, memset and the GPUs (report.md and compare show them).
        use_cache: read the analysis (the kernel columns read, each kernel's owner and path, the
            range table, the transfers) from profkit.cache when these options and rules made it
            before, else store it: a new --top, --range or --by on the same export neither parses
            nor attributes again.
        rank: in a multi-rank capture, the rank to read (rank 0 when None): its own export, or its
            process of an export holding every rank.
        compact: the analysis the report commands take, load_compact()'s: the same frames less the
            kernel columns only reading and attribution use (correlation_id, global_pid,
            launch_tid, name_id, short_id), in about a third of the memory. One process of an
            export of several is read in full either way.

    Raises:
        ProfkitError: the input, its rules or its run.json cannot be used.
    """
    from profkit import parse

    export = resolve_input(path, rank)
    pid = process_of(path, export, rank)
    store = cache.for_export(export, enabled=use_cache) if use_cache and export.is_file() else None
    options: dict[str, object] = {"allow_incomplete": allow_incomplete, "nvtx": nvtx, "activity": activity,
                                  "rules": _digest(rules), "rules_given": rules is not None,
                                  **({"compact": True} if compact and pid is None else {})}
    name = cache.options_name("analysis", options if pid is None else {**options, "pid": pid})
    run = run_of(path, rank)
    if store is not None:
        hit = frame_store.get_frames(store, name)
        cached = _analysis_from(hit, export, run) if hit is not None else None
        if cached is not None:
            return cached
    if compact and pid is None:
        a = load_compact(export, rules=rules, allow_incomplete=allow_incomplete, nvtx=nvtx, activity=activity, run=run)
    else:
        data = parse.load(export, allow_incomplete=allow_incomplete, launches=nvtx or pid is not None, nvtx=nvtx,
                          activity=activity, lean=pid is None)
        if pid is not None:
            data = only_process(data, pid)
        a = analyze_data(data, rules=rules, nvtx=nvtx, run=run)
    if store is not None:
        frame_store.put_frames(store, name, _analysis_frames(a))
    return a


# --- the analysis stage of the cache: the kernel columns read and what analyze_data made, as raw arrays --------

_DATA = ("nvtx", "memcpy", "memset", "gpus")


def _analysis_frames(a: Analysis) -> dict[str, object]:
    """An Analysis as frames and JSON (data.kernels: the first columns of a.kernels, not stored twice)."""
    import pandas as pd

    d = a.data
    same = list(d.kernels.columns) == list(a.kernels.columns[:len(d.kernels.columns)])
    names = pd.DataFrame({"id": d.names.index.to_numpy(), "value": d.names.to_numpy(object)})
    return {**{f"d_{n}": getattr(d, n) for n in _DATA}, "d_names": names,
            "d_kernels": {"json": list(d.kernels.columns)} if same else d.kernels,
            "a_kernels": a.kernels, "a_ranges": a.ranges, "a_transfers": a.transfers,
            "meta": {"json": {"tables": sorted(d.tables), "nvtx_end_ns": d.nvtx_end_ns}}}


def _analysis_from(frames: dict[str, object], export: Path, run: layout.RunRecord | None) -> Analysis | None:
    """The Analysis _analysis_frames() stored, or None when the entry does not hold one."""
    import pandas as pd

    from profkit import parse

    try:
        names, meta, kernels = frames["d_names"], frames["meta"], frames["a_kernels"]
        assert isinstance(names, pd.DataFrame) and isinstance(meta, dict) and isinstance(kernels, pd.DataFrame)
        d_kernels = frames["d_kernels"]
        if isinstance(d_kernels, list):
            d_kernels = kernels[d_kernels]
        series = pd.Series(names["value"].to_numpy(object), index=names["id"].to_numpy(), dtype="object")
        data = parse.ProfileData(kernels=d_kernels, names=series, **{n: frames[f"d_{n}"] for n in _DATA},  # type: ignore[arg-type]
                                 path=export, tables=set(meta["tables"]), nvtx_end_ns=meta["nvtx_end_ns"])
        return Analysis(data, kernels, frames["a_ranges"], frames["a_transfers"], run)  # type: ignore[arg-type]
    except (KeyError, AssertionError, TypeError):
        return None


KERNEL_COLUMNS = ("start_ns", "end_ns", "launch_ns", "dur_ns")
"""The kernel columns load_compact() keeps from the export (int64), before the analysis's own."""
TRANSFER_COLUMNS = ("start_ns", "end_ns", "dur_ns")
"""The memcpy and memset columns load_compact() keeps in Analysis.data, with their sizes (the reports
read dur_ns; launches and owners are Analysis.transfers')."""


def load_compact(export: Path, *, rules: Path | None = None, allow_incomplete: bool = False, nvtx: bool = True,
                 activity: bool = True, run: layout.RunRecord | None = None) -> Analysis:
    """analyze_data(parse.load(export)) of one process's export, with the same frames' values, in
    about a third of the memory: what bounds report.md and the commands built on its analysis on a
    large capture (README, "Large captures: what bounds memory").

    The kernels are read as `report nvtx` reads them (pipeline.attributed(): int32 ids, the launch
    calls of kernels alone, nothing the reports do not use) and first, before anything else is
    held; once attributed they keep start_ns, end_ns, launch_ns, dur_ns (int64), name, short_name,
    category (Categoricals: int8 codes up to 127 texts), owner (int32 while range ids fit) and
    range_path. No correlation id, process, launching thread or name id per kernel survives the
    attribution; memcpy and memset keep
    TRANSFER_COLUMNS in Analysis.data, their launches and owners in Analysis.transfers.

    Raises:
        ProfkitError: the input, its rules, or an incomplete export (unless allow_incomplete).
    """

    import numpy as np
    import pandas as pd

    from profkit import analyze, heap, parse
    from profkit import columns as col
    from profkit.analyze.nvtx import owner_dtype, owners, project_arrays, tree_and_timelines

    # large arrays, freed, go back to the system; the chunks' temporaries reuse the heap's free top
    heap.fixed_mmap_threshold(heap.ANALYSIS_MMAP_THRESHOLD, trim=heap.ANALYSIS_TRIM_THRESHOLD)
    memcpy_cols, memset_cols = ["bytes", "copyKind"], ["bytes"]
    with col.reading(export) as (db, tables, reader):
        k = col.read_kernels(reader, tables, ["start_ns", "end_ns", "name_id", "short_id"], launches=nvtx,
                             processes=False, compact=True)
        for joined in ("correlation_id", "global_pid"):  # read for the launch join and the repeat check only
            k.pop(joined, None)
        if not nvtx:
            k["launch_ns"] = k["launch_tid"] = np.full(len(k["start_ns"]), -1, dtype=np.int64)
        strings = col.read_names(db)
        if nvtx:
            columns, range_names = col.read_nvtx(reader, tables)
        else:
            columns, range_names = col.read_nvtx(reader, set())
        ranges = parse.nvtx_frame(columns, range_names)
        del columns
        nvtx_end_ns = None if nvtx else col.nvtx_last_end(db, tables)
    if not allow_incomplete:
        if nvtx_end_ns is None:
            closed = ranges["end_ns"].dropna()
            nvtx_end_ns = None if closed.empty else int(closed.max())
        if (error := col.incomplete(export, k["end_ns"], nvtx_end_ns)) is not None:
            raise error
    names = pd.Series(strings, dtype="object")
    rule_list = analyze.load_rules(rules)
    ids = pd.Series(pd.unique(k["name_id"]))
    texts = ids.map(names)
    if bool(texts.isna().any()):
        raise col.ProfileError(f"{export} is damaged: {int(texts.isna().sum()):,} kernel name ids (e.g. "
                               f"{ids[texts.isna()].iloc[0]}) are not in StringIds; export the capture again with "
                               "nsys export --type sqlite")
    cats = pd.Series(analyze.categorize(texts, rule_list).to_numpy(), index=ids.to_numpy())
    name_id = k.pop("name_id")
    base = pd.DataFrame({c: k[c] for c in KERNEL_COLUMNS}, copy=False)
    kernels = base.assign(name=analyze.lookup_categorical(name_id, names, "<unknown>"),
                          short_name=analyze.lookup_categorical(k.pop("short_id"), names, "<unknown>"),
                          category=analyze.lookup_categorical(name_id, cats, "other"))
    del name_id
    tree, timelines = tree_and_timelines(ranges if nvtx else ranges.iloc[:0])
    starts = tree["start_ns"].to_numpy(np.int64)
    launch_tid = k.pop("launch_tid")
    owner = (owners(k["launch_ns"], launch_tid, timelines, starts) if len(tree) and len(kernels)
             else np.full(len(kernels), -1, dtype=owner_dtype(len(tree))))
    del launch_tid
    projected = tree.assign(**project_arrays(owner, k["dur_ns"], k["start_ns"], k["end_ns"],
                                             tree["parent"].to_numpy(), tree["depth"].to_numpy()))
    # memcpy and memset last, once the tree's temporaries are gone (read beside them, they set the peak)
    with col.reading(export) as (db, tables, reader):
        if activity:  # their launch calls in one scan, after the kernels' are gone
            col.read_launch_calls(reader, tables, ["%emcpy%", "%emset%"])
        memcpy = (parse._load_activity(reader, tables, "CUPTI_ACTIVITY_KIND_MEMCPY", memcpy_cols, like="%emcpy%")
                  if activity else parse._empty_activity(memcpy_cols))
        memset = (parse._load_activity(reader, tables, "CUPTI_ACTIVITY_KIND_MEMSET", memset_cols, like="%emset%")
                  if activity else parse._empty_activity(memset_cols))
        reader.calls.clear()
        gpus = parse.load_gpus(db, tables if activity else set())
    transfers = transfer_frame(memcpy, memset)
    transfers = transfers.assign(owner=analyze.attribute(transfers, tree, timelines))
    del timelines

    def part(frame: pd.DataFrame, lo: int, extra: list[str]) -> pd.DataFrame:
        """memcpy or memset: views of the transfers' times (rows lo..), their own extra columns."""
        views = {c: transfers[c].to_numpy()[lo:lo + len(frame)] for c in TRANSFER_COLUMNS}
        return pd.DataFrame({**views, **{c: frame[c].to_numpy() for c in extra}}, copy=False)

    # The ranges as read, in the tree's order: views of its columns (end_ns NA while open, as read).
    read = tree[[c for c in ranges.columns if c != "end_ns"]]
    end = pd.array(tree["end_ns"].to_numpy(), dtype="Int64")
    end[tree["end_ns"].to_numpy() == col.OPEN_END] = pd.NA
    as_read = read.assign(end_ns=end)[list(ranges.columns)]
    data = parse.ProfileData(kernels=base, names=names, nvtx=as_read, memcpy=part(memcpy, 0, memcpy_cols),
                             memset=part(memset, len(memcpy), memset_cols), gpus=gpus, path=export,
                             tables=tables, nvtx_end_ns=nvtx_end_ns if not nvtx else None)
    del ranges, memcpy, memset
    return Analysis(data, analyze.with_owner(kernels, projected, owner), projected, transfers, run)


def transfer_frame(memcpy: pd.DataFrame, memset: pd.DataFrame) -> pd.DataFrame:
    """memcpy then memset rows in one frame (start_ns, end_ns, dur_ns, launch_ns, launch_tid),
    `kind` a Categorical (memcpy, memset): a byte per row, not a string pointer."""
    import numpy as np
    import pandas as pd

    cols = ["start_ns", "end_ns", "dur_ns", "launch_ns", "launch_tid"]
    kind = pd.Categorical.from_codes(np.repeat(np.array([0, 1], dtype=np.int8), [len(memcpy), len(memset)]),
                                     categories=pd.Index(["memcpy", "memset"], dtype=object))
    return pd.concat([memcpy[cols], memset[cols]], ignore_index=True).assign(kind=kind)


def analyze_data(data: parse.ProfileData, *, rules: Path | None = None, nvtx: bool = True,
                 run: layout.RunRecord | None = None) -> Analysis:
    """Analysis of parsed data: categories per name, NVTX tree, owners and paths as columns."""
    import pandas as pd

    from profkit import analyze
    from profkit.analyze.nvtx import tree_and_timelines

    rule_list = analyze.load_rules(rules)
    ids = pd.Series(pd.unique(data.kernels["name_id"]))
    names = ids.map(data.names)
    if bool(names.isna().any()):
        from profkit.columns import ProfileError

        raise ProfileError(f"{data.path} is damaged: {int(names.isna().sum()):,} kernel name ids (e.g. "
                           f"{ids[names.isna()].iloc[0]}) are not in StringIds; export the capture again with nsys "
                           "export --type sqlite")
    cats = pd.Series(analyze.categorize(names, rule_list).to_numpy(), index=ids.to_numpy())
    kernels = analyze.kernel_frame(data.kernels, data.names, cats)
    tree, timelines = tree_and_timelines(data.nvtx if nvtx else data.nvtx.iloc[:0])
    owner = analyze.attribute(kernels, tree, timelines)
    ranges = analyze.project(kernels, tree, owner)
    transfers = transfer_frame(data.memcpy, data.memset)
    transfers = transfers.assign(owner=analyze.attribute(transfers, tree, timelines))
    return Analysis(data, analyze.with_owner(kernels, ranges, owner), ranges, transfers, run)


def _digest(path: Path | None) -> str | None:
    """A file's content digest for a cache key (None: no file, or unreadable: the report says why)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None
    except OSError:
        return None


def cached_report(path: Path, stage: str, options: dict[str, object], make: Callable[[], str], *,
                  rules: Path | None = None, use_cache: bool = True, rank: int | None = None) -> str:
    """A report's text, from the cache when this export, these options and these rules made it
    before; else `make()`, stored for next time (profkit.cache; `--no-cache` skips both).

    The key covers the export (profkit.cache.file_key), the stage and its options, the rules
    file's content and, for a capture folder, its run.json's. Errors are never cached.
    """
    export = resolve_input(path, rank)
    store = cache.for_export(export, enabled=use_cache) if export.is_file() else None
    if store is None:
        return make()
    folder = path if path.is_dir() else path.parent
    has_run = path.is_dir() or path.name == layout.EXPORT
    record = folder / layout.RUN_FILE
    if capture_ranks(folder) and path.is_dir():
        record = folder / layout.RANK_RUN.format(rank=capture_ranks(folder)[0] if rank is None else rank)
    key = dict(options, rules=_digest(rules), run=_digest(record) if has_run else None)
    if rank is not None or (path.is_dir() and capture_ranks(path)):
        key["rank"] = capture_ranks(path)[0] if rank is None and path.is_dir() else rank
    return cache.memo_text(store, cache.options_name(stage, key), make)


@dataclass(frozen=True, slots=True)
class ExportSummary:
    kernels: int | None
    """Rows of CUPTI_ACTIVITY_KIND_KERNEL; None when the table is missing."""
    ranges: dict[str, int]
    """NVTX range names (text or registered string) and how often each occurs."""


def summarize(data: parse.ProfileData) -> ExportSummary:
    """Kernel count and NVTX range names of a parsed export."""
    kernels = len(data.kernels) if data.has_kernel_table else None
    return ExportSummary(kernels, {str(k): int(v) for k, v in data.nvtx["name"].value_counts().items()})


def summarize_export(path: Path) -> ExportSummary:
    """Kernel count and NVTX range names of an export, read with profkit's parser."""
    from profkit import parse

    return summarize(parse.load(path, allow_incomplete=True, launches=False))


def check_export(summary: ExportSummary, *, device: str, steps: int, ranges: bool) -> None:
    """Raise InputError if the export misses what the run emitted: kernels on CUDA, and (when the
    run emitted ranges) its `step_i` and `forward` ranges."""
    if device == "cuda" and summary.kernels is None:
        raise InputError("the export has no kernels table although the run used CUDA: nsys recorded no GPU "
                         "activity; check --trace includes cuda and that capture started (cudaProfilerApi)")
    if device == "cuda" and summary.kernels == 0:
        raise InputError("the export has no kernels although the run used CUDA; use a newer nsys "
                         "(see profkit doctor)")
    if not ranges:
        return
    expected = {f"step_{i}" for i in range(steps)} | {"forward"}
    missing = sorted(expected - set(summary.ranges))
    if missing:
        raise InputError(f"NVTX ranges profkit emitted are missing from the export ({', '.join(missing[:4])}"
                         f"{'...' if len(missing) > 4 else ''}): this nsys did not record the nvtx package's "
                         "ranges; keep nvtx==0.2.10 (profkit's pin) and include nvtx in --trace")


def check_capture(folder: Path) -> None:
    """`profkit profile`'s test of a fresh capture folder (its run.json and export).

    Raises:
        ProfkitError: kernels or profkit's ranges are missing, or the analysis stopped early.
    """
    from profkit import parse

    record = layout.RunRecord.read(folder)
    data = parse.load(folder / layout.EXPORT, allow_incomplete=True, launches=False)  # read once for both checks
    device = record.resolved.device.split(":")[0]
    check_export(summarize(data), device=device, steps=record.config.steps, ranges=record.resolved.nvtx)
    if device == "cuda":  # an analysis that stopped early leaves a truncated export
        parse.check_complete(data)
