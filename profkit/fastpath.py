"""A repeated report served before the command line loads: `profkit report kernels|nvtx|timeline
EXPORT [options]` (the console script, profkit.__main__.main, or `python -m profkit ...`) whose
result profkit.cache holds is printed with nothing but the cache's own imports
(no click, pandas or numpy; a third of a warm run's time was importing them).

Only plain invocations qualify: one export (a .sqlite or a capture folder holding profile.sqlite),
options among each command's below, stdout. Anything else (a miss, -o, --rules, --no-cache, help, a
value click would refuse) returns False and the click command line runs as always, computing and
storing the entry under the same name (pipeline.cached_report). tests/test_cache.py checks that the
defaults and choices here are click's.

A miss (or `--no-cache`) of a plain `report kernels|nvtx` is computed by compute(), still without
click: the same functions the command line calls, the same output, notes and errors
(tests/test_columns.py runs both on every fixture and on damaged exports).
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


def compute(argv: list[str]) -> bool:
    """Compute, print and cache (unless --no-cache) a plain `report kernels|nvtx` that serve()
    did not find, without loading click (a tenth of a second of a cold report's start-up): the
    command line's own functions (profkit.report.kernels_text, nvtx_text and
    pipeline.cached_report), its stderr note on a multi-rank capture, and its one `Error: ...`
    line with exit status 2 for what the user can fix. Returns False, having done nothing, for
    anything else (the click command line then runs)."""
    no_cache = "--no-cache" in argv
    parsed = parse_args([a for a in argv if a != "--no-cache"])
    if parsed is None or parsed[0] not in ("kernels", "nvtx") or argv.count("--no-cache") > 1:
        return False
    stage, path, options = parsed
    if not (path.is_dir() or path.is_file()) or path.suffix == ".nsys-rep":
        return False  # a missing input or an nsys report (exported first): the command line says what happens
    from profkit import pipeline, report
    from profkit.errors import ProfkitError

    try:
        if (note := pipeline.rank_note(path)) is not None:
            sys.stderr.write(note + "\n")
        if stage == "kernels":
            def make() -> str:
                return report.kernels_text(path, range_regex=options["range"], top=options["top"],  # type: ignore[arg-type]
                                           by=options["by"], name=options["name"], fmt=options["fmt"],  # type: ignore[arg-type]
                                           allow_incomplete=bool(options["allow_incomplete"]))
        else:
            def make() -> str:
                return report.nvtx_text(path, by=options["by"], steps=options["steps"], depth=options["depth"],  # type: ignore[arg-type]
                                        fmt=options["fmt"], allow_incomplete=bool(options["allow_incomplete"]))  # type: ignore[arg-type]
        text = pipeline.cached_report(path, stage, options, make, use_cache=not no_cache)
    except ProfkitError as e:
        sys.stderr.write(f"Error: {' '.join(str(e).split())}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("\nError: aborted\n")
        sys.exit(1)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
    return True


def serve_argv() -> bool:
    """serve(sys.argv[1:]) unless $PROFKIT_NO_FASTPATH is set (then always False)."""
    return os.environ.get("PROFKIT_NO_FASTPATH", "") in ("", "0") and serve(sys.argv[1:])


def compute_argv() -> bool:
    """compute(sys.argv[1:]) unless $PROFKIT_NO_FASTPATH is set (then always False)."""
    return os.environ.get("PROFKIT_NO_FASTPATH", "") in ("", "0") and compute(sys.argv[1:])

