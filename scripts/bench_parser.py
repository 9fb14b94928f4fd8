"""Parser benchmark: profkit's kernel and NVTX reports against `nsys stats` on large exports; markdown out.

Builds exports of at least 10 k, 100 k and 1 M kernels by laying copies of a real nsys export
(default: the H100 encoder-layer fixture, nsys 2023.4.4) end to end, in SQL: the whole file is
copied, then INSERT ... SELECT statements add shifted copies of the rows of the event tables
(kernels, runtime calls, NVTX, memcpy, memset, synchronization). Copy i has every timestamp
shifted by i x (capture span + gap) and every correlationId by i x (max correlationId + 1), so
kernel <-> runtime joins and NVTX projection stay valid. Rows are copied by doubling (everything
already there, shifted by the current span), then once more for the remainder: about 13
statements per table for 1 M kernels. Built files are cached in --work and rebuilt when missing.

Then times, per size, on the same file and in the same run, each command a fresh process, best
of --repeat: `profkit report kernels`, `profkit report nvtx`, `nsys stats -r cuda_gpu_kern_sum`
and `nsys stats -r nvtx_kern_sum` (on a separate copy of the file, as nsys stats may write into
an export), with each process tree's peak RSS from /usr/bin/time. Checks profkit's kernel totals
against cuda_gpu_kern_sum's to the nanosecond. Writes markdown.

Example (about a minute on 2 cores, builds included):
    python scripts/bench_parser.py --sizes 10000,100000,1000000 --repeat 3 --report reports/bench.md

Multi-rank case (`--ranks 2,4,8,16,32,64`): a folder of N copies of one real export as
rank{R}.sqlite, and `profkit report ranks` on it (ranks parsed in parallel processes, merged as
small tables): wall time, time per rank, and the peak RSS of the largest process (the parent
or one worker; each holds one rank's export at a time), each N a fresh process. Cost per rank
should stay flat from 2 to 64 ranks at cores/ranks parallelism, and the peak bounded by a few
ranks, not all of them:
    python scripts/bench_parser.py --ranks 2,4,8,16,32,64 --fixture tests/data/h100_small_step_bf16/profile.sqlite

Every report command against size (`--linearity`, issue 17): each command cold on the fixture
(start-up) and on every size, sizes interleaved within each repeat; per command, s per 1 k kernels
above start-up, s per 1 k kernels added from one size to the next, and whether that stays within
1.25x; markdown into reports/bench_linearity.md:
    python scripts/bench_parser.py --linearity --sizes 10000,100000,1000000 --large \
        --fixture tests/data/h200_tiny_step_bf16_a/profile.sqlite

The profkit reports run cold (--no-cache) and warm (from a cache of their own, filled first),
beside report.md of the export and a floor: SQLite decoding the columns read, nothing handed
to Python.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from profkit.nsys import Nsys, find_nsys  # noqa: E402
from profkit.report.tables import markdown_table  # noqa: E402

FIXTURE = REPO / "tests" / "data" / "h100_encoder_layer_nsys2023" / "profile.sqlite"
TABLES = ["CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS", "CUPTI_ACTIVITY_KIND_MEMCPY",
          "CUPTI_ACTIVITY_KIND_MEMSET", "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION"]
# Nanosecond timestamp columns of those tables (nsys 2022.x-2025.x); others (ids, sizes) are kept.
TIME_COLUMNS = {"start", "end", "timestamp"}
GAP_NS = 1_000_000  # between one copy's last event and the next copy's first
BUILD_VERSION = 1  # part of the cached file's name: bump when the build changes
TIME_BIN = Path("/usr/bin/time")
# Goals.
MAX_SHARE = 0.12  # both profkit reports together, cold (no cache), against nsys stats -r nvtx_kern_sum
MAX_WARM_SHARE = 0.01  # the same, served from profkit's cache
MAX_PEAK_MB = 300
MAX_SLOPE_GROWTH = 1.25  # s per 1 k kernels added, size to size: the largest judged step against the smallest
JITTER_TIMES = 5  # a size (or step) is judged when its time above start-up (or added) is this many times the jitter
SMALL_RUNS = 4  # runs of a small size in each round of --linearity, at most (runs_per_round())
REFERENCE = ("Reference, measured earlier on a 2-core machine: an export of 1.03 M kernels, 1.86 M runtime calls "
             "and 114 k NVTX ranges took `nsys stats` 2.9 s for the kernel summary (cuda_gpu_kern_sum) and 14.8 s "
             "for nvtx_kern_sum; reading just the needed columns into Python tuples took 3.0 s.")


# --- building the exports ------------------------------------------------------------------------------------------

def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def _window(db: sqlite3.Connection, tables: list[str]) -> tuple[int, int]:
    """First start and last end of the capture: the CUDA tables' rows and the NVTX events with an end.

    NVTX events outside it (the domain created before the capture started) are process-wide and
    are not copied.
    """
    lo, hi = [], []
    for t in tables:
        where = " WHERE end IS NOT NULL" if t == "NVTX_EVENTS" else ""
        a, b = db.execute(f'SELECT min(start), max(coalesce("end", start)) FROM {t}{where}').fetchone()
        if a is not None:
            lo.append(a)
            hi.append(b)
    return min(lo), max(hi)


def build(fixture: Path, copies: int, out: Path) -> float:
    """Write `copies` copies of `fixture`'s events end to end into `out`; returns seconds taken."""
    t0 = time.perf_counter()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.copyfile(fixture, tmp)
    tmp.chmod(0o644)
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")  # 256 MiB
        present = [t for t in TABLES if t in _tables(db)]
        w0, w1 = _window(db, present)
        period = w1 - w0 + GAP_NS
        corr = 1 + max(db.execute(f"SELECT coalesce(max(correlationId), 0) FROM {t}").fetchone()[0]
                       for t in present if "correlationId" in _columns(db, t))
        statements = {}
        for t in present:
            cols = _columns(db, t)
            exprs = [f'"{c}" + :dt' if c in TIME_COLUMNS else "correlationId + :dc" if c == "correlationId"
                     else f'"{c}"' for c in cols]
            statements[t] = (f"INSERT INTO {t} ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in cols)}) "
                             f"SELECT {', '.join(exprs)} FROM {t} WHERE start >= :lo AND start < :hi")
        have = 1
        while have < copies:
            step = min(have, copies - have)  # double, then the remainder
            args = {"dt": have * period, "dc": have * corr, "lo": w0, "hi": w0 + step * period}
            db.execute("BEGIN")
            for sql in statements.values():
                db.execute(sql, args)
            db.execute("COMMIT")
            have += step
    finally:
        db.close()
    tmp.replace(out)
    return time.perf_counter() - t0


@dataclass
class Export:
    copies: int
    path: Path
    kernels: int = 0
    runtime: int = 0
    nvtx_ranges: int = 0
    memcpy: int = 0
    memset: int = 0
    mb: float = 0.0
    build_s: float | None = None
    """None: taken from the cache."""


def count(e: Export) -> None:
    db = sqlite3.connect(f"file:{e.path}?mode=ro", uri=True)
    try:
        tables = _tables(db)

        def n(table: str, where: str = "") -> int:
            return db.execute(f"SELECT count(*) FROM {table}{where}").fetchone()[0] if table in tables else 0

        e.kernels, e.runtime = n(TABLES[0]), n(TABLES[1])
        e.memcpy, e.memset = n(TABLES[3]), n(TABLES[4])
        types = [r[0] for r in db.execute("SELECT id FROM ENUM_NSYS_EVENT_TYPE WHERE name IN "
                                          "('NvtxPushPopRange', 'NvtxStartEndRange')")]
        e.nvtx_ranges = n("NVTX_EVENTS", f" WHERE eventType IN ({', '.join(map(str, types or [59, 60]))})")
    finally:
        db.close()
    e.mb = e.path.stat().st_size / 1e6


def _kernel_count(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(f"SELECT count(*) FROM {TABLES[0]}").fetchone()[0]
    finally:
        db.close()


def prepare(fixture: Path, size: int, work: Path) -> Export:
    """The export of at least `size` kernels, from the cache or built now."""
    copies = -(-size // _kernel_count(fixture))
    digest = hashlib.sha1(fixture.read_bytes()).hexdigest()[:10]
    path = work / f"{fixture.parent.name}-{digest}-v{BUILD_VERSION}-x{copies}.sqlite"
    e = Export(copies, path)
    if not path.exists():
        print(f"building {path} ({copies:,} copies)", flush=True)
        e.build_s = build(fixture, copies, path)
    count(e)
    print(f"{path.name}: {e.kernels:,} kernels, {e.runtime:,} runtime calls, {e.nvtx_ranges:,} NVTX ranges, "
          f"{e.mb:,.0f} MB" + (f", built in {e.build_s:.1f} s" if e.build_s is not None else ", cached"), flush=True)
    return e


# --- timing --------------------------------------------------------------------------------------------------------

@dataclass
class Timing:
    label: str
    seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return float(statistics.median(self.seconds))

    @property
    def peak(self) -> float:
        return max(self.peak_mb)


def profkit_env(work: Path, **extra: str) -> dict[str, str]:
    """The environment of every timed profkit process: Python's bytecode cache on (in `work`), as
    an installed profkit has it. Shells that set PYTHONDONTWRITEBYTECODE=1 (this machine's do) make
    each process compile profkit's ~10 k lines again, ~0.1 s of start-up that users do not pay."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(work / "pycache"), **extra}


def timed(cmd: list[str], stdout: Path, env: dict[str, str] | None = None, cwd: Path = REPO, *,
          fail_ok: bool = False) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, the largest process of the tree) of one fresh run of `cmd`
    (`fail_ok`: a non-zero exit is returned as the run's, its stderr kept beside `stdout`)."""
    with tempfile.NamedTemporaryFile(suffix=".rss") as rss, open(stdout, "wb") as out, \
            open(stdout.with_suffix(stdout.suffix + ".err"), "wb") as err:
        if TIME_BIN.exists():
            t0 = time.perf_counter()
            proc = subprocess.run([str(TIME_BIN), "-f", "%M", "-o", rss.name, *cmd], stdout=out, stderr=err, env=env,
                                  cwd=cwd)
            seconds = time.perf_counter() - t0
            rc, kib = proc.returncode, int(Path(rss.name).read_text().split()[-1])
        else:  # the child's own rusage, from wait4
            t0 = time.perf_counter()
            child = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - t0
            child.returncode = rc = os.waitstatus_to_exitcode(status)
            kib = usage.ru_maxrss
    if rc != 0 and not fail_ok:
        text = stdout.with_suffix(stdout.suffix + ".err").read_text(errors="replace").strip()
        raise SystemExit(f"failed ({rc}): {shlex.join(cmd)}\n{text[-2000:]}")
    return seconds, kib * 1024 / 1e6


def run_size(e: Export, nsys: Nsys, repeat: int, work: Path) -> tuple[dict[str, Timing], dict[str, list[str]], Path,
                                                                       Path]:
    """Every tool `repeat` times on export `e`, interleaved; the timings and the commands run."""
    out = work / "out" / e.path.stem
    out.mkdir(parents=True, exist_ok=True)
    # nsys stats may add tables or indexes to an export: it gets its own fresh copy.
    nsys_copy = out / "nsys-copy.sqlite"
    shutil.copyfile(e.path, nsys_copy)
    py = [sys.executable, "-m", "profkit", "report"]
    nsys_cmd = [str(nsys.path), "stats", "-f", "csv", "--force-export=false", "--force-overwrite=true"]
    # The warm runs read a cache of their own, filled by one untimed run of each command first.
    warm_cache = Path(tempfile.mkdtemp(prefix="profkit-bench-cache-"))  # away from the exports' folder
    cold_env = profkit_env(work)
    warm_env = profkit_env(work, XDG_CACHE_HOME=str(warm_cache))
    kernels_cmd = [*py, "kernels", str(e.path), "--format", "csv", "--top", "0"]
    nvtx_cmd = [*py, "nvtx", str(e.path), "--format", "csv"]
    for cmd in (kernels_cmd, nvtx_cmd):
        timed(cmd, out / "fill.log", warm_env)
    tools = {
        "profkit report kernels": ([*kernels_cmd, "--no-cache"], out / "profkit_kernels.csv", cold_env),
        "profkit report nvtx": ([*nvtx_cmd, "--no-cache"], out / "profkit_nvtx.csv", cold_env),
        "profkit report kernels, cached": (kernels_cmd, out / "profkit_kernels_warm.csv", warm_env),
        "profkit report nvtx, cached": (nvtx_cmd, out / "profkit_nvtx_warm.csv", warm_env),
        "profkit report (report.md)": ([*py, "capture", str(e.path), "--force", "--no-cache"], out / "report.log",
                                       cold_env),
        "floor: SQLite decoding the columns read": ([sys.executable, str(Path(__file__).resolve()), "--floor",
                                                     str(e.path)], out / "floor.log", None),
        "nsys stats cuda_gpu_kern_sum": ([*nsys_cmd, "-r", "cuda_gpu_kern_sum", "-o", str(out / "nsys"),
                                          str(nsys_copy)], out / "nsys_kern.log", nsys.run_env()),
        "nsys stats nvtx_kern_sum": ([*nsys_cmd, "-r", "nvtx_kern_sum", "-o", str(out / "nsys"), str(nsys_copy)],
                                     out / "nsys_nvtx.log", nsys.run_env()),
    }
    timings = {label: Timing(label) for label in tools}
    for i in range(repeat):
        for label, (cmd, stdout, env) in tools.items():
            warm_file(nsys_copy if label.startswith("nsys") else e.path)
            seconds, mb = timed(cmd, stdout, env)
            if label.startswith("floor"):  # its own timer: the SQL alone, without start-up and imports
                seconds = float(stdout.read_text().split()[0])
            timings[label].seconds.append(seconds)
            timings[label].peak_mb.append(mb)
            print(f"  [{i + 1}/{repeat}] {label}: {seconds:.2f} s, {mb:,.0f} MB", flush=True)
    shutil.rmtree(warm_cache, ignore_errors=True)
    commands = {label: cmd for label, (cmd, _, _) in tools.items()}
    return timings, commands, out / "profkit_kernels.csv", out / "nsys_cuda_gpu_kern_sum.csv"


SNAPSHOT = REPO / "tests" / "data" / "h200_memory_tiny_step" / "memory.pickle"


def every_command(e: Export, fixture: Path, work: Path) -> list[list[str]]:
    """The report commands issue 17 names beyond kernels, nvtx and report.md, once each on export `e`
    (linear_commands() on report_folders()): modules, timeline, flops, compare, ranks and memory. Rows:
    command, seconds, peak MB, s per 1 k kernels, what it printed (its one Error: line, or its lines counted)."""
    out = work / "out" / e.path.stem / "every"
    commands = report_folders(e.path, fixture, out)
    py = [sys.executable, "-m", "profkit", "report"]
    rows = []
    for label, args in commands.items():
        if label in ("kernels", "nvtx", "report.md"):  # run_size() times these
            continue
        stdout = out / f"{label}.txt"
        seconds, mb = timed([*py, *args], stdout, profkit_env(work), fail_ok=True)
        said, err = refusal(stdout)
        lines = stdout.read_text(errors="replace").count("\n")
        what = f"`{said[:110]}`" if said else f"{lines:,} lines" + (f"; stderr: {err[-1][:80]}" if err else "")
        rows.append([f"`report {label}`", f"{seconds:.2f}", f"{mb:,.0f}", f"{1000 * seconds / e.kernels:.4f}", what])
        print(f"  report {label}: {seconds:.2f} s, {mb:,.0f} MB, {what}", flush=True)
    return rows


def refusal(stdout: Path) -> tuple[str | None, list[str]]:
    """A timed command's `Error:` line (None: none) and its stderr's lines (timed() keeps them beside `stdout`)."""
    err = stdout.with_suffix(stdout.suffix + ".err").read_text(errors="replace").strip().splitlines()
    return next((x for x in err if x.startswith("Error:")), None), err


# --- linearity of every report command (issue 17) ------------------------------------------------------------------

def capture_folder(export: Path, fixture: Path, folder: Path) -> Path:
    """A capture folder for `export`: the export linked in as profile.sqlite (read in place) and, when the
    fixture's own folder has run.json, that run.json and the flops.json counted from it (once, on the meta
    device, when torch is importable), so that `report flops` and report.md's FLOPs sections have their input.
    Without them `report flops` is refused, and the table says so."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "profile.sqlite"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(export)
    run_json = fixture.parent / "run.json"
    if run_json.exists():
        shutil.copyfile(run_json, folder / "run.json")
        counted = folder.parent / f"{fixture.parent.name}.flops.json"
        if not counted.exists():
            try:
                from profkit.collect import flops
                from profkit.config import RunConfig
            except ImportError:  # no torch: no FLOPs
                return folder
            rec = json.loads(run_json.read_text())
            shutil.move(flops.write(flops.count(RunConfig.from_dict(rec["config"])), folder), counted)
        shutil.copyfile(counted, folder / "flops.json")
    return folder


def linear_commands(capture: Path, ranks: Path, other: Path) -> dict[str, list[str]]:
    """Every report command on one capture folder, cold (`--no-cache`): `compare` against a second folder
    linking the same export, `ranks` on a folder holding it as rank0, `memory` placing the committed tiny
    snapshot on its ranges."""
    sqlite = str(capture / "profile.sqlite")
    return {
        "kernels": ["kernels", sqlite, "--format", "csv", "--top", "0", "--no-cache"],
        "nvtx": ["nvtx", sqlite, "--format", "csv", "--no-cache"],
        "modules": ["modules", str(capture), "--no-cache"],
        "timeline": ["timeline", str(capture), "--no-cache"],
        "flops": ["flops", str(capture), "--no-cache"],
        "report.md": ["capture", str(capture), "--force", "--no-cache"],
        "compare": ["compare", str(capture), str(other), "--no-cache"],
        "ranks": ["ranks", str(ranks), "--no-cache"],
        "memory": ["memory", str(SNAPSHOT), "--profile", str(capture)],
    }


def report_folders(export: Path, fixture: Path, out: Path) -> dict[str, list[str]]:
    """linear_commands() on `export`, with the folders they read made under `out`: two capture
    folders (capture_folder()) and a ranks folder holding the export as rank0 (links, read in place)."""
    folders = [capture_folder(export, fixture, out / d) for d in ("capture", "other")]
    ranks = out / "ranks"
    ranks.mkdir(parents=True, exist_ok=True)
    if not (ranks / "rank0.sqlite").is_symlink():
        (ranks / "rank0.sqlite").symlink_to(export)
    return linear_commands(folders[0], ranks, folders[1])


def warm_file(path: Path) -> None:
    """Read `path` whole, so that every tool starts from a file in the OS page cache. On this kind of
    machine (a Firecracker guest) DAMON pages out memory not touched for a while, the page cache
    included: an export read minutes before may be partly on disk again (fincore showed 0 of 1.8 GB
    and 150 of 179 MB resident between runs), and the next tool would pay the disk for it."""
    with open(path, "rb", buffering=0) as f:
        while f.read(16 << 20):
            pass


def touch_memory(mb: int) -> None:
    """Write `mb` MB of fresh memory in a child process and let it go. On a virtual machine the host
    may take back the guest's free memory; the first write to such a page then costs a fault in the
    host too (measured on this kind of 2-core machine: 0.7 to 23 ns per 8 bytes written to fresh
    memory, the same code minutes apart; 11-32 ns for a process's first writes to memory new to it,
    0.7-4 ns once backed), which falls most on the runs that take most fresh memory, and reads as a
    cost per kernel that moves from run to run. Touched just before a command, the pages it gets are
    backed, as on a machine that is not a guest."""
    if mb > 0:
        subprocess.run([sys.executable, "-c", f"import numpy as np; np.ones({mb} * 2**17, dtype=np.int64).sum()"],
                       check=True)


def linearity(fixture: Path, exports: list[Export], repeat: int, work: Path, threads: str,
              touch_mb: int) -> tuple[list[str], bool]:
    """Every report command, best of its fresh processes, on the fixture itself (its start-up: at least 5
    runs, for the jitter too) and on each export, in `repeat` rounds of runs_per_round() runs of each size,
    the commands interleaved within a size and the sizes within a round. Per command, its cost above
    start-up per 1 k kernels at each size, and the cost each step from one size to the next adds per
    1 k kernels added (marginal()), each judged where its time difference is at least JITTER_TIMES x
    start-up's jitter; flat when the largest judged step is within MAX_SLOPE_GROWTH of the smallest.
    Markdown lines and whether every command that ran was flat and under 2^30 bytes at the largest size."""
    py = [sys.executable, "-m", "profkit", "report"]
    # The reads' second thread fixed, not left to the load average (columns.two_threads): a command
    # run right after another sees the load that one left, and would read on one thread at one size
    # and on two at the next.
    env = profkit_env(work, **({"PROFKIT_READ_THREADS": threads} if threads != "auto" else {}))
    n0 = _kernel_count(fixture)
    sizes: list[tuple[str, int, Path]] = [(fixture.name, n0, fixture)] + [(e.path.name, e.kernels, e.path)
                                                                         for e in exports]
    times: dict[tuple[str, int], Timing] = {}
    said: dict[tuple[str, int], str] = {}
    paths = {kernels: path for _, kernels, path in sizes}
    plans = []  # (kernels, out folder, commands) per size
    for name, kernels, path in sizes:
        out = work / "out" / "linear" / Path(name).stem
        plans.append((kernels, out, report_folders(path, fixture, out)))
    for label, args in plans[0][2].items():  # fills the bytecode cache
        timed([*py, *args], plans[0][1] / f"{label}.fill.txt", env, fail_ok=True)

    def run(kernels: int, out: Path, label: str, args: list[str], note: str) -> None:
        stdout = out / f"{label}.txt"
        touch_memory(touch_mb)
        warm_file(paths[kernels])
        if label == "memory":
            warm_file(SNAPSHOT)
        seconds, mb = timed([*py, *args], stdout, env, fail_ok=True)
        t = times.setdefault((label, kernels), Timing(label))
        t.seconds.append(seconds)
        t.peak_mb.append(mb)
        refused, err = refusal(stdout)
        if refused or any("Traceback" in x for x in err):
            said[(label, kernels)] = refused or err[-1]
        print(f"  [{note}] {kernels:,} kernels, {label}: {seconds:.2f} s, {mb:,.0f} MB"
              + (f" ({said[(label, kernels)][:80]})" if (label, kernels) in said else ""), flush=True)

    # Sizes interleaved within each round, as the commands are: a slow spell of a shared machine
    # falls on every size alike instead of on the one being timed then. A smaller size runs more
    # times a round (runs_per_round()), spread over every round, not bunched at the end.
    biggest = sizes[-1][1]
    per_round = {kernels: runs_per_round(kernels, biggest) for _, kernels, _ in sizes}
    for i in range(repeat):
        for kernels, out, commands in plans:
            for j in range(per_round[kernels]):
                for label, args in commands.items():
                    note = f"{i + 1}/{repeat}" + (f".{j + 1}" if per_round[kernels] > 1 else "")
                    run(kernels, out, label, args, note)
    for i in range(repeat * per_round[n0], 5):  # start-up's jitter: at least 5 runs of the fixture
        for label, args in plans[0][2].items():
            run(n0, plans[0][1], label, args, f"start-up {i + 1}")
    rows, all_ok = [], True
    for label in plans[0][2]:
        start = times[(label, n0)]
        jitter = sorted(start.seconds)[len(start.seconds) // 2] - start.best
        if any((label, k) in said for _, k, _ in sizes):
            what = "; ".join(sorted({said[(label, k)][:100] for _, k, _ in sizes if (label, k) in said}))
            rows.append([f"`{label}`", f"{start.best:.2f}", "", "", "", "", "", "", "", f"refused: `{what}`"])
            continue
        least = JITTER_TIMES * max(jitter, 0.01)  # seconds a difference needs to be judged
        cells, judged = [], []
        for _, kernels, _ in sizes[1:]:
            t = times[(label, kernels)]
            above = 1000 * (t.best - start.best) / (kernels - n0)
            ok = t.best - start.best >= least
            if ok:
                judged.append(above)
            cells.append(f"{kernels:,}: {t.best:.2f} s, {above:.5f}" + ("" if ok else " (not judged)"))
        growth = _growth(judged)
        steps = marginal([(kernels, times[(label, kernels)].best) for _, kernels, _ in sizes[1:]], least)
        step_cells = [f"{a:,} -> {b:,}: {slope:.5f}" + ("" if ok else " (not judged)") for a, b, slope, ok in steps]
        step_growth = _growth([slope for *_, slope, ok in steps if ok])
        # The same steps from median times: a best of a few short runs is likelier to fall in a quiet spell
        # of a shared machine than a long run is, which would make the larger sizes' steps look dearer.
        medians = marginal([(kernels, times[(label, kernels)].median) for _, kernels, _ in sizes[1:]], least)
        median_cells = [f"{slope:.5f}" + ("" if ok else " (not judged)") for *_, slope, ok in medians]
        median_growth = _growth([slope for *_, slope, ok in medians if ok])
        peak = times[(label, biggest)].peak
        flat = step_growth is not None and step_growth <= MAX_SLOPE_GROWTH
        all_ok &= flat and peak * 1e6 <= 2**30
        rows.append([f"`{label}`", f"{start.best:.2f} ± {jitter:.2f}", "; ".join(cells),
                     "not judged" if growth is None else f"{growth:.2f}x", "; ".join(step_cells),
                     "not judged" if step_growth is None else f"{step_growth:.2f}x "
                     + ("flat" if flat else "**not flat**"), "; ".join(median_cells),
                     "not judged" if median_growth is None else f"{median_growth:.2f}x", f"{peak:,.0f}", ""])
    lines = [
        "## Every report command, 1 copy to the largest export (issue 17)", "",
        "Each command a fresh process, cold (`--no-cache`), best of "
        + ", ".join(f"{repeat * per_round[k]} at {k:,}" for _, k, _ in sizes[1:])
        + f" (start-up: on the fixture itself, {n0:,} kernels, best of {max(5, repeat * per_round[n0])}, ± its "
        f"median minus best), in {repeat} rounds, a size's runs spread over every round (runs_per_round(): "
        "a smaller size's difference from the next is tenths of a second, its runs cheap), the commands "
        "interleaved within each size and the sizes within each round. Seconds per 1 k kernels above "
        f"start-up ((t - t0) / (n - {n0:,}) x 1000), judged where t - t0 is at least {JITTER_TIMES}x start-up's "
        "jitter (0.01 s at least); and the time each step from one size to the next adds per 1 k kernels "
        "added ((t2 - t1) / (n2 - n1) x 1000, marginal()), judged where t2 - t1 is that much: the cost of "
        "one more kernel, which no fixed cost enters (above start-up, a cost the fixture's run does not pay, "
        "e.g. a second read thread or a table's set-up, makes the smaller sizes' figures larger). Flat when "
        f"the largest judged step is within {MAX_SLOPE_GROWTH}x the smallest (judged on best times; the steps "
        "from median times beside them, not judged, show whether a best of a few short runs flattered the "
        "smaller sizes). Peak MB: `/usr/bin/time -f %M` at the largest size, MB of 10^6 bytes. "
        f"Capture folders link the export as profile.sqlite (with the fixture's run.json and its counted "
        f"flops.json where it has one); `compare` compares two such folders of one export; `ranks` reads it as "
        f"rank0; `memory` places `{SNAPSHOT.relative_to(REPO)}` on its ranges. Large reads on "
        + ("two threads where the load leaves a core free (columns.two_threads)" if threads == "auto" else
           f"{threads} thread{'s' if threads == '2' else ''} (`PROFKIT_READ_THREADS={threads}`)") + ". "
        + (f"Before each command, {touch_mb:,} MB of fresh memory written and let go in a child process "
           "(touch_memory(): a VM's host backs the pages again; a process's first writes to memory new to it "
           "measured 11-32 ns per 8 bytes on this kind of machine, 0.7-4 ns once backed)."
           if touch_mb > 0 else "No memory touched before the runs.")
        + " Each command's export (and snapshot) read whole just before it runs (warm_file(): DAMON on this kind "
        "of machine pages out what was not touched for a while, the page cache included).", "",
        markdown_table(["command", "start-up s", "per size: best s, s per 1 k kernels above start-up",
                        "largest / smallest", "size to size: s per 1 k kernels added", "largest / smallest step",
                        "the same steps from median times", "largest / smallest (medians)",
                        f"peak MB at {biggest:,}", "refused"], rows, align="lrlrlrlrrl"), "",
        f"Every command that ran flat and within 2^30 bytes: {'**yes**' if all_ok else '**no**'}.", ""]
    return lines, all_ok


def runs_per_round(kernels: int, biggest: int) -> int:
    """Runs of a size in each round of linearity(): one at the largest size, one more for each tenfold
    smaller, at most SMALL_RUNS. A step between small sizes is a difference of tenths of a second, a few
    times start-up's jitter, and its runs cost little: more of them bring its best nearer the floor.

    >>> [runs_per_round(k, 10_001_440) for k in (10_001_440, 1_000_960, 100_640, 10_880, 2_720)]
    [1, 2, 3, 4, 4]
    """
    return max(1, min(SMALL_RUNS, 1 + round(math.log10(biggest / max(kernels, 1)))))


def _growth(judged: list[float]) -> float | None:
    """The largest judged figure over the smallest; None with fewer than two."""
    return max(judged) / min(judged) if len(judged) >= 2 else None


def marginal(points: list[tuple[int, float]], least: float) -> list[tuple[int, int, float, bool]]:
    """Size to size, (n1, n2, seconds added per 1 k kernels added, judged: t2 - t1 >= `least`) of
    (kernels, best seconds) points in increasing kernels.

    >>> marginal([(10, 1.0), (110, 2.0), (1110, 12.5)], 0.5)
    [(10, 110, 10.0, True), (110, 1110, 10.5, True)]
    """
    return [(n1, n2, 1000 * (t2 - t1) / (n2 - n1), t2 - t1 >= least)
            for (n1, t1), (n2, t2) in zip(points, points[1:], strict=False)]


@dataclass
class Startup:
    """Both reports, cold, on the fixture itself (one copy): what a report costs before its kernels."""

    kernels: int
    seconds: list[float]
    """kernels + nvtx, per repeat."""

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def jitter(self) -> float:
        """Median minus best: how far a best-of-N time can be off."""
        return sorted(self.seconds)[len(self.seconds) // 2] - min(self.seconds)


def startup(fixture: Path, repeat: int, work: Path) -> Startup:
    """`report kernels` + `report nvtx` cold on a copy of the fixture, at least 5 times (start-up cost and jitter)."""
    out = work / "out" / "startup"
    out.mkdir(parents=True, exist_ok=True)
    copy = out / "profile.sqlite"
    shutil.copyfile(fixture, copy)
    env = profkit_env(work)
    py = [sys.executable, "-m", "profkit", "report"]
    cmds = [[*py, "kernels", str(copy), "--format", "csv", "--top", "0", "--no-cache"],
            [*py, "nvtx", str(copy), "--format", "csv", "--no-cache"]]
    timed(cmds[0], out / "fill.csv", env)  # fills the bytecode cache
    sums = []
    for i in range(max(repeat, 5)):
        sums.append(sum(timed(c, out / f"{j}.csv", env)[0] for j, c in enumerate(cmds)))
        print(f"  [{i + 1}] start-up (kernels + nvtx on {fixture.name}): {sums[-1]:.2f} s", flush=True)
    return Startup(_kernel_count(copy), sums)


def compare_totals(profkit_csv: Path, nsys_csv: Path) -> tuple[bool, str]:
    """profkit's total_ns and instances per kernel name against cuda_gpu_kern_sum's, exactly."""
    with open(profkit_csv, newline="") as f:
        ours = {r["name"]: (int(r["total_ns"]), int(r["instances"])) for r in csv.DictReader(f)}
    with open(nsys_csv, newline="") as f:
        theirs = {r["Name"]: (int(r["Total Time (ns)"]), int(r["Instances"])) for r in csv.DictReader(f)}
    if ours == theirs:
        total = sum(t for t, _ in ours.values())
        return True, (f"all {len(ours)} kernel names match, total {total:,} ns over "
                      f"{sum(n for _, n in ours.values()):,} instances")
    only = sorted(set(ours) ^ set(theirs))
    differ = [k for k in set(ours) & set(theirs) if ours[k] != theirs[k]]
    return False, (f"{len(only)} names in one only, {len(differ)} differ"
                   + (f", e.g. {differ[0][:60]!r}: profkit {ours[differ[0]]} nsys {theirs[differ[0]]}"
                      if differ else ""))


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def before_after(e: Export, commit: str, repeat: int, work: Path) -> tuple[list[list[str]], list[str]]:
    """`report kernels`, `report nvtx` and report.md on export `e`, profkit at `commit` (a `git archive` of it,
    run with this interpreter) against this checkout, interleaved in one run; rows and the load before/after."""
    old = Path(tempfile.mkdtemp(prefix=f"profkit-{commit[:7]}-"))
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    out = work / "out" / f"{e.path.stem}-before-after"
    out.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "profkit", "report"]
    commands = {"report kernels": ["kernels", str(e.path), "--format", "csv", "--top", "0"],
                "report nvtx": ["nvtx", str(e.path), "--format", "csv"],
                "report.md": ["capture", str(e.path), "--force"]}
    times: dict[tuple[str, str], Timing] = {}
    load = [loadavg()]
    for i in range(repeat):
        for label, args in commands.items():
            for side, cwd, extra in (("before", old, []), ("after", REPO, ["--no-cache"])):
                seconds, mb = timed([*py, *args, *extra], out / f"{side}-{label.replace(' ', '_')}.txt",
                                    profkit_env(work), cwd=cwd)
                t = times.setdefault((label, side), Timing(label))
                t.seconds.append(seconds)
                t.peak_mb.append(mb)
                print(f"  [{i + 1}/{repeat}] {side} {label}: {seconds:.2f} s, {mb:,.0f} MB", flush=True)
    load.append(loadavg())
    shutil.rmtree(old, ignore_errors=True)
    rows = []
    for label in commands:
        b, a = times[(label, "before")], times[(label, "after")]
        rows.append([f"`{label}`", f"{b.best:.2f}", f"{a.best:.2f}", f"{a.best / b.best:.2f}x", f"{b.peak:,.0f}",
                     f"{a.peak:,.0f}"])
    return rows, load


def time_sections(path: Path) -> None:
    """In-process seconds of report.md's parts on one export (printed as `label seconds` lines)."""
    from profkit import analyze, parse, pipeline
    from profkit.report import capture as cap
    from profkit.report import tables
    from profkit.report import timeline as tl

    def clock(label: str, fn: object) -> object:
        t0 = time.perf_counter()
        value = fn()  # type: ignore[operator]
        print(f"{label}\t{time.perf_counter() - t0:.3f}", flush=True)
        return value

    a = clock("read and analyze (parse.load + analyze_data)",
              lambda: pipeline.analyze_data(parse.load(path, lean=True)))
    clock("whole report.md text (capture_markdown)", lambda: cap.capture_markdown(a, title="x"))
    k = a.kernels
    clock("issue 9: verdict and timeline (verdict_section)", lambda: tl.verdict_section(a))
    clock("issue 9: categories per measured step", lambda: tables.category_steps_markdown(
        analyze.category_steps(k, a.transfers, a.ranges)))
    clock("issue 9: ranges per measured step (fold_steps)", lambda: tables.steps_markdown(
        analyze.fold_steps(a.ranges, k, depth=cap.RANGE_DEPTH), gpu=True, top=cap.RANGE_ROWS))
    clock("issue 9: modules (modules_section)", lambda: cap.modules_section(a))
    clock("categories of the whole capture (before issue 9)", lambda: tables.categories_markdown(
        analyze.category_shares(k, a.data.memcpy, a.data.memset)))
    clock("top kernels", lambda: tables.kernels_markdown(analyze.rank_kernels(k, top_k=15)))


def _array_ops(n: int, rng: Any) -> dict[str, Any]:
    """array_costs()'s operations on arrays of `n` elements, by name."""
    import numpy as np

    a = np.sort(rng.integers(0, 1 << 40, n))
    b = rng.integers(0, 1 << 20, n).astype(np.int32)
    order = np.argsort(b, kind="stable")
    shuffled = a[order]  # made once: the searchsorted and the sort below time only themselves
    out = np.zeros(n, dtype=np.int64)
    return {"a + b, fresh output": lambda: a + b,
            "a + b, into an array written before": lambda: np.add(a, b, out=out),
            "cumsum, fresh output": lambda: np.cumsum(a),
            "cumsum, into an array written before": lambda: np.cumsum(a, out=out),
            "gather a[order] (order: a sort of random keys), into an array written before":
                lambda: np.take(a, order, out=out),
            "searchsorted of those values": lambda: np.searchsorted(a, shuffled),
            "sort of those values, into a fresh array": lambda: np.sort(shuffled)}


def array_costs(sizes: list[int], repeat: int) -> list[str]:
    """numpy's cost per element of operations the analysis is made of, at each size, best of `repeat`, in
    one process: into fresh output arrays (as an analysis's temporaries are) and into arrays it has
    written before. Arrays past the CPU's last-level cache make a gather or a binary search dearer per
    element, and fresh pages make every output dearer on a virtual machine: neither is profkit's code.
    Markdown lines."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        ops = _array_ops(n, rng)
        for name, fn in ops.items():
            best = float("inf")
            for _ in range(max(repeat, 3)):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            rows.append((name, n, 1e9 * best / n))
    names = list(dict.fromkeys(r[0] for r in rows))
    ns = {(name, n): v for name, n, v in rows}
    head = ["operation", *(f"ns per element at {n:,}" for n in sizes), f"{sizes[-1]:,} / {sizes[0]:,}"]
    body = [[name, *(f"{ns[(name, n)]:.2f}" for n in sizes), f"{ns[(name, sizes[-1])] / ns[(name, sizes[0])]:.2f}x"]
            for name in names]
    return [markdown_table(head, body, align="l" + "r" * (len(sizes) + 1)), "",
            f"`python scripts/bench_parser.py --array-costs {','.join(map(str, sizes))}` (numpy {np.__version__}; "
            f"best of {max(repeat, 3)} per operation, one process; {machine()})."]


# --- the report ----------------------------------------------------------------------------------------------------

def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    return f"{cpu}, {os.cpu_count()} cores, {mem_kib / 2**20:.1f} GiB RAM"


def floor(path: Path) -> None:
    """SQLite decoding every column profkit's two reports read, handing nothing to Python: the floor."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    t0 = time.perf_counter()
    for sql in ("SELECT count(*), max(start), max(end), max(deviceId), max(streamId), max(correlationId), "
                "max(globalPid), max(demangledName), max(shortName) FROM CUPTI_ACTIVITY_KIND_KERNEL",
                "SELECT count(*), max(start), max(globalTid), max(correlationId) FROM CUPTI_ACTIVITY_KIND_RUNTIME "
                "WHERE nameId IN (SELECT id FROM StringIds WHERE value LIKE '%Launch%')",
                "SELECT count(*), max(start), max(end), max(globalTid), max(eventType), max(length(text)), "
                "max(textId) FROM NVTX_EVENTS"):
        db.execute(sql).fetchone()
    print(f"{time.perf_counter() - t0:.3f} s of SQLite decoding")


def ranks_one(folder: Path) -> None:
    """One `report ranks` in this process: wall time and the peak RSS of this process and its workers."""
    import resource

    from profkit.ranks import load_ranks
    from profkit.report.ranks import ranks_report

    t0 = time.perf_counter()
    text = ranks_report(load_ranks(folder), fmt="json")
    wall = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"wall_s": wall, "self_kib": own, "worker_kib": workers, "rows": len(json.loads(text))}))


def bench_ranks(fixture: Path, counts: list[int], work: Path, repeat: int) -> None:
    """The multi-rank case: N copies of `fixture` as rank{R}.sqlite, `report ranks` timed per N."""
    rows = []
    cores = os.cpu_count() or 1
    for n in counts:
        folder = work / f"ranks-{n}"
        folder.mkdir(parents=True, exist_ok=True)
        for r in range(n):
            dst = folder / f"rank{r}.sqlite"
            if not dst.exists():
                shutil.copyfile(fixture, dst)  # copies, not links: each rank a file of its own
        best = None
        for _ in range(repeat):
            out = subprocess.run([sys.executable, __file__, "--ranks-one", str(folder)], capture_output=True,
                                 text=True, check=True, cwd=REPO)
            m = json.loads(out.stdout.strip().splitlines()[-1])
            assert m["rows"] == n, m
            best = m if best is None or m["wall_s"] < best["wall_s"] else best
        assert best is not None
        rows.append((n, best))
        print(f"{n} ranks: {best['wall_s']:.2f} s, {best['wall_s'] / n * 1e3:.0f} ms per rank, peak "
              f"{max(best['self_kib'], best['worker_kib']) / 1024:.0f} MB", flush=True)
    print(f"\n{cores} cores, load {loadavg()}; fixture {fixture.name} ({fixture.stat().st_size / 2**20:.1f} MiB)\n")
    print("| ranks | wall s | ms per rank | ms per rank x min(ranks, cores) | peak RSS MB (largest process) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n, m in rows:
        per = m["wall_s"] / n * 1e3
        print(f"| {n} | {m['wall_s']:.2f} | {per:.0f} | {per * min(n, cores):.0f} | "
              f"{max(m['self_kib'], m['worker_kib']) / 1024:.0f} |")


def bench_linearity(a: argparse.Namespace, sizes: list[int], load_start: str, started: float) -> None:
    """`--linearity`: the every-command table alone, written to --report."""
    a.work.mkdir(parents=True, exist_ok=True)
    fixture = a.fixture.resolve()
    exports = [prepare(fixture, s, a.work) for s in sizes]
    lines, ok = linearity(fixture, exports, a.repeat, a.work, a.read_threads, a.touch_mb)
    report = Path("reports/bench_linearity.md") if a.report == Path("reports/bench.md") else a.report
    command = shlex.join(["python", "scripts/bench_parser.py", *sys.argv[1:]])
    text = "\n".join([
        "# Every report command against export size", "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}; Python {platform.python_version()}, pandas "
        f"{version('pandas')}, numpy {version('numpy')}. One run of this script "
        f"({time.perf_counter() - started:.0f} s in all, builds included); `/proc/loadavg` {load_start} when it "
        f"started, {loadavg()} when it ended. Exports built from `{a.fixture}` as in reports/bench.md.", "",
        *lines, "## Command", "", "```", command, "```", ""])
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    print(text)
    if not ok:
        print("some command is not flat, or over 2^30 bytes", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixture", type=Path, default=FIXTURE, help="The export to copy (default: %(default)s).")
    p.add_argument("--sizes", default="10000,100000,1000000", help="Kernel counts, at least (default: %(default)s).")
    p.add_argument("--repeat", type=int, default=3, help="Runs per command (with --linearity: rounds, a smaller size "
                   "run more times a round); the best counts (default: %(default)s).")
    p.add_argument("--work", type=Path, default=Path("/tmp/profkit-bench"), help="Built exports and outputs.")
    p.add_argument("--report", type=Path, default=Path("reports/bench.md"))
    p.add_argument("--nsys", help="The nsys to use (else $PROFKIT_NSYS, PATH, .tools/nsys).")
    p.add_argument("--floor", type=Path, help=argparse.SUPPRESS)  # one timed floor run (a subprocess of this)
    p.add_argument("--sections", type=Path, help=argparse.SUPPRESS)  # report.md's parts, timed in-process
    p.add_argument("--before", default="8c2c7e1", help="The commit timed as `before` against this checkout on the "
                   "largest export (report kernels, nvtx, report.md; default %(default)s); '' skips it.")
    p.add_argument("--large", action="store_true", help="Add a 10 M-kernel export (issue 17; building it takes "
                   "minutes and nsys stats on it about ten times the 1 M export's time).")
    p.add_argument("--every-command", action="store_true", help="Also time modules, timeline, flops, compare, ranks "
                   "and memory once on every export (issue 17).")
    p.add_argument("--linearity", action="store_true", help="Only time every report command on the fixture and "
                   "each size (with --large: 10 M kernels too), per command flat or not; markdown into --report "
                   "(default reports/bench_linearity.md).")
    p.add_argument("--read-threads", choices=("auto", "1", "2"), default="1", help="With --linearity: "
                   "PROFKIT_READ_THREADS for every command (auto: by the load average) (default: %(default)s).")
    p.add_argument("--touch-mb", type=int, default=2048, help="With --linearity: MB of fresh memory written (in a "
                   "child) before each command, so that a VM's host has backed it (0: none) "
                   "(default: %(default)s).")
    p.add_argument("--array-costs", help="Sizes (e.g. 1000000,10000000): numpy's own cost per element of a few "
                   "array operations at each, on this machine; prints markdown (what the hardware does to linearity).")
    p.add_argument("--ranks", help="Rank counts for the multi-rank case (e.g. 2,4,8,16,32,64); prints markdown.")
    p.add_argument("--ranks-one", type=Path, help=argparse.SUPPRESS)  # one timed `report ranks` (a subprocess)
    a = p.parse_args()
    if a.ranks_one:
        ranks_one(a.ranks_one)
        return
    if a.ranks:
        bench_ranks(a.fixture.resolve(), sorted(int(n) for n in a.ranks.split(",")), a.work, a.repeat)
        return
    if a.floor:
        floor(a.floor)
        return
    if a.array_costs:
        print("\n".join(array_costs([int(n) for n in a.array_costs.split(",")], a.repeat)))
        return
    if a.sections:
        time_sections(a.sections)
        return
    load_start = loadavg()
    started = time.perf_counter()
    sizes = sorted({int(s.replace("_", "")) for s in a.sizes.split(",")} | ({10_000_000} if a.large else set()))
    if a.linearity:
        bench_linearity(a, sizes, load_start, started)
        return
    nsys = find_nsys(a.nsys)
    command = shlex.join(["python", "scripts/bench_parser.py", *sys.argv[1:]])
    if nsys.source == "$PROFKIT_NSYS":
        command = f"PROFKIT_NSYS={shlex.quote(str(nsys.path))} {command}"
    a.work.mkdir(parents=True, exist_ok=True)
    exports = [prepare(a.fixture.resolve(), s, a.work) for s in sizes]
    print("timing start-up", flush=True)
    start = startup(a.fixture.resolve(), a.repeat, a.work)

    sections, checks, sums, nvtx_sum_times, peaks, warm_sums = [], [], [], [], [], []
    commands: dict[str, list[str]] = {}
    for e in exports:
        print(f"timing {e.kernels:,} kernels", flush=True)
        timings, commands, profkit_csv, nsys_csv = run_size(e, nsys, a.repeat, a.work)
        ok, detail = compare_totals(profkit_csv, nsys_csv)
        checks.append((e, ok, detail))
        print(f"  totals against cuda_gpu_kern_sum: {'match' if ok else 'DIFFER'} ({detail})", flush=True)
        k, n = timings["profkit report kernels"], timings["profkit report nvtx"]
        both = k.best + n.best
        nvtx_kern = timings["nsys stats nvtx_kern_sum"].best
        sums.append(both)
        nvtx_sum_times.append(nvtx_kern)
        peaks.append(max(t.peak for label, t in timings.items() if label.startswith("profkit")))
        kw, nw = timings["profkit report kernels, cached"], timings["profkit report nvtx, cached"]
        warm_sums.append(kw.best + nw.best)

        def row(label: str, seconds: float, mb: str, kernels: int = e.kernels) -> list[str]:
            return [label, f"{seconds:.2f}", mb, f"{1000 * seconds / kernels:.4f}"]

        rows = [row(f"`{t.label}`", t.best, f"{t.peak:,.0f}") for t in timings.values()]
        rows.insert(2, row("**profkit kernels + nvtx** (sum, no cache)", both, f"{max(k.peak, n.peak):,.0f} (larger)"))
        rows.insert(5, row("**profkit kernels + nvtx, cached** (sum)", warm_sums[-1],
                           f"{max(kw.peak, nw.peak):,.0f} (larger)"))
        rows.append(["profkit kernels + nvtx, as a share of nvtx_kern_sum's time", f"{100 * both / nvtx_kern:.1f} %",
                     "", ""])
        rows.append(["the same, cached", f"{100 * warm_sums[-1] / nvtx_kern:.2f} %", "", ""])
        sections += [f"### {e.kernels:,} kernels ({e.copies:,} copies)", "",
                     markdown_table(["tool", "seconds", "peak MB", "s per 1 k kernels"], rows, align="lrrr"), ""]
        if a.every_command:
            sections += ["Every other report command, one run each (a refusal is its `Error:` line):", "",
                         markdown_table(["command", "seconds", "peak MB", "s per 1 k kernels", "output"],
                                        every_command(e, a.fixture.resolve(), a.work), align="lrrrl"), ""]

    # Issue 9's check: before (a commit) against after (this checkout), and report.md's parts in-process.
    big = exports[-1]
    compare_lines: list[str] = []
    if a.before:
        print(f"timing {a.before} against this checkout on {big.kernels:,} kernels", flush=True)
        ba_rows, ba_load = before_after(big, a.before, a.repeat, a.work)
        parts = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--sections", str(big.path)],
                               cwd=REPO, check=True, capture_output=True, text=True).stdout
        part_rows = [line.split("\t") for line in parts.strip().splitlines()]
        part_load = loadavg()
        by = {label: float(sec) for label, sec in part_rows}
        issue9 = sum(v for k, v in by.items() if k.startswith("issue 9"))
        whole = by["read and analyze (parse.load + analyze_data)"] + by["whole report.md text (capture_markdown)"]
        compare_lines = [
            "## Before and after (issue 9's check)", "",
            f"`profkit report kernels`, `report nvtx` and report.md on the {big.kernels:,}-kernel export: profkit at "
            f"commit {a.before} (a `git archive` of it, run with the same interpreter and packages; it has no cache) "
            "against this checkout (`--no-cache`), interleaved, best of "
            f"{a.repeat}, one run; `/proc/loadavg` {ba_load[0]} before, {ba_load[1]} after.", "",
            markdown_table(["command", "before s", "after s", "after / before", "before peak MB", "after peak MB"],
                           ba_rows, align="lrrrrr"), "",
            f"What this isolates and what it does not: {a.before} is the restructure (issue 7), before issue 9's "
            "report work and before issue 8's speed work; \"after\" holds both, so issue 8's speedups (lean reads, "
            "the numpy launch join, the vectorized timeline) hide whatever issue 9 costs here. report.md also "
            "gained sections in issue 9, so its two columns do not do the same work. The cost of those sections "
            "alone, timed in-process on the same export (one fresh process, "
            f"`/proc/loadavg` {part_load} after):", "",
            markdown_table(["part of report.md", "seconds"], [[k, v] for k, v in part_rows], align="lr"), "",
            f"Issue 9's sections together: {issue9:.2f} s of {whole:.2f} s (reading, analysis and the whole text), "
            f"{100 * issue9 / whole:.0f} %.", ""]

    # Goals.
    share = sums[-1] / nvtx_sum_times[-1]
    share_ok = share <= MAX_SHARE
    warm_share = warm_sums[-1] / nvtx_sum_times[-1]
    warm_ok = warm_share <= MAX_WARM_SHARE
    peak_ok = max(peaks) < MAX_PEAK_MB
    per_1k = [1000 * s / e.kernels for s, e in zip(sums, exports, strict=True)]
    # Linearity: the cost above start-up (both reports on the one-copy fixture), per 1 k kernels.
    above = [1000 * (s - start.best) / (e.kernels - start.kernels) for s, e in zip(sums, exports, strict=True)]
    judged_sizes = [i for i, s in enumerate(sums) if s - start.best >= JITTER_TIMES * start.jitter]
    flat = [above[i] for i in judged_sizes]
    linear_ok = len(flat) >= 2 and max(flat) <= MAX_SLOPE_GROWTH * min(flat)
    ok_word = {True: "**met**", False: "**not met**"}
    goals = [
        f"- Both profkit reports together ≤ {MAX_SHARE:.0%} of `nsys stats -r nvtx_kern_sum`'s time on the "
        f"{big.kernels:,}-kernel export: {ok_word[share_ok]} — {sums[-1]:.2f} s against {nvtx_sum_times[-1]:.2f} s, "
        f"{100 * share:.1f} % (per size: " + ", ".join(f"{e.kernels:,}: {100 * s / t:.1f} %"
                                             for e, s, t in zip(exports, sums, nvtx_sum_times, strict=True)) + ").",
        f"- Both reports served from profkit's cache ≤ {MAX_WARM_SHARE:.0%} of nvtx_kern_sum's time: "
        f"{ok_word[warm_ok]} — {warm_sums[-1]:.3f} s, {100 * warm_share:.2f} %.",
        f"- Peak memory of every profkit run < {MAX_PEAK_MB} MB: {ok_word[peak_ok]} — largest {max(peaks):,.0f} MB "
        f"(per size: " + ", ".join(f"{e.kernels:,}: {m:,.0f} MB" for e, m in zip(exports, peaks, strict=True)) + ").",
        f"- Time linear in kernel count (s per 1 k kernels above start-up, flat within {MAX_SLOPE_GROWTH}x): "
        f"{ok_word[linear_ok] if len(flat) >= 2 else 'not judged (fewer than two sizes above the jitter)'} — "
        f"start-up (both reports cold on the {start.kernels:,}-kernel fixture, best of {len(start.seconds)}) "
        f"{start.best:.2f} s, jitter (their median minus the best) {start.jitter:.2f} s; above start-up, per 1 k "
        "kernels: " + ", ".join(
            f"{e.kernels:,}: {t:.4f} s" + ("" if i in judged_sizes else
                                            f" (not judged: less than {JITTER_TIMES}x the jitter above start-up)")
            for i, (e, t) in enumerate(zip(exports, above, strict=True)))
        + (f"; the largest of the judged {max(flat) / min(flat):.2f}x the smallest" if len(flat) >= 2 else "")
        + "; all-in (start-up included) per 1 k kernels: " + ", ".join(
            f"{e.kernels:,}: {t:.4f} s" for e, t in zip(exports, per_1k, strict=True)) + ".",
    ]
    judged = (("time", share_ok), ("cached time", warm_ok), ("memory", peak_ok),
              *((("linearity", linear_ok),) if len(flat) >= 2 else ()))
    met = [g for g, ok in judged if ok]
    missed = [g for g, ok in judged if not ok] + ([] if len(flat) >= 2 else ["linearity not judged"])

    size_rows = [[f"{e.copies:,}", f"{e.kernels:,}", f"{e.runtime:,}", f"{e.nvtx_ranges:,}", f"{e.memcpy:,}",
                  f"{e.memset:,}", f"{e.mb:,.0f}", "cached" if e.build_s is None else f"{e.build_s:.1f}"]
                 for e in exports]
    check_lines = [f"- {e.kernels:,} kernels: {'match' if ok else '**DIFFER**'} ({detail})" for e, ok, detail in checks]
    total_s = time.perf_counter() - started
    text = "\n".join([
        "# Parser benchmark: profkit reports against nsys stats", "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}; Python {platform.python_version()}, pandas "
        f"{version('pandas')}, numpy {version('numpy')}, nsys {nsys.version_str}. One run of this script "
        f"({total_s:.0f} s in all, builds included).", "",
        "## Summary", "",
        f"**Load.** `/proc/loadavg` read {load_start} when this run started and {loadavg()} when it ended (the "
        "machine is shared; ratios are from this one run).", "",
        f"Goals met: {', '.join(met) or 'none'}; not met: {', '.join(missed) or 'none'}.", "",
        *goals, "",
        f"Kernel totals against `nsys stats -r cuda_gpu_kern_sum` (Total Time (ns) and Instances per kernel name, "
        f"to the nanosecond), {big.kernels:,}-kernel export: "
        f"{'**match**' if checks[-1][1] else '**differ**'}. All sizes:", "",
        *check_lines, "",
        REFERENCE, "",
        "## Exports", "",
        f"Built from `{a.fixture}` by laying copies end to end in SQL (whole file copied, then INSERT ... SELECT per "
        "event table, doubling, then the remainder): copy i has every `start`/`end` shifted by i × (capture span + "
        f"{GAP_NS / 1e6:g} ms) and every `correlationId` by i × (max correlationId + 1); NVTX text and textId kept; "
        "NVTX events outside the capture (the domain creation before it) not copied. Tables copied: "
        + ", ".join(f"`{t}`" for t in TABLES) + " (those present).", "",
        markdown_table(["copies", "kernels", "runtime calls", "NVTX ranges", "memcpy", "memset", "file MB",
                        "build s"], size_rows, align="rrrrrrrr"), "",
        "## Timings", "",
        f"Wall clock (time.perf_counter around the subprocess), best of {a.repeat} runs, each a fresh process, its "
        "file read whole just before it (warm_file(): in the OS page cache for every tool alike); the tools "
        "interleaved within each repeat. Peak MB: "
        "max RSS from `/usr/bin/time -f %M` (for nsys, its largest process). profkit runs on the built file; nsys "
        "stats runs on a separate copy of it, made fresh for this run, because nsys stats may write into an export "
        "(its first run on a file can be slower than the rest). profkit runs with Python's bytecode cache (in --work, "
        "filled by an untimed run), as an installed profkit has it.", "",
        *sections,
        *compare_lines,
        "## Commands", "",
        "The report was produced by:", "", "```", command, "```", "",
        "The commands timed, as run on the largest export (the same for every size, on its own files):", "", "```",
        *[shlex.join(c) for c in commands.values()], "```", "",
    ])
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
