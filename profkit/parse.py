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

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

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


def _frame(db: sqlite3.Connection, sql: str, columns: list[str]) -> pd.DataFrame:
    """Run `sql` (integer columns, no NULLs) into an int64 frame.

    Rows come from sqlite3 as tuples; converting them a chunk at a time keeps at most one
    chunk of Python objects alive, so peak memory stays near the arrays' own size (1 M
    kernels: reports/bench.md). pandas.read_sql would build every row as objects first.
    """
    cur = db.execute(sql)
    chunks = []
    while rows := cur.fetchmany(CHUNK_ROWS):
        chunks.append(np.array(rows, dtype=np.int64))
    array = np.concatenate(chunks) if chunks else np.empty((0, len(columns)), dtype=np.int64)
    return pd.DataFrame(array, columns=columns)


def load_kernels(db: sqlite3.Connection, tables: set[str], *, launches: bool = True) -> pd.DataFrame:
    """Kernels, each joined (when `launches`) to the runtime call that launched it."""
    cols = ["start_ns", "end_ns", "device_id", "stream_id", "correlation_id", "global_pid", "name_id", "short_id",
            "launch_ns", "launch_tid"]
    if KERNEL_TABLE not in tables:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in [*cols, "dur_ns"]})
    have = _columns(db, KERNEL_TABLE)
    name = next((c for c in ("demangledName", "name", "shortName", "mangledName") if c in have), None)
    if name is None:
        raise ProfileError("the kernels table has no name column (demangledName, shortName, mangledName)")
    short = "shortName" if "shortName" in have else name
    pid = "coalesce(k.globalPid, 0)" if "globalPid" in have else "0"
    join, launch = "", "-1, -1"
    if launches and RUNTIME_TABLE in tables:
        # A correlation id is unique within a process only: join on both.
        join = (f" LEFT JOIN {RUNTIME_TABLE} r ON r.correlationId = k.correlationId"
                + (f" AND (r.globalTid & {PID_MASK}) = k.globalPid" if "globalPid" in have else ""))
        launch = "coalesce(r.start, -1), coalesce(r.globalTid, -1)"
    sql = (f"SELECT k.start, k.end, k.deviceId, k.streamId, coalesce(k.correlationId, -1), {pid}, k.{name}, "
           f"k.{short}, {launch} FROM {KERNEL_TABLE} k{join}")
    frame = _frame(db, sql, cols)
    return frame.assign(dur_ns=frame["end_ns"] - frame["start_ns"])


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
    frame["kind"] = frame["type"].map(lambda t: "push_pop" if types[t] == "NvtxPushPopRange" else "start_end")
    frame["name"], frame["seq"] = split_op_names(frame["name"].fillna("").astype(object))
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


def _load_activity(db: sqlite3.Connection, tables: set[str], table: str, extra: list[str]) -> pd.DataFrame:
    """memcpy or memset rows, each with its launching runtime call (launch_ns, launch_tid; -1 if none),
    joined as kernels are: on correlation id and process."""
    base = ["start", "end", "deviceId", "streamId", "correlationId", "globalPid"]
    names = ["start_ns", "end_ns", "device_id", "stream_id", "correlation_id", "global_pid"]
    launch = ["launch_ns", "launch_tid"]
    if table not in tables:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in [*names, *extra, *launch, "dur_ns"]})
    have = _columns(db, table)
    select = [f"coalesce(a.{c}, -1)" if c in have else "0" for c in base + extra]
    join, when = "", "-1, -1"
    if RUNTIME_TABLE in tables and "correlationId" in have:
        join = (f" LEFT JOIN {RUNTIME_TABLE} r ON r.correlationId = a.correlationId"
                + (f" AND (r.globalTid & {PID_MASK}) = a.globalPid" if "globalPid" in have else ""))
        when = "coalesce(r.start, -1), coalesce(r.globalTid, -1)"
    frame = _frame(db, f"SELECT {', '.join(select)}, {when} FROM {table} a{join}", names + extra + launch)
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
    if data.kernels.empty or data.nvtx.empty:
        return
    nvtx_end = data.nvtx["end_ns"].dropna()
    if nvtx_end.empty:
        return
    gap = int(nvtx_end.max()) - int(data.kernels["end_ns"].max())
    if gap > INCOMPLETE_GAP_NS:
        raise ProfileError(
            f"{data.path} looks incomplete: its {len(data.kernels):,} kernels end {gap / 1e9:.1f} s before its NVTX "
            "ranges do, as when nsys's analysis stops at a CUDA call it does not know; capture again with a newer "
            "nsys or only the measured steps, or pass --allow-incomplete to report what is there")


def load(path: Path | str, *, allow_incomplete: bool = False, launches: bool = True) -> ProfileData:
    """Read an nsys SQLite export (read-only).

    Args:
        path: the `.sqlite` written by `nsys export --type sqlite`.
        allow_incomplete: report an export whose analysis stopped early instead of refusing it.
        launches: join each kernel to its launching runtime call (NVTX projection needs it).

    Returns:
        ProfileData with every table profkit reads; missing tables are empty frames.

    Raises:
        ProfileError: not a file, empty, not SQLite, corrupt, not an nsys export, or incomplete.
    """
    path = Path(path)
    db, tables = _connect(path)
    try:
        data = ProfileData(
            kernels=load_kernels(db, tables, launches=launches),
            names=load_names(db),
            nvtx=load_nvtx(db, tables),
            memcpy=_load_activity(db, tables, "CUPTI_ACTIVITY_KIND_MEMCPY", ["bytes", "copyKind"]),
            memset=_load_activity(db, tables, "CUPTI_ACTIVITY_KIND_MEMSET", ["bytes"]),
            gpus=load_gpus(db, tables),
            path=path,
            tables=tables,
        )
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path} is damaged ({e}); export the capture again with nsys export --type sqlite") \
            from None
    finally:
        db.close()
    if not allow_incomplete:
        check_complete(data)
    return data
