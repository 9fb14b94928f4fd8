"""Where things go: every file and folder name of a run and a capture, and the run record.

A run folder (`profkit run --out DIR`) holds `run.json`. A capture folder
(`profkit profile`, `profiles/NAME/`) holds:

    profile.nsys-rep   the nsys report (opens in the Nsight Systems GUI)
    profile.sqlite     its SQLite export (what every `profkit report` reads)
    run.json           the run's RunRecord
    nsys.log           what nsys and the profiled program printed
    report.md          written by `profkit report profiles/NAME`
    report.html        written by `profkit report profiles/NAME --html`

A multi-rank capture (`--nproc-per-node N`) holds one set per rank instead, beside run.json
(rank 0's record) and nsys.log (torchrun's and nsys's output):

    rank{R}.nsys-rep, rank{R}.sqlite   rank R's report and export (the default layout); or
    profile.nsys-rep, profile.sqlite   one export, every rank a process of it (--single-file)
    rank{R}.run.json                   rank R's RunRecord (its rank, world size and backend in `resolved`)
    rank{R}.log                        what rank R printed (and its stacks, when the job was ended)

A multi-rank run folder (`profkit run --nproc-per-node N`) has run.json, rank{R}.run.json,
rank{R}.log and torchrun.log. Every reader and writer of these names imports them from here,
and run.json is read and written only through `RunRecord`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profkit.config import RunConfig, typed_fields
from profkit.errors import ProfkitError

RUN_FILE = "run.json"
NSYS_REPORT = "profile.nsys-rep"
NSYS_STEM = "profile"  # nsys profile --output=<folder>/profile writes profile.nsys-rep
EXPORT = "profile.sqlite"
LOG = "nsys.log"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
# Templates for what later stages write beside these (one name each, used by reader and writer).
RANK_REPORT = "rank{rank}.nsys-rep"
RANK_EXPORT = "rank{rank}.sqlite"
RANK_RUN = "rank{rank}.run.json"
RANK_LOG = "rank{rank}.log"
RANK_NSYS_STEM = "rank%q{RANK}"  # nsys expands %q{RANK} from each rank's environment (torchrun sets RANK)
LAUNCH_LOG = "torchrun.log"
MEMORY_SNAPSHOT = "memory.pickle"  # torch.cuda.memory._snapshot(), pickle protocol 4 (PyTorch's viewer)
MEMORY_SIDECAR = "memory.json"  # what profkit knows beside it: window start, ranges, tensors (no pickle)
FLOPS_FILE = "flops.json"
DEFAULT_DB = Path("results/profkit.db")
"""`profkit sweep --db`'s default (here, not in results.py or sweeps.py, so the CLI reads it
without sqlite-utils, and a cold report without the sweep grids)."""

PARTIAL = ".{name}.partial"  # a capture in progress
FAILED = "{name}.failed"  # a capture that failed, kept for its log
FILE_MODE = 0o644  # nsys runs the profiled program with umask 0: set the mode explicitly
RUN_RECORD_VERSION = 2  # 1: run.json before it had a version field


class LayoutError(ProfkitError):
    """A name or folder that profkit cannot use as asked."""


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=,@-]*$")


def check_name(name: str) -> str:
    """A capture or run name is one path component of ordinary characters, nothing else.

    >>> check_name("small-step_bf16")
    'small-step_bf16'
    >>> check_name("../escape")
    Traceback (most recent call last):
    ...
    profkit.layout.LayoutError: --name '../escape' must be one folder name (letters, digits, . _ + = , @ -, \
not starting with . or -), not a path
    """
    if not _NAME.match(name) or name in (".", "..") or name.endswith((".partial", ".failed")):
        raise LayoutError(f"--name {name!r} must be one folder name (letters, digits, . _ + = , @ -, not starting "
                          "with . or -), not a path")
    return name


def write_text(path: Path, text: str, *, replace: bool = True) -> None:
    """Write `path` atomically (a temporary name beside it, then a rename), mode 0644.

    Raises:
        LayoutError: `replace` is False and `path` exists, or the folder is missing or not writable.
    """
    write_bytes(path, text.encode(), replace=replace)


def write_bytes(path: Path, data: bytes, *, replace: bool = True) -> None:
    """write_text() for bytes (a PNG)."""
    write_chunks(path, [data], replace=replace)


def write_pieces(path: Path, pieces: Iterable[str], *, replace: bool = True) -> None:
    """write_text() of the text the pieces join to, each encoded and written as it comes (a long
    report is never held whole)."""
    write_chunks(path, (p.encode() for p in pieces), replace=replace)


def write_chunks(path: Path, chunks: Iterable[bytes], *, replace: bool = True) -> None:
    """write_bytes() of the chunks joined, written one by one; the file appears (renamed into place)
    only once the last is written, and nothing is left behind when one fails."""
    if not replace and path.exists():
        raise LayoutError(f"{path} exists; choose another file, or pass --force to replace it")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        os.chmod(tmp, FILE_MODE)  # O_CREAT's mode is masked by the umask; set it as meant
        os.replace(tmp, path)
    except FileNotFoundError:
        raise LayoutError(f"cannot write {path}: folder {path.parent} does not exist") from None
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise LayoutError(f"cannot write {path}: {e.strerror}") from None
    except BaseException:  # the pieces' maker failed (or Ctrl-C): no half-written file stays
        tmp.unlink(missing_ok=True)
        raise


def _capture_folder(profile: Path) -> Path | None:
    """The capture folder `profile` names: itself, or the folder of its profile.sqlite/.nsys-rep."""
    if profile.is_dir():
        return profile
    return profile.parent if profile.name in (EXPORT, NSYS_REPORT) else None


def report_path(profile: Path) -> Path:
    """Where report.md goes: in the capture folder, else NAME.report.md beside the export.

    Raises:
        LayoutError: `profile` is neither a folder nor an existing .sqlite/.nsys-rep.
    """
    if not profile.exists():
        raise LayoutError(f"{profile} does not exist; give a capture folder (profiles/NAME), a .sqlite or a .nsys-rep")
    folder = _capture_folder(profile)
    if folder is not None:
        return folder / REPORT_MD
    if profile.suffix in (".sqlite", ".nsys-rep"):
        return profile.with_name(f"{profile.stem}.{REPORT_MD}")
    raise LayoutError(f"{profile} is not a capture folder, a .sqlite or a .nsys-rep")


def html_report_path(profile: Path) -> Path:
    """Where report.html goes: beside report.md (`report.html`, or NAME.report.html beside an export).

    Raises:
        LayoutError: as report_path().
    """
    md = report_path(profile)
    return md.with_name(md.name.removesuffix(REPORT_MD) + REPORT_HTML)


def capture_title(profile: Path) -> str:
    """A capture's name for headings: its folder's name, else the export's stem."""
    folder = _capture_folder(profile)
    return folder.resolve().name if folder is not None else profile.stem


@dataclass(kw_only=True, slots=True)
class StepSummary:
    mean_ms: float
    std_ms: float
    """Sample standard deviation (0 for one step)."""
    median_ms: float
    min_ms: float
    max_ms: float
    tokens_per_s: float
    """Tokens per step over the mean step time."""


@dataclass(kw_only=True, slots=True)
class Resolved:
    """What the run's config resolved to on this machine."""

    device: str
    batch_size: int
    context_length: int
    tokens_per_step: int
    params: int
    timer: str
    """`cuda_events` or `host_clock`."""
    nvtx: bool
    """Whether ranges were emitted."""
    nvtx_in_model: bool
    """Whether ranges inside the model were emitted (not under --compile)."""
    rank: int | None = None
    """This process's global rank (None: not distributed)."""
    local_rank: int | None = None
    world_size: int = 1
    backend: str | None = None
    """torch.distributed's backend (nccl, gloo), when distributed."""


@dataclass(kw_only=True, slots=True)
class Environment:
    """The machine (no host name: runs and exports get shared)."""

    profkit: str
    python: str
    platform: str
    torch: str
    cuda: str | None = None
    cpu_threads: int | None = None
    gpu: str | None = None
    gpu_memory_bytes: int | None = None
    driver: str | None = None
    capability: str | None = None
    cudnn: int | None = None


@dataclass(kw_only=True, slots=True)
class MemoryRecord:
    """`--memory-snapshot`: where the allocator history went and what recording it cost."""

    snapshot: str
    """The pickle's file name in the run folder (memory.pickle), beside its sidecar (memory.json)."""
    events: int
    """Allocator trace entries recorded over the measured steps."""
    max_entries: int
    overflowed: bool
    """The history hit max_entries: its oldest events were dropped (the report refuses it)."""
    stacks: str
    """`python`, or `all` (C++ frames too)."""
    pickle_bytes: int
    dump_ms: float
    """Taking the snapshot and pickling it to disk."""
    steps_ms_without: list[float]
    """The same number of steps run again right after, without history: the cost's baseline."""
    overhead_pct: float | None
    """Median measured step with history over median without, minus one, in percent."""
    peak_reserved_bytes: int
    """torch.cuda.max_memory_reserved over the measured steps."""
    start_allocated_bytes: int
    oom: bool = False
    """The measured steps ran out of memory; the snapshot holds the history up to the failure."""


@dataclass(kw_only=True, slots=True)
class RunRecord:
    """run.json: one workload's config, machine, and every measured step's time."""

    config: RunConfig
    resolved: Resolved
    environment: Environment
    steps_ms: list[float]
    summary: StepSummary
    micro_batch_ms: list[float] | None = None
    """With --grad-accum N > 1: each measured micro-batch's forward+backward, in order (N per step)."""
    first_step_ms: float | None = None
    """The first warm-up step, synchronised (includes compilation under --compile)."""
    compile_s: float | None = None
    """Dynamo's compile time, when compiled."""
    peak_memory_bytes: int | None = None
    """torch.cuda.max_memory_allocated over the measured steps (reset after warm-up)."""
    resident_memory_bytes: int | None = None
    """torch.cuda.memory_allocated before the measured steps."""
    memory: MemoryRecord | None = None
    """`--memory-snapshot`: the allocator history's file and cost."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys a newer profkit wrote that this one does not know, kept as they were."""
    version: int = RUN_RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"version": self.version, "config": self.config.to_dict()}
        for f in dataclasses.fields(self):
            if f.name in ("version", "config", "extra"):
                continue
            value = getattr(self, f.name)
            d[f.name] = (dataclasses.asdict(value) if isinstance(value, (Resolved, Environment, StepSummary,
                                                                          MemoryRecord)) else value)
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        """Read a record written by any profkit version (version 1 had no `version` key).

        Raises:
            LayoutError: a key is missing or has the wrong shape.
        """
        try:
            known = {f.name for f in dataclasses.fields(cls)}
            env_names = {f.name for f in dataclasses.fields(Environment)}
            own = typed_fields(cls, {k: d.get(k) for k in ("steps_ms", "micro_batch_ms", "first_step_ms", "compile_s",
                                                             "peak_memory_bytes", "resident_memory_bytes")})
            return cls(
                version=int(d.get("version", 1)),
                config=RunConfig.from_dict(d["config"]),
                resolved=Resolved(**typed_fields(Resolved, d["resolved"])),
                environment=Environment(**typed_fields(Environment, {k: v for k, v in d["environment"].items()
                                                                     if k in env_names})),
                steps_ms=[float(t) for t in own["steps_ms"]],
                summary=StepSummary(**typed_fields(StepSummary, d["summary"])),
                micro_batch_ms=(None if own["micro_batch_ms"] is None else [float(t) for t in own["micro_batch_ms"]]),
                first_step_ms=own["first_step_ms"],
                compile_s=own["compile_s"],
                peak_memory_bytes=own["peak_memory_bytes"],
                resident_memory_bytes=own["resident_memory_bytes"],
                memory=(MemoryRecord(**typed_fields(MemoryRecord, d["memory"], signed=("overhead_pct",)))
                        if d.get("memory") is not None else None),
                extra={k: v for k, v in d.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise LayoutError(f"not a profkit run record ({type(e).__name__}: {e})") from None

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        """The run.json in `folder`.

        Raises:
            LayoutError: missing, not JSON, or not a run record.
        """
        return cls.read_file(folder / RUN_FILE)

    @classmethod
    def read_file(cls, path: Path) -> RunRecord:
        """A run record file (run.json, rank{R}.run.json).

        Raises:
            LayoutError: missing, not JSON, or not a run record.
        """
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LayoutError(f"{path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LayoutError(f"{path} is not readable JSON ({e})") from None
        if not isinstance(data, dict):
            raise LayoutError(f"{path} is not a profkit run record")
        try:
            return cls.from_dict(data)
        except LayoutError as e:
            raise LayoutError(f"{path}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write(self, folder: Path, name: str = RUN_FILE) -> Path:
        """Write run.json (or `name`) into `folder` (atomically, mode 0644); returns its path."""
        path = folder / name
        write_text(path, self.to_json())
        return path


def find_run(folder: Path, rank: int | None = None) -> RunRecord | None:
    """The run record of a capture or run folder (rank R's, when given), None when it has none."""
    if rank is not None:
        path = folder / RANK_RUN.format(rank=rank)
        return RunRecord.read_file(path) if path.is_file() else None
    return RunRecord.read(folder) if (folder / RUN_FILE).is_file() else None


_RANK_FILE = re.compile(r"^rank(0|[1-9][0-9]*)\.(nsys-rep|sqlite|run\.json|log)$")


def rank_files(folder: Path, template: str) -> dict[int, Path]:
    """The per-rank files of a folder named by `template` (RANK_EXPORT, RANK_RUN...), by rank.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for n in ("rank0.sqlite", "rank10.sqlite", "rank2.sqlite", "rank01.sqlite", "rank1.run.json"):
    ...     _ = (d / n).write_text("")
    >>> sorted(rank_files(d, RANK_EXPORT))
    [0, 2, 10]
    """
    suffix = template.removeprefix("rank{rank}")
    found = {}
    for path in folder.glob("rank*" + suffix) if folder.is_dir() else []:
        m = _RANK_FILE.match(path.name)
        if m is not None and path.name == f"rank{m.group(1)}{suffix}":
            found[int(m.group(1))] = path
    return dict(sorted(found.items()))
