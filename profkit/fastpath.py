"""A repeated report served before the command line loads: `profkit report kernels|nvtx|timeline
EXPORT [options]` (the console script, profkit.__main__.main, or `python -m profkit ...`) whose
result profkit.cache holds is printed with nothing but the cache's own imports
(no click, pandas or numpy; a third of a warm run's time was importing them).

Only plain invocations qualify: one export (a .sqlite or a capture folder holding profile.sqlite),
options among each command's below, stdout. Anything else (a miss, -o, --rules, --no-cache, help, a
value click would refuse) returns False and the click command line runs as always, computing and
storing the entry under the same name (pipeline.cached_report). tests/test_cache.py checks that the
defaults and choices here are click's.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

EXPORT, RUN_FILE = "profile.sqlite", "run.json"  # profkit.layout's (a test checks)
FORMATS = ("markdown", "csv", "json")
# command -> option -> (key in the cache entry's options, type, default, choices or None)
SPECS: dict[str, dict[str, tuple[str, type, object, tuple[str, ...] | None]]] = {
    "kernels": {"--range": ("range", str, None, None), "--top": ("top", int, 20, None),
                "--by": ("by", str, "name", ("name", "category")),
                "--name": ("name", str, "demangled", ("demangled", "short")),
                "--format": ("fmt", str, "markdown", FORMATS)},
    "nvtx": {"--by": ("by", str, "path", ("path", "name")), "--steps": ("steps", str, "each", ("each", "merged")),
             "--depth": ("depth", int, None, None), "--format": ("fmt", str, "markdown", FORMATS)},
    "timeline": {"--by": ("by", str, "phase", ("phase", "name")), "--format": ("fmt", str, "markdown", FORMATS)},
}


def parse_args(argv: list[str]) -> tuple[str, Path, dict[str, object]] | None:
    """(command, export argument, the options as cli.py keys them) or None: not a plain report."""
    if len(argv) < 3 or argv[0] != "report" or argv[1] not in SPECS:
        return None
    spec = SPECS[argv[1]]
    options: dict[str, object] = {key: default for key, _, default, _ in spec.values()}
    options["allow_incomplete"] = False
    positional: list[str] = []
    args = argv[2:]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--allow-incomplete":
            options["allow_incomplete"] = True
        elif not arg.startswith("-"):
            positional.append(arg)
        else:
            name, eq, value = arg.partition("=")
            if name not in spec:
                return None
            if not eq:
                i += 1
                if i >= len(args):
                    return None
                value = args[i]
            key, kind, _, choices = spec[name]
            if choices is not None and value not in choices:
                return None
            try:
                options[key] = kind(value)
            except ValueError:
                return None
            if name == "--depth" and int(value) < 1:
                return None
        i += 1
    if len(positional) != 1:
        return None
    return argv[1], Path(positional[0]), options


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def serve(argv: list[str]) -> bool:
    """Print the cached result of `argv` and return True, or return False (not plain, or a miss)."""
    parsed = parse_args(argv)
    if parsed is None:
        return False
    stage, path, options = parsed
    if path.is_dir():
        export = path / EXPORT
    elif path.suffix != ".nsys-rep":
        export = path
    else:
        return False
    if not export.is_file():
        return False
    from profkit import cache

    store = cache.for_export(export)
    if store is None:
        return False
    has_run = path.is_dir() or path.name == EXPORT
    folder = path if path.is_dir() else path.parent
    key = dict(options, rules=None, run=_digest(folder / RUN_FILE) if has_run else None)
    hit = store.get(cache.options_name(stage, key))
    if hit is None:
        return False
    try:
        text = hit.decode()
    except UnicodeDecodeError:
        return False
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
    return True


def serve_argv() -> bool:
    """serve(sys.argv[1:]) unless $PROFKIT_NO_FASTPATH is set (then always False)."""
    return os.environ.get("PROFKIT_NO_FASTPATH", "") in ("", "0") and serve(sys.argv[1:])

