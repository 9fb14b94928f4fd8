"""Scrub an nsys export before sharing it: nsys stores the profiled process's environment
variables (as StringIds strings and in TARGET_INFO_SYSTEM_ENV) and the host name.

Writes a scrubbed copy and VACUUMs it, so the removed text is not left in free pages.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

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
        counts = {"strings": 0, "system": 0}
        if "StringIds" in tables:
            ids = [i for i, v in db.execute("SELECT id, value FROM StringIds") if v and ENV_STRING.match(v)]
            db.executemany("UPDATE StringIds SET value = ? WHERE id = ?", [(SCRUBBED, i) for i in ids])
            counts["strings"] = len(ids)
        if "TARGET_INFO_SYSTEM_ENV" in tables:
            cur = db.execute(f"UPDATE TARGET_INFO_SYSTEM_ENV SET value = ? WHERE name IN "
                             f"({', '.join('?' * len(SYSTEM_KEYS))})", (SCRUBBED, *SYSTEM_KEYS))
            counts["system"] = cur.rowcount
        db.commit()
        db.execute("VACUUM")
    finally:
        db.close()
    return counts
