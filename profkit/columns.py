"""An nsys export's columns as numpy arrays: the reading half of profkit.parse, without pandas, so
that a cold `report kernels` or `report nvtx` never imports it (profkit.parse wraps these arrays
in the DataFrames of its ProfileData). The file is opened read-only.

Schemas of nsys 2022.x to 2025.x differ in small ways, all handled here:
- tables are created lazily: a missing table reads as no rows;
- kernel names are StringIds ids in `demangledName`, `shortName` and `mangledName`, any of
  which may be missing (older exports have `name`);
- NVTX text is inline (`text`, from torch.cuda.nvtx) or a registered string (`textId`, from
  the nvtx package); event types are looked up by name in ENUM_NSYS_EVENT_TYPE;
- `correlationId` is unique only within a process: runtime calls join kernels on it AND on
  the process (`globalPid = globalTid & 0xFFFFFFFFFF000000`);
- an NVTX range still open when the capture stopped has a NULL `end` (read as OPEN_END);
- CUDA graphs: under nsys's default `--cuda-graph-trace=graph` a replay is one row of
  CUPTI_ACTIVITY_KIND_GRAPH_TRACE and its kernels are not in the kernel table; each such row is
  read as one more kernel row, named `CUDA graph G (exec E)` (a name id of its own, below zero,
  that read_names() resolves), joined to its cudaGraphLaunch like any kernel. Under
  `--cuda-graph-trace=node` the graph's kernels are kernel rows sharing their launch's
  correlation id.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from profkit.errors import ProfkitError

# globalTid -> globalPid: nsys serialises pid and tid in one integer; the mask
# 0xFFFFFFFFFF000000 is written as the signed 64-bit integer it is, so SQLite and numpy take it.
PID_MASK = ~0xFFFFFF
OPEN_END = np.iinfo(np.int64).max  # the end of an NVTX range still open when the capture stopped


def pid_of(global_tid: np.ndarray) -> np.ndarray:
    """The process part of nsys's globalTid (globalPid, as nsys stores it).

    >>> int(pid_of(np.array([(7 << 24) | 123]))[0]) == 7 << 24
    True
    """
    return global_tid & PID_MASK


def processes_of(global_tid: np.ndarray) -> np.ndarray:
    """pid_of(global_tid), as one value repeated without memory (a read-only broadcast view) when
    every thread is of one process, as on a single-process export: 8 bytes per row less while a
    launch join holds each call's process.

    >>> p = processes_of(np.array([(7 << 24) | 1, (7 << 24) | 2]))
    >>> p.tolist() == [7 << 24] * 2, p.strides
    (True, (0,))
    """
    return one_process(global_tid, mask=True)


def one_process(pid: np.ndarray, *, mask: bool = False) -> np.ndarray:
    """`pid` (with `mask`: pid_of(pid)) as a read-only broadcast of its one value when every row
    has the same (no memory per row), else as it is. x & PID_MASK rounds x down to a multiple of
    2^24, which never decreases as x grows: equal for the smallest and the largest value, it is
    equal for all.

    >>> one_process(np.array([5, 5, 5])).strides, one_process(np.array([5, 6])).tolist()
    ((0,), [5, 6])
    """
    if not len(pid):
        return pid_of(pid) if mask else pid
    lo, hi = int(pid.min()), int(pid.max())
    if mask:
        lo, hi = lo & PID_MASK, hi & PID_MASK
    if lo != hi:
        return pid_of(pid) if mask else pid
    return np.broadcast_to(np.int64(lo), len(pid))


KERNEL_TABLE = "CUPTI_ACTIVITY_KIND_KERNEL"
RUNTIME_TABLE = "CUPTI_ACTIVITY_KIND_RUNTIME"
GRAPH_TABLE = "CUPTI_ACTIVITY_KIND_GRAPH_TRACE"
GRAPH_NAME = re.compile(r"^CUDA graph \d+( \(exec \d+\))?$")
"""The name profkit gives a whole-graph row (graph_name()); no kernel's name looks like it."""
_GRAPH_ID_LIMIT = 1 << 30
NVTX_TABLE = "NVTX_EVENTS"
# Fallback when an export has no ENUM_NSYS_EVENT_TYPE (seen in nsys 2022.x): the ids it used.
NVTX_TYPES_FALLBACK = {34: "NvtxMark", 59: "NvtxPushPopRange", 60: "NvtxStartEndRange"}
RANGE_TYPES = ("NvtxPushPopRange", "NvtxStartEndRange")
# An export whose CUDA activity ends this long before its NVTX ranges do was cut short by an
# analysis that stopped early (seen with nsys 2023.4.4 on CUDA 13: 2 kernels kept).
INCOMPLETE_GAP_NS = 1_000_000_000
# Tables only an nsys export has (any of them, beside StringIds): a capture with no CUDA and no
# NVTX (a CPU run with --nvtx off) still has its session and export metadata.
NSYS_MARKERS = {KERNEL_TABLE, NVTX_TABLE, RUNTIME_TABLE, "TARGET_INFO_GPU", "TARGET_INFO_SESSION_START_TIME",
                "META_DATA_EXPORT", "ANALYSIS_DETAILS"}


class ProfileError(ProfkitError):
    """The file is not a usable nsys export; the message says why and what to do."""


def connect(path: Path) -> tuple[sqlite3.Connection, set[str]]:
    """A read-only connection to an nsys export and its table names.

    Raises:
        ProfileError: not a file, empty, not SQLite, or not an nsys export.
    """
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
    try:
        check_strings(path, db)
    except ProfileError:
        db.close()
        raise
    return db, tables


def check_strings(path: Path, db: sqlite3.Connection) -> None:
    """StringIds, which every name is read through, as nsys writes it: an integer id and a text per
    row, each id once (a repeated id would join a name twice).

    Raises:
        ProfileError: a row that is not, counted.
    """
    try:
        have = table_columns(db, "StringIds")
        if not {"id", "value"} <= have:
            raise ProfileError(f"{path}: StringIds has no {'id' if 'id' not in have else 'value'} column (every nsys "
                               "export has it); the export is damaged: export the capture again with nsys export "
                               "--type sqlite")
        bad, repeated = db.execute("SELECT sum(typeof(id) != 'integer' OR typeof(value) != 'text'), "
                                   "count(id) - count(DISTINCT id) FROM StringIds").fetchone()
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        raise damaged(path, e) from None
    if bad:
        raise ProfileError(f"{path} is damaged: {bad:,} StringIds rows have an id that is not an integer or a value "
                           "that is not text; export the capture again with nsys export --type sqlite")
    if repeated:
        raise ProfileError(f"{path} is damaged: {repeated:,} StringIds ids repeat; export the capture again with nsys "
                           "export --type sqlite")


@contextlib.contextmanager
def reading(path: Path) -> Iterator[tuple[sqlite3.Connection, set[str], Reader]]:
    """connect() to an export with a Reader on it, both closed on leaving; an error SQLite meets
    part-way (or a text it cannot decode) becomes damaged()'s one-line ProfileError.

    Raises:
        ProfileError: as connect(), or damaged().
    """
    db, tables = connect(path)
    reader = Reader(path, db)
    try:
        yield db, tables, reader
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        raise damaged(path, e) from None
    finally:
        reader.close()
        db.close()


def damaged(path: Path, e: Exception) -> ProfileError:
    """The error for an export SQLite fails on part-way."""
    return ProfileError(f"{path} is damaged ({e}); export the capture again with nsys export --type sqlite")


def table_columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


CHUNK_ROWS = 100_000
READER_ENV = "PROFKIT_READER"
"""`sqlite3` forces the plain-sqlite reader (tests compare the two; the benchmark times both)."""
THREADS_ENV = "PROFKIT_READ_THREADS"
"""`1`: every table read on the calling thread; `2`: large reads on two threads whatever the load
(tests check both give the same arrays); unset: two_threads() decides."""


def two_threads(rows: int) -> bool:
    """Whether to read `rows` rows on a second thread: a large read (SPLIT_ROWS) and a core free
    (at least two usable, and the load average of the last minute leaves one idle). A second
    thread saves time only on a free core; on a busy machine it costs a little more CPU (a second
    connection, joining the halves) for nothing, so the reads stay on one thread there. The arrays
    are the same either way."""
    forced = os.environ.get(THREADS_ENV, "")
    if forced in ("1", "2"):
        return forced == "2"
    if rows < SPLIT_ROWS:
        return False
    try:
        cores = len(os.sched_getaffinity(0))
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return False
    return cores >= 2 and load <= cores - 0.5


def _adbc_modules() -> tuple[Any, str] | None:
    """ADBC's driver manager and the path of its SQLite driver, or None when either is missing.

    The driver's path is found without importing adbc_driver_sqlite (its version look-up costs
    ~10 ms of every cold report's start-up); Arrow's streams are read through ctypes (below), so
    no Arrow library loads either."""
    if os.environ.get(READER_ENV) == "sqlite3":
        return None
    try:
        import adbc_driver_manager
    except ImportError:
        return None
    driver = _sqlite_driver()
    return None if driver is None else (adbc_driver_manager, driver)


def _sqlite_driver() -> str | None:
    """The shared library adbc-driver-sqlite's wheel holds, None when it is not installed."""
    from importlib.util import find_spec

    try:
        spec = find_spec("adbc_driver_sqlite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for name in ("libadbc_driver_sqlite.so", "libadbc_driver_sqlite.dylib", "adbc_driver_sqlite.dll"):
            if (Path(folder) / name).is_file():
                return str(Path(folder) / name)
    try:  # a build that keeps its library elsewhere: the package says where
        import adbc_driver_sqlite

        return str(adbc_driver_sqlite._driver_path())
    except (ImportError, AttributeError):
        return None


# --- Arrow's C stream interface, read through ctypes ------------------------------------------------------------
# (arrow.apache.org/docs/format/CStreamInterface.html). ctypes lets go of the GIL while SQLite fills a
# batch, so two tables can be read at once on two threads (read_in_background()); numpy views each
# column's buffer, and a batch is released as soon as it is copied.


class _Schema(ctypes.Structure):
    pass


_Schema._fields_ = [("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
                    ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64),
                    ("children", ctypes.POINTER(ctypes.POINTER(_Schema))), ("dictionary", ctypes.POINTER(_Schema)),
                    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(_Schema))), ("private_data", ctypes.c_void_p)]


class _Array(ctypes.Structure):
    pass


_Array._fields_ = [("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
                   ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
                   ("buffers", ctypes.POINTER(ctypes.c_void_p)), ("children", ctypes.POINTER(ctypes.POINTER(_Array))),
                   ("dictionary", ctypes.POINTER(_Array)), ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(_Array))),
                   ("private_data", ctypes.c_void_p)]


class _Stream(ctypes.Structure):
    pass


_Stream._fields_ = [("get_schema", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Stream), ctypes.POINTER(_Schema))),
                    ("get_next", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Stream), ctypes.POINTER(_Array))),
                    ("get_last_error", ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.POINTER(_Stream))),
                    ("release", ctypes.CFUNCTYPE(None, ctypes.POINTER(_Stream))), ("private_data", ctypes.c_void_p)]


def _stream_error(stream: Any, code: int) -> ValueError:
    message = stream.get_last_error(ctypes.byref(stream)) if stream.get_last_error else None
    return ValueError(f"Arrow stream error {code}: {(message or b'').decode(errors='replace')}")


def _int64s(address: int | None, length: int) -> np.ndarray:
    """`length` int64 values at `address` (a view: valid while its batch is)."""
    if not length:
        return np.empty(0, dtype=np.int64)
    assert address
    return np.frombuffer(memoryview((ctypes.c_int64 * length).from_address(address)).cast("B"), dtype=np.int64)


def _valid(address: int | None, offset: int, length: int) -> np.ndarray:
    """Arrow's validity bitmap at `address`, bits offset .. offset + length, as booleans."""
    nbytes = (offset + length + 7) // 8
    assert address
    bits = np.frombuffer(memoryview((ctypes.c_uint8 * nbytes).from_address(address)).cast("B"), dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[offset:offset + length].astype(bool)


class Reader:
    """Integer columns of a query as numpy arrays, from one read-only export.

    Through ADBC's SQLite driver when it is installed: SQLite's rows become Arrow batches in C
    and each column's buffer is viewed by numpy, with no Python object per value (1 M kernels:
    reports/bench.md); NULLs are read from Arrow's validity bitmaps, not by SQL. Otherwise, or
    when ADBC fails on a query (a type it cannot infer, a damaged page), the same query through
    sqlite3, whose errors are then the ones reported.
    """

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path, self.db = path, db
        self._adbc: Any = None
        self._modules = _adbc_modules()
        self.calls: dict[str | None, list[np.ndarray]] = {}
        """launch_calls() already read, by pattern (load() reads every pattern it needs in one scan)."""
        self.pending: dict[str | None, _Background] = {}
        """launch_calls() being read on a second thread (prefetch_launch_calls())."""
        self._columns: dict[str, set[str]] = {}

    def close(self) -> None:
        for background in self.pending.values():
            background.join()
        self.pending = {}
        if self._adbc is not None:
            for handle in reversed(self._adbc):
                handle.close()
            self._adbc = None

    def columns_of(self, table: str) -> set[str]:
        if table not in self._columns:
            self._columns[table] = table_columns(self.db, table)
        return self._columns[table]

    def ints(self, sql: str, n: int) -> list[np.ndarray]:
        """Run `sql` (n integer columns, no NULLs: coalesce them) into n int64 arrays."""
        return self.select(sql, [None] * n)

    def select(self, sql: str, fills: list[int | None], rows: int = 0,
               narrow: Iterable[int] = ()) -> list[np.ndarray]:
        """Run `sql` (one integer expression per entry of `fills`) into int64 arrays; a NULL in
        column i reads as fills[i] (None: the column has none; one found is an error). `rows`:
        the rows expected, when known (the arrays are made that long at once). Columns `narrow`
        (indices: ids and codes) come as int32 when every value fits, else int64."""
        narrow = set(narrow)  # once: a generator would be spent by the first look
        if self._modules is not None:
            try:
                return self._select_adbc(sql, fills, rows, narrow)
            except Exception:  # noqa: BLE001  (any driver failure: sqlite3 reads it or says why not)
                self.close()
                self._modules = None
        return [_narrowed(a) if i in narrow else a for i, a in enumerate(self._select_sqlite(sql, fills))]

    def select_table(self, table: str, columns: str, fills: list[int | None], rows: int = 0,
                     narrow: Iterable[int] = ()) -> list[np.ndarray]:
        """select() of `SELECT columns FROM table` (rows in table order), a large table read in two
        halves by rowid on two threads (SQLite's work in C runs without the GIL: on two cores, half
        the time). Any failure of either half: the whole table read again as select() reads it, so
        every error is a plain read's."""
        sql = f"SELECT {columns} FROM {table}"
        narrow = set(narrow)
        if self._modules is None or not two_threads(rows):
            return self.select(sql, fills, rows, narrow)
        try:
            lo, hi = self.db.execute(rowid_span(table)).fetchone()
        except sqlite3.DatabaseError:
            return self.select(sql, fills, rows, narrow)
        if not isinstance(lo, int) or not isinstance(hi, int) or hi <= lo:
            return self.select(sql, fills, rows, narrow)
        mid = lo + (hi - lo) // 2
        later = _Background(self.path, f"{sql} WHERE rowid > {mid}", fills, rows // 2 + 1, narrow)
        try:
            first: list[np.ndarray] | None = self._select_adbc(f"{sql} WHERE rowid <= {mid}", fills, rows // 2 + 1,
                                                               narrow)
        except Exception:  # noqa: BLE001  (read again whole, below)
            first = None
        second = later.join()
        if first is None or second is None:
            return self.select(sql, fills, rows, narrow)
        return [np.concatenate([a, b]) for a, b in zip(first, second, strict=True)]

    def _select_sqlite(self, sql: str, fills: list[int | None]) -> list[np.ndarray]:
        # Rows come from sqlite3 as tuples; converting them a chunk at a time keeps at most one
        # chunk of Python objects alive, so peak memory stays near the arrays' own size.
        n = len(fills)
        if any(f is not None for f in fills):  # the NULLs ADBC reads from its bitmaps, coalesced by SQL here
            names = [f"c{i}" for i in range(n)]
            cells = [f"coalesce({c}, {f})" if f is not None else c for c, f in zip(names, fills, strict=True)]
            sql = f"WITH q({', '.join(names)}) AS ({sql}) SELECT {', '.join(cells)} FROM q"
        cur = self.db.execute(sql)
        chunks = []
        while rows := cur.fetchmany(CHUNK_ROWS):
            chunk = np.array(rows)  # no dtype: text, a REAL or a NULL shows as a dtype that is not int
            if chunk.dtype.kind not in "iu":
                raise ProfileError(f"{self.path} holds a value that is not an integer (text, a fraction or a NULL) "
                                   f"where nsys writes integers ({sql[:80]}...); export the capture again with "
                                   "nsys export --type sqlite")
            chunks.append(chunk.astype(np.int64, copy=False).reshape(-1, n))
        array = np.concatenate(chunks) if chunks else np.empty((0, n), dtype=np.int64)
        return [np.ascontiguousarray(array[:, i]) for i in range(n)]

    def _select_adbc(self, sql: str, fills: list[int | None], expected: int = 0,
                     narrow: set[int] | None = None) -> list[np.ndarray]:
        assert self._modules is not None
        manager, driver = self._modules
        n = len(fills)
        if self._adbc is None:
            database = manager.AdbcDatabase(driver=driver, uri=f"file:{self.path}?mode=ro")
            self._adbc = [database, manager.AdbcConnection(database)]
        statement = manager.AdbcStatement(self._adbc[1])
        # Each batch is copied into arrays that grow by doubling, then let go: the next batch takes
        # its memory again, so reading costs the arrays and one batch (not every batch, then a
        # concatenated copy: twice the columns at the peak, and fresh pages for both).
        out = [np.empty(expected, dtype=np.int32 if i in (narrow or ()) else np.int64) for i in range(n)]
        rows = 0
        handle = None
        try:
            statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
            statement.set_sql_query(sql)
            handle, _ = statement.execute_query()
            stream = _Stream.from_address(handle.address)
            schema = _Schema()
            if code := stream.get_schema(ctypes.byref(stream), ctypes.byref(schema)):
                raise _stream_error(stream, code)
            try:
                if schema.n_children != n or any(schema.children[i].contents.format != b"l" for i in range(n)):
                    raise ValueError(f"expected {n} int64 columns")
            finally:
                schema.release(ctypes.byref(schema))
            while True:
                batch = _Array()
                if code := stream.get_next(ctypes.byref(stream), ctypes.byref(batch)):  # the GIL is let go here
                    raise _stream_error(stream, code)
                if not batch.release:  # released: the end of the stream
                    break
                try:
                    rows = self._take(batch, out, rows, fills)
                finally:
                    batch.release(ctypes.byref(batch))
        finally:
            if handle is not None and handle.is_valid:
                handle.release()
            statement.close()
        # Trim: a view when little is left over, else a copy so the spare capacity is returned.
        return [a[:rows] if rows >= 0.75 * len(a) else a[:rows].copy() for a in out]

    @staticmethod
    def _take(batch: Any, out: list[np.ndarray], rows: int, fills: list[int | None]) -> int:
        """Copy one Arrow batch (a struct of int64 columns) into `out` from row `rows`; the rows after it."""
        length = batch.length
        if batch.n_children != len(out):
            raise ValueError("a batch of another shape")
        if rows + length > len(out[0]):
            size = max(2 * len(out[0]), rows + length, BATCH_ROWS)
            out[:] = [_grown(a, rows, size) for a in out]
        for i in range(len(out)):
            child = batch.children[i].contents
            if child.length != length or child.n_buffers != 2:
                raise ValueError("a column of another shape")
            lo = child.offset
            values = _int64s(child.buffers[1], lo + length)[lo:]
            if child.null_count != 0 and child.buffers[0]:  # -1: not counted; look
                bits = _valid(child.buffers[0], lo, length)
                if not bits.all():
                    fill = fills[i]
                    if fill is None:
                        raise ValueError("a NULL in a column that has none")
                    values = np.where(bits, values, np.int64(fill))
            if out[i].dtype == np.int32 and length and not (I32.min <= int(values.min())
                                                            and int(values.max()) <= I32.max):
                out[i] = out[i].astype(np.int64)  # a value past int32: this column stays int64
            out[i][rows:rows + length] = values
        return rows + length


BATCH_ROWS = 1 << 16
SPLIT_ROWS = 200_000
"""select_table() reads a table of fewer rows on one thread (a thread's start-up is not worth it)."""


I32 = np.iinfo(np.int32)


def _grown(a: np.ndarray, rows: int, size: int) -> np.ndarray:
    """An array of a's type and `size` holding a's first `rows` values."""
    b = np.empty(size, dtype=a.dtype)
    b[:rows] = a[:rows]
    return b


def _narrowed(a: np.ndarray) -> np.ndarray:
    """`a` as int32 when every value fits (ids and codes: half the memory), else `a`.

    >>> _narrowed(np.array([1, -1])).dtype, _narrowed(np.array([1 << 40])).dtype
    (dtype('int32'), dtype('int64'))
    """
    if not len(a) or (I32.min <= int(a.min()) and int(a.max()) <= I32.max):
        return a.astype(np.int32)
    return a


def launch_calls(reader: Reader, tables: set[str], *, like: str | None = "%Launch%", rows: int = 0) -> list[np.ndarray]:
    """(correlation id, process, start, thread) of the runtime calls whose name is LIKE `like`
    (every call when None); `rows`: the calls expected (their arrays are made that long at once).

    Kernels come from launch calls (cudaLaunchKernel, cuLaunchKernelEx, cudaGraphLaunch...), a
    minority of a trace's runtime calls; their names are the StringIds that mention Launch.
    memcpy and memset come from calls named so (cudaMemcpyAsync, cudaMemsetAsync...).
    """
    if like in reader.calls:
        return list(reader.calls[like])
    background = reader.pending.pop(like, None)
    if background is not None and (read := background.join()) is not None:
        corr, tid, start = read
        pid = processes_of(tid)
        check_unique(reader.path, "runtime call", corr, pid)
        return [corr, pid, start, tid]
    require(reader, RUNTIME_TABLE, ("correlationId", "globalTid", "start"))
    where = ""
    if like is not None and "nameId" in reader.columns_of(RUNTIME_TABLE):
        where = f" WHERE nameId IN (SELECT id FROM StringIds WHERE value LIKE '{like}')"
    corr, tid, start = reader.select(f"SELECT correlationId, globalTid, start FROM {RUNTIME_TABLE}{where}",
                                     [-1, -1, None], rows, narrow=[0])
    pid = processes_of(tid)
    check_unique(reader.path, "runtime call", corr, pid)
    return [corr, pid, start, tid]


class _Background:
    """One query read by a Reader of its own on a second thread; join() gives its arrays, or None
    when it failed (the caller then reads it again on its own thread, where its errors are told)."""

    def __init__(self, path: Path, sql: str, fills: list[int | None], rows: int, narrow: set[int]) -> None:
        self._result: list[np.ndarray] | None = None
        self._thread = threading.Thread(target=self._run, args=(path, sql, fills, rows, narrow), daemon=True,
                                        name="profkit-read")
        self._thread.start()

    def _run(self, path: Path, sql: str, fills: list[int | None], rows: int, narrow: set[int]) -> None:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # this thread's own (the driver's is, too)
        reader = Reader(path, db)
        try:
            self._result = reader._select_adbc(sql, fills, rows, narrow)
        except Exception:  # noqa: BLE001  (read again by the caller, whose reader reports the error)
            self._result = None
        finally:
            reader.close()
            db.close()

    def join(self) -> list[np.ndarray] | None:
        self._thread.join()
        return self._result


def prefetch_launch_calls(reader: Reader, tables: set[str], rows: int, *, like: str = "%Launch%") -> None:
    """Start reading launch_calls(reader, tables, like=like) on a second thread while this one goes
    on (reading the kernel table): each scan is SQLite's work in C, which runs without the GIL, so
    on two cores the two tables take the longer one's time, not their sum. `rows`: the calls
    expected (one per kernel). Nothing is started without ADBC, a runtime table with the columns
    read, or a nameId column; launch_calls() then reads as before, and it also reads again
    whatever the second thread failed on, so every error is the one a plain read gives."""
    if reader._modules is None or like in reader.calls or like in reader.pending or RUNTIME_TABLE not in tables \
            or not two_threads(rows):
        return
    if not {"correlationId", "globalTid", "start", "nameId"} <= reader.columns_of(RUNTIME_TABLE):
        return
    ids = [int(r[0]) for r in reader.db.execute("SELECT id FROM StringIds WHERE value LIKE ?", (like,))
           if isinstance(r[0], int)]
    where = f"nameId IN ({', '.join(map(str, ids))})" if ids else "0"
    reader.pending[like] = _Background(reader.path, f"SELECT correlationId, globalTid, start FROM {RUNTIME_TABLE} "
                                       f"WHERE {where}", [-1, -1, None], rows, {0})


def read_launch_calls(reader: Reader, tables: set[str], likes: list[str]) -> None:
    """Read the runtime calls of several name patterns in one scan of the runtime table (each
    table read costs a scan of every call), then keep each pattern's rows, in table order, for
    launch_calls(). Nothing read when there is no runtime table or no nameId column."""
    if RUNTIME_TABLE not in tables or "nameId" not in reader.columns_of(RUNTIME_TABLE):
        return
    ids = {like: np.array([r[0] for r in reader.db.execute("SELECT id FROM StringIds WHERE value LIKE ?", (like,))],
                          dtype=np.int64) for like in likes}
    wanted = np.unique(np.concatenate(list(ids.values())))
    if not len(wanted):
        return
    require(reader, RUNTIME_TABLE, ("correlationId", "globalTid", "start"))
    if len(likes) == 1:  # one pattern: no name column to tell them apart
        corr, tid, start = reader.select(f"SELECT correlationId, globalTid, start FROM {RUNTIME_TABLE} WHERE nameId IN "
                                         f"({', '.join(map(str, wanted.tolist()))})", [-1, -1, None], narrow=[0])
        pid = processes_of(tid)
        check_unique(reader.path, "runtime call", corr, pid)
        reader.calls[likes[0]] = [corr, pid, start, tid]
        return
    corr, tid, start, name = reader.select(
        f"SELECT correlationId, globalTid, start, nameId FROM {RUNTIME_TABLE} WHERE nameId IN "
        f"({', '.join(map(str, wanted.tolist()))})", [-1, -1, None, None], narrow=[0, 3])
    check_unique(reader.path, "runtime call", corr, processes_of(tid))
    for like, mine in ids.items():
        keep = np.isin(name, mine)
        reader.calls[like] = [corr[keep], processes_of(tid[keep]), start[keep], tid[keep]]


MAX_DURATION_NS = 7 * 86_400 * 10**9
"""Longer than any capture nsys takes (a week): a duration beyond it is a damaged value."""


def require(reader: Reader, table: str, names: Iterable[str]) -> None:
    """Raise ProfileError when `table` lacks a column every nsys version writes."""
    missing = [c for c in names if c not in reader.columns_of(table)]
    if missing:
        raise ProfileError(f"{reader.path}: {table} has no {', '.join(missing)} column (every nsys export has it); "
                           "the export is damaged: export the capture again with nsys export --type sqlite")


CHECK_ROWS = 1 << 18
"""The checks and searches over a table's rows (check_times(), increasing(), equal(), _search()) look at
this many rows at a time: their temporaries (2 MB at most) stay in the CPU's cache and come from the heap
again each time, not from fresh pages (dear on a virtual machine), so their cost per row is the same at
10 k and 10 M rows."""


def increasing(a: np.ndarray, *, strict: bool = True) -> bool:
    """Whether every value of `a` is above the one before (at least it, when not `strict`),
    CHECK_ROWS at a time (no temporary the array's length).

    >>> increasing(np.arange(5)), increasing(np.array([1, 3, 3])), increasing(np.array([], dtype=np.int64))
    (True, False, True)
    >>> increasing(np.array([1, 3, 3]), strict=False), increasing(np.array([3, 1]), strict=False)
    (True, False)
    """
    rises = np.greater if strict else np.greater_equal
    for lo in range(0, max(len(a) - 1, 0), CHECK_ROWS):
        after = a[lo + 1:lo + CHECK_ROWS + 1]
        if not bool(rises(after, a[lo:lo + len(after)]).all()):
            return False
    return True


MERGE_ROWS = 1 << 15
"""search_sorted()'s queries per chunk: a chunk and its window of the keys stay in the caches."""


def search_sorted(a: np.ndarray, v: np.ndarray, side: Literal["left", "right"] = "left") -> np.ndarray:
    """np.searchsorted(a, v, side) of a sorted `a`, the same positions, in time linear in the sizes
    when `v` rises (kernels' launch times, range starts, correlation ids in table order).

    np.searchsorted halves all of `a` for every query: at 10 M keys (80 MB, past the caches) most
    of its steps miss them, and each query costs about twice what it does at 1 M. Here each chunk
    of MERGE_ROWS queries that rises is merged with its window of `a` (the keys between its first
    and last query) by a stable sort of the two runs, which is a linear merge; a chunk that does not
    rise, or whose window is much longer than it, is searched as np.searchsorted searches it.

    >>> a = np.array([1, 3, 3, 5])
    >>> search_sorted(a, np.array([0, 3, 4, 9])).tolist(), search_sorted(a, np.array([3, 2]), "right").tolist()
    ([0, 1, 3, 4], [3, 1])
    """
    out = np.empty(len(v), dtype=np.intp)
    for lo in range(0, len(v), MERGE_ROWS):
        q = v[lo:lo + MERGE_ROWS]
        at = out[lo:lo + len(q)]
        if len(q) < 2 or not bool((q[1:] >= q[:-1]).all()):
            at[:] = np.searchsorted(a, q, side)
            continue
        w0, w1 = np.searchsorted(a, q[[0, -1]], side)
        w = a[w0:w1]  # below w0: under (or up to, "right") every query; from w1: above them
        if len(w) > 8 * len(q):
            at[:] = np.searchsorted(w, q, side)
        else:  # ties: keys first for "right" (a query counts the keys equal to it), last for "left"
            merged = np.concatenate([w, q] if side == "right" else [q, w])
            order = np.argsort(merged, kind="stable")
            is_query = order >= len(w) if side == "right" else order < len(q)
            at[:] = np.flatnonzero(is_query)  # queries come out in their own order: q rises
            at -= np.arange(len(q))  # a query's place in the merge minus the queries before it
        at += w0
    return out


def equal(a: np.ndarray, b: np.ndarray) -> bool:
    """np.array_equal(a, b) for 1-D arrays, CHECK_ROWS at a time.

    >>> a = np.array([1, 2])
    >>> equal(a, np.array([1, 2])), equal(a, np.array([1, 3])), equal(a, np.zeros(3))
    (True, False, False)
    """
    if len(a) != len(b):
        return False
    return all(np.array_equal(a[lo:lo + CHECK_ROWS], b[lo:lo + CHECK_ROWS]) for lo in range(0, len(a), CHECK_ROWS))


def check_times(path: Path, what: str, start: np.ndarray, end: np.ndarray, *, open_end: bool = False) -> None:
    """Raise ProfileError when a row starts before the session (negative), ends before it starts
    or lasts longer than MAX_DURATION_NS (with `open_end`, an NVTX range still open, end OPEN_END, is fine).

    >>> try:
    ...     check_times(Path("p"), "kernel", np.array([5, 9]), np.array([7, 4]))
    ... except ProfileError as e:
    ...     print(str(e).split(";")[0])
    p is damaged: 1 kernel row ends before it starts
    """
    negative = backwards = too_long = 0
    for lo in range(0, len(start), CHECK_ROWS):  # temporaries of one chunk: in cache, reused from the heap
        s, e = start[lo:lo + CHECK_ROWS], end[lo:lo + CHECK_ROWS]
        if open_end:
            closed = e != OPEN_END
            s, e = s[closed], e[closed]
        dur = e - s
        negative += int(np.count_nonzero(s < 0))
        backwards += int(np.count_nonzero(dur < 0))
        too_long += int(np.count_nonzero(dur > MAX_DURATION_NS))
    for count, one, many in ((negative, "starts before the session (a negative time)",
                              "start before the session (negative times)"),
                             (backwards, "ends before it starts", "end before they start"),
                             (too_long, "lasts longer than a week", "last longer than a week")):
        if count:
            rows = f"{int(count):,} {what} row{'s' if count > 1 else ''}"
            verb = one if count == 1 else many
            raise ProfileError(f"{path} is damaged: {rows} {verb}; export the capture again with nsys export "
                               "--type sqlite")


def repeats(corr: np.ndarray, pid: np.ndarray | None, start: np.ndarray | None = None) -> int:
    """How many rows repeat an earlier row's (correlation id, process[, start]); pid None: one
    process. A NULL correlation id (-1) repeats freely.

    Correlation ids increasing in table order, or dense ones each counted once in a table, need
    no sort; otherwise only the rows whose id repeats are sorted.

    >>> repeats(np.array([3, 1, 3, -1, -1]), np.array([0, 0, 1, 0, 0])), repeats(np.array([3, 1, 3]), None)
    (0, 1)
    """
    if not len(corr) or int(corr.max()) < 0:
        return 0
    keep = None if int(corr.min()) >= 0 else corr >= 0  # None: no NULL id, the ids as they are (no copy)
    c = corr if keep is None else corr[keep]
    if len(c) > 1 and increasing(c):  # ids increasing in table order: none repeats
        return 0
    lo, span = int(c.min()), int(c.max()) - int(c.min()) + 1
    if span <= 4 * len(c) + 1024:  # dense ids: count each in a table, sort only the rows whose id repeats
        counts = np.bincount(c - lo, minlength=span)
        if int(counts.max()) <= 1:
            return 0
        repeated = counts[c - lo] > 1
        if keep is None:
            keep = repeated
        else:
            keep[keep] = repeated
    return _repeated_rows([k if keep is None else k[keep] for k in (corr, pid, start) if k is not None])


def _repeated_rows(keys: list[np.ndarray]) -> int:
    """How many rows agree on every key with an earlier row (one sort of all the keys)."""
    if not len(keys[0]):
        return 0
    order = np.lexsort(keys[::-1])
    same = np.ones(len(order) - 1, dtype=bool)
    for k in keys:
        ks = k[order]
        same &= ks[1:] == ks[:-1]
    return int(same.sum())


def check_unique(path: Path, what: str, corr: np.ndarray, pid: np.ndarray | None,
                 start: np.ndarray | None = None) -> None:
    """Raise ProfileError when two rows share a correlation id in one process (pid None: one
    process) and, given `start`, a start time: kernels of one CUDA-graph launch share its
    correlation id, never their start. A NULL correlation id (-1) repeats freely."""
    if n := repeats(corr, pid, start):
        raise ProfileError(f"{path} is damaged: {n:,} {what} rows repeat another's correlation id"
                           f"{' and start' if start is not None else ''}; export the capture again with nsys export "
                           "--type sqlite")


def check_repeats(path: Path, what: str, keys: list[np.ndarray], fields: str) -> None:
    """Raise ProfileError when two rows agree on every key (a duplicated row).

    >>> try:
    ...     check_repeats(Path("p"), "NVTX range", [np.array([1, 1, 1]), np.array([5, 5, 6])], "thread and start")
    ... except ProfileError as e:
    ...     print(str(e).split(";")[0])
    p is damaged: 1 NVTX range row repeats another's thread and start
    """
    count = _repeated_rows(keys)
    if count:
        raise ProfileError(f"{path} is damaged: {count:,} {what} row{'s repeat' if count > 1 else ' repeats'} "
                           f"another's {fields}; export the capture again with nsys export --type sqlite")


def first_positions(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the first occurrence of each query in `keys`, -1 where none.

    A table indexed by key when the keys are dense and distinct (correlation ids are: one read and
    one write per row); else a stable sort and a binary search.

    >>> first_positions(np.array([5, 7, 5]), np.array([7, 5, 9])).tolist()
    [1, 0, -1]
    """
    out = np.full(len(queries), -1, dtype=np.int64)
    if not len(keys) or not len(queries):
        return out
    rising = increasing(keys)
    if rising and len(keys) == len(queries) and equal(keys, queries):
        return np.arange(len(keys), dtype=np.int64)  # launches in kernel order, one each (a single stream)
    if rising:  # ids increasing in table order (calls by start): no sort needed
        _search(keys, None, queries, out)
        return out
    lo, hi = int(keys.min()), int(keys.max())
    span = hi - lo + 1
    if span <= 4 * len(keys) + 1024:
        table = np.full(span, -1, dtype=np.int64 if len(keys) >= 2**31 else np.int32)
        rows = np.arange(len(keys), dtype=table.dtype)
        table[keys - lo] = rows
        if np.array_equal(table[keys - lo], rows):  # else a key repeats: the sort below finds its first row
            q = queries - lo
            ok = (q >= 0) & (q < span)
            out[ok] = table[q[ok]]
            return out
    order = np.argsort(keys, kind="stable")
    _search(keys[order], order, queries, out)
    return out


def _search(sorted_keys: np.ndarray, order: np.ndarray | None, queries: np.ndarray, out: np.ndarray) -> None:
    """out[i] = the position (through `order`, when given) of queries[i] in sorted_keys, where
    found; a chunk of queries at a time, so the temporaries stay a few MB."""
    for lo in range(0, len(queries), CHECK_ROWS):
        q = queries[lo:lo + CHECK_ROWS]
        pos = search_sorted(sorted_keys, q, "left")
        np.minimum(pos, len(sorted_keys) - 1, out=pos)
        hit = sorted_keys[pos] == q
        out[lo:lo + CHECK_ROWS][hit] = pos[hit] if order is None else order[pos[hit]]


def join_launches(corr: np.ndarray, pid: np.ndarray, calls: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each kernel's launch (start, thread) by (correlation id, process); -1 where none.

    The first call of a (process, correlation id) pair in table order when an export repeats
    one, as SQLite's LEFT JOIN pairs them.

    >>> calls = [np.array([5, 7]), np.array([0, 0]), np.array([50, 70]), np.array([1, 1])]
    >>> [a.tolist() for a in join_launches(np.array([7, 5, 9]), np.array([0, 0, 0]), calls)]
    [[70, 50, -1], [1, 1, -1]]
    """
    r_corr, r_pid, r_start, r_tid = calls
    if len(corr) and len(r_corr) and int(pid.min()) == int(pid.max()) == int(r_pid.min()) == int(r_pid.max()):
        src = first_positions(r_corr, corr)  # one process, every call's too: the positions as they come
    else:
        src = np.full(len(corr), -1, dtype=np.int64)
        if len(corr) and len(r_corr):
            one = int(pid.min()) == int(pid.max())
            for p in ([int(pid[0])] if one else np.unique(pid).tolist()):
                mine = slice(None) if one else np.flatnonzero(pid == p)
                if bool((r_pid == p).all()):
                    src[mine] = first_positions(r_corr, corr[mine])
                else:
                    theirs = np.flatnonzero(r_pid == p)
                    pos = first_positions(r_corr[theirs], corr[mine])
                    src[mine] = np.where(pos >= 0, theirs[np.maximum(pos, 0)] if len(theirs) else -1, -1)
    if not len(r_corr):
        return src, src.copy()
    missing = src < 0
    np.maximum(src, 0, out=src)  # gathers in place: two arrays the kernels' length, not six
    start, tid = r_start[src], r_tid[src]
    start[missing] = -1
    tid[missing] = -1
    return start, tid


def graph_name(graph_id: int, exec_id: int) -> str:
    """The name of a whole-graph row: its graph and its executable graph (-1: not recorded).

    >>> graph_name(4, 5), graph_name(4, -1)
    ('CUDA graph 4 (exec 5)', 'CUDA graph 4')
    """
    return f"CUDA graph {graph_id}" + (f" (exec {exec_id})" if exec_id >= 0 else "")


def graph_name_ids(graph_id: np.ndarray, exec_id: np.ndarray) -> np.ndarray:
    """The name id of whole-graph rows: below zero, so never a StringIds id, and one per
    (graph, executable graph) pair; graph_names() gives their texts.

    >>> ids = graph_name_ids(np.array([4, 4, 7]), np.array([5, 5, -1]))
    >>> ids.tolist(), graph_names(ids)[int(ids[2])]
    ([-17179869191, -17179869191, -30064771073], 'CUDA graph 7')
    """
    return -1 - ((graph_id.astype(np.int64) << 32) | (exec_id.astype(np.int64) + 1))


def graph_names(ids: np.ndarray) -> dict[int, str]:
    """graph_name_ids() back to names (each distinct id once)."""
    out = {}
    for i in np.unique(ids).tolist():
        v = -1 - int(i)
        out[int(i)] = graph_name(v >> 32, (v & 0xFFFFFFFF) - 1)
    return out


def _graph_ids_valid(graph_id: np.ndarray, exec_id: np.ndarray) -> np.ndarray:
    """Per row: ids graph_name_ids() can code (a graph id 0..2^30, an executable id -1..2^31-2)."""
    return (graph_id >= 0) & (graph_id < _GRAPH_ID_LIMIT) & (exec_id >= -1) & (exec_id < 2**31 - 1)


KERNEL_FIELDS = ("start_ns", "end_ns", "device_id", "stream_id", "correlation_id", "global_pid", "name_id", "short_id")


def read_kernels(reader: Reader, tables: set[str], fields: Iterable[str] = KERNEL_FIELDS, *,
                 launches: bool = True, processes: bool = True, compact: bool = False) -> dict[str, np.ndarray]:
    """Kernel columns (any of KERNEL_FIELDS, each read only when asked for: every column costs
    ~0.1 s per million kernels), dur_ns, and with `launches` each kernel's launching runtime call
    (launch_ns, launch_tid; -1 when none was recorded).

    Whole CUDA-graph replays (GRAPH_TABLE, nsys's `--cuda-graph-trace=graph`) follow the kernel
    table's rows, one row each, as read_graphs() reads them: GPU work wherever kernels count.

    `processes` False: global_pid is read only when asked for, launches or CUDA-graph replays need
    it, or two kernels share a correlation id and a start (then the repeat check needs it: a second
    read). `compact`: the kernel table's ids (correlation_id, name_id, short_id) as int32 where they
    fit (times stay int64).

    Raises:
        ProfileError: the kernels table has no name column.
    """
    # correlation_id (and global_pid) always: a repeated row is found by them (and its start).
    fields = list(fields)
    pid_now = processes or launches or "global_pid" in fields or GRAPH_TABLE in tables  # replays pair by process
    wanted = list(dict.fromkeys([*fields, "correlation_id", *(["global_pid"] if pid_now else [])]))
    if KERNEL_TABLE not in tables:
        columns: dict[str, np.ndarray] = {f: np.empty(0, dtype=np.int64) for f in dict.fromkeys(
            [*[w for w in wanted if w in KERNEL_FIELDS], "start_ns", "end_ns"])}
    else:
        if launches:  # the launch calls on a second thread meanwhile, about one per kernel
            prefetch_launch_calls(reader, tables, rows_at_most(reader, KERNEL_TABLE))
        columns = _kernel_table(reader, wanted, pid_now=pid_now, compact=compact)
    graphs = read_graphs(reader, tables, wanted, kernels=columns)
    if graphs is not None:
        columns = {f: np.concatenate([columns[f], graphs[f]]) for f in columns}
    if "global_pid" not in fields and "global_pid" in columns:  # read for the join only: one value when one process
        columns["global_pid"] = one_process(columns["global_pid"])
    n = len(columns["start_ns"])
    if launches:
        launch_ns = launch_tid = np.full(n, -1, dtype=np.int64)
        if RUNTIME_TABLE in tables and n:
            has_pid = KERNEL_TABLE not in tables or "globalPid" in reader.columns_of(KERNEL_TABLE)
            launch_ns, launch_tid = launches_of(reader, tables, columns["correlation_id"], columns["global_pid"],
                                                has_pid, like="%Launch%")
        columns["launch_ns"], columns["launch_tid"] = launch_ns, launch_tid
    columns["dur_ns"] = columns["end_ns"] - columns["start_ns"]
    for f in wanted:  # an export without a kernel table: every asked-for column, empty
        columns.setdefault(f, np.empty(0, dtype=np.int64))
    return columns


def _kernel_table(reader: Reader, wanted: list[str], *, pid_now: bool = True,
                  compact: bool = False) -> dict[str, np.ndarray]:
    """The kernel table's columns of `wanted` (start_ns and end_ns always), checked; read_kernels()
    says what `pid_now` and `compact` do."""
    have = reader.columns_of(KERNEL_TABLE)
    name = next((c for c in ("demangledName", "name", "shortName", "mangledName") if c in have), None)
    if name is None:
        raise ProfileError("the kernels table has no name column (demangledName, shortName, mangledName)")
    require(reader, KERNEL_TABLE, ("start", "end", "correlationId"))
    short = "shortName" if "shortName" in have else name
    exprs = {"start_ns": ("start", None), "end_ns": ("end", None), "device_id": ("deviceId", None),
             "stream_id": ("streamId", None), "correlation_id": ("correlationId", None),
             "global_pid": ("globalPid", 0) if "globalPid" in have else ("0", None), "name_id": (name, None),
             "short_id": (short, None)}
    read = [f for f in wanted if f in exprs]
    if "start_ns" not in read or "end_ns" not in read:
        read += [f for f in ("start_ns", "end_ns") if f not in read]
    count = rows_at_most(reader, KERNEL_TABLE)
    ids = ("correlation_id", "name_id", "short_id") if compact else ()
    select, fills = ", ".join(exprs[f][0] for f in read), [exprs[f][1] for f in read]
    narrow = [i for i, f in enumerate(read) if f in ids]
    if reader.pending:  # the runtime table is being read on the second thread: this one reads the kernels
        arrays = reader.select(f"SELECT {select} FROM {KERNEL_TABLE}", fills, count, narrow=narrow)
    else:
        arrays = reader.select_table(KERNEL_TABLE, select, fills, count, narrow=narrow)
    columns = dict(zip(read, arrays, strict=True))
    check_times(reader.path, "kernel", columns["start_ns"], columns["end_ns"])
    if not pid_now and repeats(columns["correlation_id"], None, columns["start_ns"]):
        columns["global_pid"], = reader.select(f"SELECT {exprs['global_pid'][0]} FROM {KERNEL_TABLE}",
                                               [exprs["global_pid"][1]], count)
    check_unique(reader.path, "kernel", columns["correlation_id"], columns.get("global_pid"), columns["start_ns"])
    return columns


def rowid_span(table: str) -> str:
    """SQL of `table`'s first and last rowid: one b-tree descent each (SQLite looks min() and max()
    up only when each is its own query; `SELECT min(rowid), max(rowid)` scans every row)."""
    return f"SELECT (SELECT min(rowid) FROM {table}), (SELECT max(rowid) FROM {table})"


def rows_at_most(reader: Reader, table: str) -> int:
    """An upper bound of `table`'s rows, from its first and last rowid (two b-tree descents; count(*)
    walks every page: 0.1 s a million kernels), to size arrays before they are read; 0 when unknown.
    nsys's rowids run 1..n, so the bound is the count."""
    try:
        lo, hi = reader.db.execute(rowid_span(table)).fetchone()
    except sqlite3.DatabaseError:
        return 0
    if not isinstance(lo, int) or not isinstance(hi, int) or hi < lo:
        return 0
    try:  # rowids far apart (rows deleted, or damage): no more rows than the file has bytes per 8
        return min(hi - lo + 1, reader.path.stat().st_size // 8)
    except OSError:
        return 0


def read_graphs(reader: Reader, tables: set[str], wanted: Iterable[str], *,
                kernels: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray] | None:
    """Whole CUDA-graph replays as kernel columns (`wanted` of KERNEL_FIELDS, start_ns and end_ns
    always): name_id and short_id graph_name_ids(), so that each replay is named `CUDA graph G
    (exec E)`; None when the export has no GRAPH_TABLE rows.

    A replay whose (correlation id, process) some kernel row has too is left out: those kernels
    are the graph's own, traced node by node, and the replay would count them twice.

    Raises:
        ProfileError: a row ends before it starts, a graph id is negative or huge, or two replays
            share a correlation id in one process.
    """
    if GRAPH_TABLE not in tables:
        return None
    require(reader, GRAPH_TABLE, ("start", "end", "graphId"))
    have = reader.columns_of(GRAPH_TABLE)
    exprs = {"start_ns": ("start", None), "end_ns": ("end", None), "device_id": ("deviceId", 0),
             "stream_id": ("streamId", 0), "correlation_id": ("correlationId", -1),
             "global_pid": ("globalPid", 0)}
    read = list(dict.fromkeys([f for f in wanted if f in exprs] + ["start_ns", "end_ns", "correlation_id",
                                                                    "global_pid"]))
    select = [exprs[f][0] if exprs[f][0] in have else "0" for f in read]
    fills = [exprs[f][1] if exprs[f][0] in have else None for f in read]
    exec_col = "graphExecId" if "graphExecId" in have else "-1"
    arrays = reader.select(f"SELECT {', '.join(select)}, graphId, {exec_col} FROM {GRAPH_TABLE}",
                           [*fills, None, -1])
    if not len(arrays[0]):
        return None
    columns = dict(zip(read, arrays[:-2], strict=True))
    graph_id, exec_id = arrays[-2], arrays[-1]
    check_times(reader.path, "CUDA graph", columns["start_ns"], columns["end_ns"])
    if not _graph_ids_valid(graph_id, exec_id).all():
        raise ProfileError(f"{reader.path} is damaged: {GRAPH_TABLE} holds a negative or huge graph id; export the "
                           "capture again with nsys export --type sqlite")
    check_unique(reader.path, "CUDA graph", columns["correlation_id"], columns["global_pid"])
    columns["name_id"] = columns["short_id"] = graph_name_ids(graph_id, exec_id)
    if kernels is not None and len(kernels.get("correlation_id", ())):
        traced = pair_keys(kernels["correlation_id"], kernels["global_pid"])
        keep = ~np.isin(pair_keys(columns["correlation_id"], columns["global_pid"]), traced) \
            | (columns["correlation_id"] < 0)
        if not keep.all():
            columns = {f: v[keep] for f, v in columns.items()}
        if not len(columns["start_ns"]):
            return None
    return columns


def pair_keys(corr: np.ndarray, pid: np.ndarray) -> np.ndarray:
    """(correlation id, process) as one comparable value each (a structured array)."""
    keys = np.empty(len(corr), dtype=[("pid", np.int64), ("corr", np.int64)])
    keys["pid"], keys["corr"] = pid, corr
    return keys


def launches_of(reader: Reader, tables: set[str], corr: np.ndarray, pid: np.ndarray, has_pid: bool, *,
                like: str) -> tuple[np.ndarray, np.ndarray]:
    """(launch_ns, launch_tid) of GPU work by correlation id and process: among the runtime calls
    `like` names first, among every call when some work finds none there. Without globalPid
    (`has_pid` False) a correlation id is matched in any process (as the SQL join did)."""
    if not has_pid:
        pid = np.zeros(len(corr), dtype=np.int64)
    for pattern in (like, None):
        calls = launch_calls(reader, tables, like=pattern, rows=len(corr) if pattern is not None else 0)
        if not has_pid:
            calls[1] = np.broadcast_to(np.int64(0), len(calls[1]))
        launch_ns, launch_tid = join_launches(corr, pid, calls)
        if not (launch_tid[corr >= 0] < 0).any():
            break
    return launch_ns, launch_tid


def read_names(db: sqlite3.Connection) -> dict[int, str]:
    """StringIds: id -> text; with the names of the export's whole CUDA-graph rows (graph_name_ids(),
    below zero) when it has GRAPH_TABLE."""
    names = dict(db.execute("SELECT id, value FROM StringIds").fetchall())
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (GRAPH_TABLE,)).fetchone():
        have = table_columns(db, GRAPH_TABLE)
        if "graphId" in have:
            exec_col = "graphExecId" if "graphExecId" in have else "-1"
            pairs = np.array([(g, x) for g, x in db.execute(
                f"SELECT DISTINCT graphId, coalesce({exec_col}, -1) FROM {GRAPH_TABLE} "
                f"WHERE typeof(graphId) = 'integer' AND typeof(coalesce({exec_col}, -1)) = 'integer'")],
                dtype=np.int64).reshape(-1, 2)
            ok = _graph_ids_valid(pairs[:, 0], pairs[:, 1])
            names.update(graph_names(graph_name_ids(pairs[ok, 0], pairs[ok, 1])))
    return names


def nvtx_type_names(db: sqlite3.Connection, tables: set[str]) -> dict[int, str]:
    if "ENUM_NSYS_EVENT_TYPE" in tables:
        return {i: n for i, n in db.execute("SELECT id, name FROM ENUM_NSYS_EVENT_TYPE")}
    return dict(NVTX_TYPES_FALLBACK)


# PyTorch's per-op ranges (nsys --pytorch=autograd-nvtx, torch.autograd.profiler.emit_nvtx):
# `aten::mm, seq = 4211, op_id = 40123[, sizes = ...]` in forward, `MmBackward0, seq = 4211,
# op_id = 42763` for the autograd node that op created, run in backward.
OP_RANGE = r"^(?P<op>[^,]+?), (?:seq = (?P<seq>\d+), )?op_id = \d+"
_OP_RANGE = re.compile(OP_RANGE)


def split_op_name(name: str) -> tuple[str, int]:
    """A per-op range name without its per-call ids (so paths repeat), and its sequence number (-1: none).

    >>> [split_op_name(n) for n in ["aten::mm, seq = 7, op_id = 9", "aten::view, op_id = 10", "layer_0"]]
    [('aten::mm', 7), ('aten::view', -1), ('layer_0', -1)]
    """
    m = _OP_RANGE.search(name)
    if m is None:
        return name, -1
    return m.group("op"), int(m.group("seq")) if m.group("seq") is not None else -1


UNNAMED = "(unnamed)"
NVTX_FIELDS = ("start_ns", "end_ns", "global_tid", "global_pid", "push_pop", "name", "seq")


def read_nvtx(reader: Reader, tables: set[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """NVTX ranges (push/pop and start/end; marks are not ranges) and their distinct names.

    Returns:
        ({start_ns, end_ns (OPEN_END for a range still open), global_tid, global_pid,
        push_pop (bool), name (index into the names), seq (the autograd sequence number of
        PyTorch's per-op ranges, -1 for none)}, names): names cleaned by split_op_name(), in
        order of first appearance.
    """
    empty = {f: np.empty(0, dtype=bool if f == "push_pop" else np.int64) for f in NVTX_FIELDS}
    if NVTX_TABLE not in tables:
        return empty, []
    types = {i: n for i, n in nvtx_type_names(reader.db, tables).items() if n in RANGE_TYPES}
    if not types:
        return empty, []
    have = reader.columns_of(NVTX_TABLE)
    require(reader, NVTX_TABLE, ("start", "end", "eventType"))
    where = f" WHERE eventType IN ({', '.join(map(str, types))})"
    # Names: per row, the inline text or the registered string, each distinct one split once
    # (115 k ranges share a few hundred names).
    text = "text" if "text" in have else "NULL"
    text_id = "textId" if "textId" in have else "NULL"
    strings = read_names(reader.db) if "textId" in have else {}
    try:
        read = _coded_ranges(reader, where, text, text_id)
    except (sqlite3.DatabaseError, ProfileError):  # damage: the plain reads below tell it as they always have
        read = None
    if read is not None:  # few distinct names: each row's pair as a code, read with the times
        start, end, tid, kind, codes, pairs = read
        check_times(reader.path, "NVTX range", start, end, open_end=True)
    else:
        start, end, tid, kind = reader.select(f"SELECT start, end, globalTid, eventType FROM {NVTX_TABLE}{where}",
                                              [None, OPEN_END, None, None])
        check_times(reader.path, "NVTX range", start, end, open_end=True)
        codes, pairs = _range_pairs(reader, where, text, text_id, len(start))
    index: dict[str | None, int] = {}
    # a textId that StringIds does not hold: damage, not a range without a name
    nowhere = [i for t, i in pairs if t is None and i is not None and i not in strings]
    if nowhere:
        raise ProfileError(f"{reader.path} is damaged: NVTX ranges name {len(nowhere):,} string ids (e.g. "
                           f"{str(nowhere[0])[:20]}) that are not in StringIds; export the capture again with nsys "
                           "export --type sqlite")
    # a text that is not text (a BLOB: TEXT affinity turns numbers into text, not bytes)
    if (bad := [c for (t, _), c in pairs.items() if t is not None and not isinstance(t, str)]):
        raise ProfileError(f"{reader.path} is damaged: {int(np.isin(codes, bad).sum()):,} NVTX ranges have a name "
                           "that is not text; export the capture again with nsys export --type sqlite")
    pair_name = np.array([index.setdefault(t if t is not None else strings.get(i) if i is not None else None,
                                           len(index)) for t, i in pairs], dtype=np.int64)
    codes = pair_name[codes] if len(codes) else codes
    check_repeats(reader.path, "NVTX range", [tid, start, end, codes],
                  "thread, start, end and name")  # a range twice would count its time twice
    # a range without a name gets one: an empty name would give a child its parent's path (the
    # kernels under a chain of unnamed ranges counted once per level)
    split = [split_op_name(n if n else UNNAMED) for n in index]
    clean: dict[str, int] = {}
    remap = np.array([clean.setdefault(name, len(clean)) for name, _ in split], dtype=np.int64)
    seq_of = np.array([s for _, s in split], dtype=np.int64)
    push_pop = np.isin(kind, [t for t, n in types.items() if n == "NvtxPushPopRange"])
    columns = {"start_ns": start, "end_ns": end, "global_tid": tid, "global_pid": pid_of(tid), "push_pop": push_pop,
               "name": remap[codes] if len(codes) else codes, "seq": seq_of[codes] if len(codes) else codes}
    return columns, list(clean)


PAIR_CASES = 64
"""_coded_ranges() codes NVTX names in SQL up to this many distinct (text, textId) pairs (a CASE
of that many tests per row); more, and they are read as rows (_range_pairs())."""
PAIR_PREFIX = 8192
"""_coded_ranges() looks for the distinct pairs in this many rows first."""


def _sql_literal(value: object) -> str | None:
    """`value` as an SQL literal that `IS` compares as Python's == does (None: not one of those:
    a str without NUL, an int, None).

    >>> [_sql_literal(v) for v in ("it's", 7, None, b"x", True)]
    ["'it''s'", '7', 'NULL', None, None]
    """
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return None if "\0" in value else "'" + value.replace("'", "''") + "'"
    if type(value) is int:
        return str(value)
    return None


def _coded_ranges(reader: Reader, where: str, text: str, text_id: str) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[tuple[Any, Any], int]] | None:
    """The NVTX ranges' start, end, thread and type with each row's (text, textId) pair as a code
    computed in SQL (a CASE over the distinct pairs): one scan of integers instead of a Python
    tuple per row. Codes and pairs as _range_pairs() gives them (each pair numbered in order of
    first appearance). The pairs are first those of the first PAIR_PREFIX rows (a step's names are
    every step's: no scan of the whole table), then, when a row names none of them, every row's.
    None when there are more than PAIR_CASES pairs, one that is not a plain text or integer (or
    NULL), or a row that no pair names (the export changed between the reads): _range_pairs() then
    reads them; read_nvtx() does so on any error here too, so that damage is told as the plain
    reads tell it."""
    rows = f"SELECT {text}, {text_id} FROM {NVTX_TABLE}{where}"
    for source in (f"{rows} LIMIT {PAIR_PREFIX}", rows):
        distinct = reader.db.execute(f"SELECT DISTINCT * FROM ({source})").fetchmany(PAIR_CASES + 1)
        if not distinct or len(distinct) > PAIR_CASES:
            return None
        tests = []
        for n, (t, i) in enumerate(distinct):
            lt, li = _sql_literal(t), _sql_literal(i)
            if lt is None or li is None:
                return None
            tests.append(f"WHEN {text} IS {lt} AND {text_id} IS {li} THEN {n}")
        start, end, tid, kind, found = reader.select(
            f"SELECT start, end, globalTid, eventType, CASE {' '.join(tests)} ELSE -1 END FROM {NVTX_TABLE}{where}",
            [None, OPEN_END, None, None, None])
        if not len(found) or int(found.min()) >= 0:
            break
    else:
        return None
    # number the pairs as they first appear, as _range_pairs() does
    seen, first = np.unique(found, return_index=True)
    order = seen[np.argsort(first, kind="stable")]
    renumber = np.full(len(distinct), -1, dtype=np.int64)
    renumber[order] = np.arange(len(order), dtype=np.int64)
    pairs: dict[tuple[Any, Any], int] = {}
    for j in order.tolist():
        pairs.setdefault(distinct[j], len(pairs))
    if len(pairs) != len(order):  # two distinct rows Python takes for one key: the row by row read
        return None
    return start, end, tid, kind, renumber[found] if len(found) else found, pairs


def _range_pairs(reader: Reader, where: str, text: str, text_id: str, n: int) -> tuple[
        np.ndarray, dict[tuple[Any, Any], int]]:
    """Each NVTX range's (text, textId) pair as a code, pairs numbered as they first appear, read
    row by row with sqlite3 (a dict lookup per row, in C): 1.15 M ranges in ~0.2 s, one chunk of
    rows alive at a time. `n`: the rows the times' read found."""
    pairs: dict[tuple[Any, Any], int] = {}
    codes = np.empty(n, dtype=np.int64)
    done = 0
    cur = reader.db.execute(f"SELECT {text}, {text_id} FROM {NVTX_TABLE}{where}")
    while rows := cur.fetchmany(CHUNK_ROWS):
        for pair in dict.fromkeys(rows):
            pairs.setdefault(pair, len(pairs))
        if done + len(rows) > n:
            raise ProfileError(f"{reader.path} changed while it was read; read it again")
        codes[done:done + len(rows)] = np.fromiter(map(pairs.__getitem__, rows), dtype=np.int64, count=len(rows))
        done += len(rows)
    if done != n:
        raise ProfileError(f"{reader.path} changed while it was read; read it again")
    return codes, pairs


def nvtx_last_end(db: sqlite3.Connection, tables: set[str]) -> int | None:
    """The last end of the export's NVTX ranges (None: none), without loading them."""
    if NVTX_TABLE not in tables:
        return None
    types = [i for i, n in nvtx_type_names(db, tables).items() if n in RANGE_TYPES]
    if not types:
        return None
    row = db.execute(f"SELECT max(end) FROM {NVTX_TABLE} WHERE eventType IN ({', '.join(map(str, types))})").fetchone()
    if row[0] is not None and type(row[0]) is not int:  # text and BLOBs sort above every number; inf is a REAL
        file = db.execute("PRAGMA database_list").fetchone()[2]
        raise ProfileError(f"{file} is damaged: an NVTX range's end is not an integer; export the capture again "
                           "with nsys export --type sqlite")
    return None if row[0] is None else int(row[0])


def incomplete(path: Path, kernels_end: np.ndarray, nvtx_end: int | None) -> ProfileError | None:
    """The error for an export whose analysis stopped early (its CUDA activity ends more than a
    second before its last NVTX range), else None. `nvtx_end`: the last end of a closed range."""
    if not len(kernels_end) or nvtx_end is None:
        return None
    gap = nvtx_end - int(kernels_end.max())
    if gap <= INCOMPLETE_GAP_NS:
        return None
    return ProfileError(
        f"{path} looks incomplete: its {len(kernels_end):,} kernels end {gap / 1e9:.1f} s before its NVTX "
        "ranges do, as when nsys's analysis stops at a CUDA call it does not know; capture again with a newer "
        "nsys or only the measured steps, or pass --allow-incomplete to report what is there")
