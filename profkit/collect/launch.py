"""`profkit profile`: nsys profile around `python -m profkit run`, then nsys export to SQLite.

A thin runner over profkit.nsys's pure command builders. It owns the capture folder's life:
work in `out_dir/.NAME.partial/`, rename to `out_dir/NAME/` only when everything succeeded,
keep a failed attempt as `out_dir/NAME.failed/` for its log. What makes an export good enough
(kernels, profkit's ranges, complete) is the caller's `check`: this module runs programs and
moves folders, and reads no export itself.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path

from profkit import layout
from profkit.config import RunConfig
from profkit.errors import ProfkitError
from profkit.nsys import (
    NSYS_ENV,
    Nsys,
    NsysError,
    build_profile_command,
    cuda_limits,
    export,
    profile_flags,
    user_flags,
)

ANALYSIS_FAILED = "Analysis failed"
UNKNOWN_CALL = "Unknown runtime API function index"


class CaptureError(ProfkitError):
    """The capture or its export failed; the message says why and what to do."""


def tail(path: Path, n: int = 15) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-n:])


def capture_name(cfg: RunConfig, name: str | None) -> str:
    """The capture's folder name: `--name` (one path component), else `<label>-<time>`."""
    return layout.check_name(name) if name else f"{cfg.label}-{datetime.now():%Y%m%d-%H%M%S}"


def refuse_early(nsys: Nsys, cfg: RunConfig, *, device: str, cuda: str | None, user_args: list[str]) -> None:
    """What this nsys cannot capture, refused before anything runs.

    Raises:
        CaptureError: nsys older than 2025.1 on CUDA 13 with a compiled run or a whole-program capture.
    """
    if device != "cuda" or not cuda_limits(nsys.version, cuda):
        return
    newer = "use nsys 2025.1 or newer (scripts/install_nsys.sh --from-nsight-compute DIR; see profkit doctor)"
    if cfg.compile:
        raise CaptureError(f"nsys {nsys.version_str} loses most kernels of a torch.compile'd CUDA {cuda} run; "
                           + newer)
    ranges = [a for a in user_args if user_flags([a]) == {"--capture-range"}]
    if ranges and "cudaProfilerApi" not in " ".join(user_args):
        raise CaptureError(f"nsys {nsys.version_str} cannot analyse a whole-program capture of a CUDA {cuda} "
                           "program; keep --capture-range=cudaProfilerApi or " + newer)


def profile(nsys: Nsys, cfg: RunConfig, *, device: str, name: str, out_dir: Path, user_args: list[str],
            check: Callable[[Path], None], force: bool = False,
            status: Callable[[str], None] = lambda s: None, flags: Collection[str] | None = None) -> Path:
    """Capture, export and check one workload; returns the capture folder.

    Args:
        name: the folder name (capture_name() checked it).
        flags: the flags this nsys lists (nsys.profile_flags(), read when None): which of profkit's
            defaults it can take (--cuda-graph-trace=node).
        check: called with the partial folder once the export exists; raises ProfkitError to refuse it.

    Raises:
        CaptureError: the capture, its export or the check failed (the attempt is kept in NAME.failed/).
    """
    final = out_dir / name
    partial, failed = out_dir / layout.PARTIAL.format(name=name), out_dir / layout.FAILED.format(name=name)
    check_destination(final, out_dir, force)
    try:
        cmd = build_profile_command(nsys.path, cfg, device=device, user_args=user_args, out=partial,
                                    flags=profile_flags(nsys) if flags is None else flags)
    except NsysError as e:
        raise CaptureError(str(e)) from None
    log, failure = attempt_folder(partial, failed)

    status(f"capturing with nsys {nsys.version_str}")
    with log.open("w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=nsys.run_env(NSYS_ENV))
    # A failed analysis still writes a report and an export, with part of the events: seen
    # with nsys 2023.4.4 on CUDA 13 (torch 2.11), which kept 3,394 of ~8,700 kernels of 5
    # steps even with the capture range. Such a capture is refused, and kept in NAME.failed/.
    text = log.read_text(errors="replace")
    analysis_failed = ANALYSIS_FAILED in text
    why = " (it met CUDA calls it does not know)" if UNKNOWN_CALL in text else ""
    too_new = (f"nsys {nsys.version_str}'s analysis of the trace failed{why}, so its export would hold only part "
               "of the run; use a newer nsys (profkit doctor says how), or capture only the measured steps "
               "(the default --capture-range=cudaProfilerApi) if you changed that")
    if proc.returncode != 0 or not (partial / layout.RUN_FILE).exists():
        raise failure(_program_failed(proc.returncode, text))
    if not (partial / layout.NSYS_REPORT).exists():
        raise failure(too_new if analysis_failed else f"nsys wrote no report:\n{tail(log)}")

    status("exporting SQLite")
    try:
        export(nsys, partial / layout.NSYS_REPORT, partial / layout.EXPORT, log=log)
    except NsysError as e:
        raise failure(str(e)) from None
    if analysis_failed:
        raise failure(too_new)
    try:
        check(partial)
    except ProfkitError as e:
        raise failure(str(e)) from None
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    _point_record_at(final)
    return final


def _program_failed(code: int, log_text: str) -> str:
    """The profiled program's own `Error: ...` line when it printed one, else the log's tail."""
    errors = [line for line in log_text.splitlines() if line.startswith("Error: ")]
    if errors:
        return errors[-1].removeprefix("Error: ")
    lines = log_text.splitlines()[-15:]
    return f"the profiled program failed (exit code {code}):\n" + "\n".join(lines)


def _point_record_at(folder: Path) -> None:
    """run.json was written into the partial folder: make its config name the final one."""
    record = layout.RunRecord.read(folder)
    record = dataclasses.replace(record, config=dataclasses.replace(record.config, out=folder, force=False))
    record.write(folder)


def check_destination(final: Path, out_dir: Path, force: bool) -> None:
    """Refuse a capture whose folder exists (without --force) or whose --out-dir is a file."""
    if final.exists() and not force:
        raise CaptureError(f"{final} exists; choose another --name or pass --force to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise CaptureError(f"--out-dir {out_dir} is a file, not a folder")


def attempt_folder(partial: Path, failed: Path) -> tuple[Path, Callable[[str], CaptureError]]:
    """A fresh NAME.partial/ for one capture attempt: its log's path, and what turns a message into
    the CaptureError of a failed attempt (the folder kept as NAME.failed/, the message naming it)."""
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    def failure(message: str) -> CaptureError:
        shutil.rmtree(failed, ignore_errors=True)
        partial.rename(failed)
        return CaptureError(message.replace(str(partial), str(failed)) + f" (log: {failed / layout.LOG})")

    return partial / layout.LOG, failure
