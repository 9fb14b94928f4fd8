"""Step time bare against under nsys, for the same configurations, in one run; markdown out.

Bare runs use `profkit run` (NVTX ranges off: no tool attached); profiled runs use
`profkit profile` with each nsys given (ranges on, capture limited to the measured steps),
and read the step times from the run.json inside the capture. Also counts the kernels
each export holds, which shows whether an nsys kept the whole capture.

Example (GPU machine):
    python scripts/nsys_overhead.py --nsys /tmp/nsys25/target-linux-x64/nsys \
        --nsys /tmp/nsys23/target-linux-x64/nsys --report reports/nsys_overhead.md
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from profkit.layout import EXPORT, RunRecord  # noqa: E402
from profkit.nsys import find_nsys  # noqa: E402
from profkit.pipeline import summarize_export  # noqa: E402
from profkit.report.tables import markdown_table  # noqa: E402

CONFIGS = [
    ["--model", "small", "--mode", "step", "--dtype", "fp32"],
    ["--model", "small", "--mode", "step", "--dtype", "bf16", "--attn", "flash"],
    ["--model", "small", "--mode", "step", "--dtype", "bf16", "--attn", "flash", "--compile"],
]


def sh(cmd: list[str], log: list[str]) -> subprocess.CompletedProcess[str]:
    log.append(shlex.join(["profkit", *cmd[3:]]))
    print("$", log[-1], flush=True)
    return subprocess.run(cmd, capture_output=True, text=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nsys", action="append", required=True)
    p.add_argument("--work", type=Path, default=Path("/tmp/profkit-overhead"))
    p.add_argument("--steps", default="20")
    p.add_argument("--warmup", default="5")
    p.add_argument("--report", type=Path, required=True)
    a = p.parse_args()
    kits = [find_nsys(n) for n in a.nsys]
    py = [sys.executable, "-m", "profkit"]
    commands: list[str] = []
    rows = []
    env = {}
    for options in CONFIGS:
        label = " ".join(o.removeprefix("--") for o in options if o not in ("--model", "--mode", "--dtype", "--attn"))
        slug = label.replace(" ", "-")
        common = [*options, "--warmup", a.warmup, "--steps", a.steps]
        bare_out = a.work / "bare" / slug
        proc = sh([*py, "run", *common, "--out", str(bare_out), "--force"], commands)
        bare = RunRecord.read(bare_out).summary.median_ms if proc.returncode == 0 else None
        if proc.returncode == 0:
            env = dataclasses.asdict(RunRecord.read(bare_out).environment)
        row = [label, f"{bare:.1f}" if bare else "failed"]
        for kit in kits:
            name = f"{kit.version_str}-{slug}"
            proc = sh([*py, "profile", *common, "--name", name, "--out-dir", str(a.work / "captures"), "--force",
                       "--nsys", str(kit.path)], commands)
            if proc.returncode != 0:
                reason = (proc.stderr.strip().splitlines() or ["?"])[0].removeprefix("Error: ")
                row.append(f"refused: {reason}")
                continue
            folder = a.work / "captures" / name
            median = RunRecord.read(folder).summary.median_ms
            kernels = summarize_export(folder / EXPORT).kernels
            ratio = f" (x{median / bare:.2f})" if bare else ""
            row.append(f"{median:.1f}{ratio}, {kernels:,} kernels")
        rows.append(row)
    header = ["workload", "bare median ms/step", *[f"under nsys {k.version_str}: median ms/step, kernels kept"
                                                  for k in kits]]
    text = "\n".join([
        "# Step time bare and under Nsight Systems", "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {env.get('gpu')} (driver {env.get('driver')}, torch "
        f"{env.get('torch')}, CUDA {env.get('cuda')}), one run of this script, configurations one after another. "
        f"Each cell: {a.warmup} warm-up steps then {a.steps} measured steps, CUDA-event median. Bare runs emit no "
        "NVTX ranges (no tool attached, `--nvtx auto`); under nsys they do, and nsys traces CUDA, NVTX, OS runtime, "
        "cuBLAS and cuDNN calls, capture limited to the measured steps (profkit profile's defaults). Kernels kept: "
        f"rows of the export's kernel table ({a.steps} steps).", "",
        markdown_table(header, rows, align="l" + "r" * (len(header) - 1)), "",
        "Commands:", "", "```", *commands, "```", "",
    ])
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
