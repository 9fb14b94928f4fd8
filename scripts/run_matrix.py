"""Run `profkit run` over a grid of modes, dtypes and attention backends; write a markdown table.

Each cell is a separate `python -m profkit run` process (the commands in the report are the
ones that ran). A cell profkit refuses (flash in fp32, say) is reported with its error line.

Example (the issue-2 table on the GPU machine):
    python scripts/run_matrix.py --model small --modes fwd,fwd_bwd,step --dtypes fp32,bf16 \
        --attn naive,flash --runs-dir runs/matrix --report reports/small_h100.md
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from profkit.layout import RunRecord  # noqa: E402
from profkit.report.tables import runs_table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="small")
    p.add_argument("--modes", default="fwd,fwd_bwd,step")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--attn", default="naive,flash")
    p.add_argument("--runs-dir", type=Path, default=Path("runs/matrix"))
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--title", default=None)
    p.add_argument("extra", nargs="*", help="more `profkit run` options, after --")
    a = p.parse_args()

    results: list[tuple[dict[str, str], RunRecord | None, str | None]] = []
    commands: list[str] = []
    for mode, dtype, attn in itertools.product(a.modes.split(","), a.dtypes.split(","), a.attn.split(",")):
        out = a.runs_dir / f"{a.model}-{mode}-{dtype}-{attn}"
        cmd = ["profkit", "run", "--model", a.model, "--mode", mode, "--dtype", dtype, "--attn", attn,
               *a.extra, "--out", str(out), "--force"]
        commands.append(shlex.join(cmd))
        print("$", commands[-1], flush=True)
        proc = subprocess.run([sys.executable, "-m", "profkit", *cmd[1:]], capture_output=True, text=True)
        config = {"mode": mode, "dtype": dtype, "attn": attn}
        if proc.returncode != 0:
            error = (proc.stderr.strip().splitlines() or ["(no output)"])[-1].removeprefix("Error: ")
            print("  ", error, flush=True)
            results.append((config, None, error))
            continue
        run = RunRecord.read(out)
        results.append((config, run, None))
        print(f"   {run.summary.mean_ms:.2f} ms/step", flush=True)

    table = runs_table(results)
    first = next((run for _, run, _ in results if run), None)
    machine = (f"{first.environment.gpu or 'cpu'} (driver {first.environment.driver}, torch {first.environment.torch}, "
               f"CUDA {first.environment.cuda}); batch {first.resolved.batch_size} x context "
               f"{first.resolved.context_length}, {first.resolved.params:,} parameters; warm-up and measured steps "
               f"as in each command's defaults. Per-step times from {first.resolved.timer}, no profiler attached."
               if first else "no run succeeded.")
    lines = [
        f"# {a.title or f'{a.model}: modes x precision x attention'}", "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine}", "",
        table, "", "Commands:", "", "```", *commands, "```", "",
    ]
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text("\n".join(lines))
    print(table)


if __name__ == "__main__":
    main()
