"""Finding Nsight Systems, reading its version, and what that version can trace.

No torch here: `profkit doctor` and `profkit profile` use it before any model runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from profkit.errors import ProfkitError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PREFIX = REPO_ROOT / ".tools" / "nsys"
INSTALL_HINT = "install it with scripts/install_nsys.sh, or pass --nsys PATH / set PROFKIT_NSYS"


class NsysNotFound(ProfkitError):
    """No usable nsys."""


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
