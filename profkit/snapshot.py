"""torch memory snapshot (memory.pickle) and profkit's sidecar (memory.json) -> MemoryData (no torch).

A pickle can run any code when it is loaded: `pickle.load` calls whatever importable
callable the file names. So the snapshot is read by a restricted unpickler that builds only
plain data (dicts, lists, tuples, strings, numbers, booleans, None) and refuses a file that
names any Python object at all. A torch snapshot is nothing but such data.

The snapshot (torch.cuda.memory._snapshot()): `segments` (the allocator's state at the dump),
`device_traces` (per device, every allocator action of the recorded history: alloc,
free_requested, free_completed, segment_alloc, segment_free, oom, ... with addr, size, stream,
time_us and Python frames), `allocator_settings`, and `external_annotations` (record_function
starts and ends with their time, when recorded with global_record_annotations=True).

The sidecar (profkit.collect.memory writes it): the allocator's blocks when the window opened,
torch's peak counters over it, profkit's range log (thread, begin/end, name, host time) and the
storages that tell what blocks hold. Without it (a snapshot from elsewhere) the report still
works, with an approximate replay and no ranges.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profkit import heap, layout, unpickle
from profkit.errors import ProfkitError

ACTIONS = ("alloc", "free_requested", "free_completed", "segment_alloc", "segment_free", "segment_map",
           "segment_unmap", "oom", "snapshot", "user_defined")
SIDECAR_FORMAT = "profkit-memory"
# Frames that are not the user's: torch itself, and profkit's own taps and hooks.
INTERNAL_FRAMES = ("/torch/", "/profkit/ranges.py", "/profkit/collect/hooks.py", "/profkit/collect/memory.py",
                   "/contextlib.py", "/threading.py")


class MemoryInputError(ProfkitError):
    """Not a usable memory snapshot; the message says why and what to do."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds only what pickle's opcodes build by themselves; any named Python object is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise _NamedObject(f"{module}.{name}")


class _NamedObject(Exception):
    pass


@dataclass(kw_only=True)
class MemoryData:
    """One snapshot, as frames. Addresses and sizes are bytes (int64), times microseconds."""

    path: Path
    device: int
    events: pd.DataFrame
    """The device's trace in recorded order: seq, action, addr, size, time_us, frame (the top user
    frame, `file.py:line function`, "" when none: the autograd thread has no Python frames); action
    and frame are categories. (The events' stream is read but not kept: nothing uses it.)"""
    end_blocks: pd.DataFrame
    """The blocks at the dump, as start_blocks below."""
    settings: dict[str, Any]
    """The allocator's settings: expandable_segments, max_split_size, roundup_power2_divisions."""
    sidecar: bool
    """Whether profkit's memory.json was beside the pickle (the rest below comes from it)."""
    start_blocks: pd.DataFrame | None = None
    """The blocks when the window opened: segment, segment_size, segment_type, address, size,
    requested_size, state (active_allocated, active_pending_free, inactive)."""
    start_allocated_bytes: int | None = None
    torch_peak_allocated_bytes: int | None = None
    """torch.cuda.max_memory_allocated over the window, as the run read it."""
    torch_peak_reserved_bytes: int | None = None
    range_log: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["thread", "kind", "name", "host_ns", "time_us"]))
    """profkit's ranges, one row per begin (B) or end (E) in the order they happened, with time_us
    in the snapshot's clock (`clock`)."""
    clock: str = "none"
    """`snapshot`: range times are torch's own annotation times; `host`: the host clock profkit
    logged (the annotations were missing); `none`: no ranges."""
    tensors: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["kind", "step", "address", "bytes", "name"]))
    """Storages seen in the window: parameter, buffer, gradient, optimizer_state, saved, autocast_copy."""
    max_entries: int | None = None
    oom: bool = False
    run: dict[str, Any] = field(default_factory=dict)
    """The run's model, mode, dtype, attn, batch_size, context_length, steps (from the sidecar)."""


def snapshot_path(path: Path) -> Path:
    """A memory.pickle, or the run/capture folder that holds one.

    Raises:
        MemoryInputError: missing, or a folder without memory.pickle.
    """
    if path.is_dir():
        if (path / layout.MEMORY_SNAPSHOT).is_file():
            return path / layout.MEMORY_SNAPSHOT
        raise MemoryInputError(f"{path} holds no {layout.MEMORY_SNAPSHOT}; record one with profkit run "
                               "--memory-snapshot (or profkit profile --memory-snapshot)")
    if not path.exists():
        raise MemoryInputError(f"{path} does not exist; give a {layout.MEMORY_SNAPSHOT} or the run folder holding "
                               "one")
    return path


def load_pickle(path: Path) -> Any:
    """The pickle's plain data.

    Raises:
        MemoryInputError: not a pickle, truncated or damaged, or it names a Python object.
    """
    data = path.read_bytes()
    if len(data) < 2 or data[0] != 0x80 or not 2 <= data[1] <= 5:
        raise MemoryInputError(f"{path} is not a pickle (a torch memory snapshot starts with pickle's protocol "
                               "header); give the memory.pickle that profkit run --memory-snapshot wrote")
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except _NamedObject as e:
        raise MemoryInputError(f"{path} is a pickle that names the Python object {e}; profkit loads only plain "
                               "snapshot data (dicts, lists, strings, numbers), because unpickling anything else "
                               "can run code") from None
    except (EOFError, pickle.UnpicklingError, ValueError, IndexError, KeyError, TypeError, MemoryError) as e:
        raise MemoryInputError(f"{path} is truncated or damaged ({type(e).__name__}: {str(e)[:120]}); record the "
                               "snapshot again") from None


def load_compact(path: Path) -> unpickle.Loaded:
    """The pickle's plain data, each trace's events as columns (profkit.unpickle), read in pieces.

    Raises:
        MemoryInputError: as load_pickle().
    """
    with open(path, "rb") as f:
        head = f.read(2)
        if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
            raise MemoryInputError(f"{path} is not a pickle (a torch memory snapshot starts with pickle's protocol "
                                   "header); give the memory.pickle that profkit run --memory-snapshot wrote")
        f.seek(0)
        try:
            return unpickle.load(f, top_frame)
        except unpickle.UnpickleError as e:
            if e.named is not None:
                raise MemoryInputError(f"{path} is a pickle that names the Python object {e.named}; profkit loads "
                                       "only plain snapshot data (dicts, lists, strings, numbers), because "
                                       "unpickling anything else can run code") from None
            raise MemoryInputError(f"{path} is truncated or damaged ({str(e)[:160]}); record the snapshot "
                                   "again") from None
        except MemoryError:
            raise MemoryInputError(f"{path} is damaged (it asks for more memory than there is); record the "
                                   "snapshot again") from None


def _events_frame(columns: unpickle.Trace | None, loaded: unpickle.Loaded) -> pd.DataFrame:
    """The trace's columns as the events frame: seq, action and frame as categories of their names
    (the numeric columns are views of the Trace's arrays: no copy)."""
    if columns is None:
        columns = unpickle.Trace()
    n = len(columns.action)

    def col(a: Any, dtype: Any) -> np.ndarray:
        return np.frombuffer(a, dtype=dtype) if n else np.zeros(0, dtype=dtype)

    return pd.DataFrame({
        "seq": np.arange(n, dtype=np.int32 if n < 2**31 else np.int64),
        "action": pd.Categorical.from_codes(col(columns.action, np.int8), categories=loaded.actions or ["alloc"]),
        "addr": col(columns.addr, np.int64), "size": col(columns.size, np.int64),
        "time_us": col(columns.time_us, np.int64),
        "frame": pd.Categorical.from_codes(col(columns.frame, np.int32), categories=loaded.frames)}, copy=False)


def top_frame(frames: Any) -> str:
    """The innermost frame that is the user's code (not torch's, not profkit's taps), else "".

    >>> top_frame([{"filename": "/x/torch/nn/functional.py", "line": 3, "name": "linear"},
    ...            {"filename": "/repo/models/gpt.py", "line": 42, "name": "forward"}])
    'models/gpt.py:42 forward'
    """
    if not isinstance(frames, list):
        return ""
    for f in frames:
        if not isinstance(f, dict):
            continue
        name = str(f.get("filename", ""))
        probe = "/" + name.lstrip("/")  # scrubbed paths are relative (site-packages/torch/...)
        if not name or name.startswith("<") or any(part in probe for part in INTERNAL_FRAMES):
            continue
        short = "/".join(name.split("/")[-2:])
        return f"{short}:{f.get('line', '?')} {f.get('name', '?')}"
    return ""


def read(path: Path) -> MemoryData:
    """Read a snapshot and, when it is there, its sidecar.

    Raises:
        MemoryInputError: see load_pickle(); not a snapshot; no history (device_traces empty); a
            history that overflowed max_entries; a sidecar that is not profkit's.
    """
    path = snapshot_path(path)
    heap.fixed_mmap_threshold()
    side = _read_sidecar(path)  # first: its text is gone before the trace's columns are read
    rows = _sidecar_frames(path, side) if side else None  # and its rows are frames (their pieces gone)
    loaded = load_compact(path)
    snap = loaded.data
    if not isinstance(snap, dict) or not isinstance(snap.get("segments"), list):
        what = type(snap).__name__
        raise MemoryInputError(f"{path} is a pickle of a {what}, not a torch memory snapshot (no 'segments' list); "
                               "give the memory.pickle that profkit run --memory-snapshot wrote")
    traces = snap.get("device_traces")
    if not isinstance(traces, list) or not any(isinstance(t, list) and (t or id(t) in loaded.traces) for t in traces):
        raise MemoryInputError(f"{path} has no allocator history (device_traces is empty): it was taken without "
                               "torch.cuda.memory._record_memory_history; record one with profkit run "
                               "--memory-snapshot")
    device = int(side["device"]) if side else next(i for i, t in enumerate(traces)
                                                   if isinstance(t, list) and (t or id(t) in loaded.traces))
    if device >= len(traces) or not isinstance(traces[device], list):
        raise MemoryInputError(f"{path} has no history for device {device}, which its memory.json names")
    trace = traces[device]
    columns = loaded.traces.get(id(trace))
    if trace:  # entries that are not allocator events (the events became columns)
        raise MemoryInputError(f"{path}: trace entry 0 is not an allocator event; the snapshot is damaged")
    n = 0 if columns is None else len(columns.action)
    if side and (side.get("overflowed") or n >= int(side["max_entries"])):
        raise MemoryInputError(f"{path}'s history overflowed: {n:,} events kept of max_entries "
                               f"{int(side['max_entries']):,}, the oldest dropped, so the peak cannot be replayed; "
                               "record it again with a larger --memory-max-entries or fewer --steps")
    events = _events_frame(columns, loaded)
    for what in ("addr", "size", "time_us"):  # addresses, sizes and times torch writes are integers >= 0
        col = events[what].to_numpy()
        if len(col) and col.min() < 0:
            i = int(np.argmax(col < 0))
            raise MemoryInputError(f"{path} is damaged: trace entry {i} has {what} = {int(col[i])}; torch writes "
                                   "integers of 0 or more there: record the snapshot again")
    segments = [s for s in snap["segments"] if isinstance(s, dict) and s.get("device", device) == device]
    try:
        end_blocks = blocks_frame(segments)
    except (KeyError, TypeError, ValueError) as e:
        raise MemoryInputError(f"{path}: a segment is damaged ({type(e).__name__}: {e})") from None
    data = MemoryData(path=path, device=device, events=events, end_blocks=end_blocks,
                      settings=_settings(snap.get("allocator_settings"), path), sidecar=side is not None)
    if side:
        assert rows is not None
        _apply_sidecar(data, side, rows, snap.get("external_annotations"))
    del loaded, snap, side, rows
    # the read's short-lived objects and arrays, freed, stay resident unless glibc is told (a 1 GB
    # snapshot's read left ~400 MB that nothing used)
    heap.release_freed()
    return data


BLOCK_COLUMNS = ["segment", "segment_size", "segment_type", "address", "size", "requested_size", "state"]


def blocks_frame(segments: list[Any]) -> pd.DataFrame:
    """One row per block of the segments (the snapshot's or the sidecar's shape), by address."""
    rows = []
    for s in segments:
        for b in s["blocks"]:
            rows.append((int(s["address"]), int(s["total_size"]), str(s.get("segment_type", "large")),
                         int(b["address"]), int(b["size"]), int(b.get("requested_size", b["size"])), str(b["state"])))
    frame = pd.DataFrame(rows, columns=BLOCK_COLUMNS)
    return frame.sort_values("address", kind="stable").reset_index(drop=True)


EVENT_INTS = ("addr", "size", "stream", "time_us")


def _events(path: Path, trace: list[Any]) -> pd.DataFrame:
    rows = []
    for i, e in enumerate(trace):
        if not isinstance(e, dict) or not isinstance(e.get("action"), str):
            raise MemoryInputError(f"{path}: trace entry {i} is not an allocator event; the snapshot is damaged")
        values = [e.get(k, 0) or 0 for k in EVENT_INTS]  # torch leaves some unset (None): 0
        for k, v in zip(EVENT_INTS, values, strict=True):
            if not isinstance(v, int) or isinstance(v, bool) or not -(2**63) <= v < 2**63 or (k != "stream" and v < 0):
                raise MemoryInputError(f"{path}: trace entry {i} has {k} = {str(v)[:40]}, not a count torch writes; "
                                       "the snapshot is damaged: record it again")
        rows.append((i, e["action"], *values, top_frame(e.get("frames"))))
    return pd.DataFrame(rows, columns=["seq", "action", "addr", "size", "stream", "time_us", "frame"]).astype(
        {"seq": "int64", "addr": "int64", "size": "int64", "stream": "int64", "time_us": "int64"})


def _settings(raw: Any, path: Path) -> dict[str, Any]:
    """The allocator settings the replay follows; torch's defaults where the snapshot says nothing.

    Raises:
        MemoryInputError: a setting of a type torch never writes (the replay would follow a guess).
    """
    raw = raw if isinstance(raw, dict) else {}
    max_split = raw.get("max_split_size")
    divisions = raw.get("roundup_power2_divisions")
    expandable = raw.get("expandable_segments", False)
    if not isinstance(expandable, bool) or (max_split is not None and (not isinstance(max_split, int)
                                                                      or isinstance(max_split, bool))):
        what = "expandable_segments" if not isinstance(expandable, bool) else "max_split_size"
        raise MemoryInputError(f"{path}: allocator_settings.{what} is {str(raw.get(what))[:40]}, not what torch "
                               "writes; the snapshot is damaged: record it again")
    return {"expandable_segments": expandable,
            # torch reports "unlimited" as SIZE_MAX (or -1 through a signed conversion)
            "max_split_size": None if max_split is None or max_split < 0 or max_split >= 2**63 - 1 else max_split,
            "roundup_power2_divisions": divisions if isinstance(divisions, (int, list, dict)) else None}


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    side = path.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        data = _sidecar_json(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MemoryInputError(f"{side} is not readable JSON ({e}); remove it to report the snapshot alone") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or "max_entries" not in data:
        raise MemoryInputError(f"{side} is not profkit's memory sidecar; remove or rename it to report the snapshot "
                               "alone")
    _check_sidecar(side, data)
    return data


# The sidecar's row tables, as profkit.collect.memory writes them: each value's type, in column order.
SIDECAR_ROWS = {"ranges": (int, str, str, int), "tensors": (str, int, int, int, str)}
SIDECAR_NUMBERS = {"start": ("allocated_bytes",), "end": ("peak_allocated_bytes", "peak_reserved_bytes")}
SIDECAR_RUN = {"model": str, "mode": str, "dtype": str, "attn": str, "batch_size": int, "context_length": int,
               "steps": int}


def _check_sidecar(side_path: Path, side: dict[str, Any]) -> None:
    """Every row of the sidecar's tables has its columns' types (a range's kind B or E, sizes >= 0),
    and its byte counts are integers >= 0.

    Raises:
        MemoryInputError: the first value that is not, named.
    """
    def bad(what: str) -> MemoryInputError:
        return MemoryInputError(f"{side_path} is damaged ({what}); remove it to report the snapshot alone")

    for table, types in SIDECAR_ROWS.items():
        rows = side.get(table, {}).get("rows") if isinstance(side.get(table), dict) else None
        if isinstance(rows, _Rows):  # a large sidecar's rows, read in pieces as columns
            _check_columns(rows, types, table, bad)
            continue
        if not isinstance(rows, list):
            raise bad(f"no {table} rows")
        for i, row in enumerate(rows):
            ok = (isinstance(row, list) and len(row) == len(types)
                  and all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(row, types, strict=True)))
            if ok and table == "ranges":
                ok = row[1] in ("B", "E")
            if ok and table == "tensors":
                ok = row[3] >= 0
            if not ok:
                raise bad(f"{table} row {i} is {str(row)[:80]}")
    for key, minimum in (("max_entries", 1), ("device", 0)):
        v = side.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise bad(f"{key} is {str(v)[:40]}")
    for key in ("overflowed", "oom"):
        if not isinstance(side.get(key, False), bool):
            raise bad(f"{key} is {str(side.get(key))[:40]}")
    start = side.get("start")
    if not isinstance(start, dict) or not isinstance(start.get("segments"), list):
        raise bad("no start state (its segments: what was allocated when the window opened)")
    run = side.get("run")
    if run is not None and not isinstance(run, dict):
        raise bad(f"run is {str(run)[:40]}")
    for key, kind in SIDECAR_RUN.items():
        v = (run or {}).get(key)
        if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
            raise bad(f"run.{key} is {str(v)[:40]}")
    for part, keys in SIDECAR_NUMBERS.items():
        block = side.get(part)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise bad(f"{part} is {str(block)[:40]}")
        for key in keys:
            v = block.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise bad(f"{part}.{key} is {str(v)[:40]}")


def _check_columns(rows: _Rows, types: tuple[type, ...], table: str, bad: Any) -> None:
    """_check_sidecar's row checks on rows read in pieces: each piece's columns of the table's
    types (ints as int64, text as objects), a range's kind B or E, a storage's size >= 0."""
    for part in rows.parts:
        if len(part) != len(types):
            raise bad(f"{table} rows of {len(part)} columns, not {len(types)}")
        for j, kind in enumerate(types):
            if (part[j].dtype == object) != (kind is str):
                raise bad(f"{table} column {j} holds {'text' if part[j].dtype == object else 'numbers'}")
        if table == "ranges" and not np.isin(part[1], ["B", "E"]).all():
            raise bad("a ranges row whose kind is not B or E")
        if table == "tensors" and (part[3] < 0).any():
            raise bad("a tensors row with a negative size")


class _Rows:
    """A sidecar's rows list read in pieces: per column, numpy parts (strings interned)."""

    def __init__(self, parts: list[list[np.ndarray]]) -> None:
        self.parts = parts


def _rows_frame(rows: Any, columns: list[str]) -> pd.DataFrame:
    if isinstance(rows, _Rows):
        if any(len(p) != len(columns) for p in rows.parts):
            raise ValueError(f"rows of {len(rows.parts[0]) if rows.parts else 0} columns, not {len(columns)}")
        return pd.DataFrame({c: np.concatenate([p[j] for p in rows.parts]) if rows.parts else []
                             for j, c in enumerate(columns)})
    return pd.DataFrame(rows, columns=columns)


_ROWS_KEY = '"rows":['
_PIECE = 1 << 20


def _sidecar_json(text: str) -> Any:
    """json.loads of the sidecar, with its large "rows" lists (the range log and the storages:
    rows per step) parsed a megabyte at a time into columns, so that no list of millions of small
    lists is ever built. Anything unexpected: plain json.loads."""
    spans: list[tuple[int, int]] = []
    i = 0
    while True:
        k = text.find(_ROWS_KEY, i)
        if k < 0:
            break
        start = k + len(_ROWS_KEY) - 1  # the rows list's '['
        if text.startswith("[]", start):
            i = start + 2
            continue
        end = text.find("]]", start)
        if end < 0:
            return json.loads(text)
        spans.append((start, end + 2))
        i = end + 2
    if not spans or sum(b - a for a, b in spans) < _PIECE:
        return json.loads(text)
    skeleton = []
    last = 0
    for a, b in spans:
        skeleton += [text[last:a], "[]"]
        last = b
    skeleton.append(text[last:])
    data = json.loads("".join(skeleton))
    found = []
    for a, b in spans:
        rows = _rows_in_pieces(text, a + 1, b - 1)
        if rows is None:
            return json.loads(text)
        found.append(rows)
    targets = ([v for v in (data.get("ranges"), data.get("tensors")) if isinstance(v, dict)]
               if isinstance(data, dict) else [])
    if len(targets) != len(found) or any(t.get("rows") != [] for t in targets):
        return json.loads(text)
    for t, rows in zip(targets, found, strict=True):
        t["rows"] = rows
    return data


def _rows_in_pieces(text: str, lo: int, hi: int) -> _Rows | None:
    """text[lo:hi] is `[..],[..],...,[..]`: parsed a piece at a time (cut between rows), each
    piece's columns as numpy arrays; None when a piece does not parse as rows of one width."""
    parts: list[list[np.ndarray]] = []
    interned: dict[str, str] = {}
    width = None
    while lo < hi:
        cut = text.find("],[", min(lo + _PIECE, hi), hi)
        stop = hi if cut < 0 else cut + 1
        try:
            rows = json.loads("[" + text[lo:stop] + "]")
        except json.JSONDecodeError:
            return None
        if not rows or any(type(r) is not list for r in rows):
            return None
        w = len(rows[0])
        if width is None:
            width = w
        if any(len(r) != width for r in rows):
            return None
        cols: list[np.ndarray] = []
        for j, col in enumerate(zip(*rows, strict=True)):
            if all(type(v) is int for v in col) and all(-(2**63) <= v < 2**63 for v in col):
                cols.append(np.array(col, dtype=np.int64))
            elif all(type(v) is str for v in col):
                cols.append(np.array([interned.setdefault(v, v) for v in col], dtype=object))
            else:
                return None
            del j
        parts.append(cols)
        lo = stop + 1  # past the comma between rows
    return _Rows(parts)


def _sidecar_frames(path: Path, side: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sidecar's range log (without times) and storages as frames; their rows are taken out of
    `side` (a large sidecar's pieces go as the frames are made).

    Raises:
        MemoryInputError: rows of the wrong width.
    """
    try:
        log = _rows_frame(side["ranges"].pop("rows"), ["thread", "kind", "name", "host_ns"])
        tensors = _rows_frame(side["tensors"].pop("rows"), ["kind", "step", "address", "bytes", "name"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MemoryInputError(f"{path.with_suffix('.json')} is damaged ({type(e).__name__}: {e}); remove it to "
                               "report the snapshot alone") from None
    return log, tensors


def _apply_sidecar(data: MemoryData, side: dict[str, Any], rows: tuple[pd.DataFrame, pd.DataFrame],
                   annotations: Any) -> None:
    log, data.tensors = rows
    try:
        start = side.get("start") or {}
        end = side.get("end") or {}
        data.start_blocks = blocks_frame(start.get("segments", []))
        data.start_allocated_bytes = start.get("allocated_bytes")
        data.torch_peak_allocated_bytes = end.get("peak_allocated_bytes")
        data.torch_peak_reserved_bytes = end.get("peak_reserved_bytes")
        data.max_entries = int(side["max_entries"])
        data.oom = bool(side.get("oom", False))
        data.run = dict(side.get("run") or {})
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MemoryInputError(f"{data.path.with_suffix('.json')} is damaged ({type(e).__name__}: {e}); remove it to "
                               "report the snapshot alone") from None
    prefix = str(side.get("annotation_prefix", "profkit:"))
    times, data.clock = _annotation_times(log, annotations, prefix)
    if times is None:
        times = (log["host_ns"] // 1000).tolist()
        data.clock = "host" if len(log) else "none"
    data.range_log = log.assign(time_us=pd.Series(times, dtype="int64"))


def _annotation_times(log: pd.DataFrame, annotations: Any, prefix: str) -> tuple[list[int] | None, str]:
    """Each logged begin/end's time in the snapshot's clock: the n-th annotation of profkit's is the
    n-th logged event (same name, START for B, END for E), else None (the host clock is used)."""
    if not isinstance(annotations, list) or log.empty:
        return None, "none"
    ours = [a for a in annotations if isinstance(a, (dict, unpickle.Annotation))
            and str(a.get("name", "")).startswith(prefix)]
    if len(ours) != len(log):
        return None, "none"
    times = []
    for a, kind, name in zip(ours, log["kind"], log["name"], strict=True):
        stage = str(a.get("stage", "")).upper()
        if (a.get("name") != prefix + name or stage != ("START" if kind == "B" else "END")
                or not isinstance(a.get("time_us"), int) or isinstance(a.get("time_us"), bool)):
            return None, "none"  # not profkit's annotations as logged: the host clock is used
        times.append(a["time_us"])
    return times, "snapshot"
