"""Nsight Systems: finding it, its version and what it can trace, and its command lines.

No torch here. `profkit profile` (the launcher), `profkit doctor` and the report side (which
exports a `.nsys-rep` to SQLite) all take nsys from here. The command builders are pure
(tested table-driven on CPU), after nsys-jax's launcher: profkit's defaults are added only
for flags the user did not pass after `--`, one flag at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from profkit import layout
from profkit.config import RunConfig
from profkit.errors import ProfkitError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PREFIX = REPO_ROOT / ".tools" / "nsys"
INSTALL_HINT = "install it with scripts/install_nsys.sh, or pass --nsys PATH / set PROFKIT_NSYS"


class NsysNotFound(ProfkitError):
    """No usable nsys."""


class NsysError(ProfkitError):
    """An nsys command failed, or was asked for something profkit owns."""


@dataclass(frozen=True, slots=True)
class Nsys:
    path: Path
    version: tuple[int, ...]
    """(2023, 4, 4, 54): from `nsys --version`."""
    source: str
    """Where it was found: --nsys, $PROFKIT_NSYS, PATH or .tools/nsys."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment it needs (LD_LIBRARY_PATH with the kit's own syslib/)."""

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))

    def run_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.env, **(extra or {})}


def parse_version(text: str) -> tuple[int, ...]:
    """`NVIDIA Nsight Systems version 2023.4.4.54-234433681190v0` -> (2023, 4, 4, 54)."""
    m = re.search(r"(\d{4})\.(\d+)\.(\d+)(?:\.(\d+))?", text)
    if m is None:
        raise ValueError(f"no version in {text!r}")
    return tuple(int(g) for g in m.groups() if g is not None)


def kit_env(path: Path) -> dict[str, str]:
    """LD_LIBRARY_PATH for a kit laid out as NVIDIA does: PREFIX/target-linux-x64/nsys with
    PREFIX/syslib/ holding libraries the machine may lack (libssh, libpfm; libdw, libelf)."""
    syslib = path.resolve().parent.parent / "syslib"
    if not syslib.is_dir():
        return {}
    current = os.environ.get("LD_LIBRARY_PATH")
    return {"LD_LIBRARY_PATH": str(syslib) + (f":{current}" if current else "")}


def candidates(explicit: str | None) -> list[tuple[str, str]]:
    """(source, path) in profkit's search order: --nsys, $PROFKIT_NSYS, PATH, .tools/nsys."""
    found = []
    if explicit:
        found.append(("--nsys", explicit))
    if os.environ.get("PROFKIT_NSYS"):
        found.append(("$PROFKIT_NSYS", os.environ["PROFKIT_NSYS"]))
    on_path = shutil.which("nsys")
    if on_path:
        found.append(("PATH", on_path))
    found.append((".tools/nsys", str(DEFAULT_PREFIX / "target-linux-x64" / "nsys")))
    return found


def find_nsys(explicit: str | None = None) -> Nsys:
    """The first nsys in the search order; an explicit choice that fails is an error, not skipped."""
    for source, path in candidates(explicit):
        p = Path(path)
        if not (p.is_file() and os.access(p, os.X_OK)):
            if source in ("--nsys", "$PROFKIT_NSYS"):
                raise NsysNotFound(f"nsys from {source} ({path}) is not an executable file; {INSTALL_HINT}")
            continue
        env = kit_env(p)
        try:
            out = subprocess.run([str(p), "--version"], capture_output=True, text=True, timeout=60,
                                 env={**os.environ, **env})
            version = parse_version(out.stdout + out.stderr)
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            raise NsysNotFound(f"nsys at {p} (from {source}) does not run: {e}; {INSTALL_HINT}") from None
        return Nsys(p, version, source, env)
    raise NsysNotFound(f"nsys not found; {INSTALL_HINT}")


# What was measured here (../shared/nsys/README.md, reports/nsys.md): 2023.4.4 does not know
# CUDA 13's runtime calls. Its analysis of a whole-program capture fails ("Unknown runtime API
# function index"); a capture that starts after warm-up worked for a hand-written encoder
# layer, but for profkit's `small` step (torch 2.11) its analysis failed there too and kept
# 3,394 of ~8,700 kernels; torch.compile'd runs lose most kernels.
FIRST_VERSION_FOR_CUDA = {13: (2025, 1), 12: (2023, 1)}


def cuda_limits(version: tuple[int, ...], cuda: str | None) -> list[str]:
    """What this nsys cannot do with programs built for CUDA `cuda` ('13.0'); empty if nothing.

    >>> cuda_limits((2023, 4, 4, 54), "13.0")[1]
    "whole-program captures and torch.compile'd runs need nsys 2025.1 or newer"
    >>> cuda_limits((2025, 3, 1, 0), "13.0")
    []
    """
    if not cuda:
        return []
    major = int(cuda.split(".")[0])
    needed = FIRST_VERSION_FOR_CUDA.get(major, max(FIRST_VERSION_FOR_CUDA.values()) if major > 13 else (0,))
    if version >= needed:
        return []
    v = ".".join(map(str, version))
    return [f"nsys {v} predates CUDA {major}: capture only after warm-up "
            "(--capture-range=cudaProfilerApi, the default), and even then its analysis can fail",
            f"whole-program captures and torch.compile'd runs need nsys {'.'.join(map(str, needed))} or newer"]


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
# On CUDA, when this nsys has the flag: trace CUDA graphs node by node. nsys's own default
# (`graph`) records a replay as one GRAPH_TRACE row and none of its kernels, so a
# torch.compile(mode="reduce-overhead") step shows its graphs as whole blocks (profkit counts them,
# README "CUDA graphs"); `node` records every kernel, each with its cudaGraphLaunch's correlation id.
GRAPH_DEFAULTS = {"--cuda-graph-trace": "node"}
CPU_DEFAULTS = {"--trace": "nvtx,osrt", "--sample": "none", "--cpuctxsw": "none"}
NSYS_ENV = {"NSYS_NVTX_PROFILER_REGISTER_ONLY": "0"}  # record ranges with unregistered strings too
SHORT_FLAGS = {"-t": "--trace", "-s": "--sample", "-c": "--capture-range", "-o": "--output",
               "-f": "--force-overwrite", "-b": "--backtrace", "-w": "--show-output", "-e": "--env-var"}


def _flag(arg: str) -> str:
    name = arg.split("=", 1)[0]
    return SHORT_FLAGS.get(name, name)


def profile_flags(nsys: Nsys) -> set[str]:
    """The flags this nsys's `nsys profile --help` lists (`--pytorch`, `--cuda-graph-trace`, `-t`, ...);
    empty when the help cannot be read."""
    try:
        out = subprocess.run([str(nsys.path), "profile", "--help"], capture_output=True, text=True, timeout=60,
                             env=nsys.run_env())
    except (OSError, subprocess.SubprocessError):
        return set()
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][a-zA-Z0-9-]*)", out.stdout + out.stderr))


def check_options(nsys: Nsys, user_args: list[str], known: set[str] | None = None) -> None:
    """Refuse, before capturing, nsys options this nsys does not have (`known`: its
    profile_flags(), read when not given).

    Raises:
        NsysError: a flag in `user_args` is not in `nsys profile --help` (when the help could be read).
    """
    known = profile_flags(nsys) if known is None else known
    unknown = sorted(user_flags(user_args) - known) if known else []
    if unknown:
        raise NsysError(f"nsys {nsys.version_str} has no {', '.join(unknown)} option (see `{nsys.path} profile "
                        "--help`); drop it, or use a newer nsys (profkit doctor says how)")


def user_flags(args: list[str]) -> set[str]:
    """The nsys flags in `args`, in their long form.

    >>> sorted(user_flags(["-t", "cuda", "--sample=none"]))
    ['--sample', '--trace']
    """
    return {_flag(a) for a in args if a.startswith("-")}


def override_nsys_default(args: list[str], flag: str, value: str) -> list[str]:
    """Add `flag=value` unless the user set `flag` (long or short, `=value` or separate).

    >>> override_nsys_default(["-t", "cuda"], "--trace", "cuda,nvtx")
    ['-t', 'cuda']
    >>> override_nsys_default([], "--sample", "none")
    ['--sample=none']
    """
    if flag in user_flags(args):
        return args
    return [*args, f"{flag}={value}"]


def profile_options(user_args: list[str], *, device: str, flags: Collection[str] = ()) -> list[str]:
    """The options of `nsys profile`: the user's, then profkit's defaults for the flags they left;
    on CUDA also GRAPH_DEFAULTS for those of them this nsys has (`flags`: its profile_flags()).

    >>> profile_options([], device="cuda", flags={"--cuda-graph-trace"})[-1]
    '--cuda-graph-trace=node'
    >>> profile_options(["--cuda-graph-trace=graph"], device="cuda", flags={"--cuda-graph-trace"})[0]
    '--cuda-graph-trace=graph'

    Raises:
        NsysError: the user set --output, which profkit owns.
    """
    if "--output" in user_flags(user_args):
        raise NsysError("--output is profkit's to set (profiles/NAME/profile.nsys-rep); use --name/--out-dir")
    args = list(user_args)
    defaults = dict(GPU_DEFAULTS) if device == "cuda" else dict(CPU_DEFAULTS)
    if device == "cuda":
        defaults |= {f: v for f, v in GRAPH_DEFAULTS.items() if f in flags}
    for flag, value in defaults.items():
        args = override_nsys_default(args, flag, value)
    return args


def build_profile_command(nsys: Path, cfg: RunConfig, *, device: str, user_args: list[str], out: Path,
                          python: str = sys.executable, flags: Collection[str] = ()) -> list[str]:
    """The full `nsys profile ... python -m profkit run ...` command line.

    Args:
        nsys: the nsys CLI.
        cfg: the workload; its `out` is ignored (run.json goes to `out`).
        device: `cuda` or `cpu` (decides the defaults).
        user_args: nsys options given after `--`; each wins over profkit's default for its flag.
        out: the capture folder (profile.nsys-rep, run.json go there).
        flags: the flags this nsys lists (profile_flags()): defaults it may lack are added only then.

    Raises:
        NsysError: the user set --output, which profkit owns.
    """
    args = profile_options(user_args, device=device, flags=flags)
    run_args = cfg.to_args() + ([] if cfg.device else ["--device", device])
    run_cmd = [python, "-m", "profkit", "run", *run_args, "--out", str(out), "--force"]
    return [str(nsys), "profile", *args, f"--output={out / layout.NSYS_STEM}", "--force-overwrite=true", *run_cmd]


def build_export_command(nsys: Path, report: Path, sqlite: Path) -> list[str]:
    return [str(nsys), "export", "--type=sqlite", f"--output={sqlite}", "--force-overwrite=true", str(report)]


def export(nsys: Nsys, report: Path, sqlite: Path, *, log: Path | None = None) -> Path:
    """`nsys export --type sqlite` of `report` into `sqlite`; output appended to `log` if given.

    Raises:
        NsysError: the export failed or wrote nothing.
    """
    cmd = build_export_command(nsys.path, report, sqlite)
    if log is None:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=nsys.run_env())
        code, output = proc.returncode, proc.stderr or proc.stdout
    else:
        with log.open("a") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=nsys.run_env()).returncode
        output = log.read_text(errors="replace")
    if code != 0 or not sqlite.exists():
        lines = output.strip().splitlines()[-15:]
        raise NsysError(f"nsys export of {report} failed (exit code {code}):\n" + "\n".join(lines))
    return sqlite
