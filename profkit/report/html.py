"""report.html: one self-contained page per capture or comparison, each section fed by the JSON
of the command that produces it (no torch, no network).

    Analysis ──(the report functions, fmt="json")──> documents {id: JSON}
             ──(one Section per document: its render(doc) -> HTML)──> page()

A `Section` is an id, a title, the command that prints its JSON, and one function from that
JSON to an HTML fragment: tables first (rendered here, so the page reads without JavaScript),
plots as `<figure data-plot=...>` that the page's script draws as SVG from the same JSON. The
documents are embedded in the page as `<script type="application/json" id="data-ID">` blocks,
each linked from its section (the link saves it as a file), so the page stays one attachment
and every number a plot draws is one the JSON holds: nothing is computed twice.

Nothing from a capture reaches the page unescaped: text goes through `esc()` (HTML) or
`json_script()` (`<`, `>`, `&` as \\u escapes inside JSON), the script writes names with
`textContent` only, and a Content-Security-Policy lets only the page's own script (by its
hash) run and nothing load from anywhere.

Adding a page section (memory, sweeps, ranks): write `def memory_section(doc) -> str` that
takes the command's JSON, declare `MEMORY = Section("memory", "Memory over time",
"profkit report memory {profile} --format json", memory_section)`, and add
`(MEMORY, json.loads(<the command's function>(..., fmt="json")))` to the list `capture_page`
(or a page builder of its own) hands to `page()`. Plots need no new script unless a new kind:
`figure({"kind": "line", "data": "memory", ...})`; kinds live in assets/report.js `PLOTS`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from profkit import __version__, analyze
from profkit.analyze.timeline import GPU_BOUND_IDLE_PCT, LAUNCH_BOUND_IDLE_PCT, LAUNCH_BOUND_QUEUE_NS
from profkit.layout import RunRecord
from profkit.pipeline import Analysis
from profkit.report import flops as flops_report
from profkit.report.formats import frame_graph_note, render
from profkit.report.names import unique_names
from profkit.report.tables import category_label

if TYPE_CHECKING:
    from profkit.report.compare import Capture

KERNEL_ROWS = 300
"""Kernel names listed (the rest folded into `others`, as `report kernels --top` does)."""
PLOT_ROWS = 20
"""Bars drawn per bar plot (the table below it lists every row)."""


# --- escaping -------------------------------------------------------------------------------------------------------

def esc(value: object) -> str:
    """Text for HTML content or a quoted attribute.

    >>> esc('<img src=x onerror="alert(1)">')
    '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;'
    """
    return html.escape(str(value), quote=True)


def json_text(doc: Any) -> str:
    """JSON that is safe inside a <script> element or an attribute: no `<`, `>` or `&` in it
    (JSON's \\u escapes, which only occur inside strings, mean the same), NaN as null.

    >>> json_text({"name": "</script><b>"})
    '{"name": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(_finite(doc), ensure_ascii=False, allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _finite(x: Any) -> Any:
    """NaN and infinities as None, recursively (JSON has neither)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def json_script(block_id: str, doc: Any) -> str:
    """The embedded copy of one command's JSON."""
    return f'<script type="application/json" id="data-{esc(block_id)}">{json_text(doc)}</script>'


# --- building blocks ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Col:
    """One table column: the JSON key, its header, how a value reads, and where it aligns."""

    key: str
    label: str
    fmt: Callable[[Any], str] = str
    numeric: bool = True
    title: str | None = None
    """Another key whose value is the cell's hover text (the full kernel name)."""


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def ms(v: Any) -> str:
    return "—" if _missing(v) else f"{v / 1e6:,.3f}"


def us(v: Any) -> str:
    return "—" if _missing(v) else f"{v / 1e3:,.1f}"


def num(digits: int) -> Callable[[Any], str]:
    return lambda v: "—" if _missing(v) else f"{v:,.{digits}f}"


def signed_ms(v: Any) -> str:
    return "—" if _missing(v) else f"{v / 1e6:+,.3f}"


def table(cols: Sequence[Col], rows: Sequence[dict[str, Any]], *, caption: str = "", css: str = "") -> str:
    """A sortable table: each cell shows the formatted value and keeps the raw one in data-v,
    which the page's script sorts by (without the script it is a plain table)."""
    head = "".join(f'<th class="{"num" if c.numeric else "txt"}" scope="col">{esc(c.label)}</th>' for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c.key)
            raw = "" if _missing(v) else v
            title = f' title="{esc(r[c.title])}"' if c.title and r.get(c.title) is not None else ""
            cells.append(f'<td class="{"num" if c.numeric else "txt"}" data-v="{esc(raw)}"{title}>'
                         f"{esc(c.fmt(v) if not (_missing(v) and c.numeric) else '—')}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<div class="scroll"><table class="sortable {css}">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def figure(spec: dict[str, Any], caption: str) -> str:
    """A plot the page's script draws from the JSON block `spec["data"]` (kinds: report.js PLOTS)."""
    return (f'<figure class="plot" data-plot="{esc(json_text(spec))}"><div class="canvas">'
            '<p class="noplot">This plot is drawn by the page\'s script; the table has its numbers.</p></div>'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def code_spans(text: str) -> str:
    """Escaped text with markdown's `code` spans as <code> (escaped first: a span cannot hold markup).

    >>> code_spans("try `torch.compile` <now>")
    'try <code>torch.compile</code> &lt;now&gt;'
    """
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def para(text: str) -> str:
    return f"<p>{esc(text)}</p>"


@dataclass(frozen=True, slots=True)
class Section:
    """One section of a page: its JSON's command and the function from that JSON to HTML."""

    id: str
    title: str
    command: str
    """The command that prints the section's JSON (`{profile}`: the input as the user named it)."""
    render: Callable[[Any], str]


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A section whose JSON could not be made for this capture, and why (shown in its place)."""

    reason: str


def _section_html(section: Section, doc: Any, profile: str) -> str:
    command = section.command.format(profile=profile)
    if isinstance(doc, Unavailable):
        body = f'<p class="unavailable">Not available for this capture: {esc(doc.reason)}</p>'
        link = ""
    else:
        body = section.render(doc)
        link = (f' <a class="json" href="#data-{esc(section.id)}" data-json="{esc(section.id)}" '
                f'title="the JSON this section shows">JSON</a>')
    return (f'<section id="{esc(section.id)}" data-section="{esc(section.id)}"><h2>{esc(section.title)}{link}</h2>'
            f'<p class="source">From <code>{esc(command)}</code></p>{body}</section>')


def _asset(name: str) -> str:
    return resources.files("profkit.report").joinpath("assets", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page(title: str, intro: str, parts: Sequence[tuple[Section, Any]], *, profile: str, name: str) -> str:
    """The whole document: CSS and script inline, one JSON block per section, no network.

    Args:
        title: the page's heading.
        intro: HTML (already escaped) under the heading: the run, the machine.
        parts: each section with its JSON (or Unavailable).
        profile: the input as the user named it, for the commands shown.
        name: the file name stem the JSON links save under (`NAME-kernels.json`).
    """
    css, js = _asset("report.css"), _asset("report.js")
    assert not any(t in css + js for t in ("</", "<!--", "<script")), "an asset would end its own element"
    csp = (f"default-src 'none'; script-src {_csp_hash(js)}; style-src {_csp_hash(css)}; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s, _ in parts)
    sections = "".join(_section_html(s, d, profile) for s, d in parts)
    blocks = "".join(json_script(s.id, d) for s, d in parts if not isinstance(d, Unavailable))
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="generator" content="profkit {esc(__version__)}">'
            f"<title>{esc(title)}</title><style>{css}</style></head>"
            f'<body data-name="{esc(name)}"><header><h1>{esc(title)}</h1>{intro}<nav>{nav}</nav></header>'
            f"<main>{sections}</main>"
            f"<footer>Written by profkit {esc(__version__)}. Every section's numbers are the JSON of the command "
            "it names, embedded in this file (its JSON link saves it); the page loads nothing from anywhere."
            f"</footer>{blocks}<script>{js}</script></body></html>\n")


# --- capture sections: each takes its command's JSON ---------------------------------------------------------------

def verdict_html(doc: dict[str, Any]) -> str:
    """`report timeline --by phase` rows (+ what to try): one verdict per phase, first thing on the page."""
    rows, steps = doc["timeline"], doc.get("steps")
    if not rows:
        return para("No NVTX phases in this capture.")
    div = steps or 1
    per = " per step" if steps else ""
    items = []
    for r in rows:
        queue = "—" if _missing(r["median_queue_ns"]) else f"{r['median_queue_ns'] / 1e3:,.1f} us"
        idle = "—" if _missing(r["gpu_idle_pct"]) else f"{r['gpu_idle_pct']:.0f}%"
        items.append(f'<li><span class="verdict v-{esc(str(r["verdict"]).replace(" ", "-"))}">{esc(r["verdict"])}'
                     f"</span> <b>{esc(r['name'])}</b>: GPU busy {ms(r['gpu_busy_ns'] / div)} of "
                     f"{ms(r['gpu_span_ns'] / div)} ms{per} ({idle} idle), median launch-to-start {esc(queue)}, "
                     f"{r['launches_per_ms']:.0f} launches/ms.</li>")
    tries = "".join(f"<li>{code_spans(t)}</li>" for t in doc.get("what_to_try", []))
    rule = (f"launch-bound: the GPU idle at least {LAUNCH_BOUND_IDLE_PCT:.0f}% of the phase's GPU span and the "
            f"median kernel starting within {LAUNCH_BOUND_QUEUE_NS / 1e3:.0f} us of its launch call; GPU-bound: idle "
            f"at most {GPU_BOUND_IDLE_PCT:.0f}%; mixed otherwise.")
    scaled = [{**r, **{k: (r[k] / div if not _missing(r[k]) else None)
                       for k in ("wall_ns", "gpu_span_ns", "gpu_busy_ns", "kernels")},
               "gpu_idle_ns": None if _missing(r["gpu_span_ns"]) else (r["gpu_span_ns"] - r["gpu_busy_ns"]) / div}
              for r in rows]
    cols = [Col("name", "phase", numeric=False), Col("instances", "instances", num(0)),
            Col("wall_ns", f"wall ms{per}", ms), Col("gpu_span_ns", f"GPU span ms{per}", ms),
            Col("gpu_busy_ns", f"GPU busy ms{per}", ms), Col("gpu_idle_pct", "GPU idle %", num(1)),
            Col("kernels", f"kernels{per}", num(0)), Col("launches_per_ms", "launches/ms", num(1)),
            Col("median_queue_ns", "median queue us", us), Col("verdict", "verdict", numeric=False)]
    plot = figure({"kind": "bars", "data": "verdict", "path": "timeline", "label": "name", "stacked": True,
                   "scale": 1 / (1e6 * div), "unit": f"ms{per}",
                   "series": [{"key": "gpu_busy_ns", "name": "GPU busy"},
                              {"key": "gpu_idle_ns", "name": "GPU idle (in the span)", "derive": "idle"}]},
                  "GPU busy and idle time within each phase's GPU span" + per)
    return (f'<ul class="verdicts">{"".join(items)}</ul><p class="rule">{esc(rule)}</p>'
            + (f'<h3>What to try, with the evidence in this capture</h3><ul class="tries">{tries}</ul>' if tries
               else "") + plot + table(cols, scaled))


def steps_html(run: dict[str, Any]) -> str:
    """run.json: every measured step's time, the spread, the first step against the rest."""
    from profkit.report.timeline import step_line

    steps = run["steps_ms"]
    s = run["summary"]
    rows = [{"step": i, "ms": t} for i, t in enumerate(steps)]
    lines = [step_line(steps), f"Mean {s['mean_ms']:.2f} ± {s['std_ms']:.2f} ms, {s['tokens_per_s']:,.0f} tokens/s "
             "(under the profiler: not bare times)."]
    if run.get("peak_memory_bytes") is not None:
        lines.append(f"Peak allocated memory over the measured steps: {run['peak_memory_bytes'] / 2**20:,.1f} MiB.")
    plot = figure({"kind": "steps", "data": "steps", "path": "steps_ms", "median": s["median_ms"], "unit": "ms"},
                  "ms per measured step (CUDA events or the host clock, from run.json); the line is the median")
    return ("".join(para(t) for t in lines) + plot
            + table([Col("step", "measured step", num(0)), Col("ms", "ms", num(3))], rows))


def categories_html(rows: list[dict[str, Any]]) -> str:
    """`report kernels --by category` rows: kernel time per category, the whole capture."""
    cols = [Col("name", "category", numeric=False), Col("instances", "instances", num(0)),
            Col("total_ns", "total ms", ms), Col("avg_ns", "avg us", us), Col("median_ns", "median us", us),
            Col("time_pct", "time %", num(1))]
    plot = figure({"kind": "bars", "data": "categories", "label": "name", "scale": 1e-6, "unit": "ms",
                   "series": [{"key": "total_ns", "name": "kernel time"}]},
                  "Kernel time per category (the whole capture)")
    return plot + table(cols, rows)


def kernels_html(rows: list[dict[str, Any]]) -> str:
    """`report kernels` rows: one per kernel name, readable names shown, the full one on hover."""
    labels = unique_names([str(r["name"]) for r in rows])
    shown = [{**r, "label": label, "category_label": category_label(str(r["name"]), str(r["category"]))}
             for r, label in zip(rows, labels, strict=True)]
    cols = [Col("label", "kernel", numeric=False, title="name"), Col("category_label", "category", numeric=False),
            Col("instances", "instances", num(0)), Col("total_ns", "total ms", ms), Col("avg_ns", "avg us", us),
            Col("median_ns", "median us", us), Col("min_ns", "min us", us), Col("max_ns", "max us", us),
            Col("time_pct", "time %", num(1))]
    names = {str(r["name"]): label for r, label in zip(rows[:PLOT_ROWS], labels, strict=False)}
    plot = figure({"kind": "bars", "data": "kernels", "label": "name", "names": names, "scale": 1e-6, "unit": "ms",
                   "series": [{"key": "total_ns", "name": "kernel time"}]},
                  f"The {PLOT_ROWS} kernels with the most time (hover a bar for the full name)")
    return plot + table(cols, shown, css="kernels")


def modules_html(rows: list[dict[str, Any]]) -> str:
    """`report modules` rows: per module, forward against backward GPU ms per measured step."""
    if not rows:
        return para("No module ranges with kernels under step_i/forward and step_i/backward.")
    cols = [Col("module", "module", numeric=False), Col("fwd_gpu_ns", "fwd GPU ms", ms),
            Col("bwd_gpu_ns", "bwd GPU ms", ms), Col("bwd_fwd_ratio", "bwd/fwd", num(2)),
            Col("step_pct", "step %", num(1)), Col("kernels", "kernels", num(1))]
    top = [r for r in rows if "/" not in str(r["module"])]
    plot = figure({"kind": "bars", "data": "modules", "label": "module", "scale": 1e-6, "unit": "ms per step",
                   "filter": "top-level", "series": [{"key": "fwd_gpu_ns", "name": "forward"},
                                                     {"key": "bwd_gpu_ns", "name": "backward"}]},
                  f"Forward and backward GPU ms per step of the {len(top)} top-level modules")
    return (para("A row's time includes its children's; bwd/fwd near 2 is usual for matmul-heavy modules; step %: "
                 "both phases, of the step's GPU time.") + plot + table(cols, rows))


def timeline_html(rows: list[dict[str, Any]]) -> str:
    """`report timeline --by name` rows: per range name, all instances added."""
    cols = [Col("name", "range name", numeric=False), Col("instances", "instances", num(0)),
            Col("wall_ns", "wall ms", ms), Col("gpu_span_ns", "GPU span ms", ms), Col("gpu_busy_ns", "GPU busy ms", ms),
            Col("gpu_idle_pct", "GPU idle %", num(1)), Col("kernels", "kernels", num(0)),
            Col("launches_per_ms", "launches/ms", num(1)), Col("median_queue_ns", "median queue us", us),
            Col("verdict", "verdict", numeric=False)]
    plot = figure({"kind": "bars", "data": "timeline", "label": "name", "stacked": True, "scale": 1e-6, "unit": "ms",
                   "sort": "gpu_span_ns", "series": [{"key": "gpu_busy_ns", "name": "GPU busy"},
                                                     {"key": "gpu_idle_ns", "name": "GPU idle (in the span)",
                                                      "derive": "idle"}]},
                  f"The {PLOT_ROWS} range names with the longest GPU span: busy against idle (all instances)")
    return (para("Is the GPU busy in each range? Busy is the union of the kernel, memcpy and memset intervals the "
                 "range launched (overlapping streams count once), idle the rest of its GPU span.")
            + plot + table(cols, rows))


def flops_html(doc: dict[str, Any]) -> str:
    """`report flops` rows, with the step summary (MFU, floor) and the peaks it compared with."""
    s, peak, rows = doc["summary"], doc["peak"], doc["rows"]
    lines = [f"Peak: {doc['gpu']}, {peak['source']}: {s['peak_rate'] / 1e12:.1f} TFLOP/s {s['precision']} (the step's "
             f"main precision), {peak['fp32'] / 1e12:.1f} fp32, {peak['bandwidth'] / 1e12:.2f} TB/s.",
             f"Step (median, run.json): {s['step_ms']:.2f} ms; floor (sum over paths of max(FLOPs/peak, "
             f"bytes/bandwidth)): {s['floor_ms']:.2f} ms ({100 * s['floor_ms'] / s['step_ms']:.1f}% of the step).",
             f"MFU, exact count ({s['exact_flops'] / 1e9:,.1f} GFLOP): {100 * s['mfu_exact']:.2f}%"
             + (f"; PaLM's estimate ({s['palm_flops'] / 1e9:,.1f} GFLOP): {100 * s['mfu_palm']:.2f}%."
                if s.get("mfu_palm") is not None else ".")]
    cols = [Col("path", "path", numeric=False), Col("flops", "GFLOP", lambda v: f"{v / 1e9:,.2f}"),
            Col("useful_flops", "useful GFLOP", lambda v: f"{v / 1e9:,.2f}"),
            Col("bytes", "MB", lambda v: f"{v / 1e6:,.1f}"), Col("gpu_ns", "GPU ms", ms),
            Col("tflops_per_s", "TFLOP/s", num(1)), Col("pct_of_peak", "% of peak", num(1)),
            Col("intensity", "FLOP/B", num(1)), Col("bound", "bound", numeric=False)]
    roofs = [{"name": f"{s['precision']} roof", "rate": s["peak_rate"], "bandwidth": peak["bandwidth"]}]
    if s["precision"] != "fp32":
        roofs.append({"name": "fp32 roof", "rate": peak["fp32"], "bandwidth": peak["bandwidth"]})
    plot = figure({"kind": "roofline", "data": "flops", "path": "rows", "x": "intensity", "y": "tflops_per_s",
                   "size": "gpu_ns", "label": "path", "roofs": roofs},
                  "Roofline: one point per range path (area: its GPU time), against the peaks above")
    return "".join(para(t) for t in lines) + plot + table(cols, rows) + gap_html(doc.get("gap"))


def gap_html(g: list[dict[str, Any]] | dict[str, Any] | None) -> str:
    """flops_report.gap()'s rows (what `report flops` prints under "floor and gap"): the measured
    step as the floor plus each thing between it and the floor, drawn as a waterfall."""
    if g is None:
        return ""
    if isinstance(g, dict):  # why there is none
        return f'<h3>Floor and gap</h3><p class="unavailable">Not available for this capture: {esc(g["reason"])}</p>'
    step = sum(r["ns"] for r in g)
    head = para(f"Measured step {step / 1e6:.2f} ms = "
                + " + ".join(f"{r['component']} {r['ns'] / 1e6:.2f}" for r in g) + " ms (per measured step).")
    cols = [Col("component", "component", numeric=False), Col("ns", "ms per step", ms),
            Col("pct_of_step", "% of step", num(1)), Col("what", "what", numeric=False)]
    plot = figure({"kind": "waterfall", "data": "flops", "path": "gap", "label": "component", "value": "ns",
                   "scale": 1e-6, "unit": "ms per step", "total": "measured step"},
                  "Floor and gap: from the floor to the measured step, one bar per component (each starts where "
                  "the last ended)")
    return "<h3>Floor and gap</h3>" + head + plot + table(cols, g)


def memory_html(doc: dict[str, Any]) -> str:
    """`report memory --format json`: memory over time (phases shaded, the peak marked), what is
    alive at the peak by category, the largest allocations alive then."""
    peak, torch_peak = doc["peak_allocated_bytes"], doc.get("torch_max_memory_allocated")
    lines = [f"Peak allocated {peak / 2**20:,.1f} MiB (reserved {doc['peak_reserved_bytes'] / 2**20:,.1f} MiB)"
             + (f" at {doc['peak_time_us'] / 1e3:,.3f} ms into the recorded window, in {doc['peak_path']}."
                if doc.get("peak_time_us") is not None else "."),
             "torch.cuda.max_memory_allocated over the same steps: "
             + ("not recorded." if torch_peak is None else f"{torch_peak / 2**20:,.1f} MiB ("
                + ("equal" if doc.get("peak_equals_torch") else "not equal: see the notes") + ")."),
             f"{doc['events']:,} allocator events replayed"
             + ("" if doc.get("exact") else " (not exact: see the notes)")
             + f"; {doc['window_start_allocated_bytes'] / 2**20:,.1f} MiB allocated before the window."]
    notes = "".join(f"<li>{esc(n)}</li>" for n in doc.get("notes") or [])
    plot = figure({"kind": "memory", "data": "memory", "peak": "peak_allocated_bytes", "peak_time": "peak_time_us",
                   "peak_path": "peak_path"},
                  "Allocated (area) and reserved (line) memory over the recorded window; forward, backward and "
                  "optimizer shaded; the peak marked")
    cat_plot = figure({"kind": "bars", "data": "memory", "path": "categories", "label": "category",
                       "scale": 1 / 2**20, "unit": "MiB", "series": [{"key": "bytes", "name": "alive at the peak"}]},
                      "What is alive at the peak, by category")
    cats = table([Col("category", "category", numeric=False), Col("bytes", "MiB", lambda v: f"{v / 2**20:,.1f}"),
                  Col("allocations", "allocations", num(0)), Col("pct", "% of the peak", num(1))],
                 doc["categories"], css="categories")
    top = table([Col("bytes", "MiB", lambda v: f"{v / 2**20:,.2f}"), Col("requested", "requested B", num(0)),
                 Col("category", "category", numeric=False), Col("path", "range path", numeric=False),
                 Col("frame", "allocated at", numeric=False)], doc["top_allocations"], css="top-allocations")
    return ("".join(para(t) for t in lines) + (f'<ul class="notes">{notes}</ul>' if notes else "") + plot
            + "<h3>Alive at the peak, by category</h3>" + cat_plot + cats
            + "<h3>The largest allocations alive at the peak</h3>" + top)


def ranks_html(rows: list[dict[str, Any]]) -> str:
    """`report ranks --format json`: a lane per rank (compute, communication hidden under compute,
    exposed, waits at collectives, per measured step), and the table."""
    plot = figure({"kind": "bars", "data": "ranks", "label": "rank", "stacked": True, "scale": 1e-6,
                   "unit": "ms per measured step", "names": {str(r["rank"]): f"rank {r['rank']}" for r in rows},
                   "series": [{"key": "compute_ns", "name": "compute"},
                              {"key": "comm_hidden_ns", "name": "communication hidden under compute"},
                              {"key": "comm_exposed_ns", "name": "communication exposed"},
                              {"key": "wait_ns", "name": "waiting at collectives"}]},
                  "One lane per rank: GPU time per measured step")
    shown = [{**r, "exposed_pct": 100 * r["comm_exposed_ns"] / r["comm_ns"] if r["comm_ns"] else None}
             for r in rows]
    cols = [Col("rank", "rank", num(0)), Col("steps", "steps", num(0)), Col("step_ms", "step ms (median)", num(2)),
            Col("step_min_ms", "min ms", num(2)), Col("step_max_ms", "max ms", num(2)),
            Col("compute_ns", "compute ms", ms), Col("comm_ns", "comm ms", ms), Col("comm_hidden_ns", "hidden ms", ms),
            Col("comm_exposed_ns", "exposed ms", ms), Col("exposed_pct", "exposed %", num(1)),
            Col("wait_ns", "wait ms", ms)]
    return (para("Per measured step: compute is the union of a rank's non-NCCL kernels, communication the union of "
                 "its NCCL kernels; hidden while a compute kernel of the same device runs, exposed otherwise.")
            + plot + table(cols, shown))


VERDICT = Section("verdict", "What bounds the step", "profkit report timeline {profile} --by phase --format json",
                  verdict_html)
STEPS = Section("steps", "Step time", "{profile}/run.json (profkit run)", steps_html)
CATEGORIES = Section("categories", "Kernels by category",
                     "profkit report kernels {profile} --by category --top 0 --format json", categories_html)
KERNELS = Section("kernels", "Kernels by name", f"profkit report kernels {{profile}} --top {KERNEL_ROWS} --format json",
                  kernels_html)
MODULES = Section("modules", "Modules: forward against backward", "profkit report modules {profile} --format json",
                  modules_html)
TIMELINE = Section("timeline", "Timeline: GPU busy per range", "profkit report timeline {profile} --by name "
                   "--format json", timeline_html)
FLOPS = Section("flops", "FLOPs, the roofline, the floor and the gap", "profkit report flops {profile} --format json",
                flops_html)
MEMORY = Section("memory", "Memory over time", "profkit report memory {profile}/memory.pickle --format json",
                 memory_html)
RANKS = Section("ranks", "Ranks", "profkit report ranks {profile} --format json", ranks_html)


def _json(text: str) -> Any:
    return json.loads(text)


def flops_doc(a: Analysis, counted: dict[str, Any], *, measured: bool = False) -> dict[str, Any]:
    """`report flops --format json`'s rows (the same table() and render() call), its step summary and peaks."""
    from profkit.errors import ProfkitError

    t, s, peak = flops_report.table(a, counted, measured=measured)
    try:
        g: Any = _json(render(flops_report.gap(a, t, s), "json", ""))
    except ProfkitError as e:
        g = {"reason": str(e)}
    return {"rows": _json(render(t[flops_report.KEYS], "json", "")), "summary": dataclasses.asdict(s),
            "peak": dataclasses.asdict(peak), "gpu": str(a.data.gpus["name"].iloc[0]), "gap": g}


def verdict_doc(a: Analysis, phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The phase rows, the measured steps they cover, and what_to_try() of those rows, asked as report.md asks."""
    import pandas as pd

    t = pd.DataFrame(phases)
    steps = next((int(r["instances"]) for r in phases if r["name"] == "step"), None)
    run = a.run
    tries = analyze.what_to_try(t, a.kernels, attn=run.config.attn if run else None,
                                builtin=not (run and ":" in run.config.model),
                                compiled=bool(run and run.config.compile),
                                peak_bytes=run.peak_memory_bytes if run else None,
                                gpu_bytes=run.environment.gpu_memory_bytes if run else None) if not t.empty else []
    return {"timeline": phases, "steps": steps, "what_to_try": tries}


def capture_documents(a: Analysis, *, flops: dict[str, Any] | Unavailable | None = None,
                      measured: bool = False, memory: dict[str, Any] | Unavailable | None = None,
                      ranks: list[dict[str, Any]] | None = None) -> list[tuple[Section, Any]]:
    """Each section of a capture's page with its command's JSON (or why it has none).

    Args:
        a: the analysed capture.
        flops: its flops.json object, or why there is none (None: not asked for).
        measured: compare FLOPs with the measured peaks instead of the datasheet's.
        memory: `report memory --format json` of the folder's memory.pickle, or why not (None: no snapshot).
        ranks: `report ranks --format json` of a multi-rank capture (None: one process); first on the page.
    """
    from profkit import report as reports
    from profkit.report.timeline import timeline as timeline_report

    parts: list[tuple[Section, Any]] = []
    if ranks is not None:
        parts.append((RANKS, ranks))
    has_kernels = a.data.has_kernel_table and not a.kernels.empty
    phases = _json(timeline_report(a, by="phase", fmt="json"))
    parts.append((VERDICT, verdict_doc(a, phases) if phases else Unavailable("no NVTX phases")))
    parts.append((STEPS, a.run.to_dict() if a.run is not None else Unavailable("no run.json beside the export")))
    no_kernels = Unavailable("no CUDA kernels in this capture (a CPU run, or no CUDA traced)")
    parts.append((CATEGORIES, _json(reports.kernels(a, by="category", top=0, fmt="json")) if has_kernels
                  else no_kernels))
    parts.append((KERNELS, _json(reports.kernels(a, top=KERNEL_ROWS, fmt="json")) if has_kernels else no_kernels))
    parts.append((MODULES, _json(reports.modules(a, fmt="json")) if has_kernels and not a.ranges.empty
                  else no_kernels if not has_kernels else Unavailable("no NVTX ranges")))
    parts.append((TIMELINE, _json(timeline_report(a, by="name", fmt="json")) if not a.ranges.empty
                  else Unavailable("no NVTX ranges")))
    if flops is not None:
        if isinstance(flops, Unavailable):
            parts.append((FLOPS, flops))
        elif not has_kernels:
            parts.append((FLOPS, no_kernels))
        else:
            try:
                parts.append((FLOPS, flops_doc(a, flops, measured=measured)))
            except Exception as e:  # noqa: BLE001 - any reason the FLOP table cannot be made is shown, not fatal
                parts.append((FLOPS, Unavailable(str(e))))
    if memory is not None:
        parts.append((MEMORY, memory))
    return parts


def run_intro(run: RunRecord | None) -> str:
    """The command and the machine, under the page's heading."""
    if run is None:
        return para("No run.json beside this export: the run's config and step times are unknown.")
    c, res, env = run.config, run.resolved, run.environment
    cmd = c.command()
    machine = (f"{env.gpu} (driver {env.driver}), torch {env.torch}, CUDA {env.cuda}" if env.gpu
               else f"CPU ({env.cpu_threads} threads), torch {env.torch}")
    return (f'<p class="run"><code>{esc(cmd)}</code>: batch {res.batch_size} x {res.context_length}, '
            f"{res.params:,} parameters, {len(run.steps_ms)} measured steps, on {esc(machine)}.</p>")


def capture_page(a: Analysis, *, title: str, profile: str, name: str,
                 flops: dict[str, Any] | Unavailable | None = None, measured: bool = False,
                 memory: dict[str, Any] | Unavailable | None = None, ranks: list[dict[str, Any]] | None = None) -> str:
    """`profkit report PROFILE --html`: the capture's page (capture_documents() says what each argument adds)."""
    parts = capture_documents(a, flops=flops, measured=measured, memory=memory, ranks=ranks)
    intro = run_intro(a.run) + para(f"{len(a.kernels):,} kernels, {a.kernels['dur_ns'].sum() / 1e6:,.3f} ms of kernel "
                                    f"time; {a.unattributed_pct:.2f}% of it launched outside every NVTX range.")
    if (note := frame_graph_note(a.kernels)) is not None:
        intro += para(note)
    return page(title, intro, parts, profile=profile, name=name)


# --- the comparison page ---------------------------------------------------------------------------------------

def compare_runs_html(doc: list[dict[str, Any]]) -> str:
    """Each capture's label, measured steps and run.json (null where it has none)."""
    base = next((d["run"]["summary"]["median_ms"] for d in doc[:1] if d.get("run")), None)
    rows = []
    for d in doc:
        run = d.get("run") or {}
        med = run.get("summary", {}).get("median_ms")
        peak = run.get("peak_memory_bytes")
        cfg = run.get("config", {})
        rows.append({"label": d["label"], "steps": d["steps"], "median_ms": med,
                     "delta_pct": None if med is None or not base else 100 * (med - base) / base,
                     "peak_mib": None if peak is None else peak / 2**20,
                     "config": " ".join(f"{k}={cfg.get(k)}" for k in ("model", "mode", "dtype", "attn", "compile")
                                        if k in cfg)})
    cols = [Col("label", "capture", numeric=False), Col("steps", "measured steps", num(0)),
            Col("median_ms", "ms/step (median, under nsys)", num(2)),
            Col("delta_pct", "Δ vs first %", lambda v: f"{v:+.1f}"), Col("peak_mib", "peak allocated MiB", num(1)),
            Col("config", "config", numeric=False)]
    plot = figure({"kind": "bars", "data": "runs", "label": "label", "unit": "ms",
                   "series": [{"key": "run.summary.median_ms", "name": "ms/step"}]},
                  "Median ms per measured step of each capture (from run.json)")
    return plot + table(cols, rows)


def compare_categories_html(rows: list[dict[str, Any]]) -> str:
    """`report compare --format json` rows: category time per step per capture, deltas against the
    first, regressions (the largest increase in any capture) first."""
    captures = list(dict.fromkeys(r["capture"] for r in rows))
    by_cat: dict[str, dict[str, Any]] = {}
    for r in rows:
        row = by_cat.setdefault(r["category"], {"category": r["category"]})
        i = captures.index(r["capture"])
        row[f"ms{i}"], row[f"pct{i}"] = r["per_step_ns"], r["pct"]
        if i:
            row[f"d{i}"] = r["delta_ns"]
    table_rows = sorted(by_cat.values(), key=lambda x: (-max([x.get(f"d{i}", 0.0) for i in range(1, len(captures))]
                                                               or [0.0]), x["category"]))
    cols = [Col("category", "category", numeric=False)]
    cols += [Col(f"ms{i}", f"{c} ms/step", ms) for i, c in enumerate(captures)]
    cols += [Col(f"d{i}", f"Δ {c} ms/step", signed_ms) for i, c in enumerate(captures) if i]
    plot = figure({"kind": "bars", "data": "compare", "label": "category", "group": "capture", "scale": 1e-6,
                   "unit": "ms per step", "series": [{"key": "per_step_ns", "name": "per step"}]},
                  "Kernel time per measured step by category, each capture a bar")
    return (para("Largest increase against the first capture first (a regression at the top).") + plot
            + table(cols, table_rows))


def compare_kernels_html(doc: dict[str, Any]) -> str:
    """analyze.compare_kernels() rows (as `report compare`'s markdown lists them), regressions first."""
    labels, rows = doc["labels"], doc["rows"]
    short = unique_names([str(r["name"]) for r in rows])
    shown = []
    for r, s in zip(rows, short, strict=True):
        deltas = [r[f"{lab} delta_ns"] for lab in labels[1:]]
        shown.append({**r, "label": s, "_key": max(deltas) if deltas else 0.0})
    shown.sort(key=lambda x: -x["_key"])
    cols = [Col("label", "kernel", numeric=False, title="name"), Col("category", "category", numeric=False)]
    cols += [Col(f"{lab} per_step_ns", f"{lab} ms/step", ms) for lab in labels]
    cols += [Col(f"{lab} delta_ns", f"Δ {lab}", signed_ms) for lab in labels[1:]]
    return para("The largest kernels of each capture, matched by name; largest increase first.") + table(cols, shown)


RUNS = Section("runs", "Runs", "each capture's run.json", compare_runs_html)
COMPARE = Section("compare", "Categories, per measured step", "profkit report compare {profile} --format json",
                  compare_categories_html)
COMPARE_KERNELS = Section("compare-kernels", "Kernels, matched by name", "profkit report compare {profile} "
                          "(its kernel table)", compare_kernels_html)


def compare_page(items: Sequence[Analysis | Capture], names: list[str], *, profiles: str, top: int = 10) -> str:
    """`profkit report compare A B ... --html`: the captures side by side, regressions first."""
    from profkit import report as reports
    from profkit.report.compare import captures

    caps = captures(items)
    runs = [{"label": n, "steps": c.steps, "run": c.run.to_dict() if c.run else None}
            for n, c in zip(names, caps, strict=True)]
    categories = _json(reports.compare(caps, names, top=top, fmt="json"))
    kernels = analyze.compare_kernels([c.ranked for c in caps], [c.steps for c in caps], names, top=top)
    kdoc = {"labels": names, "rows": _json(render(kernels, "json", ""))}
    parts = [(RUNS, runs), (COMPARE, categories), (COMPARE_KERNELS, kdoc)]
    intro = para(f"{len(names)} captures, deltas against the first ({names[0]}): " + ", ".join(names) + ".")
    return page("Comparison: " + " vs ".join(names), intro, parts, profile=profiles, name="compare")


# --- the sweep page ----------------------------------------------------------------------------------------------

def markdown_html(md: str) -> str:
    """A sweep report's markdown (headings, paragraphs, lists, pipe tables) as HTML: every bit of
    text escaped, `code` spans kept, tables sortable (numeric where the markdown right-aligns).
    Image lines (the PNGs beside the .md) are left out: the page draws its own plots.

    >>> markdown_html("## T\\n\\n| a | b |\\n| --- | ---: |\\n| x<y | 1,200 |")
    '<h3>T</h3><div class="scroll"><table class="sortable seed"><thead><tr><th class="txt" scope="col">a</th><th \
class="num" scope="col">b</th></tr></thead><tbody><tr><td class="txt" data-v="x&lt;y">x&lt;y</td><td class="num" \
data-v="1200">1,200</td></tr></tbody></table></div>'
    """
    out: list[str] = []
    lines = md.splitlines()
    i = 0

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].replace("|", "").strip()) <= set("-: "):
            head, align = cells(line), cells(lines[i + 1])
            numeric = [a.endswith(":") for a in align]
            i += 2
            body = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                row = cells(lines[i])
                body.append("<tr>" + "".join(
                    f'<td class="{"num" if n else "txt"}" data-v="{esc(c.replace(",", "") if n else c)}">'
                    f"{code_spans(c)}</td>" for c, n in zip(row, numeric, strict=False)) + "</tr>")
                i += 1
            th = "".join(f'<th class="{"num" if n else "txt"}" scope="col">{esc(h)}</th>'
                         for h, n in zip(head, numeric, strict=False))
            out.append(f'<div class="scroll"><table class="sortable seed"><thead><tr>{th}</tr></thead>'
                       f"<tbody>{''.join(body)}</tbody></table></div>")
            continue
        if line.startswith("# ") or line.startswith("![") or not line:
            pass
        elif line.startswith("### "):
            out.append(f"<h4>{code_spans(line[4:])}</h4>")
        elif line.startswith("## "):
            out.append(f"<h3>{code_spans(line[3:])}</h3>")
        elif line.startswith("- "):
            out.append(f'<ul class="md"><li>{code_spans(line[2:])}</li></ul>')
        else:
            out.append(f"<p>{code_spans(line)}</p>")
        i += 1
    return "".join(out)


ATTN_SERIES = [("fwd_ms", "forward ms"), ("bwd_ms", "backward ms"),
               ("fwd_bwd_tflops_per_s", "forward+backward TFLOP/s")]


def attention_plots(doc: dict[str, Any]) -> str:
    """Per grid: forward and backward time and TFLOP/s along its axis, a bar per implementation."""
    out = []
    for g in doc["grids"]:
        for key, name in ATTN_SERIES:
            out.append(figure({"kind": "bars", "data": "sweep", "path": "rows", "ids": g["ids"], "status": "ok",
                               "labels": g["labels"], "group": "impl", "unit": name,
                               "series": [{"key": key, "name": name}]},
                              f"{g['name']}: {name} (median of the timed passes), a bar per implementation"))
    return "".join(out)


SWEEP_PLOT_ROWS = 200


def models_plots(doc: dict[str, Any]) -> str:
    """ms per step and MFU of every measured point (up to SWEEP_PLOT_ROWS bars)."""
    ok = sum(r.get("status") == "ok" for r in doc["rows"])
    which = "every measured point" if ok <= SWEEP_PLOT_ROWS else f"the first {SWEEP_PLOT_ROWS} of {ok} measured points"
    rows = min(max(ok, 1), SWEEP_PLOT_ROWS)
    return (figure({"kind": "bars", "data": "sweep", "path": "rows", "status": "ok", "labels": doc["labels"],
                    "rows": rows, "unit": "ms/step (median)", "series": [{"key": "ms_per_step", "name": "ms/step"}]},
                   f"Median ms per step of {which}")
            + figure({"kind": "bars", "data": "sweep", "path": "rows", "status": "ok", "labels": doc["labels"],
                      "rows": rows, "unit": "MFU %", "scale": 100,
                      "series": [{"key": "mfu", "name": "MFU (PaLM FLOPs)"}]},
                     f"MFU of {which} (PaLM's FLOPs over the median step, the datasheet peak)"))


def sweep_html(doc: dict[str, Any]) -> str:
    """A sweep database's rows: the plots, then the report's seed-shaped tables."""
    plots = attention_plots(doc) if doc["kind"] == "attention" else models_plots(doc)
    return plots + markdown_html(doc["markdown"])


def sweep_page(kind: str, rows: list[dict[str, Any]], *, grids: Sequence[Any] | None = None, source: str = "",
               db: str = "") -> str:
    """`profkit sweep ... --report DIR --html`: one page of the sweep's tables (as KIND.md has them) and plots.

    The JSON block holds the database's rows (`profkit sweep report`'s input), the markdown the
    tables come from, and which points each plot draws."""
    import pandas as pd

    from profkit.report import sweeps as sweep_report

    df = pd.DataFrame(rows)
    doc: dict[str, Any] = {"kind": kind, "rows": rows}
    if kind == "attention":
        doc["markdown"] = sweep_report.attention_markdown(rows, list(grids) if grids else None, source=source)
        doc["grids"] = [{"name": name, "axis": axis, "ids": part["point_id"].tolist(),
                         "labels": [c for c in sweep_report._varying(part, sweep_report.ATTN_CONFIG) if c != "impl"]
                         or [axis]}
                        for name, part, axis in sweep_report.attention_sections(rows, list(grids) if grids else None)]
    else:
        doc["markdown"] = sweep_report.models_markdown(rows, source=source)
        ok = df[df["status"] == "ok"] if not df.empty else df
        doc["labels"] = sweep_report._varying(ok, sweep_report.MODEL_CONFIG) if not ok.empty else []
    section = Section("sweep", f"{kind} sweep: {len(rows)} points",
                      f"profkit sweep report {kind} --db {{profile}}" + (" --preset ..." if grids else ""), sweep_html)
    envs = sorted({f"{r.get('gpu')}, torch {r.get('torch')}" for r in rows if r.get("gpu")})
    intro = para(f"{len(rows)} points from {db}" + (f"; preset: {source}" if source else "")
                 + (f"; measured on {'; '.join(envs)}" if envs else "") + ".")
    title = f"Sweep: {kind}" + (f" ({source})" if source else "")
    return page(title, intro, [(section, doc)], profile=db, name=f"sweep-{kind}")


__all__ = ["Col", "Section", "Unavailable", "capture_documents", "capture_page", "compare_page", "esc", "figure",
           "json_script", "json_text", "markdown_html", "page",
           "sweep_page", "table"]
