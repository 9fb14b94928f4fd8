"""A cache of report results, keyed by the export they came from, outside the user's files.

Entries live under `$XDG_CACHE_HOME/profkit/<key>/` (`~/.cache/profkit/` without it), never
beside or inside the export: capture folders may be read-only, shared or checked in. The key
is the export's size, its mtime in nanoseconds, its first 4 KiB (SQLite's header, whose
change counter moves on every write) and FORMAT_VERSION, so a changed or replaced file misses
and its stale entry ages out; computing it costs one stat and one 4 KiB read.

Every entry is one file: a magic, the payload's length and SHA-256, then the payload. A
truncated or altered entry fails that check and is ignored (then rebuilt); writes go to a
temporary name and are renamed into place, so readers see a whole entry or none. The cache
is bounded (PROFKIT_CACHE_MB, default 1024): after each write the least recently used keys
are removed until it fits. Anything that goes wrong with the cache (a read-only or full
disk) costs the cache, never the command. No pandas, no numpy: a hit must stay cheap.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

FORMAT_VERSION = 1
"""Bump when what an entry holds, or how a report is computed, changes."""
MAGIC = b"PKCACHE1"
HEADER = struct.Struct("<8sQ32s")  # magic, payload length, SHA-256 of the payload
HEAD_BYTES = 4096
NO_CACHE_ENV = "PROFKIT_NO_CACHE"
MAX_MB_ENV = "PROFKIT_CACHE_MB"
DEFAULT_MAX_MB = 1024


def root() -> Path:
    """$XDG_CACHE_HOME/profkit, or ~/.cache/profkit."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "profkit"


def max_bytes() -> int:
    try:
        return int(float(os.environ.get(MAX_MB_ENV, DEFAULT_MAX_MB)) * 2**20)
    except ValueError:
        return DEFAULT_MAX_MB * 2**20


@functools.cache
def code_stamp() -> str:
    """profkit's version and the size and mtime of every module of the package, so that a
    changed profkit (a new release, or an edited checkout) never reads another's reports."""
    import profkit

    package = Path(profkit.__file__).parent
    parts = [profkit.__version__]
    for f in sorted(package.rglob("*.py")) + sorted(package.rglob("*.toml")):
        try:
            st = f.stat()
        except OSError:
            continue
        parts.append(f"{f.relative_to(package)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def file_key(path: Path) -> str:
    """The export's key: size, mtime (ns), first 4 KiB, FORMAT_VERSION and code_stamp(), hashed.

    Raises:
        OSError: the file cannot be read.
    """
    st = path.stat()
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    h = hashlib.sha256(f"profkit-cache {FORMAT_VERSION} {code_stamp()} {st.st_size} {st.st_mtime_ns}\n".encode())
    h.update(head)
    return h.hexdigest()[:32]


def options_name(stage: str, options: dict[str, object]) -> str:
    """An entry's file name: the stage and a digest of its options (JSON, sorted keys).

    >>> options_name("kernels", {"top": 0}) == options_name("kernels", {"top": 0})
    True
    """
    text = json.dumps(options, sort_keys=True, default=str)
    return f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


class Cache:
    """The entries of one export (a folder named by its key); `None` from `for_export` when off."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, name: str) -> bytes | None:
        """The payload of entry `name`, or None (missing, or failing its check: then removed)."""
        view = self.get_view(name)
        return None if view is None else bytes(view)

    def get_view(self, name: str) -> memoryview | None:
        """get() without copying the payload (a view of the file's bytes as read)."""
        path = self.folder / name
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            return None
        if len(raw) >= HEADER.size:
            magic, length, digest = HEADER.unpack_from(raw)
            payload = memoryview(raw)[HEADER.size:]
            if magic == MAGIC and length == len(payload) and hashlib.sha256(payload).digest() == digest:
                try:
                    os.utime(self.folder)  # recently used: evicted last
                except OSError:
                    pass
                return payload
        try:
            path.unlink()
        except OSError:
            pass
        return None

    def put(self, name: str, payload: bytes | list[memoryview]) -> bool:
        """Write entry `name` atomically (temporary file, rename); False when it could not be. The payload
        may come in parts (written one after another, never joined in memory)."""
        parts = [payload] if isinstance(payload, bytes) else payload
        sha = hashlib.sha256()
        for part in parts:
            sha.update(part)
        header = HEADER.pack(MAGIC, sum(len(memoryview(p).cast("B")) for p in parts), sha.digest())
        import tempfile  # here, not at the top: a cold report with --no-cache (and a hit) never writes (~8 ms)

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(header)
                    for part in parts:
                        f.write(part)
                os.replace(tmp, self.folder / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return False
        evict(self.folder.parent, max_bytes(), keep=self.folder)
        return True


def _beside(base: Path, export: Path) -> bool:
    """The cache folder is the export's folder, or one made directly in it."""
    try:
        folder, base = export.parent.resolve(), base.resolve()
    except OSError:
        return True
    return base == folder or base.parent == folder


def for_export(export: Path, *, enabled: bool = True) -> Cache | None:
    """The cache of one export, or None: disabled (`--no-cache`, $PROFKIT_NO_CACHE), the export
    unreadable, or the cache folder would be the export's own folder or one directly in it."""
    if not enabled or os.environ.get(NO_CACHE_ENV, "") not in ("", "0"):
        return None
    base = root()
    if _beside(base, export):
        return None  # never write next to the user's files
    try:
        return Cache(base / file_key(export))
    except OSError:
        return None


def evict(base: Path, limit: int, *, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used key folders under `base` until it holds at most `limit`
    bytes (`keep`, the one just written, goes last); returns those removed."""
    try:
        folders = [p for p in base.iterdir() if p.is_dir() and p.name != "peaks"]  # profkit.peaks: not results
    except OSError:
        return []
    sizes, used = {}, {}
    for p in folders:
        try:
            sizes[p] = sum(f.stat().st_size for f in p.iterdir())
            used[p] = p.stat().st_mtime_ns
        except OSError:
            continue
    import shutil  # with tempfile's import (put()): only when something is evicted

    total = sum(sizes.values())
    removed = []
    for p in sorted(sizes, key=lambda p: (p == keep, used[p])):
        if total <= limit:
            break
        shutil.rmtree(p, ignore_errors=True)
        total -= sizes[p]
        removed.append(p)
    return removed


def memo_text(cache: Cache | None, name: str, make: Callable[[], str]) -> str:
    """`make()`'s text, from entry `name` when it is there, else computed and stored."""
    if cache is None:
        return make()
    hit = cache.get(name)
    if hit is not None:
        try:
            return hit.decode()
        except UnicodeDecodeError:
            pass
    text = make()
    cache.put(name, text.encode())
    return text
