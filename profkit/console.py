"""Terminal output with rich: a progress bar while a workload runs, then its table."""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from profkit.config import RunConfig
from profkit.layout import RunRecord
from profkit.report.tables import mib

console = Console(stderr=True)
PLAIN_EVERY_S = 5.0


@contextlib.contextmanager
def progress(cfg: RunConfig) -> Iterator[Callable[[str, int, int], None]]:
    """Yields report(phase, i, n); shows warm-up and measured steps as they run."""
    # Not on a terminal (a pipe, nsys.log) there is no bar to redraw, and stopping one would
    # still print a blank line before an error.
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)
    tasks: dict[str, Any] = {}
    last = [0.0]

    def plain(phase: str, i: int, n: int) -> None:
        # A log gets a line when a phase starts and then at most one every PLAIN_EVERY_S seconds.
        now = time.monotonic()
        if i == 0 or now - last[0] >= PLAIN_EVERY_S:
            last[0] = now
            print(f"{cfg.label}: {phase} step {i + 1}/{n}", flush=True)

    def report(phase: str, i: int, n: int) -> None:
        if not console.is_terminal:
            if not sys.stdout.isatty():  # piped to a file or a log: plain lines on stdout, errors alone on stderr
                plain(phase, i, n)
            return
        if not tasks:
            bar.start()  # lazily: an error before the first step prints alone
        if phase not in tasks:
            tasks[phase] = bar.add_task(f"{cfg.label} {phase}", total=n)
        bar.update(tasks[phase], completed=i)

    try:
        yield report
    finally:
        if tasks:
            bar.stop()


class SweepBar:
    """A sweep's progress: points done and left, the current config, the time left (rich on a
    terminal; elsewhere one plain line per point on stdout)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
                            transient=True, disable=not console.is_terminal)
        self.task: TaskID | None = None
        self.todo = self.n = 0
        self.t0 = 0.0

    def begin(self, todo: int, skipped: int) -> None:
        self.todo = todo
        note = f", {skipped} already in the database skipped (--redo to run them again)" if skipped else ""
        console.print(f"{self.what}: {todo} point{'s' if todo != 1 else ''} to run{note}", markup=False,
                      highlight=False)
        if console.is_terminal and todo:
            self.bar.start()
            self.task = self.bar.add_task(self.what, total=todo)

    def start(self, label: str) -> None:
        self.t0 = time.monotonic()
        if self.task is not None:
            self.bar.update(self.task, description=f"{self.what}: {label}")

    def done(self, label: str, status: str) -> None:
        self.n += 1
        if self.task is not None:
            self.bar.update(self.task, completed=self.n)
            if status != "ok":
                self.bar.console.print(f"  {label}: {status}", markup=False, highlight=False)
        else:
            print(f"[{self.n}/{self.todo}] {label}: {status} ({time.monotonic() - self.t0:.1f} s)", flush=True)

    def stop(self) -> None:
        if self.task is not None:
            self.bar.stop()


@contextlib.contextmanager
def sweep_progress(what: str) -> Iterator[SweepBar]:
    bar = SweepBar(what)
    try:
        yield bar
    finally:
        bar.stop()


@contextlib.contextmanager
def status() -> Iterator[Callable[[str], None]]:
    """Yields say(text): a spinner with the current stage while a long step (nsys) works."""
    with console.status("starting") as s:
        yield lambda text: s.update(text + "...")


def print_doctor(rows: list[tuple[str, str, str]]) -> None:
    """rows: (what, value, fix) where fix is '' when all is well."""
    table = Table(title="profkit doctor", title_justify="left")
    for column in ("check", "found", "to fix"):
        table.add_column(column, overflow="fold")
    for what, value, fix in rows:
        table.add_row(what, value, f"[red]{fix}[/red]" if fix else "[green]ok[/green]")
    Console().print(table)


def print_run(record: RunRecord) -> None:
    cfg, res, s, env = record.config, record.resolved, record.summary, record.environment
    title = (f"{cfg.model} · {cfg.mode} · {cfg.dtype} · attn {cfg.attn}"
             + (f" · compiled ({cfg.compile_mode})" if cfg.compile else "")
             + f" · batch {res.batch_size} × {res.context_length}"
             + (f" × {cfg.grad_accum} micro-batches" if cfg.grad_accum > 1 else "")
             + (f" · {cfg.optimizer}" if cfg.mode == "step" else "") + f" · {res.params:,} params")
    out = Console()
    out.print(title, markup=False)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    # Values hold brackets ([min, max]): add them as plain text, never as rich markup.
    rows = [("ms/step (mean ± std)", f"{s.mean_ms:.2f} ± {s.std_ms:.2f}"),
            ("ms/step median [min, max]", f"{s.median_ms:.2f} [{s.min_ms:.2f}, {s.max_ms:.2f}]"),
            ("tokens/s", f"{s.tokens_per_s:,.0f}"), ("peak allocated MiB", mib(record.peak_memory_bytes))]
    if record.micro_batch_ms:
        rows.append(("ms/micro-batch median (fwd+bwd)", f"{statistics.median(record.micro_batch_ms):.2f}"))
    if record.first_step_ms is not None:
        rows.append(("first warm-up step ms", f"{record.first_step_ms:.1f}"))
    if record.compile_s is not None:
        rows.append(("compile s (dynamo)", f"{record.compile_s:.1f}"))
    for label, value in rows:
        table.add_row(Text(label), Text(value))
    device = env.gpu or f"cpu ({env.cpu_threads} threads)"
    table.caption = Text(f"{len(record.steps_ms)} measured steps, {res.timer} · {device} · torch {env.torch} · "
                         f"{cfg.out}/run.json")
    out.print(table)
