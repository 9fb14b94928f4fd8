"""What a multi-rank export adds to parse.py's tables: which process is which rank, NCCL's own
NVTX ranges (with the message size of each collective where the NCCL build records it), and the
session's start on the wall clock. Read-only, no torch.

- Ranks: every profkit rank names its NVTX domain `profkit/rank{R}` (profkit.ranges.set_rank);
  the export holds one NvtxDomainCreate event per process and domain, so in a --single-file
  export each process's rank is read back from its domain's name.
- NCCL: ranges in the `NCCL` domain (ncclAllReduce, ncclAllGather, ...). NCCL 2.19+ attaches an
  NVTX payload whose schema (NVTX_PAYLOAD_SCHEMA_ENTRIES) names a "Message size [bytes]" field.
  The size is read from a decoded payload exported as JSON text (`jsonText`/`jsonTextId`), else
  from `binaryData` at the schema's offset of that field (little-endian, raw bytes or hex text);
  without either `bytes` is -1. nsys 2025.3.1 with NCCL 2.28.9 exports the schema but leaves
  binaryData and jsonText NULL on every row (tests/data/h200_small_step_bf16_*_1rank), so
  profkit.analyze.ranks.model_sizes derives the sizes from the run record instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from profkit.columns import NVTX_TABLE, ProfileError, nvtx_type_names, pid_of
from profkit.columns import connect as _connect
from profkit.columns import table_columns as _columns

RANK_DOMAIN = re.compile(r"^profkit/rank(\d+)$")
NCCL_DOMAIN = "NCCL"
DOMAIN_CREATE = "NvtxDomainCreate"
RANGE_TYPES = ("NvtxPushPopRange", "NvtxStartEndRange")
_SIZE_KEY = re.compile(r"size|bytes", re.I)


def _domains(db: sqlite3.Connection, tables: set[str]) -> pd.DataFrame:
    """(global_pid, domain_id, name) of every NVTX domain the export's processes created."""
    empty = pd.DataFrame({"global_pid": pd.Series(dtype="int64"), "domain_id": pd.Series(dtype="int64"),
                          "name": pd.Series(dtype="object")})
    if NVTX_TABLE not in tables or "domainId" not in _columns(db, NVTX_TABLE):
        return empty
    types = [i for i, n in nvtx_type_names(db, tables).items() if n == DOMAIN_CREATE]
    if not types:
        return empty
    have = _columns(db, NVTX_TABLE)
    text = "n.text" if "text" in have else "NULL"
    join, text_id = ((" LEFT JOIN StringIds s ON s.id = n.textId", "s.value") if "textId" in have else ("", "NULL"))
    rows = db.execute(f"SELECT coalesce(n.globalTid, 0), n.domainId, coalesce({text}, {text_id}) FROM {NVTX_TABLE} n"
                      f"{join} WHERE n.eventType IN ({', '.join(map(str, types))})").fetchall()
    if not rows:
        return empty
    frame = pd.DataFrame(rows, columns=["global_tid", "domain_id", "name"])
    frame["global_pid"] = pid_of(frame["global_tid"].to_numpy(np.int64))
    return frame[["global_pid", "domain_id", "name"]]


def process_ranks(path: Path) -> dict[int, int]:
    """global_pid -> rank for every process that created a `profkit/rank{R}` domain.

    Raises:
        ProfileError: not an nsys export, or two processes claim one rank.
    """
    db, tables = _connect(path)
    try:
        domains = _domains(db, tables)
    finally:
        db.close()
    found: dict[int, int] = {}
    for pid, name in zip(domains["global_pid"].tolist(), domains["name"].tolist(), strict=True):
        m = RANK_DOMAIN.match(str(name))
        if m is not None:
            found[int(pid)] = int(m.group(1))
    ranks = list(found.values())
    if len(ranks) != len(set(ranks)):
        raise ProfileError(f"{path}: two processes name the same rank ({sorted(ranks)}); capture again")
    return dict(sorted(found.items(), key=lambda kv: kv[1]))


def payload_bytes(text: str | None) -> int:
    """The message size in an NCCL range's decoded payload (JSON), -1 when there is none.

    >>> payload_bytes('{"Communicator": 1, "Message size [bytes]": 4194304, "Reduction operation": "Sum"}')
    4194304
    >>> payload_bytes(None), payload_bytes("not json"), payload_bytes(1e9), payload_bytes('{"size": -5}')
    (-1, -1, -1, -1)
    """
    if not isinstance(text, str) or not text:  # a damaged export may hold a number or a blob there
        return -1
    try:
        value = json.loads(text)
    except ValueError:
        m = re.search(r"size[^0-9]{0,20}(\d+)", text, re.I)
        return int(m.group(1)) if m else -1
    todo = [value]
    while todo:  # the first integer under a key that says size or bytes, at any depth
        v = todo.pop(0)
        if isinstance(v, dict):
            for k, x in v.items():
                if (_SIZE_KEY.search(str(k)) and isinstance(x, (int, float)) and not isinstance(x, bool)
                        and 0 <= x < 2**63):  # a size: not negative, not inf or NaN
                    return int(x)
                todo.append(x)
        elif isinstance(v, list):
            todo.extend(v)
    return -1


_WIDTH = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 8, 8: 8, 9: 8, 10: 8, 11: 1, 12: 1, 13: 2, 14: 2, 15: 4, 16: 4,
          17: 8, 18: 8, 22: 8}
"""Bytes of nvToolsExtPayload.h's integer entry types (NVTX_PAYLOAD_ENTRY_TYPE_CHAR = 1 ... SIZE = 22)."""


def size_fields(db: sqlite3.Connection, tables: set[str]) -> dict[int, tuple[int, int]]:
    """domainId -> (offset, width) of the message-size field its payload schemas place at one offset
    (NCCL's schemas all put "Message size [bytes]" at offset 8, a size_t); domains whose schemas
    disagree are left out."""
    if "NVTX_PAYLOAD_SCHEMA_ENTRIES" not in tables:
        return {}
    rows = db.execute("SELECT domainId, coalesce(offset, 0), type, name FROM NVTX_PAYLOAD_SCHEMA_ENTRIES").fetchall()
    found: dict[int, set[tuple[int, int]]] = {}
    for domain, offset, kind, name in rows:
        if name and _SIZE_KEY.search(str(name)) and int(kind or 0) in _WIDTH:
            found.setdefault(int(domain), set()).add((int(offset), _WIDTH[int(kind)]))
    return {d: next(iter(v)) for d, v in found.items() if len(v) == 1}


def binary_bytes(data: bytes | str | None, field: tuple[int, int] | None) -> int:
    """The message size in a binary payload at the schema's (offset, width), -1 when unreadable.

    >>> binary_bytes(bytes(8) + (4194304).to_bytes(8, "little") + bytes(8), (8, 8))
    4194304
    >>> binary_bytes("00" * 8 + "0000400000000000", (8, 8)), binary_bytes(None, (8, 8))
    (4194304, -1)
    """
    if data is None or field is None:
        return -1
    raw: bytes | None = data if isinstance(data, bytes) else None
    if isinstance(data, str):
        text = data.strip().removeprefix("0x")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            try:
                raw = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raw = None
    offset, width = field
    if raw is None or len(raw) < offset + width:
        return -1
    return int.from_bytes(raw[offset:offset + width], "little")


def load_nccl_ranges(path: Path) -> pd.DataFrame:
    """NCCL's NVTX ranges: start_ns, end_ns, global_pid, global_tid, name, bytes (-1: no payload).

    Raises:
        ProfileError: not an nsys export.
    """
    cols = {"start_ns": "int64", "end_ns": "int64", "global_pid": "int64", "global_tid": "int64",
            "name": "object", "bytes": "int64"}
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
    db, tables = _connect(path)
    try:
        domains = _domains(db, tables)
        nccl = domains[domains["name"] == NCCL_DOMAIN]
        if nccl.empty:
            return empty
        types = [i for i, n in nvtx_type_names(db, tables).items() if n in RANGE_TYPES]
        have = _columns(db, NVTX_TABLE)
        text = "n.text" if "text" in have else "NULL"
        name_join, text_id = ((" LEFT JOIN StringIds s ON s.id = n.textId", "s.value") if "textId" in have
                              else ("", "NULL"))
        json_text = "n.jsonText" if "jsonText" in have else "NULL"
        json_join, json_id = ((" LEFT JOIN StringIds j ON j.id = n.jsonTextId", "j.value") if "jsonTextId" in have
                              else ("", "NULL"))
        binary = "n.binaryData" if "binaryData" in have else "NULL"
        fields = size_fields(db, tables)
        where = " OR ".join(f"(n.domainId = {int(d)} AND (coalesce(n.globalTid, 0) & {~0xFFFFFF}) = {int(p)})"
                            for p, d in zip(nccl["global_pid"], nccl["domain_id"], strict=True))
        rows = db.execute(
            f"SELECT n.start, coalesce(n.end, n.start), coalesce(n.globalTid, 0), coalesce({text}, {text_id}), "
            f"coalesce({json_text}, {json_id}), {binary}, n.domainId FROM {NVTX_TABLE} n{name_join}{json_join} "
            f"WHERE n.eventType IN ({', '.join(map(str, types))}) AND ({where}) ORDER BY n.start").fetchall()
    except sqlite3.DatabaseError as e:
        raise ProfileError(f"{path} is damaged ({e}); export the capture again with nsys export --type sqlite") \
            from None
    finally:
        db.close()
    if not rows:
        return empty
    frame = pd.DataFrame(rows, columns=["start_ns", "end_ns", "global_tid", "name", "payload", "binary", "domain"])
    frame["global_pid"] = pid_of(frame["global_tid"].to_numpy(np.int64))
    sizes = [payload_bytes(t) for t in frame["payload"]]
    frame["bytes"] = np.array([v if v >= 0 else binary_bytes(b, fields.get(int(d)))
                               for v, b, d in zip(sizes, frame["binary"], frame["domain"], strict=True)],
                              dtype=np.int64)
    frame["name"] = frame["name"].fillna("").astype(object)
    return frame[list(cols)].astype(cols)


def session_start_ns(path: Path) -> int | None:
    """The capture's start on the wall clock (UTC epoch ns), None when the export does not say."""
    db, tables = _connect(path)
    try:
        if "TARGET_INFO_SESSION_START_TIME" not in tables:
            return None
        if "utcEpochNs" not in {r[1] for r in db.execute("PRAGMA table_info(TARGET_INFO_SESSION_START_TIME)")}:
            return None  # as when the table is missing: the ranks align on their first collective instead
        row = db.execute("SELECT utcEpochNs FROM TARGET_INFO_SESSION_START_TIME").fetchone()
        # anything but an integer time (text, a fraction, a blob) says nothing about the start
        return row[0] if row is not None and isinstance(row[0], int) and row[0] >= 0 else None
    finally:
        db.close()
