"""Seeded mutations of real fixtures through every report command, in-process: the harness of
tests/test_fuzz.py (a few hundred cases in CI) and scripts/fuzz.py (thousands, a table in reports/).

A mutation is one damage to a copy of a committed fixture: an export (a dropped table or column,
NULLs in a column, wild values: negative, huge, text, fractions, blobs; duplicated rows, start and
end swapped, flipped bytes, truncation), the run records beside it (run.json, a rank's
rank0.run.json, the flops.json counted for it: truncated, a field removed, a field of the wrong
type) or the memory snapshot (truncated, a field removed, a field of the wrong type, not a
pickle, a pickle naming a forbidden global, its sidecar damaged).
A case is one mutation through one command (click's CliRunner, a per-case time bound). Allowed:

- refused: exit 2, exactly one `Error: ...` line on stderr, nothing on stdout, nothing new written;
- correct: exit 0 and a report whose numbers are possible (durations, sizes and counts >= 0,
  shares within 0..100%, busy <= span, hidden <= communication, min <= median <= max, a kernel
  table's instances and time equal to plain SQL over the mutated export itself, no NaN or inf),
  and, where rows were duplicated, the undamaged report or a note that says so.

Anything else (a traceback, another exit code, several lines, an impossible number, a hang) is
FAILED, with the first lines of what happened.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import random
import shutil
import signal
import sqlite3
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from profkit.cli import cli

DATA = Path(__file__).parent / "data"
# name -> (fixture folder, export file): two single-GPU captures and a DDP rank (for `report ranks`).
EXPORTS = {
    "encoder": (DATA / "h100_encoder_layer_nsys2023", "profile.sqlite"),  # nsys 2023.4, no run.json, 234 kernels
    "graphs": (DATA / "h200_small_step_bf16_flash_graphs_graph", "profile.sqlite"),  # nsys 2025.3, CUDA graphs
    "ddp": (DATA / "h200_small_step_bf16_ddp_1rank", "rank0.sqlite"),  # a rank: report ranks
}
SNAPSHOT = DATA / "h200_memory_tiny_step"  # memory.pickle, memory.json, run.json
EXPORT_KINDS = ("drop-table", "drop-column", "nulls", "wild-negative", "wild-huge", "wild-text", "wild-real",
                "wild-blob", "duplicate-rows", "swap-start-end", "flip-bytes", "truncate")
SNAPSHOT_KINDS = ("snapshot-truncate", "snapshot-remove-field", "snapshot-wrong-type", "snapshot-not-a-pickle",
                  "snapshot-forbidden-global", "sidecar-damage")
RECORD_KINDS = ("record-truncate", "record-remove-field", "record-wrong-type")
KINDS = EXPORT_KINDS + SNAPSHOT_KINDS + RECORD_KINDS
RECORD_FIXTURES = ("graphs", "ddp")  # the exports with a run.json (and so a flops.json) beside them
EXPORT_COMMANDS = ("kernels", "nvtx", "modules", "timeline", "flops", "memory", "compare", "capture", "ranks")
SNAPSHOT_COMMANDS = ("memory", "memory-markdown", "compare")
COMMANDS = tuple(dict.fromkeys(EXPORT_COMMANDS + SNAPSHOT_COMMANDS))
# Tables profkit reads, chosen most often (nsys creates the rest too; any table may be picked).
READ_TABLES = ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS", "StringIds",
               "CUPTI_ACTIVITY_KIND_GRAPH_TRACE", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET",
               "TARGET_INFO_GPU", "TARGET_INFO_SESSION_START_TIME", "ANALYSIS_DETAILS", "PROCESSES", "ThreadNames",
               "META_DATA_CAPTURE", "META_DATA_EXPORT")
KERNEL, GRAPHS = "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_GRAPH_TRACE"


@dataclass(frozen=True, slots=True)
class Mutation:
    kind: str
    fixture: str  # an EXPORTS key, or "snapshot"
    seed: int

    @property
    def commands(self) -> tuple[str, ...]:
        if self.fixture == "snapshot":
            return SNAPSHOT_COMMANDS
        if self.kind in RECORD_KINDS:  # the commands that read a run record or flops.json
            return ("nvtx", "flops", "compare", "capture") + (("ranks",) if self.fixture == "ddp" else ())
        return EXPORT_COMMANDS if self.fixture == "ddp" else tuple(c for c in EXPORT_COMMANDS if c != "ranks")


@dataclass(slots=True)
class Outcome:
    mutation: Mutation
    command: str
    status: str  # correct | refused | FAILED
    detail: str = ""
    seconds: float = 0.0
    damage: str = ""


def mutations(seed: int, n: int) -> list[Mutation]:
    """n mutations, every kind in turn (snapshot and record kinds a third as often), fixtures and details seeded."""
    rng = random.Random(seed)
    kinds = list(EXPORT_KINDS) * 3 + list(SNAPSHOT_KINDS) + list(RECORD_KINDS)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        fixture = ("snapshot" if kind in SNAPSHOT_KINDS else rng.choice(RECORD_FIXTURES) if kind in RECORD_KINDS
                   else rng.choice(sorted(EXPORTS)))
        out.append(Mutation(kind, fixture, rng.randrange(2**31)))
    return out


# --- damage ---------------------------------------------------------------------------------------------------

def _tables(db: sqlite3.Connection) -> list[str]:
    return [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info([{table}])")]


def _pick_table(db: sqlite3.Connection, rng: random.Random, need: str | None = None) -> str | None:
    tables = [t for t in _tables(db) if need is None or need in _columns(db, t)]
    read = [t for t in READ_TABLES if t in tables]
    if not tables:
        return None
    return rng.choice(read) if read and rng.random() < 0.85 else rng.choice(tables)


def _loosen(db: sqlite3.Connection, table: str) -> None:
    """Rebuild `table` without its constraints (NOT NULL, types, keys), rows kept, so that any value fits."""
    db.execute(f"CREATE TABLE [_loose] AS SELECT * FROM [{table}]")
    db.execute(f"DROP TABLE [{table}]")
    db.execute(f"ALTER TABLE [_loose] RENAME TO [{table}]")


def _update(db: sqlite3.Connection, table: str, sql: str, args: tuple[Any, ...] = ()) -> None:
    try:
        db.execute(sql, args)
    except sqlite3.IntegrityError:
        _loosen(db, table)
        db.execute(sql, args)


def _rows(rng: random.Random) -> tuple[str, str]:
    """A WHERE clause choosing some rows (all, every m-th) and its description."""
    m = rng.choice([1, 2, 3, 7, 13, 50])
    r = rng.randrange(m)
    return (("1", "every row") if m == 1 else (f"rowid % {m} = {r}", f"rows with rowid % {m} = {r}"))


def _wild(kind: str, rng: random.Random) -> Any:
    if kind == "wild-negative":
        return rng.choice([-1, -1000, -(2**40), -(2**63)])
    if kind == "wild-huge":
        return rng.choice([2**63 - 1, 10**18, 2**53 + 1, 4 * 10**15])
    if kind == "wild-text":
        return rng.choice(["x", "", "12abc", "NaN", "1e9", "\u00e9\u00e8"])
    if kind == "wild-blob":  # bytes, stored as a BLOB whatever the column's affinity
        return rng.choice([b"", b"x", b"step_0", b"\xff\xfe\x00", (7).to_bytes(8, "little")])
    return rng.choice([0.5, 1e300, -0.25, float("inf"), 3.75])  # wild-real


def damage_export(path: Path, kind: str, rng: random.Random) -> str:
    """Apply one damage of `kind` to the export at `path` (in place); what was done, in words."""
    if kind == "flip-bytes":
        data = bytearray(path.read_bytes())
        n = rng.choice([1, 2, 8, 64])
        low = 0 if rng.random() < 0.2 else 100  # the header now and then, mostly the pages
        for _ in range(n):
            i = rng.randrange(low, len(data))
            data[i] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        return f"{n} bits flipped{' (header included)' if low == 0 else ''}"
    if kind == "truncate":
        data = path.read_bytes()
        cut = rng.randrange(len(data))
        path.write_bytes(data[:cut])
        return f"cut at byte {cut:,} of {len(data):,}"
    db = sqlite3.connect(path)
    try:
        return _sql_damage(db, kind, rng)
    finally:
        db.commit()
        db.close()


def _sql_damage(db: sqlite3.Connection, kind: str, rng: random.Random) -> str:
    if kind == "swap-start-end":
        table = _pick_table(db, rng, need="start")
        if table is None or "end" not in _columns(db, table):
            return "no table with start and end"
        where, rows = _rows(rng)
        _update(db, table, f"UPDATE [{table}] SET start = [end], [end] = start WHERE {where}")
        return f"{table}: start and end swapped in {rows}"
    table = _pick_table(db, rng)
    if table is None:
        return "no tables"
    if kind == "drop-table":
        db.execute(f"DROP TABLE [{table}]")
        return f"table {table} dropped"
    columns = _columns(db, table)
    column = rng.choice(columns)
    where, rows = _rows(rng)
    if kind == "drop-column":
        kept = ", ".join(f"[{c}]" for c in columns if c != column) or "NULL AS nothing"
        db.execute(f"CREATE TABLE [_kept] AS SELECT {kept} FROM [{table}]")
        db.execute(f"DROP TABLE [{table}]")
        db.execute(f"ALTER TABLE [_kept] RENAME TO [{table}]")
        return f"{table}.{column} dropped"
    if kind == "nulls":
        _update(db, table, f"UPDATE [{table}] SET [{column}] = NULL WHERE {where}")
        return f"{table}.{column} NULL in {rows}"
    if kind == "duplicate-rows":
        _update(db, table, f"INSERT INTO [{table}] SELECT * FROM [{table}] WHERE {where}")
        return f"{table}: {rows} duplicated"
    value = _wild(kind, rng)
    _update(db, table, f"UPDATE [{table}] SET [{column}] = ? WHERE {where}", (value,))
    return f"{table}.{column} = {value!r} in {rows}"


class _Forbidden:
    """Pickles as a call of os.mkdir: a snapshot that names a Python object (must never be called)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def _random_path(data: Any, rng: random.Random) -> list[Any]:
    """A path of keys and indices from the root into the snapshot's nested data (1 to 5 steps)."""
    path: list[Any] = []
    node = data
    for _ in range(rng.randint(1, 5)):
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
        elif isinstance(node, list) and node:
            key = rng.randrange(len(node))
        else:
            break
        path.append(key)
        node = node[key]
    return path


def _wrong(value: Any, rng: random.Random) -> Any:
    choices: list[Any] = ["text", None, [], {}, -1, 2**70, float("nan"), True, 1.5, b"\x00"]
    return rng.choice([c for c in choices if type(c) is not type(value)] or choices)


def damage_snapshot(folder: Path, kind: str, rng: random.Random, marker: Path) -> str:
    """Apply one damage to the memory.pickle (or memory.json) in `folder`; what was done."""
    from profkit.snapshot import load_pickle

    snap, side = folder / "memory.pickle", folder / "memory.json"
    if kind == "snapshot-truncate":
        data = snap.read_bytes()
        cut = rng.randrange(len(data))
        snap.write_bytes(data[:cut])
        return f"memory.pickle cut at byte {cut:,} of {len(data):,}"
    if kind == "snapshot-not-a-pickle":
        choice = rng.choice(["random", "json", "empty", "zip", "text-pickle-protocol-0"])
        snap.write_bytes({"random": random.Random(rng.random()).randbytes(4096), "json": b'{"segments": []}',
                          "empty": b"", "zip": b"PK\x03\x04" + bytes(200),
                          "text-pickle-protocol-0": pickle.dumps({"segments": []}, protocol=0)}[choice])
        return f"memory.pickle replaced: {choice}"
    if kind == "snapshot-forbidden-global":
        data = load_pickle(snap)
        where = rng.choice(["root", "segments", "event"])
        if where == "root":
            data = _Forbidden(marker)
        elif where == "segments":
            data["segments"] = _Forbidden(marker)
        else:
            data["device_traces"][0][0]["frames"] = [_Forbidden(marker)]
        snap.write_bytes(pickle.dumps(data, protocol=4))
        return f"memory.pickle names os.mkdir ({where})"
    if kind == "sidecar-damage":
        text = side.read_text()
        how = rng.choice(["truncate", "remove-field", "wrong-type"])
        if how == "truncate":
            side.write_text(text[: rng.randrange(len(text))])
            return "memory.json truncated"
        doc = json.loads(text)
        path = _random_path(doc, rng)
        _change(doc, path, how, rng)
        side.write_text(json.dumps(doc, allow_nan=True, default=lambda o: o.hex()))
        return f"memory.json {how} at {_path_text(path)}"
    data = load_pickle(snap)
    path = _random_path(data, rng)
    how = "remove-field" if kind == "snapshot-remove-field" else "wrong-type"
    _change(data, path, how, rng)
    snap.write_bytes(pickle.dumps(data, protocol=4))
    return f"memory.pickle {how} at {_path_text(path)}"


def damage_record(folder: Path, kind: str, rng: random.Random) -> str:
    """Apply one damage to one of the JSON records in the capture folder (run.json, rank0.run.json,
    flops.json); what was done."""
    records = sorted(p for p in folder.glob("*.json"))
    if not records:
        return "no record"
    record = rng.choice(records)
    text = record.read_text()
    if kind == "record-truncate":
        cut = rng.randrange(len(text))
        record.write_text(text[:cut])
        return f"{record.name} cut at character {cut:,} of {len(text):,}"
    doc = json.loads(text)
    path = _random_path(doc, rng)
    how = "remove-field" if kind == "record-remove-field" else "wrong-type"
    _change(doc, path, how, rng)
    record.write_text(json.dumps(doc, allow_nan=True, default=lambda o: o.hex()))
    return f"{record.name} {how} at {_path_text(path)}"


def _change(doc: Any, path: list[Any], how: str, rng: random.Random) -> None:
    if not path:
        return
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if how == "remove-field":
        del parent[path[-1]]
    else:
        parent[path[-1]] = _wrong(parent[path[-1]], rng)


def _path_text(path: list[Any]) -> str:
    return "".join(f"[{k!r}]" for k in path) or "(root)"


# --- one case -----------------------------------------------------------------------------------------------------

class Hang(Exception):
    """The case ran past its time bound."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    def ring(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Workspace:
    """Per-session templates: fixture folders copied once (with a flops.json where torch can count one)."""

    root: Path
    templates: dict[str, Path] = field(default_factory=dict)
    originals: dict[tuple[str, str], str] = field(default_factory=dict)

    def template(self, fixture: str) -> Path:
        if fixture not in self.templates:
            source = SNAPSHOT if fixture == "snapshot" else EXPORTS[fixture][0]
            folder = self.root / "templates" / fixture / source.name
            shutil.copytree(source, folder, ignore=shutil.ignore_patterns("report.md", "README.md"))
            if fixture != "snapshot" and (folder / "run.json").exists():
                _write_flops(folder)
            self.templates[fixture] = folder
        return self.templates[fixture]


def _write_flops(folder: Path) -> None:
    """flops.json for the capture, counted once (torch on the meta device), so that every case's
    `report flops` reads it instead of counting again."""
    try:
        from profkit import layout
        from profkit.collect import flops as counting

        counting.write(counting.count(layout.RunRecord.read(folder).config), folder)
    except ImportError:  # no torch: report flops refuses (one Error: line), as a user without torch sees
        pass


def args_for(command: str, m: Mutation, case: Path, template: Path) -> list[str]:
    """The command line of `command` on the damaged input in the folder `case`."""
    if m.fixture == "snapshot":
        snap = str(case / "memory.pickle")
        return {"memory": ["report", "memory", str(case), "--format", "json"],
                "memory-markdown": ["report", "memory", snap],
                "compare": ["report", "compare", str(template / "memory.pickle"), snap, "--format", "json"]}[command]
    export = str(case / EXPORTS[m.fixture][1])
    base = str(template / EXPORTS[m.fixture][1])
    return {"kernels": ["report", "kernels", export, "--top", "0", "--format", "json", "--no-cache"],
            "nvtx": ["report", "nvtx", export, "--format", "json", "--no-cache"],
            "modules": ["report", "modules", export, "--format", "json", "--no-cache"],
            "timeline": ["report", "timeline", export, "--format", "json", "--no-cache"],
            "flops": ["report", "flops", str(case), "--format", "json", "--no-cache"],
            "memory": ["report", "memory", str(SNAPSHOT / "memory.pickle"), "--profile", str(case), "--format",
                       "json"],
            "compare": ["report", "compare", base, export, "--format", "json", "--no-cache"],
            "capture": ["report", "capture", str(case), "--no-cache"],
            "ranks": ["report", "ranks", str(case), "--format", "json", "--jobs", "1"]}[command] + (
        ["--rank", "0"] if m.fixture == "ddp" and command in ("flops", "capture") else [])


def run_case(ws: Workspace, m: Mutation, command: str, *, bound_s: float = 30.0) -> Outcome:
    """Damage a fresh copy of the fixture as `m` says, run `command` on it, judge the outcome."""
    template = ws.template(m.fixture)
    case = ws.root / "cases" / f"{m.kind}-{m.fixture}-{m.seed}-{command}" / template.name
    if case.parent.exists():
        shutil.rmtree(case.parent)
    shutil.copytree(template, case)
    marker = case.parent / "forbidden-was-called"
    rng = random.Random(m.seed)
    start = time.perf_counter()
    if m.fixture == "snapshot":
        what = damage_snapshot(case, m.kind, rng, marker)
    elif m.kind in RECORD_KINDS:
        what = damage_record(case, m.kind, rng)
    else:
        what = damage_export(case / EXPORTS[m.fixture][1], m.kind, rng)
    before = set(case.iterdir())
    args = args_for(command, m, case, template)
    result = None
    try:
        with time_bound(bound_s):
            result = CliRunner().invoke(cli, args, catch_exceptions=True)
        status, detail = judge(command, m, result, case, before, ws, template)
    except Hang as e:
        status, detail = "FAILED", f"hang: {e}"
    if marker.exists():
        status, detail = "FAILED", "the snapshot's forbidden global was called (os.mkdir ran)"
    seconds = time.perf_counter() - start
    shutil.rmtree(case.parent, ignore_errors=True)
    return Outcome(m, command, status, detail, seconds, what)


def _failure(result: Any) -> str:
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        lines = traceback.format_exception(*result.exc_info)
        return "".join(lines[-3:]).strip()[-600:]
    return (result.stderr or result.output).strip()[:600]


def judge(command: str, m: Mutation, result: Any, case: Path, before: set[Path], ws: Workspace,
          template: Path) -> tuple[str, str]:
    """(status, detail) of one finished case."""
    if isinstance(result.exception, Hang):
        return "FAILED", f"hang: {result.exception}"
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    if crashed or "Traceback" in result.output:
        return "FAILED", "traceback: " + _failure(result)
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("Error: "):
            return "FAILED", f"exit 2 without one Error: line: {result.stderr.strip()[:400]!r}"
        if result.stdout:
            return "FAILED", f"refused but printed to stdout: {result.stdout[:200]!r}"
        if set(case.iterdir()) != before:
            return "FAILED", f"refused but wrote {sorted(p.name for p in set(case.iterdir()) - before)}"
        return "refused", lines[0][:300]
    if result.exit_code != 0:
        return "FAILED", f"exit {result.exit_code}: {_failure(result)}"
    try:
        problems = check_report(command, m, result, case)
    except Exception as e:  # the checker itself: say what it could not read, as a failure to look at
        problems = [f"checker: {type(e).__name__}: {e}"]
    same = not problems and _text(command, result, case) == ws_original(ws, command, m, template)
    if not problems and not same and m.kind == "duplicate-rows" and "duplicate" not in result.output.lower():
        problems.append("rows were duplicated, the report changed and says nothing about duplicates")
    if problems:
        return "FAILED", "; ".join(problems)[:600]
    return "correct", SAME if same else DIFFERS


SAME, DIFFERS = "the undamaged report", "differs from the undamaged report; its numbers are possible"


def _text(command: str, result: Any, case: Path) -> str:
    out = result.stdout
    if command == "capture":
        written = case / "report.md"
        out = written.read_text() if written.exists() else ""
    return out.replace(str(case), "<case>")


def ws_original(ws: Workspace, command: str, m: Mutation, template: Path) -> str:
    """The command's output on the undamaged fixture (copied like a case), computed once."""
    key = (m.fixture, command)
    if key not in ws.originals:
        case = ws.root / "cases" / f"original-{m.fixture}-{command}" / template.name
        shutil.rmtree(case.parent, ignore_errors=True)
        shutil.copytree(template, case)
        result = CliRunner().invoke(cli, args_for(command, m, case, template))
        ws.originals[key] = _text(command, result, case) if result.exit_code == 0 else f"exit {result.exit_code}"
        shutil.rmtree(case.parent, ignore_errors=True)
    return ws.originals[key]


# --- is the report possible? ------------------------------------------------------------------------------

NON_NEGATIVE = ("_ns", "_bytes", "bytes", "_ms", "instances", "kernels", "allocations", "events", "steps", "flops",
                "requested", "total", "_us_per_step")
SIGNED = ("delta", "change", "start", "end", "t_us", "time_us", "offset", "rank")


def _walk(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)
    else:
        yield key, node


def possible_numbers(doc: Any) -> list[str]:
    """Every number of a JSON report that cannot be: NaN or inf, a negative duration, size or count,
    a share outside 0..100%."""
    out = []
    for key, v in _walk(doc):
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            out.append(f"{key} = {v}")
            continue
        signed = key.startswith(SIGNED) or "delta" in key
        if not signed and key.endswith(NON_NEGATIVE) and v < 0:
            out.append(f"{key} = {v} < 0")
        if key.endswith("pct") and not signed and key not in ("pct_of_peak",) and not -1e-6 <= v <= 100 + 1e-6:
            out.append(f"{key} = {v} outside 0..100")
    return out


def _sql(path: Path, query: str) -> tuple[Any, ...] | None:
    """One row of a plain SQL query on the damaged export, or None when SQLite cannot answer."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute(query).fetchone()
            return tuple(row) if row is not None else None
        finally:
            db.close()
    except (sqlite3.Error, OverflowError, UnicodeDecodeError):
        return None


def check_report(command: str, m: Mutation, result: Any, case: Path) -> list[str]:
    """What is impossible in a report the command printed (empty: nothing)."""
    if command in ("capture", "memory-markdown"):
        text = _text(command, result, case)
        bad = [w for w in (" nan ", "| nan", "nan%", " inf ", "NaN") if w in text]
        return [f"report says {w.strip()!r}" for w in bad] + ([] if text.strip() else ["empty report"])
    doc = json.loads(result.stdout)
    problems = possible_numbers(doc)
    rows = doc if isinstance(doc, list) else []
    export = None if m.fixture == "snapshot" else case / EXPORTS[m.fixture][1]
    kernel_rows = _sql(export, f"SELECT count(*), sum([end] - start) FROM {KERNEL}") if export else None
    n_kernels = kernel_rows[0] if kernel_rows else None
    if command == "kernels":
        problems += _check_kernels(rows, export)
    elif command in ("nvtx", "timeline") and n_kernels is not None:
        graphs = _sql(export, f"SELECT count(*) FROM {GRAPHS}") or (0,)
        limit = n_kernels + (graphs[0] or 0)
        problems += [f"{r.get('path', r.get('name'))}: {r['kernels']} kernels, the table holds {limit}"
                     for r in rows if r.get("kernels", 0) > limit]
    if command == "timeline":
        problems += [f"{r['name']}: busy {r['gpu_busy_ns']} > span {r['gpu_span_ns']}" for r in rows
                     if r["gpu_busy_ns"] > r["gpu_span_ns"]]
    if command == "ranks":
        for r in rows:
            if r["comm_hidden_ns"] > r["comm_ns"] or r["comm_hidden_ns"] + r["comm_exposed_ns"] != r["comm_ns"]:
                problems.append(f"rank {r['rank']}: hidden {r['comm_hidden_ns']} + exposed {r['comm_exposed_ns']} "
                                f"!= communication {r['comm_ns']}")
            if r["step_ms"] is not None and not r["step_min_ms"] <= r["step_ms"] <= r["step_max_ms"]:
                problems.append(f"rank {r['rank']}: step {r['step_ms']} outside [{r['step_min_ms']}, "
                                f"{r['step_max_ms']}]")
    if command == "compare" and m.fixture != "snapshot":
        for capture in dict.fromkeys(r["capture"] for r in rows):
            total = sum(r["pct"] for r in rows if r["capture"] == capture)
            if rows and not (abs(total - 100) < 0.01 or total == 0):
                problems.append(f"{capture}: category shares add up to {total:.3f}%")
    if command in ("memory", "compare") and m.fixture == "snapshot" and isinstance(doc, dict):
        problems += _check_memory(doc)
    return problems


def _check_kernels(rows: list[dict[str, Any]], export: Path | None) -> list[str]:
    problems = []
    for r in rows:
        if not r["min_ns"] <= r["median_ns"] <= r["max_ns"] or r["instances"] < 1:
            problems.append(f"{r['name'][:60]}: min {r['min_ns']} median {r['median_ns']} max {r['max_ns']}, "
                            f"{r['instances']} instances")
        elif abs(r["avg_ns"] * r["instances"] - r["total_ns"]) > 1e-6 * max(1, r["total_ns"]) + 1:
            problems.append(f"{r['name'][:60]}: avg x instances != total")
    if export is None:
        return problems
    for table, rows_of in ((KERNEL, [r for r in rows if r["category"] != "cuda graph"]),
                           (GRAPHS, [r for r in rows if r["category"] == "cuda graph"])):
        sql = _sql(export, f"SELECT count(*), coalesce(sum([end] - start), 0) FROM {table}")
        if sql is None or (table == GRAPHS and not rows_of):
            continue  # SQLite cannot read it (the report did), or graphs are not reported as rows
        got = (sum(r["instances"] for r in rows_of), sum(r["total_ns"] for r in rows_of))
        if got != (sql[0], sql[1]):
            problems.append(f"{table}: the report has {got[0]} rows, {got[1]} ns; SQL counts {sql[0]}, {sql[1]} ns")
    return problems


def _check_memory(doc: dict[str, Any]) -> list[str]:
    problems = []
    for item in doc.get("captures", [doc]) if isinstance(doc.get("captures"), list) else [doc]:
        peak, reserved = item.get("peak_allocated_bytes"), item.get("peak_reserved_bytes")
        if isinstance(peak, int) and isinstance(reserved, int) and peak > reserved:
            problems.append(f"peak allocated {peak} > peak reserved {reserved}")
        cats = item.get("categories")
        if isinstance(peak, int) and isinstance(cats, list):
            total = sum(c.get("bytes", 0) for c in cats)
            if total > peak:
                problems.append(f"categories add up to {total} bytes > peak {peak}")
    return problems


# --- many cases -----------------------------------------------------------------------------------------------

def run_all(ws: Workspace, ms: list[Mutation], *, bound_s: float = 30.0, budget_s: float | None = None,
            limit: int | None = None, progress: Any = None) -> list[Outcome]:
    """Every mutation through each of its commands, until `budget_s` (if given) is spent or `limit`
    cases ran."""
    out: list[Outcome] = []
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # warnings from libraries; each case has its own streams
        for m in ms:
            for command in m.commands:
                if budget_s is not None and time.perf_counter() - start > budget_s:
                    return out
                if limit is not None and len(out) >= limit:
                    return out
                out.append(run_case(ws, m, command, bound_s=bound_s))
                if progress is not None:
                    progress(out[-1])
    return out
