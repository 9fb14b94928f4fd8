"""`profkit report timeline` and report.md's opening: is the GPU busy, what bounds each phase."""

from __future__ import annotations

import statistics

import pandas as pd

from profkit import analyze
from profkit.analyze.timeline import GPU_BOUND_IDLE_PCT, LAUNCH_BOUND_IDLE_PCT, LAUNCH_BOUND_QUEUE_NS
from profkit.pipeline import Analysis
from profkit.report.formats import frame_graph_note, render, with_note
from profkit.report.tables import markdown_table


def phases(a: Analysis, by: str = "phase") -> pd.DataFrame:
    """timeline() of an Analysis."""
    return analyze.timeline(a.ranges, a.work(), by=by)


def _ms(ns: float) -> str:
    return f"{ns / 1e6:,.3f}"


def timeline_markdown(t: pd.DataFrame, *, per_step: int | None = None) -> str:
    """The table; with `per_step`, times are the mean per measured step."""
    div = per_step or 1
    rows = [[str(r.name), f"{int(r.instances):,}", _ms(r.wall_ns / div), _ms(r.gpu_span_ns / div),
             _ms(r.gpu_busy_ns / div), f"{r.gpu_idle_pct:.1f}", f"{r.kernels / div:,.0f}", f"{r.launches_per_ms:.1f}",
             "—" if r.median_queue_ns != r.median_queue_ns else f"{r.median_queue_ns / 1e3:,.1f}", str(r.verdict)]
            for r in t.itertuples()]
    unit = " per step" if per_step else ""
    header = ["phase" if per_step else "name", "instances", f"wall ms{unit}", f"GPU span ms{unit}",
              f"GPU busy ms{unit}", "GPU idle %", f"kernels{unit}", "launches/ms", "median queue us", "verdict"]
    return markdown_table(header, rows, align="lrrrrrrrrl")


def timeline(a: Analysis, *, by: str = "phase", fmt: str = "markdown") -> str:
    """`profkit report timeline`: all instances added, as `report nvtx --by name` does."""
    t = phases(a, by)
    return render(t, fmt, with_note(timeline_markdown(t), frame_graph_note(a.kernels)))


OUTLIER = 1.5  # a first measured step this many times the median of the others is flagged


def step_line(steps_ms: list[float]) -> str:
    """The measured steps' times in one line; a first step far slower than the rest is flagged.

    >>> step_line([10.0, 12.0, 11.0])
    'Step time (3 measured steps): median 11.00 ms, min 10.00, max 12.00, spread (max - min) / median 18.2%.'
    >>> "first measured step took 30.00 ms, 2.9x the median of the others" in step_line([30.0, 10.0, 11.0])
    True
    """
    med = statistics.median(steps_ms)
    spread = 100.0 * (max(steps_ms) - min(steps_ms)) / med if med else 0.0
    line = (f"Step time ({len(steps_ms)} measured steps): median {med:.2f} ms, min {min(steps_ms):.2f}, "
            f"max {max(steps_ms):.2f}, spread (max - min) / median {spread:.1f}%.")
    if len(steps_ms) > 2:
        rest = statistics.median(steps_ms[1:])
        if rest and steps_ms[0] > OUTLIER * rest:
            line += (f" The first measured step took {steps_ms[0]:.2f} ms, {steps_ms[0] / rest:.1f}x the median of "
                     "the others: warm-up did not reach steady state (raise --warmup).")
    return line


def verdict_section(a: Analysis) -> list[str]:
    """report.md's first section: one verdict line per phase, the table, and what to try."""
    t = phases(a)
    if t.empty:
        return []
    steps = int(t.loc[t["name"] == "step", "instances"].iloc[0]) if "step" in set(t["name"]) else None
    if (t["verdict"] == "no GPU work").all():  # a CPU capture: host time is all there is to show
        rows = [[str(r.name), f"{int(r.instances):,}", _ms(r.wall_ns / (steps or 1))] for r in t.itertuples()]
        return ["## Where the step's time goes (no GPU work in this capture)", "",
                markdown_table(["phase", "instances", "wall ms" + (" per step" if steps else "")], rows), ""]
    lines = ["## What bounds the step", ""]
    for r in t.itertuples():
        lines.append(f"- **{r.name}**: {r.verdict} — GPU busy {_ms(r.gpu_busy_ns / (steps or 1))} of "
                     f"{_ms(r.gpu_span_ns / (steps or 1))} ms{' per step' if steps else ''} "
                     f"({r.gpu_idle_pct:.0f}% idle), median launch-to-start "
                     + ("—" if r.median_queue_ns != r.median_queue_ns else f"{r.median_queue_ns / 1e3:,.1f} us")
                     + f", {r.launches_per_ms:.0f} launches/ms.")
    lines += ["", f"Rule: `launch-bound` when the GPU is idle at least {LAUNCH_BOUND_IDLE_PCT:.0f}% of the "
              f"phase's GPU span and the median kernel starts within {LAUNCH_BOUND_QUEUE_NS / 1e3:.0f} us of its "
              f"launch call; `GPU-bound` when idle at most {GPU_BOUND_IDLE_PCT:.0f}%; `mixed` otherwise. "
              "Busy time is the union of the kernel, memcpy and memset intervals the phase launched.", "",
              timeline_markdown(t, per_step=steps), ""]
    run = a.run
    tries = analyze.what_to_try(t, a.kernels, attn=run.config.attn if run else None,
                                builtin=not (run and ":" in run.config.model),
                                compiled=bool(run and run.config.compile),
                                peak_bytes=run.peak_memory_bytes if run else None,
                                gpu_bytes=run.environment.gpu_memory_bytes if run else None)
    if tries:
        lines += ["What to try, with the evidence in this capture:", ""] + [f"- {s}" for s in tries] + [""]
    return lines
