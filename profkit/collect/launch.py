"""`profkit profile`: nsys profile around `python -m profkit run`, then nsys export to SQLite.

A pure command builder (`build_profile_command`, tested table-driven on CPU) and a thin
runner (`profile`), after nsys-jax's launcher: profkit's defaults are added only for flags
the user did not pass after `--`, one flag at a time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from profkit import parse
from profkit.collect.nsys import Nsys, cuda_limits
from profkit.config import RunConfig
from profkit.errors import ProfkitError

# `nsys profile` defaults for a CUDA run: trace what a transformer step calls, record only the
# measured steps (between cudaProfilerStart/Stop), no CPU sampling or context switches.
GPU_DEFAULTS = {
    "--trace": "cuda,nvtx,osrt,cublas,cudnn",
    "--capture-range": "cudaProfilerApi",
    "--capture-range-end": "stop",
    "--sample": "none",
    "--cpuctxsw": "none",
    "--cuda-memory-usage": "true",
}
# On a CPU-only machine there is no cudaProfilerApi: the whole (short) program is captured,
# warm-up included; the `warmup` and `step_i` ranges tell the parts apart.
CPU_DEFAULTS = {"--trace": "nvtx,osrt", "--sample": "none", "--cpuctxsw": "none"}
NSYS_ENV = {"NSYS_NVTX_PROFILER_REGISTER_ONLY": "0"}  # record ranges with unregistered strings too
SHORT_FLAGS = {"-t": "--trace", "-s": "--sample", "-c": "--capture-range", "-o": "--output",
               "-f": "--force-overwrite", "-b": "--backtrace", "-w": "--show-output", "-e": "--env-var"}
REPORT, EXPORT, LOG, RUN = "profile.nsys-rep", "profile.sqlite", "nsys.log", "run.json"
ANALYSIS_FAILED = "Analysis failed"
UNKNOWN_CALL = "Unknown runtime API function index"


class CaptureError(ProfkitError):
    """The capture or its export failed; the message says why and what to do."""


def _flag(arg: str) -> str:
    name = arg.split("=", 1)[0]
    return SHORT_FLAGS.get(name, name)


def override_nsys_default(args: list[str], flag: str, value: str) -> list[str]:
    """Add `flag=value` unless the user set `flag` (long or short, `=value` or separate).

    >>> override_nsys_default(["-t", "cuda"], "--trace", "cuda,nvtx")
    ['-t', 'cuda']
    >>> override_nsys_default([], "--sample", "none")
    ['--sample=none']
    """
    if any(_flag(a) == flag for a in args if a.startswith("-")):
        return args
    return [*args, f"{flag}={value}"]


def build_profile_command(nsys: Path, cfg: RunConfig, *, device: str, user_args: list[str], out: Path,
                          python: str = sys.executable) -> list[str]:
    """The full `nsys profile ... python -m profkit run ...` command line.

    Args:
        nsys: the nsys CLI.
        cfg: the workload; its `out` is ignored (run.json goes to `out`).
        device: `cuda` or `cpu` (decides the defaults).
        user_args: nsys options given after `--`; each wins over profkit's default for its flag.
        out: the capture folder (profile.nsys-rep, run.json go there).

    Raises:
        CaptureError: the user set --output, which profkit owns.
    """
    if any(_flag(a) == "--output" for a in user_args if a.startswith("-")):
        raise CaptureError("--output is profkit's to set (profiles/NAME/profile.nsys-rep); use --name/--out-dir")
    args = list(user_args)
    for flag, value in (GPU_DEFAULTS if device == "cuda" else CPU_DEFAULTS).items():
        args = override_nsys_default(args, flag, value)
    run_args = cfg.to_args() + ([] if cfg.device else ["--device", device])
    run_cmd = [python, "-m", "profkit", "run", *run_args, "--out", str(out), "--force"]
    return [str(nsys), "profile", *args, f"--output={out / 'profile'}", "--force-overwrite=true", *run_cmd]


def build_export_command(nsys: Path, report: Path, sqlite: Path) -> list[str]:
    return [str(nsys), "export", "--type=sqlite", f"--output={sqlite}", "--force-overwrite=true", str(report)]


@dataclass(frozen=True, slots=True)
class ExportSummary:
    kernels: int | None
    """Rows of CUPTI_ACTIVITY_KIND_KERNEL; None when the table is missing."""
    ranges: dict[str, int]
    """NVTX range names (text or registered string) and how often each occurs."""


def summarize(data: parse.ProfileData) -> ExportSummary:
    """Kernel count and NVTX range names of a parsed export."""
    kernels = len(data.kernels) if data.has_kernel_table else None
    return ExportSummary(kernels, {str(k): int(v) for k, v in data.nvtx["name"].value_counts().items()})


def summarize_export(path: Path) -> ExportSummary:
    """Kernel count and NVTX range names of an export, read with profkit's parser."""
    return summarize(parse.load(path, allow_incomplete=True, launches=False))


def check_export(summary: ExportSummary, cfg: RunConfig, device: str) -> None:
    """Raise CaptureError if the export misses what profkit emitted (kernels, step ranges)."""
    if device == "cuda" and summary.kernels is None:
        raise CaptureError("the export has no kernels table although the run used CUDA: nsys recorded no GPU "
                           "activity; check --trace includes cuda and that capture started (cudaProfilerApi)")
    if device == "cuda" and summary.kernels == 0:
        raise CaptureError("the export has no kernels although the run used CUDA; use a newer nsys "
                           "(see profkit doctor)")
    expected = {f"step_{i}" for i in range(cfg.steps)} | {"forward"}
    missing = sorted(expected - set(summary.ranges))
    if missing:
        raise CaptureError(f"NVTX ranges profkit emitted are missing from the export ({', '.join(missing[:4])}"
                           f"{'...' if len(missing) > 4 else ''}): this nsys did not record the nvtx package's "
                           "ranges; keep nvtx==0.2.10 (profkit's pin) and include nvtx in --trace")


def tail(path: Path, n: int = 15) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-n:])


def profile(nsys: Nsys, cfg: RunConfig, *, device: str, cuda: str | None, name: str | None, out_dir: Path,
            user_args: list[str], force: bool = False,
            status: Callable[[str], None] = lambda s: None) -> Path:
    """Capture, export and check one workload; returns the capture folder.

    Works in `out_dir/.NAME.partial/` and renames it to `out_dir/NAME/` only when everything
    succeeded; a failed attempt is kept as `out_dir/NAME.failed/` for its log, out of the way.
    """
    name = name or f"{cfg.label}-{datetime.now():%Y%m%d-%H%M%S}"
    final, partial, failed = out_dir / name, out_dir / f".{name}.partial", out_dir / f"{name}.failed"
    if final.exists() and not force:
        raise CaptureError(f"{final} exists; choose another --name or pass --force to replace it")
    if device == "cuda" and cuda_limits(nsys.version, cuda):
        newer = "use nsys 2025.1 or newer (scripts/install_nsys.sh --from-nsight-compute DIR; see profkit doctor)"
        if cfg.compile:
            raise CaptureError(f"nsys {nsys.version_str} loses most kernels of a torch.compile'd CUDA {cuda} run; "
                               + newer)
        ranges = [a for a in user_args if _flag(a) == "--capture-range"]
        if ranges and "cudaProfilerApi" not in " ".join(user_args):
            raise CaptureError(f"nsys {nsys.version_str} cannot analyse a whole-program capture of a CUDA {cuda} "
                               "program; keep --capture-range=cudaProfilerApi or " + newer)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    cmd = build_profile_command(nsys.path, cfg, device=device, user_args=user_args, out=partial)
    log = partial / LOG

    def fail(message: str) -> CaptureError:
        shutil.rmtree(failed, ignore_errors=True)
        partial.rename(failed)
        return CaptureError(f"{message} (log: {failed / LOG})")

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
    if proc.returncode != 0 or not (partial / RUN).exists():
        raise fail(f"the profiled program failed (exit code {proc.returncode}):\n{tail(log)}")
    if not (partial / REPORT).exists():
        raise fail(too_new if analysis_failed else f"nsys wrote no report:\n{tail(log)}")

    status("exporting SQLite")
    with log.open("a") as f:
        export = build_export_command(nsys.path, partial / REPORT, partial / EXPORT)
        f.write("$ " + " ".join(export) + "\n")
        f.flush()
        proc = subprocess.run(export, stdout=f, stderr=subprocess.STDOUT, env=nsys.run_env())
    if proc.returncode != 0 or not (partial / EXPORT).exists():
        raise fail(f"nsys export failed (exit code {proc.returncode}):\n{tail(log)}")
    if analysis_failed:
        raise fail(too_new)
    try:
        data = parse.load(partial / EXPORT, allow_incomplete=True, launches=False)  # read once for both checks
        check_export(summarize(data), cfg, device)
        if device == "cuda":  # an analysis that stopped early leaves a truncated export
            parse.check_complete(data)
    except ProfkitError as e:
        raise fail(str(e)) from None
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return final
