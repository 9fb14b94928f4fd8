"""Read an nsys SQLite export into a ProfileData: a dataclass of DataFrames, nanoseconds as
integers, columns named with their units. No torch, and the file is opened read-only.

Schemas of nsys 2022.x to 2025.x differ in small ways, all handled here:
- tables are created lazily: a missing table is an empty frame with the right columns;
- kernel names are StringIds ids in `demangledName`, `shortName` and `mangledName`, any of
  which may be missing (older exports have `name`);
- NVTX text is inline (`text`, from torch.cuda.nvtx) or a registered string (`textId`, from
  the nvtx package); event types are looked up by name in ENUM_NSYS_EVENT_TYPE;
- `correlationId` is unique only within a process: runtime calls join kernels on it AND on
  the process (`globalPid = globalTid & 0xFFFFFFFFFF000000`);
- an NVTX range still open when the capture stopped has a NULL `end`.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profkit import frames  # noqa: F401  (sets pandas' copy-on-write, once for every stage)
from profkit.errors import ProfkitError

# globalTid -> globalPid: nsys serialises pid and tid in one integer; the mask
# 0xFFFFFFFFFF000000 is written as the signed 64-bit integer it is, so SQLite and numpy take it.
PID_MASK = ~0xFFFFFF


def pid_of(global_tid: np.ndarray) -> np.ndarray:
    """The process part of nsys's globalTid (globalPid, as nsys stores it).

    >>> int(pid_of(np.array([(7 << 24) | 123]))[0]) == 7 << 24
    True
    """
    return global_tid & PID_MASK
KERNEL_TABLE = "CUPTI_ACTIVITY_KIND_KERNEL"
RUNTIME_TABLE = "CUPTI_ACTIVITY_KIND_RUNTIME"
NVTX_TABLE = "NVTX_EVENTS"
# Fallback when an export has no ENUM_NSYS_EVENT_TYPE (seen in nsys 2022.x): the ids it used.
NVTX_TYPES_FALLBACK = {34: "NvtxMark", 59: "NvtxPushPopRange", 60: "NvtxStartEndRange"}
RANGE_TYPES = ("NvtxPushPopRange", "NvtxStartEndRange")
# An export whose CUDA activity ends this long before its NVTX ranges do was cut short by an
# analysis that stopped early (seen with nsys 2023.4.4 on CUDA 13: 2 kernels kept).
INCOMPLETE_GAP_NS = 1_000_000_000


class ProfileError(ProfkitError):
    """The file is not a usable nsys export; the message says why and what to do."""


@dataclass(slots=True)
class ProfileData:
    kernels: pd.DataFrame
    """One row per kernel: start_ns, end_ns, dur_ns, device_id, stream_id, correlation_id,
    global_pid, name_id (demangled), short_id, launch_ns and launch_tid (the runtime call that
    launched it; -1 when none was recorded)."""
    names: pd.Series
    """StringIds: id -> text."""
    nvtx: pd.DataFrame
    """NVTX ranges: start_ns, end_ns, global_tid, global_pid, name, kind (push_pop, start_end),
    seq (the autograd sequence number of PyTorch's per-op ranges, else NA)."""
    memcpy: pd.DataFrame
    memset: pd.DataFrame
    gpus: pd.DataFrame
    path: Path
    tables: set[str] = field(default_factory=set)
    nvtx_end_ns: int | None = None
    """When `nvtx` was not loaded: the last end of its ranges (for check_complete), else None."""

    @property
    def has_kernel_table(self) -> bool:
        return KERNEL_TABLE in self.tables


# Tables only an nsys export has (any of them, beside StringIds): a capture with no CUDA and no
# NVTX (a CPU run with --nvtx off) still has its session and export metadata.
NSYS_MARKERS = {KERNEL_TABLE, NVTX_TABLE, RUNTIME_TABLE, "TARGET_INFO_GPU", "TARGET_INFO_SESSION_START_TIME",
                "META_DATA_EXPORT", "ANALYSIS_DETAILS"}


def _connect(path: Path) -> tuple[sqlite3.Connection, set[str]]:
    if not path.exists():
        raise ProfileError(f"{path} does not exist")
    if path.is_dir():
        raise ProfileError(f"{path} is a folder; give a profile.sqlite (or a capture folder to `profkit report`)")
    if path.stat().st_size == 0:
        raise ProfileError(f"{path} is empty; export the capture again with nsys export --type sqlite")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path} is not a readable SQLite file ({e}); export the capture again with "
                           "nsys export --type sqlite") from None
    if "StringIds" not in tables or not tables & NSYS_MARKERS:
        db.close()
        raise ProfileError(f"{path} is SQLite but not an nsys export (no StringIds and no nsys session tables)")
    return db, tables


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


CHUNK_ROWS = 100_000
READER_ENV = "PROFKIT_READER"
"""`sqlite3` forces the plain-sqlite reader (tests compare the two; the benchmark times both)."""


def _adbc_modules() -> tuple[Any, Any, Any] | None:
    """ADBC's driver manager, its SQLite driver and nanoarrow, or None when any is missing."""
    if os.environ.get(READER_ENV) == "sqlite3":
        return None
    try:
        import adbc_driver_manager
        import adbc_driver_sqlite
        import nanoarrow
    except ImportError:
        return None
    return adbc_driver_manager, adbc_driver_sqlite, nanoarrow


class Reader:
    """Integer columns of a query as numpy arrays, from one read-only export.

    Through ADBC's SQLite driver when it is installed: SQLite's rows become Arrow batches in C
    and each column's buffer is viewed by numpy, with no Python object per value (1 M kernels:
    reports/bench.md). Otherwise, or when ADBC fails on a query (a type it cannot infer, a
    damaged page), the same query through sqlite3, whose errors are then the ones reported.
    """

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path, self.db = path, db
        self._adbc: Any = None
        self._modules = _adbc_modules()
        self.calls: dict[str | None, list[np.ndarray]] = {}
        """launch_calls() already read, by pattern (load() reads every pattern it needs in one scan)."""

    def close(self) -> None:
        if self._adbc is not None:
            for handle in reversed(self._adbc):
                handle.close()
            self._adbc = None

    def ints(self, sql: str, n: int) -> list[np.ndarray]:
        """Run `sql` (n integer columns, no NULLs: coalesce them) into n int64 arrays."""
        if self._modules is not None:
            try:
                return self._ints_adbc(sql, n)
            except Exception:  # noqa: BLE001  (any driver failure: sqlite3 reads it or says why not)
                self.close()
                self._modules = None
        return self._ints_sqlite(sql, n)

    def _ints_sqlite(self, sql: str, n: int) -> list[np.ndarray]:
        # Rows come from sqlite3 as tuples; converting them a chunk at a time keeps at most one
        # chunk of Python objects alive, so peak memory stays near the arrays' own size.
        cur = self.db.execute(sql)
        chunks = []
        while rows := cur.fetchmany(CHUNK_ROWS):
            chunks.append(np.array(rows, dtype=np.int64).reshape(-1, n))
        array = np.concatenate(chunks) if chunks else np.empty((0, n), dtype=np.int64)
        return [np.ascontiguousarray(array[:, i]) for i in range(n)]

    def _ints_adbc(self, sql: str, n: int) -> list[np.ndarray]:
        assert self._modules is not None
        manager, driver, na = self._modules
        if self._adbc is None:
            database = manager.AdbcDatabase(driver=driver._driver_path(), uri=f"file:{self.path}?mode=ro")
            self._adbc = [database, manager.AdbcConnection(database)]
        statement = manager.AdbcStatement(self._adbc[1])
        try:
            statement.set_options(**{"adbc.sqlite.query.batch_rows": str(1 << 16)})
            statement.set_sql_query(sql)
            stream, _ = statement.execute_query()
            chunks: list[list[np.ndarray]] = [[] for _ in range(n)]
            reader = na.c_array_stream(stream)
            schema = reader.get_schema()
            if schema.n_children != n or any(schema.child(i).format != "l" for i in range(n)):
                raise ValueError(f"expected {n} int64 columns")
            for batch in reader:
                for i in range(n):
                    child = batch.child(i)
                    view = child.view()
                    lo, hi = child.offset, child.offset + child.length
                    if child.null_count != 0 and view.buffer(0).size_bytes:  # -1: not counted; look
                        bits = np.unpackbits(np.frombuffer(view.buffer(0), dtype=np.uint8), bitorder="little")
                        if not bits[lo:hi].all():
                            raise ValueError("a NULL in a column the query should have coalesced")
                    chunks[i].append(np.frombuffer(view.buffer(1), dtype=np.int64)[lo:hi])  # keeps the batch alive
        finally:
            statement.close()
        return [np.concatenate(c) if c else np.empty(0, dtype=np.int64) for c in chunks]


def _frame(reader: Reader, sql: str, columns: list[str]) -> pd.DataFrame:
    """Run `sql` (integer columns, no NULLs) into an int64 frame."""
    return pd.DataFrame(dict(zip(columns, reader.ints(sql, len(columns)), strict=True)), copy=False)


def launch_calls(reader: Reader, tables: set[str], *, like: str | None = "%Launch%") -> list[np.ndarray]:
    """(correlation id, process, start, thread) of the runtime calls whose name is LIKE `like`
    (every call when None).

    Kernels come from launch calls (cudaLaunchKernel, cuLaunchKernelEx, cudaGraphLaunch...), a
    minority of a trace's runtime calls; their names are the StringIds that mention Launch.
    memcpy and memset come from calls named so (cudaMemcpyAsync, cudaMemsetAsync...).
    """
    if like in reader.calls:
        return list(reader.calls[like])
    where = ""
    have = _columns(reader.db, RUNTIME_TABLE)
    if like is not None and "nameId" in have:
        where = f" WHERE nameId IN (SELECT id FROM StringIds WHERE value LIKE '{like}')"
    corr, tid, start = reader.ints(f"SELECT coalesce(correlationId, -1), coalesce(globalTid, -1), start "
                                   f"FROM {RUNTIME_TABLE}{where}", 3)
    return [corr, pid_of(tid), start, tid]


def read_launch_calls(reader: Reader, tables: set[str], likes: list[str]) -> None:
    """Read the runtime calls of several name patterns in one scan of the runtime table (each
    table read costs a scan of every call), then keep each pattern's rows, in table order, for
    launch_calls(). Nothing read when there is no runtime table or no nameId column."""
    if RUNTIME_TABLE not in tables or "nameId" not in _columns(reader.db, RUNTIME_TABLE):
        return
    ids = {like: np.array([r[0] for r in reader.db.execute("SELECT id FROM StringIds WHERE value LIKE ?", (like,))],
                          dtype=np.int64) for like in likes}
    wanted = np.unique(np.concatenate(list(ids.values())))
    if not len(wanted):
        return
    corr, tid, start, name = reader.ints(
        "SELECT coalesce(correlationId, -1), coalesce(globalTid, -1), start, nameId FROM "
        f"{RUNTIME_TABLE} WHERE nameId IN ({', '.join(map(str, wanted.tolist()))})", 4)
    for like, mine in ids.items():
        keep = np.isin(name, mine)
        reader.calls[like] = [corr[keep], pid_of(tid[keep]), start[keep], tid[keep]]


def join_launches(corr: np.ndarray, pid: np.ndarray, calls: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each kernel's launch (start, thread) by (correlation id, process); -1 where none.

    A sort and a binary search in numpy, the way SQLite's LEFT JOIN would pair them (first call
    of a (process, correlation id) pair when an export repeats one).

    >>> calls = [np.array([5, 7]), np.array([0, 0]), np.array([50, 70]), np.array([1, 1])]
    >>> [a.tolist() for a in join_launches(np.array([7, 5, 9]), np.array([0, 0, 0]), calls)]
    [[70, 50, -1], [1, 1, -1]]
    """
    r_corr, r_pid, r_start, r_tid = calls
    order = np.lexsort((r_corr, r_pid))
    s_pid, s_corr = r_pid[order], r_corr[order]
    # Search on (pid, corr) pairs: by process first, then within its block by correlation id.
    lo = np.searchsorted(s_pid, pid, side="left")
    hi = np.searchsorted(s_pid, pid, side="right")
    pos = np.empty(len(corr), dtype=np.int64)
    for p in np.unique(pid):
        mine = np.flatnonzero(pid == p)
        a, b = int(lo[mine[0]]), int(hi[mine[0]])
        pos[mine] = a + np.searchsorted(s_corr[a:b], corr[mine], side="left")
    found = pos < len(order)
    safe = np.where(found, pos, 0)
    found &= (s_pid[safe] == pid) & (s_corr[safe] == corr) if len(order) else found
    src = order[safe] if len(order) else np.zeros(len(corr), dtype=np.int64)
    start = np.where(found, r_start[src] if len(order) else -1, -1)
    tid = np.where(found, r_tid[src] if len(order) else -1, -1)
    return start, tid


def load_kernels(db: sqlite3.Connection | Reader, tables: set[str], *, launches: bool = True,
                 lean: bool = False) -> pd.DataFrame:
    """Kernels, each joined (when `launches`) to the runtime call that launched it.

    `lean` reads only what the reports use: no device_id and stream_id, and without `launches`
    no correlation_id and global_pid either (every column read costs ~0.1 s per million kernels).
    """
    reader = db if isinstance(db, Reader) else Reader(Path(), db)
    cols = ["start_ns", "end_ns", "device_id", "stream_id", "correlation_id", "global_pid", "name_id", "short_id",
            "launch_ns", "launch_tid"]
    if KERNEL_TABLE not in tables:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in [*cols, "dur_ns"]})
    have = _columns(reader.db, KERNEL_TABLE)
    name = next((c for c in ("demangledName", "name", "shortName", "mangledName") if c in have), None)
    if name is None:
        raise ProfileError("the kernels table has no name column (demangledName, shortName, mangledName)")
    short = "shortName" if "shortName" in have else name
    pid = "coalesce(globalPid, 0)" if "globalPid" in have else "0"
    exprs = dict(zip(cols[:8], ["start", "end", "deviceId", "streamId", "coalesce(correlationId, -1)", pid, name,
                                short], strict=True))
    if lean:
        for c in ["device_id", "stream_id"] + ([] if launches else ["correlation_id", "global_pid"]):
            del exprs[c]
    sql = f"SELECT {', '.join(exprs.values())} FROM {KERNEL_TABLE}"
    columns = dict(zip(exprs, reader.ints(sql, len(exprs)), strict=True))
    n = len(columns["start_ns"])
    launch_ns = launch_tid = np.full(n, -1, dtype=np.int64)
    if launches and RUNTIME_TABLE in tables and n:
        corr = columns["correlation_id"]
        # Without globalPid a correlation id is matched in any process (as the SQL join did).
        k_pid = columns["global_pid"] if "globalPid" in have else None
        calls = launch_calls(reader, tables)
        if k_pid is None:
            calls[1] = np.zeros_like(calls[1])
        kp = k_pid if k_pid is not None else np.zeros(n, dtype=np.int64)
        launch_ns, launch_tid = join_launches(corr, kp, calls)
        if (launch_tid[corr >= 0] < 0).any():  # a kernel whose launch call is not named *Launch*: read them all
            calls = launch_calls(reader, tables, like=None)
            if k_pid is None:
                calls[1] = np.zeros_like(calls[1])
            launch_ns, launch_tid = join_launches(corr, kp, calls)
    columns["launch_ns"], columns["launch_tid"] = launch_ns, launch_tid
    columns["dur_ns"] = columns["end_ns"] - columns["start_ns"]
    if lean:
        return pd.DataFrame(columns, copy=False)
    return pd.DataFrame({c: columns[c] for c in [*cols, "dur_ns"]}, copy=False)


def load_names(db: sqlite3.Connection) -> pd.Series:
    rows = db.execute("SELECT id, value FROM StringIds").fetchall()
    return pd.Series({i: v for i, v in rows}, dtype="object")


def nvtx_type_names(db: sqlite3.Connection, tables: set[str]) -> dict[int, str]:
    if "ENUM_NSYS_EVENT_TYPE" in tables:
        return {i: n for i, n in db.execute("SELECT id, name FROM ENUM_NSYS_EVENT_TYPE")}
    return dict(NVTX_TYPES_FALLBACK)


def load_nvtx(db: sqlite3.Connection, tables: set[str]) -> pd.DataFrame:
    cols = ["start_ns", "end_ns", "global_tid", "global_pid", "name", "kind"]
    empty = pd.DataFrame({"start_ns": pd.Series(dtype="int64"), "end_ns": pd.Series(dtype="int64"),
                          "global_tid": pd.Series(dtype="int64"), "global_pid": pd.Series(dtype="int64"),
                          "name": pd.Series(dtype="object"), "kind": pd.Series(dtype="object"),
                          "seq": pd.Series(dtype="Int64")})
    if NVTX_TABLE not in tables:
        return empty
    types = {i: n for i, n in nvtx_type_names(db, tables).items() if n in RANGE_TYPES}
    if not types:
        return empty
    have = _columns(db, NVTX_TABLE)
    text = "n.text" if "text" in have else "NULL"
    text_id = "s.value" if "textId" in have else "NULL"
    join = " LEFT JOIN StringIds s ON s.id = n.textId" if "textId" in have else ""
    sql = (f"SELECT n.start, n.end, n.globalTid, n.eventType, coalesce({text}, {text_id}) FROM {NVTX_TABLE} n{join} "
           f"WHERE n.eventType IN ({', '.join(map(str, types))})")
    rows = db.execute(sql).fetchall()
    if not rows:
        return empty
    frame = pd.DataFrame(rows, columns=["start_ns", "end_ns", "global_tid", "type", "name"])
    frame["end_ns"] = frame["end_ns"].astype("Int64")
    frame["global_tid"] = frame["global_tid"].fillna(0).astype("int64")
    frame["global_pid"] = pid_of(frame["global_tid"])
    push_pop = [t for t, n in types.items() if n == "NvtxPushPopRange"]
    frame["kind"] = np.where(frame["type"].isin(push_pop).to_numpy(), "push_pop", "start_end").astype(object)
    # Range names repeat (115 k ranges, a few hundred names): split each distinct name once.
    codes, uniq = pd.factorize(frame["name"].fillna("").astype(object))
    clean, seq = split_op_names(pd.Series(uniq, dtype=object))
    frame["name"] = clean.to_numpy(object)[codes]
    frame["seq"] = seq.array[codes]
    return frame[[*cols, "seq"]]


# PyTorch's per-op ranges (nsys --pytorch=autograd-nvtx, torch.autograd.profiler.emit_nvtx):
# `aten::mm, seq = 4211, op_id = 40123[, sizes = ...]` in forward, `MmBackward0, seq = 4211,
# op_id = 42763` for the autograd node that op created, run in backward.
_OP_RANGE = r"^(?P<op>[^,]+?), (?:seq = (?P<seq>\d+), )?op_id = \d+"


def split_op_names(names: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Per-op range names without their per-call ids (so paths repeat), and their sequence number.

    >>> n, s = split_op_names(pd.Series(["aten::mm, seq = 7, op_id = 9", "aten::view, op_id = 10", "layer_0"]))
    >>> n.tolist(), s.tolist()
    (['aten::mm', 'aten::view', 'layer_0'], [7, <NA>, <NA>])
    """
    parts = names.str.extract(_OP_RANGE)
    clean = parts["op"].where(parts["op"].notna(), names)
    return clean.astype(object), pd.to_numeric(parts["seq"]).astype("Int64")


def _load_activity(reader: Reader, tables: set[str], table: str, extra: list[str], *, like: str) -> pd.DataFrame:
    """memcpy or memset rows, each with its launching runtime call (launch_ns, launch_tid; -1 if none),
    joined as kernels are: on correlation id and process; `like` names the calls that launch them."""
    base = ["start", "end", "deviceId", "streamId", "correlationId", "globalPid"]
    names = ["start_ns", "end_ns", "device_id", "stream_id", "correlation_id", "global_pid"]
    if table not in tables:
        return _empty_activity(extra)
    have = _columns(reader.db, table)
    select = [f"coalesce({c}, -1)" if c in have else "0" for c in base + extra]
    frame = _frame(reader, f"SELECT {', '.join(select)} FROM {table}", names + extra)
    n = len(frame)
    launch_ns = launch_tid = np.full(n, -1, dtype=np.int64)
    if RUNTIME_TABLE in tables and n and "correlationId" in have:
        corr = frame["correlation_id"].to_numpy()
        pid = frame["global_pid"].to_numpy() if "globalPid" in have else np.zeros(n, dtype=np.int64)
        for pattern in (like, None):  # the named calls first; every call if one is not found among them
            calls = launch_calls(reader, tables, like=pattern)
            if "globalPid" not in have:
                calls[1] = np.zeros_like(calls[1])
            launch_ns, launch_tid = join_launches(corr, pid, calls)
            if not (launch_tid[corr >= 0] < 0).any():
                break
    frame = frame.assign(launch_ns=launch_ns, launch_tid=launch_tid)
    return frame.assign(dur_ns=frame["end_ns"] - frame["start_ns"])


def load_gpus(db: sqlite3.Connection, tables: set[str]) -> pd.DataFrame:
    if "TARGET_INFO_GPU" not in tables:
        return pd.DataFrame({"id": pd.Series(dtype="int64"), "name": pd.Series(dtype="object")})
    have = _columns(db, "TARGET_INFO_GPU")
    wanted = [c for c in ("id", "name", "smCount", "clockRate", "memoryBandwidth", "totalMemory", "computeMajor",
                          "computeMinor") if c in have]
    return pd.read_sql_query(f"SELECT {', '.join(wanted)} FROM TARGET_INFO_GPU", db)


def check_complete(data: ProfileData) -> None:
    """Refuse an export whose analysis stopped early: its CUDA activity ends long before its NVTX.

    Raises:
        ProfileError: CUDA kernels end more than a second before the last NVTX range.
    """
    if data.kernels.empty:
        return
    if data.nvtx_end_ns is not None:  # the NVTX table was not loaded: its last end, read apart
        last = data.nvtx_end_ns
    else:
        nvtx_end = data.nvtx["end_ns"].dropna()
        if nvtx_end.empty:
            return
        last = int(nvtx_end.max())
    gap = last - int(data.kernels["end_ns"].max())
    if gap > INCOMPLETE_GAP_NS:
        raise ProfileError(
            f"{data.path} looks incomplete: its {len(data.kernels):,} kernels end {gap / 1e9:.1f} s before its NVTX "
            "ranges do, as when nsys's analysis stops at a CUDA call it does not know; capture again with a newer "
            "nsys or only the measured steps, or pass --allow-incomplete to report what is there")


def nvtx_last_end(db: sqlite3.Connection, tables: set[str]) -> int | None:
    """The last end of the export's NVTX ranges (None: none), without loading them."""
    if NVTX_TABLE not in tables:
        return None
    types = [i for i, n in nvtx_type_names(db, tables).items() if n in RANGE_TYPES]
    if not types:
        return None
    row = db.execute(f"SELECT max(end) FROM {NVTX_TABLE} WHERE eventType IN ({', '.join(map(str, types))})").fetchone()
    return None if row[0] is None else int(row[0])


def _empty_activity(extra: list[str]) -> pd.DataFrame:
    names = ["start_ns", "end_ns", "device_id", "stream_id", "correlation_id", "global_pid", *extra, "launch_ns",
             "launch_tid", "dur_ns"]
    return pd.DataFrame({c: pd.Series(dtype="int64") for c in names})


def load(path: Path | str, *, allow_incomplete: bool = False, launches: bool = True, nvtx: bool = True,
         activity: bool = True, lean: bool = False) -> ProfileData:
    """Read an nsys SQLite export (read-only).

    Args:
        path: the `.sqlite` written by `nsys export --type sqlite`.
        allow_incomplete: report an export whose analysis stopped early instead of refusing it.
        launches: join each kernel to its launching runtime call (NVTX projection needs it).
        nvtx: read the NVTX ranges; False leaves `nvtx` empty (the completeness check still runs,
            on the ranges' last end alone).
        activity: read memcpy, memset and the GPUs; False leaves them empty.
        lean: read only the kernel columns the reports use (load_kernels).

    Returns:
        ProfileData with every table profkit reads; missing (or skipped) tables are empty frames.

    Raises:
        ProfileError: not a file, empty, not SQLite, corrupt, not an nsys export, or incomplete.
    """
    path = Path(path)
    db, tables = _connect(path)
    reader = Reader(path, db)
    memcpy_cols, memset_cols = ["bytes", "copyKind"], ["bytes"]
    try:
        if activity:  # the launches of kernels, memcpy and memset: one scan of the runtime calls
            likes = ["%Launch%"] if launches else []
            read_launch_calls(reader, tables, [*likes, "%emcpy%", "%emset%"])
        data = ProfileData(
            kernels=load_kernels(reader, tables, launches=launches, lean=lean),
            names=load_names(db),
            nvtx=load_nvtx(db, tables) if nvtx else load_nvtx(db, set()),
            memcpy=(_load_activity(reader, tables, "CUPTI_ACTIVITY_KIND_MEMCPY", memcpy_cols, like="%emcpy%")
                    if activity else _empty_activity(memcpy_cols)),
            memset=(_load_activity(reader, tables, "CUPTI_ACTIVITY_KIND_MEMSET", memset_cols, like="%emset%")
                    if activity else _empty_activity(memset_cols)),
            gpus=load_gpus(db, tables if activity else set()),
            path=path,
            tables=tables,
            nvtx_end_ns=None if nvtx else nvtx_last_end(db, tables),
        )
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path} is damaged ({e}); export the capture again with nsys export --type sqlite") \
            from None
    finally:
        reader.close()
        db.close()
    if not allow_incomplete:
        check_complete(data)
    return data
