"""The results database of `profkit sweep`: one SQLite file, one table per sweep kind.

Written through sqlite-utils, one row per point as soon as it is measured (each insert its own
transaction: an interrupted sweep loses at most the point in progress), read back by the report
stage and by anything that opens SQLite (Datasette, pandas.read_sql, the sqlite3 shell). Rows
are keyed by `point_id`, a hash of the point's config columns (profkit.sweeps.point_id), which
is how a rerun knows what is done.

Every row carries its config columns, its status (`ok`, `oom`, `refused`, `error`, `timeout`)
and the reason PyTorch (or the run) gave, the metrics, the environment (profkit, torch, CUDA,
GPU, driver, Python, platform; no host name) and a UTC timestamp.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from profkit.errors import ProfkitError
from profkit.layout import DEFAULT_DB

ATTENTION, MODELS = "attention", "models"
STATUSES = ("ok", "oom", "refused", "error", "timeout")

ENV_COLUMNS: dict[str, type] = {"profkit_version": str, "torch": str, "cuda": str, "gpu": str, "driver": str,
                                "python": str, "platform": str, "timestamp": str}
_STATUS: dict[str, type] = {"status": str, "reason": str}

ATTENTION_COLUMNS: dict[str, type] = {
    "point_id": str, "impl": str, "batch_size": int, "heads": int, "seq_len": int, "head_dim": int, "embed": int,
    "causal": int, "dtype": str, "device": str, **_STATUS,
    "failed_mode": str,
    # per mode (fwd, bwd, fwd_bwd): median and mean pass time, passes timed, FLOPs, achieved TFLOP/s
    **{f"{m}_{c}": t for m in ("fwd", "bwd", "fwd_bwd")
       for c, t in (("ms", float), ("mean_ms", float), ("reps", int), ("flops", float), ("tflops_per_s", float))},
    "peak_fwd_bytes": int, "peak_fwd_bwd_bytes": int, "allocated_before_bwd_bytes": int,
    "reserved_before_bwd_bytes": int, "compile_s": float, "timer": str, "l2_flush": int,
    **ENV_COLUMNS,
}
MODELS_COLUMNS: dict[str, type] = {
    "point_id": str, "model": str, "mode": str, "dtype": str, "attn": str, "compile": int, "compile_mode": str,
    "grad_accum": int, "optimizer": str, "batch_size": int, "context_length": int, "warmup": int, "steps": int,
    "device": str, "seed": int, "profiled": int, **_STATUS,
    "ms_per_step": float, "mean_ms": float, "std_ms": float, "min_ms": float, "max_ms": float,
    "ms_per_micro_batch": float, "tokens_per_step": int, "tokens_per_s": float, "first_step_ms": float,
    "compile_s": float, "peak_memory_bytes": int, "params": int, "palm_flops": float, "peak_tflops": float,
    "mfu": float, "wall_s": float, "run_dir": str,
    # with --profile: the capture, report.md, the step's verdict, categories (JSON), exact FLOPs
    "capture": str, "verdict": str, "gpu_idle_pct": float, "categories": str, "exact_flops": float,
    "mfu_exact": float, "profile_note": str,
    **ENV_COLUMNS,
}
SCHEMAS = {ATTENTION: ATTENTION_COLUMNS, MODELS: MODELS_COLUMNS}


class ResultsError(ProfkitError):
    """A results database profkit cannot use as asked."""


def open_db(path: Path, table: str) -> sqlite_utils.Database:
    """Open (creating it and its folder when missing) the database at `path`, with `table` made.

    Raises:
        ResultsError: `path` is a folder or not SQLite, or holds a `table` profkit did not write.
    """
    if path.is_dir():
        raise ResultsError(f"--db {path} is a folder; give a file such as {path / DEFAULT_DB.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite_utils.Database(path)
        names = db.table_names()
    except (OSError, sqlite3.DatabaseError) as e:
        raise ResultsError(f"--db {path} is not a SQLite database profkit can open ({e})") from None
    t = db.table(table)
    if table in names:
        if "point_id" not in t.columns_dict:
            raise ResultsError(f"{path} has a table {table!r} that profkit did not write (no point_id column); "
                               "give another --db")
        missing = {c: ty for c, ty in SCHEMAS[table].items() if c not in t.columns_dict}
        for c, ty in missing.items():  # a database from an older profkit: add the new columns, keep the rows
            t.add_column(c, ty)
    else:
        t.create(SCHEMAS[table], pk="point_id")
    return db


def done(db: sqlite_utils.Database, table: str) -> set[str]:
    """The point_ids in `table` that a rerun skips: every status but `error` (an unexpected
    failure is tried again; OOM, a refusal and a timeout are results)."""
    return {r["point_id"] for r in db.table(table).rows_where("status != ?", ["error"], select="point_id")}


def write(db: sqlite_utils.Database, table: str, row: dict[str, Any]) -> None:
    """Insert or replace one point's row, committed before this returns."""
    unknown = set(row) - set(SCHEMAS[table])
    assert not unknown, f"columns not in the {table} schema: {sorted(unknown)}"
    db.table(table).insert({k: (int(v) if isinstance(v, bool) else v) for k, v in row.items()}, pk="point_id",
                           replace=True)


def read(path: Path, table: str) -> list[dict[str, Any]]:
    """Every row of `table` in the database at `path`, in insertion order.

    Raises:
        ResultsError: no such file, not SQLite, or no such table.
    """
    if not path.is_file():
        raise ResultsError(f"{path} does not exist; run `profkit sweep {table} --db {path}` first")
    try:
        db = sqlite_utils.Database(path)
        if table not in db.table_names():
            raise ResultsError(f"{path} has no {table!r} table; run `profkit sweep {table} --db {path}` first")
        return list(db.query(f"select * from [{table}] order by rowid"))
    except sqlite3.DatabaseError as e:
        raise ResultsError(f"{path} is not a SQLite database ({e})") from None


def tables(path: Path) -> Iterator[str]:
    """The sweep tables present in the database at `path`."""
    if path.is_file():
        names = sqlite_utils.Database(path).table_names()
        yield from (t for t in SCHEMAS if t in names)
