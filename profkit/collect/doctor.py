"""`profkit doctor`: what this machine has for profiling, and the command to fix what it lacks.

torch is optional here (doctor says how to install it), so it is imported inside `diagnose`.
"""

from __future__ import annotations

import glob
import platform
import shutil
import subprocess
from importlib import metadata

import profkit
from profkit import peaks
from profkit.nsys import NsysNotFound, cuda_limits, find_nsys, profile_flags

# nsys options people reach for with PyTorch, and what each needs (README's examples use them).
NOTABLE_OPTIONS = {"--pytorch": "per-op ranges (--pytorch=autograd-nvtx)",
                   "--cuda-graph-trace": "kernels inside CUDA graphs (--cuda-graph-trace=node)",
                   "--python-sampling": "Python stacks", "--cuda-memory-usage": "GPU memory over time"}

NVTX_PIN = "0.2.10"  # see profkit/collect/nvtx.py: 0.2.17's ranges never reached an nsys 2023.4.4 export
Row = tuple[str, str, str]


def gpu_driver() -> str | None:
    """The NVIDIA driver version, from nvidia-smi (torch does not expose it)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def _package(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def diagnose(nsys_path: str | None = None) -> list[Row]:
    """(check, what was found, how to fix it or '' when fine), one screen's worth."""
    rows: list[Row] = [("profkit", profkit.__version__, ""), ("python", platform.python_version(), "")]
    cuda = None
    try:
        import torch
    except ImportError:
        rows.append(("torch", "missing", "bash scripts/setup.sh  (or pip install torch)"))
    else:
        cuda = torch.version.cuda
        rows.append(("torch", torch.__version__, ""))
        rows.append(("CUDA (torch build)", cuda or "none (CPU build)", ""))
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            driver = gpu_driver()
            rows.append(("GPU", f"{props.name} ({props.total_memory / 2**30:.0f} GiB), driver {driver}", ""))
            rows.append(peaks_row(props.name, driver))
        else:
            rows.append(("GPU", "none visible to torch: profkit runs on CPU", ""))
    try:
        nsys = find_nsys(nsys_path)
    except NsysNotFound as e:
        rows.append(("nsys", str(e).split(";")[0], "bash scripts/install_nsys.sh"))
    else:
        rows.append(("nsys", f"{nsys.version_str} at {nsys.path} (from {nsys.source})", ""))
        limits = cuda_limits(nsys.version, cuda)
        ncu = sorted(glob.glob("/opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys"))
        fix = (f"bash scripts/install_nsys.sh --from-nsight-compute {ncu[-1].split('/host/')[0]}" if ncu
               else "install Nsight Systems 2025.1 or newer (CUDA toolkit)")
        rows.append((f"nsys vs CUDA {cuda}" if cuda else "nsys vs CUDA", "; ".join(limits) or "no known limits",
                     fix if limits else ""))
        flags = profile_flags(nsys)
        if flags:
            have = [f"{flag}: {what}" for flag, what in NOTABLE_OPTIONS.items() if flag in flags]
            lacks = [flag for flag in NOTABLE_OPTIONS if flag not in flags]
            rows.append(("nsys options", "; ".join(have) + (f"; lacks {', '.join(lacks)}" if lacks else ""), ""))
    nvtx = _package("nvtx")
    rows.append(("nvtx package", nvtx or "missing",
                 "" if nvtx == NVTX_PIN else f"pip install nvtx=={NVTX_PIN}  (ranges of other versions may not be "
                                             "recorded)"))
    for name in ("pandas", "sqlite-utils"):
        version = _package(name)
        rows.append((name, version or "missing", "" if version else "bash scripts/setup.sh"))
    return rows


def peaks_row(gpu: str, driver: str | None) -> Row:
    """Whether this GPU's ceilings were measured (`profkit doctor --measure-peaks`), and when."""
    m = peaks.lookup(gpu, driver)
    if m is None:  # not a fault: datasheet peaks serve until then
        return ("measured peaks", "none for this GPU: `profkit doctor --measure-peaks` measures them (~10 s)", "")
    other = "" if m.driver == driver else f" with driver {m.driver} (this one is {driver}; measure again)"
    return ("measured peaks", f"{summary(m)}; measured {m.measured_at}{other}", "")

def summary(m: peaks.Measured) -> str:
    """bf16 772 TFLOP/s, ... in one line.

    >>> summary(peaks.Measured("G", None, "t", {"fp32": 5e13, "tf32": 4e14, "bf16": 7.7e14, "fp16": 7.4e14}, 4.2e12))
    'bf16 770, fp16 740, tf32 400, fp32 50 TFLOP/s; copy 4.20 TB/s'
    """
    rates = ", ".join(f"{k} {m.flops[k] / 1e12:.0f}" for k in ("bf16", "fp16", "tf32", "fp32"))
    return f"{rates} TFLOP/s; copy {m.bandwidth / 1e12:.2f} TB/s"
