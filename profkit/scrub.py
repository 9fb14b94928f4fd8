"""Scrub an nsys export before sharing it: nsys stores the profiled process's environment
variables (as StringIds strings, and one META_DATA_CAPTURE row per variable, `PROCESS_0:ENVIRONMENT_VARIABLE`)
and the host name (TARGET_INFO_SYSTEM_ENV).

Writes a scrubbed copy and VACUUMs it, so the removed text is not left in free pages.

A memory snapshot's frames name files by absolute path (home folders, virtual environments):
`scrub_snapshot` keeps each path from its package on (`site-packages/torch/...`, `models/...`).
"""

from __future__ import annotations

import pickle
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

ENV_STRING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SCRUBBED = "<scrubbed>"
SYSTEM_KEYS = ("DeviceEnvironment", "Hostname")


def scrub_export(src: Path, dst: Path) -> dict[str, int]:
    """Copy `src` to `dst` with environment strings and host name replaced; returns counts."""
    if dst.exists():
        raise FileExistsError(f"{dst} exists")
    shutil.copyfile(src, dst)
    db = sqlite3.connect(dst)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        counts = {"strings": 0, "system": 0, "metadata": 0}
        if "StringIds" in tables:
            ids = [i for i, v in db.execute("SELECT id, value FROM StringIds") if v and ENV_STRING.match(v)]
            db.executemany("UPDATE StringIds SET value = ? WHERE id = ?", [(SCRUBBED, i) for i in ids])
            counts["strings"] = len(ids)
        if "TARGET_INFO_SYSTEM_ENV" in tables:
            cur = db.execute(f"UPDATE TARGET_INFO_SYSTEM_ENV SET value = ? WHERE name IN "
                             f"({', '.join('?' * len(SYSTEM_KEYS))})", (SCRUBBED, *SYSTEM_KEYS))
            counts["system"] = cur.rowcount
        if "META_DATA_CAPTURE" in tables:
            cur = db.execute("UPDATE META_DATA_CAPTURE SET value = ? WHERE name LIKE '%ENVIRONMENT_VARIABLE%'",
                             (SCRUBBED,))
            counts["metadata"] = cur.rowcount
        db.commit()
        db.execute("VACUUM")
    finally:
        db.close()
    return counts


KEEP_FROM = ("site-packages/", "dist-packages/", "profkit/", "models/", "scripts/", "tests/")


def short_path(filename: str) -> str:
    """An absolute source path from its package on; else its last two parts.

    >>> short_path("/home/me/.venv/lib/python3.12/site-packages/torch/nn/functional.py")
    'site-packages/torch/nn/functional.py'
    >>> short_path("/work/repo/models/transformer_lm.py"), short_path("/tmp/x/y/run.py")
    ('models/transformer_lm.py', 'y/run.py')
    """
    if not filename.startswith("/"):
        return filename
    best = -1
    for marker in KEEP_FROM:
        i = filename.find("/" + marker)
        if i >= 0 and (best < 0 or i < best):
            best = i
    return filename[best + 1:] if best >= 0 else "/".join(filename.split("/")[-2:])


def scrub_snapshot(src: Path, dst: Path) -> int:
    """Copy a memory snapshot with every frame's file path shortened (short_path); returns the
    frames changed. Read with profkit's restricted unpickler; written with protocol 4."""
    from profkit.snapshot import load_pickle

    if dst.exists():
        raise FileExistsError(f"{dst} exists")
    data = load_pickle(src)
    changed = 0

    def walk(x: Any) -> None:
        nonlocal changed
        if isinstance(x, dict):
            name = x.get("filename")
            if isinstance(name, str) and short_path(name) != name:
                x["filename"] = short_path(name)
                changed += 1
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(data)
    dst.write_bytes(pickle.dumps(data, protocol=4))
    return changed
