"""`profkit report compare`: several captures side by side, per measured step, deltas against
the first: the runs (ms/step, peak memory, what differs in their configs), category time and
the kernels that matter, matched by name."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from profkit import analyze, layout
from profkit.analyze import gate as gates
from profkit.pipeline import Analysis, require_kernels
from profkit.report.formats import frame_graph_note, render
from profkit.report.tables import markdown_table, mib

if TYPE_CHECKING:
    import pandas as pd

    from profkit.analyze.gate import Threshold

CONFIG_FIELDS = ("model", "mode", "dtype", "attn", "compile", "batch_size", "context_length", "nvtx", "nvtx_depth")


def labels(paths: list[Path]) -> list[str]:
    """One distinct column label per capture: its folder (or file) name, numbered when repeated.

    >>> labels([Path("a/small"), Path("b/small"), Path("x/profile.sqlite")])
    ['small (1)', 'small (2)', 'x']
    """
    names = []
    for p in paths:
        folder = p.parent if p.name == layout.EXPORT else p
        names.append(folder.stem if folder.suffix in (".sqlite", ".nsys-rep") else folder.name)
    return [f"{n} ({names[:i].count(n) + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


@dataclass(frozen=True, slots=True)
class Capture:
    """What compare(), crossed() and noise_gate() read of one capture: its aggregates, made by
    capture() while its analysis is held, so that `report compare` holds a few hundred rows of
    each capture (not a row per kernel) while the next is analysed."""

    path: Path
    has_kernel_table: bool
    run: layout.RunRecord | None
    steps: int
    """steps_of() the analysis."""
    shares: pd.DataFrame
    """analyze.category_shares(), memcpy and memset included."""
    ranked: pd.DataFrame
    """analyze.rank_kernels(), every name."""
    graph_note: str | None
    step_ms: list[float]
    """gates.step_times_ms() of its ranges."""
    paths: list[str]
    """gates.range_paths() of its ranges."""
    path_ns: dict[str, int]
    """gates.path_ns() of its kernels."""

    def require_kernels(self) -> None:
        """Raises InputError when the export has no kernels table."""
        require_kernels(self.path, self.has_kernel_table)


def capture(a: Analysis) -> Capture:
    """An analysis's Capture (what `report compare` keeps of it)."""
    return Capture(a.data.path, a.data.has_kernel_table, a.run, steps_of(a),
                   analyze.category_shares(a.kernels, a.data.memcpy, a.data.memset), analyze.rank_kernels(a.kernels),
                   frame_graph_note(a.kernels), gates.step_times_ms(a.ranges), gates.range_paths(a.ranges),
                   gates.path_ns(a.kernels))


def captures(items: Sequence[Analysis | Capture]) -> list[Capture]:
    """Analyses as their Captures (Captures as they are)."""
    return [c if isinstance(c, Capture) else capture(c) for c in items]


def steps_of(a: Analysis) -> int:
    """Measured steps in the capture: its step_i ranges (else its run.json's, else 1)."""
    n = int(analyze.step_of(a.ranges["path"]).nunique()) if len(a.ranges) else 0
    return n or (a.run.config.steps if a.run else 1)


def compare(items: Sequence[Analysis | Capture], names: list[str], *, top: int = 10, fmt: str = "markdown") -> str:
    """Category time per step side by side with deltas against the first; in markdown, the runs
    first and the top kernels matched by name after."""
    caps = captures(items)
    for c in caps:
        c.require_kernels()
    steps = [c.steps for c in caps]
    table = analyze.compare_shares([c.shares for c in caps], steps, names)
    if fmt != "markdown":
        return render(table, fmt, "")
    kernels = analyze.compare_kernels([c.ranked for c in caps], steps, names, top=top)
    notes = [f"{name}: {c.graph_note.removeprefix('Note: ')}" for name, c in zip(names, caps, strict=True)
             if c.graph_note is not None]
    return "\n".join(_runs_markdown(caps, names, steps) + _categories_markdown(table, names)
                     + _kernels_markdown(kernels, names) + ([f"Note: {'; '.join(notes)}", ""] if notes else []))


def gate(items: Sequence[Analysis | Capture], names: list[str], thresholds: list[Threshold]) -> tuple[bool, str]:
    """(any threshold crossed, the one-line verdict) of the captures against the first.

    Raises:
        ValueError: a threshold that cannot be evaluated on these captures (the message says why).
    """
    crossings = crossed(items, names, thresholds)
    return bool(crossings), gates.summary(crossings, len(thresholds) * (len(items) - 1))


def crossed(items: Sequence[Analysis | Capture], names: list[str], thresholds: list[Threshold]) -> list[gates.Crossing]:
    """The --fail-if thresholds crossed by a capture against the first.

    Raises:
        ValueError: as gate().
    """
    caps = captures(items)
    for c in caps:
        c.require_kernels()
    shares = analyze.compare_shares([c.shares for c in caps], [c.steps for c in caps], names)
    step_ms = [c.run.summary.median_ms if c.run is not None else None for c in caps]
    return gates.gate(thresholds, shares, step_ms, names)


def _runs_markdown(caps: list[Capture], names: list[str], steps: list[int]) -> list[str]:
    runs = [c.run for c in caps]
    rows = [["measured steps", *[f"{n:,}" for n in steps], *["" for _ in names[1:]]]]
    if all(r is not None for r in runs):
        med = [r.summary.median_ms for r in runs if r is not None]
        rows.append(["ms/step (median, under nsys)", *[f"{m:,.2f}" for m in med],
                     *[f"{m - med[0]:+,.2f} ({100 * (m - med[0]) / med[0]:+.1f}%)" for m in med[1:]]])
        peaks = [r.peak_memory_bytes for r in runs if r is not None]
        rows.append(["peak allocated MiB", *[mib(p) for p in peaks],
                     *[f"{(p - peaks[0]) / 2**20:+,.1f}" if p is not None and peaks[0] is not None else "—"
                       for p in peaks[1:]]])
        configs = [dataclasses.asdict(r.config) for r in runs if r is not None]
        resolved = [r.resolved for r in runs if r is not None]
        for f in CONFIG_FIELDS:
            values = [c[f] for c in configs]
            if f == "batch_size":
                values = [res.batch_size for res in resolved]
            if f == "context_length":
                values = [res.context_length for res in resolved]
            if len({str(v) for v in values}) > 1:
                rows.append([f"config: {f}", *[str(v) for v in values], *["" for _ in names[1:]]])
    header = ["", *names, *[f"Δ {n}" for n in names[1:]]]
    note = [] if all(r is not None for r in runs) else ["(ms/step and configs need each capture's run.json.)", ""]
    return ["## Runs", "", markdown_table(header, rows), "", *note]


def _categories_markdown(table: pd.DataFrame, names: list[str]) -> list[str]:
    header = ["category"] + [f"{n} ms/step (%)" for n in names] + [f"Δ {n} ms/step (pp)" for n in names[1:]]
    rows = []
    for category, g in table.groupby("category", sort=False):
        cells = [str(category)] + [f"{r.per_step_ns / 1e6:,.3f} ({r.pct:.1f}%)" for r in g.itertuples()]
        cells += [f"{r.delta_ns / 1e6:+,.3f} ({r.delta_pp:+.1f})" for r in list(g.itertuples())[1:]]
        rows.append(cells)
    totals = table.groupby("capture", sort=False)["per_step_ns"].sum().reindex(names)
    rows.append(["**all kernels**"] + [f"{t / 1e6:,.3f}" for t in totals]
                + [f"{(t - totals.iloc[0]) / 1e6:+,.3f}" for t in totals.iloc[1:]])
    return ["## Categories, per measured step", "", markdown_table(header, rows), ""]


def _kernels_markdown(kernels: pd.DataFrame, names: list[str]) -> list[str]:
    from profkit.report.names import unique_names

    short = unique_names(kernels["name"].astype(str).tolist())
    header = ["kernel", "category", *[f"{n} ms/step" for n in names], *[f"Δ {n}" for n in names[1:]]]
    rows = []
    for label, r in zip(short, kernels.itertuples(index=False), strict=True):
        values = [getattr(r, f"_{2 + i}") for i in range(len(names) * 2 - 1)]
        per, deltas = values[:len(names)], values[len(names):]
        rows.append([label, str(r.category), *[f"{v / 1e6:,.3f}" for v in per], *[f"{d / 1e6:+,.3f}" for d in deltas]])
    align = "ll" + "r" * (len(header) - 2)
    return ["## Kernels, matched by name (the largest of each capture), per measured step", "",
            markdown_table(header, rows, align=align), ""]


def noise_gate(items: Sequence[Analysis | Capture], names: list[str], limit_pct: float, range_names: list[str], *,
               k: float = gates.NOISE_K) -> list[gates.NoiseCheck]:
    """`--fail-above`: ms/step and each named range's GPU time per step, every capture against the
    first, as NoiseChecks (quantity then capture order).

    ms/step takes run.json's steps_ms, else the export's step_i ranges' wall times.

    Raises:
        ValueError: a capture with no per-step times; a range name a capture does not have.
    """
    caps = captures(items)
    steps: list[list[float]] = []
    for c, name in zip(caps, names, strict=True):
        values = list(c.run.steps_ms) if c.run is not None and c.run.steps_ms else list(c.step_ms)
        if not values:
            raise ValueError(f"--fail-above: {name} has no per-step times (no run.json, no step_i ranges); "
                             "capture with profkit profile")
        bad = [v for v in values if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"--fail-above: {name}'s per-step times hold {bad[0]} (run.json's steps_ms is "
                             "damaged); capture again")
        steps.append(values)
    per_quantity: list[tuple[str, list[list[float]]]] = [("ms/step", steps)]
    for r in range_names:
        per_capture: list[list[float]] = []
        for c, name in zip(caps, names, strict=True):
            c.require_kernels()
            try:
                per_capture.append(gates.path_times_ms(c.path_ns, c.paths, r))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        per_quantity.append((f"range:{r}", per_capture))
    return [gates.NoiseCheck(q, n, tuple(v[0]), tuple(x), limit_pct, k)
            for q, v in per_quantity for n, x in zip(names[1:], v[1:], strict=True)]


def gate_json(checks: list[gates.NoiseCheck], crossings: list[gates.Crossing] | None, comparison: str) -> str:
    """The JSON object `--fail-above ... --format json` prints: the verdict, every check, the
    --fail-if crossings (when given) and the comparison's usual rows."""
    import json

    failed = any(c.failed for c in checks) or bool(crossings)
    out: dict[str, object] = {"result": "fail" if failed else "pass", "exit_code": 1 if failed else 0,
                              "rule": "fail when change_pct > limit_pct + noise_pct; noise = k * sqrt(s_base^2 + "
                                      "s_new^2), s = 1.4826 * MAD of a capture's per-step values",
                              "checks": [c.as_dict() for c in checks]}
    if crossings is not None:
        out["fail_if"] = [str(c) for c in crossings]
    out["comparison"] = json.loads(comparison)
    return json.dumps(out, indent=2) + "\n"
