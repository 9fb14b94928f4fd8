"""Fuzz every report command at scale: tests/test_fuzz.py's generator, thousands of cases, a table.

    .venv/bin/python scripts/fuzz.py --cases 4000 --seed 1 --out reports/fuzz.md [--budget-s 900]

Seeded mutations of the committed fixtures (tests/fuzzing.py: two exports, a DDP rank, the memory
snapshot), each through its report commands in this process (click's CliRunner), each case under
--bound-s seconds. Writes a markdown report: the command, machine, load, figures, outcomes by
mutation kind x command (correct / refused / FAILED), every distinct failure's first lines and the
commonest refusals. Exit 1 when a case FAILED.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import fuzzing  # noqa: E402

STATUSES = ("correct", "refused", "FAILED")


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")) / 2**20
        memory = f", {mem:.0f} GB memory"
    except (OSError, StopIteration):
        memory = ""
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}){memory}, Python " \
           f"{platform.python_version()}"


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def neutral(text: str) -> str:
    """A refusal without its temporary path, numbers folded, for counting alike messages together."""
    text = re.sub(r"/\S*/(cases|templates)/\S+?/(\S+?)/", r"<case>/", text)
    text = re.sub(r"\d[\d,]*", "N", text)
    return text[:140]


def report(outcomes: list[fuzzing.Outcome], args: argparse.Namespace, seconds: float, load: tuple[str, str],
           argv: str) -> str:
    by_kind = collections.Counter((o.mutation.kind, o.status) for o in outcomes)
    by_cell = collections.Counter((o.mutation.kind, o.command, o.status) for o in outcomes)
    by_command = collections.Counter((o.command, o.status) for o in outcomes)
    statuses = collections.Counter(o.status for o in outcomes)
    slowest = max(outcomes, key=lambda o: o.seconds)
    same = sum(o.status == "correct" and o.detail == fuzzing.SAME for o in outcomes)
    lines = ["# Fuzzing the report commands", "",
             f"`{argv}` at commit {commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"- machine: {machine()}",
             f"- load average (1, 5, 15 min) at the start: {load[0]}; at the end: {load[1]} (other jobs shared it)",
             f"- {len(outcomes):,} cases ({len({o.mutation for o in outcomes}):,} mutations, each through its commands)"
             f" in {seconds:,.0f} s: {len(outcomes) / seconds:.1f} cases/s, {1000 * seconds / len(outcomes):.0f} ms "
             f"a case on average (copy, damage, command, checks); the slowest {slowest.seconds:.1f} s "
             f"({slowest.mutation.kind} on {slowest.mutation.fixture}, {slowest.command}); bound {args.bound_s:g} s",
             f"- outcomes: {statuses['correct']:,} correct reports ({same:,} equal to the undamaged report: the "
             f"damage is in what the command does not read; {statuses['correct'] - same:,} that differ, each checked "
             f"for possible numbers, `kernels` also against SQL on the damaged export), "
             f"{statuses['refused']:,} refused with one `Error:` line, "
             f"**{statuses['FAILED']:,} FAILED**",
             "",
             "What is allowed and checked: tests/fuzzing.py's docstring. Fixtures: "
             + ", ".join(f"`{k}` ({v[0].name}/{v[1]})" for k, v in fuzzing.EXPORTS.items())
             + f", `snapshot` ({fuzzing.SNAPSHOT.name}/memory.pickle and memory.json).", "",
             "## By mutation kind", "", "| kind | cases | correct | of which the undamaged report | refused | FAILED |",
             "| :--- | ---: | ---: | ---: | ---: | ---: |"]
    for kind in fuzzing.KINDS:
        n = sum(by_kind[(kind, s)] for s in STATUSES)
        undamaged = sum(o.mutation.kind == kind and o.status == "correct" and o.detail == fuzzing.SAME
                        for o in outcomes)
        if n:
            lines.append(f"| {kind} | {n:,} | {by_kind[(kind, 'correct')]:,} | {undamaged:,} | "
                         f"{by_kind[(kind, 'refused')]:,} | {by_kind[(kind, 'FAILED')]:,} |")
    lines += ["", "## By command", "", "| command | cases | correct | refused | FAILED |",
              "| :--- | ---: | ---: | ---: | ---: |"]
    for command in fuzzing.COMMANDS:
        n = sum(by_command[(command, s)] for s in STATUSES)
        if n:
            lines.append(f"| {command} | {n:,} | " + " | ".join(f"{by_command[(command, s)]:,}" for s in STATUSES)
                         + " |")
    commands = [c for c in fuzzing.COMMANDS if any(o.command == c for o in outcomes)]
    lines += ["", "## Kind x command: correct / refused / FAILED", "",
              "| kind | " + " | ".join(commands) + " |", "| :--- |" + " ---: |" * len(commands)]
    for kind in fuzzing.KINDS:
        cells = []
        for c in commands:
            counts = [by_cell[(kind, c, s)] for s in STATUSES]
            cells.append("/".join(map(str, counts)) if sum(counts) else "")
        if any(cells):
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    failures: dict[tuple[str, str, str], list[fuzzing.Outcome]] = {}
    for o in outcomes:
        if o.status == "FAILED":
            failures.setdefault((o.mutation.kind, o.command, neutral(o.detail)[:80]), []).append(o)
    lines += ["", f"## Failures ({statuses['FAILED']:,} cases, {len(failures)} distinct)", ""]
    if not failures:
        lines.append("None.")
    for (kind, command, _), group in list(failures.items())[:40]:
        o = group[0]
        lines += [f"- {kind} x {command}, {len(group)} case{'s' if len(group) > 1 else ''}, e.g. seed {o.mutation.seed}"
                  f" on {o.mutation.fixture} ({o.damage}):", "", "  ```",
                  *[f"  {line}" for line in o.detail.splitlines()[:6]], "  ```"]
    refusals = collections.Counter((o.mutation.kind, neutral(o.detail)) for o in outcomes if o.status == "refused")
    lines += ["", "## The commonest refusals, per kind", ""]
    for kind in fuzzing.KINDS:
        top = [(msg, n) for (k, msg), n in refusals.most_common() if k == kind][:3]
        if top:
            lines.append(f"- {kind}: " + "; ".join(f"{n:,} x `{msg}`" for msg, n in top))
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=2000, help="cases to run (a mutation through one command)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "fuzz.md")
    p.add_argument("--bound-s", type=float, default=30.0, help="seconds one case may run")
    p.add_argument("--budget-s", type=float, default=None, help="stop starting cases after this many seconds")
    p.add_argument("--force", action="store_true", help="replace --out when it exists")
    args = p.parse_args()
    if args.cases < 1:
        p.error("--cases must be at least 1")
    if args.out.exists() and not args.force:
        p.error(f"{args.out} exists; pass --force to replace it")
    argv = "python scripts/fuzz.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    ms = fuzzing.mutations(args.seed, args.cases)  # each has 3 or more commands: enough
    load_start = loadavg()
    start = time.perf_counter()
    failed_so_far = []

    def progress(o: fuzzing.Outcome) -> None:
        failed_so_far.append(o.status == "FAILED")
        if len(failed_so_far) % 200 == 0:
            print(f"{len(failed_so_far):,} cases, {time.perf_counter() - start:,.0f} s, {sum(failed_so_far)} FAILED",
                  file=sys.__stderr__, flush=True)

    with tempfile.TemporaryDirectory(prefix="profkit-fuzz-") as tmp:
        outcomes = fuzzing.run_all(fuzzing.Workspace(Path(tmp)), ms, bound_s=args.bound_s, budget_s=args.budget_s,
                                   limit=args.cases, progress=progress)
    seconds = time.perf_counter() - start
    text = report(outcomes, args, seconds, (load_start, loadavg()), argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(f".{args.out.name}.partial")
    partial.write_text(text)
    partial.replace(args.out)
    failed = sum(o.status == "FAILED" for o in outcomes)
    print(f"{len(outcomes):,} cases in {seconds:,.0f} s, {failed} FAILED: {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
