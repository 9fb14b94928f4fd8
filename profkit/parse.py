"""Read an nsys SQLite export into a ProfileData: a dataclass of DataFrames, nanoseconds as
integers, columns named with their units. No torch, and the file is opened read-only.

The reading itself (schemas of nsys 2022.x to 2025.x, the launch join, NULLs) is
profkit.columns, which hands numpy arrays over without pandas; this module wraps them in the
DataFrames the analysis and the reports take.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from profkit import columns as col
from profkit import frames  # noqa: F401  (sets pandas' copy-on-write, once for every stage)
from profkit.columns import (  # noqa: F401  (parse's names since before profkit.columns)
    INCOMPLETE_GAP_NS,
    KERNEL_TABLE,
    NSYS_MARKERS,
    NVTX_TABLE,
    PID_MASK,
    RANGE_TYPES,
    READER_ENV,
    RUNTIME_TABLE,
    ProfileError,
    Reader,
    _adbc_modules,
    join_launches,
    launch_calls,
    nvtx_last_end,
    nvtx_type_names,
    pid_of,
    read_launch_calls,
)


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
        """A table of GPU work: kernels, or whole CUDA-graph replays."""
        return KERNEL_TABLE in self.tables or col.GRAPH_TABLE in self.tables


def load_kernels(db: sqlite3.Connection | Reader, tables: set[str], *, launches: bool = True,
                 lean: bool = False) -> pd.DataFrame:
    """Kernels, each joined (when `launches`) to the runtime call that launched it.

    `lean` reads only what the reports use: no device_id and stream_id, and without `launches`
    no correlation_id and global_pid either (every column read costs ~0.1 s per million kernels).
    """
    reader = db if isinstance(db, Reader) else Reader(Path(), db)
    cols = ["start_ns", "end_ns", "device_id", "stream_id", "correlation_id", "global_pid", "name_id", "short_id",
            "launch_ns", "launch_tid"]
    fields = [c for c in col.KERNEL_FIELDS if not lean or c not in ("device_id", "stream_id", "correlation_id",
                                                                    "global_pid")]
    columns = col.read_kernels(reader, tables, fields, launches=launches)
    if not launches:
        n = len(columns["start_ns"])
        columns["launch_ns"] = columns["launch_tid"] = np.full(n, -1, dtype=np.int64)
    if lean:
        order = [c for c in [*cols[:8], "launch_ns", "launch_tid", "dur_ns"] if c in columns]
        return pd.DataFrame({c: columns[c] for c in order}, copy=False)
    return pd.DataFrame({c: columns[c] for c in [*cols, "dur_ns"]}, copy=False)


def load_names(db: sqlite3.Connection) -> pd.Series:
    return pd.Series(col.read_names(db), dtype="object")


def load_nvtx(db: sqlite3.Connection | Reader, tables: set[str]) -> pd.DataFrame:
    """NVTX ranges: start_ns, end_ns (NA while open), global_tid, global_pid, name, kind, seq."""
    reader = db if isinstance(db, Reader) else Reader(Path(), db)
    columns, names = col.read_nvtx(reader, tables)
    return nvtx_frame(columns, names)


def nvtx_frame(columns: dict[str, np.ndarray], names: list[str]) -> pd.DataFrame:
    """profkit.columns.read_nvtx()'s arrays as ProfileData.nvtx."""
    end = pd.array(columns["end_ns"], dtype="Int64")
    end[columns["end_ns"] == col.OPEN_END] = pd.NA
    seq = pd.array(columns["seq"], dtype="Int64")
    seq[columns["seq"] < 0] = pd.NA
    return pd.DataFrame({
        "start_ns": columns["start_ns"], "end_ns": end, "global_tid": columns["global_tid"],
        "global_pid": columns["global_pid"],
        "name": np.array(names, dtype=object)[columns["name"]] if names else np.array([], dtype=object),
        "kind": KINDS[columns["push_pop"].astype(np.intp)], "seq": seq})


KINDS = np.array(["start_end", "push_pop"], dtype=object)
"""NVTX range kinds by push_pop (0/1): two strings, shared by every row (one each would cost ~55 B a range)."""


def split_op_names(names: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Per-op range names without their per-call ids (so paths repeat), and their sequence number.

    >>> n, s = split_op_names(pd.Series(["aten::mm, seq = 7, op_id = 9", "aten::view, op_id = 10", "layer_0"]))
    >>> n.tolist(), s.tolist()
    (['aten::mm', 'aten::view', 'layer_0'], [7, <NA>, <NA>])
    """
    split = [col.split_op_name(str(n)) for n in names]
    seq = pd.array([s for _, s in split], dtype="Int64")
    seq[seq < 0] = pd.NA
    return pd.Series([n for n, _ in split], index=names.index, dtype=object), pd.Series(seq, index=names.index)


def _load_activity(reader: Reader, tables: set[str], table: str, extra: list[str], *, like: str) -> pd.DataFrame:
    """memcpy or memset rows, each with its launching runtime call (launch_ns, launch_tid; -1 if none),
    joined as kernels are: on correlation id and process; `like` names the calls that launch them."""
    base = ["start", "end", "deviceId", "streamId", "correlationId", "globalPid"]
    names = ["start_ns", "end_ns", "device_id", "stream_id", "correlation_id", "global_pid"]
    if table not in tables:
        return _empty_activity(extra)
    have = reader.columns_of(table)
    select = [c if c in have else "0" for c in base + extra]
    # a NULL time is damage (None: refused), a NULL id or size reads -1 as nsys leaves some unset
    fills: list[int | None] = [-1 if c in have and c not in ("start", "end") else None for c in base + extra]
    arrays = reader.select(f"SELECT {', '.join(select)} FROM {table}", fills)
    frame = pd.DataFrame(dict(zip(names + extra, arrays, strict=True)), copy=False)
    what = table.removeprefix("CUPTI_ACTIVITY_KIND_").lower()
    if "start" not in have or "end" not in have:
        raise col.ProfileError(f"{reader.path}: {table} has no {'start' if 'start' not in have else 'end'} column "
                               "(every nsys export has it); the export is damaged: export the capture again with "
                               "nsys export --type sqlite")
    col.check_times(reader.path, what, frame["start_ns"].to_numpy(), frame["end_ns"].to_numpy())
    if "correlationId" in have:  # a repeated row would count its copy twice
        col.check_unique(reader.path, what, frame["correlation_id"].to_numpy(), frame["global_pid"].to_numpy(),
                         frame["start_ns"].to_numpy())
    n = len(frame)
    launch_ns = launch_tid = np.full(n, -1, dtype=np.int64)
    if RUNTIME_TABLE in tables and n and "correlationId" in have:
        launch_ns, launch_tid = col.launches_of(reader, tables, frame["correlation_id"].to_numpy(),
                                               frame["global_pid"].to_numpy(), "globalPid" in have, like=like)
    frame = frame.assign(launch_ns=launch_ns, launch_tid=launch_tid)
    return frame.assign(dur_ns=frame["end_ns"] - frame["start_ns"])


def load_gpus(db: sqlite3.Connection, tables: set[str]) -> pd.DataFrame:
    if "TARGET_INFO_GPU" not in tables:
        return pd.DataFrame({"id": pd.Series(dtype="int64"), "name": pd.Series(dtype="object")})
    have = col.table_columns(db, "TARGET_INFO_GPU")
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
        last: int | None = data.nvtx_end_ns
    else:
        nvtx_end = data.nvtx["end_ns"].dropna()
        last = None if nvtx_end.empty else int(nvtx_end.max())
    error = col.incomplete(data.path, data.kernels["end_ns"].to_numpy(), last)
    if error is not None:
        raise error


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
    memcpy_cols, memset_cols = ["bytes", "copyKind"], ["bytes"]
    with col.reading(path) as (db, tables, reader):
        if activity:  # the launches of kernels, memcpy and memset: one scan of the runtime calls
            likes = ["%Launch%"] if launches else []
            read_launch_calls(reader, tables, [*likes, "%emcpy%", "%emset%"])
        data = ProfileData(
            kernels=load_kernels(reader, tables, launches=launches, lean=lean),
            names=load_names(db),
            nvtx=load_nvtx(reader, tables) if nvtx else load_nvtx(reader, set()),
            memcpy=(_load_activity(reader, tables, "CUPTI_ACTIVITY_KIND_MEMCPY", memcpy_cols, like="%emcpy%")
                    if activity else _empty_activity(memcpy_cols)),
            memset=(_load_activity(reader, tables, "CUPTI_ACTIVITY_KIND_MEMSET", memset_cols, like="%emset%")
                    if activity else _empty_activity(memset_cols)),
            gpus=load_gpus(db, tables if activity else set()),
            path=path,
            tables=tables,
            nvtx_end_ns=None if nvtx else nvtx_last_end(db, tables),
        )
    if not allow_incomplete:
        check_complete(data)
    return data
