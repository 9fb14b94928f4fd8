"""`profkit report memory`: a snapshot's peak, what fills it, per path; as markdown, JSON, a PNG
of memory over time and a self-contained HTML page; `report compare` of snapshots.

Every number comes from profkit.analyze.memory; this module chooses rows and formats them.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from profkit import heap, layout
from profkit.analyze import memory as mem
from profkit.report.png import Canvas, text_width
from profkit.report.tables import markdown_table
from profkit.snapshot import MemoryData

PHASE_COLORS = {"forward": (214, 230, 248), "backward": (250, 224, 200), "optimizer": (214, 240, 214)}
ALLOCATED_COLOR = (31, 94, 168)
RESERVED_COLOR = (150, 150, 150)
PEAK_COLOR = (200, 30, 30)


TIMELINE_POINTS = 1000
"""Rows of the JSON's `timeline` (allocated and reserved over time; each bucket keeps its highest
allocated value, so the peak is among them): what report.html's memory plot draws."""


LEAN_DROPS = ("seq", "addr", "size")
"""The trace's columns that nothing reads after the replay (20 bytes per event: 240 MB of a 1 GB
snapshot's 12 M events); `frame` goes too once each allocation has its own."""


def analyze(data: MemoryData, *, lean: bool = False) -> mem.MemoryAnalysis:
    """The analysis of a snapshot.

    lean: what a report needs only: data.events loses LEAN_DROPS once replayed and `frame` once
    the lifetimes have theirs (data.events and the analysis's replay.source are then action and
    time_us), so that a 1 GB snapshot reports in 1 GB. The numbers are the same either way."""
    kw: dict[str, Any] = {"log": data.range_log, "tensors": data.tensors, "end_blocks": data.end_blocks,
                          "torch_peak_allocated_bytes": data.torch_peak_allocated_bytes,
                          "torch_peak_reserved_bytes": data.torch_peak_reserved_bytes, "clock": data.clock}
    if not lean:
        return mem.analyze_memory(data.events, data.start_blocks, data.settings, **kw)
    data.events = data.events.drop(columns="seq", errors="ignore")  # the replay reads action, addr and size
    heap.release_freed()
    rp = mem.replay(data.events, data.start_blocks, data.settings, end_blocks=data.end_blocks)
    data.events = rp.source = data.events.drop(columns=[c for c in LEAN_DROPS if c in data.events])
    heap.release_freed()
    m = mem.analyze_memory(data.events, data.start_blocks, data.settings, replayed=rp, **kw)
    data.events = rp.source = data.events.drop(columns=["frame"], errors="ignore")
    heap.release_freed()
    return m


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


def result(data: MemoryData, m: mem.MemoryAnalysis, *, top: int = 10,
           kernels: pd.DataFrame | None = None, for_markdown: bool = False,
           paths_frame: bool = False) -> dict[str, Any]:
    """The report as one dict: the JSON output, and what the markdown and HTML show.

    for_markdown: `paths` only for the peak's step, the rows markdown() shows (a long window has
    a row per range of every step). paths_frame: `paths` as the DataFrame (dump_json() writes it
    as the records it would be)."""
    paths = mem.path_table(m)
    if for_markdown and len(paths):
        step = m.peak_path.split("/", 1)[0]
        shown = paths[paths["path"].str.startswith(step)] if step.startswith("step_") else paths
        paths = shown if len(shown) else paths  # markdown() filters the same way again
    rp = m.replay
    torch_peak = m.torch_peak_allocated_bytes
    out: dict[str, Any] = {
        "snapshot": str(data.path),
        "peak_allocated_bytes": rp.peak_allocated_bytes,
        "peak_reserved_bytes": rp.peak_reserved_bytes,
        "peak_time_us": m.peak_time_us,
        "peak_path": m.peak_path,
        "torch_max_memory_allocated": torch_peak,
        "torch_max_memory_reserved": m.torch_peak_reserved_bytes,
        "peak_equals_torch": None if torch_peak is None else rp.peak_allocated_bytes == torch_peak,
        "exact": rp.exact,
        "clock": m.clock,
        "events": len(rp),
        "window_start_allocated_bytes": rp.start_allocated_bytes,
        "oom": data.oom,
        "run": data.run,
        "notes": rp.notes,
        "categories": _records(mem.at_peak(m, "category")),
        "at_peak_by_path": _records(mem.at_peak(m, "path").head(top * 3)),
        "top_allocations": _records(mem.top_allocations(m, top)),
        "paths": paths if paths_frame else _records(paths),
        "residual_stream": _records(mem.residual_stream(m, data.run)),
        "timeline": _records(mem.timeline(m, points=TIMELINE_POINTS)),
        "phases": _records(mem.phases(m)),
    }
    if kernels is not None:
        out["kernels"] = _records(mem.paired(mem.path_table(m), kernels))
    del paths
    return out


def markdown(r: dict[str, Any], *, title: str, top: int = 10) -> str:
    run = r["run"]
    lines = [f"# Memory: {title}", ""]
    if run:
        lines.append(f"`{run.get('model')}` · {run.get('mode')} · {run.get('dtype')} · attn {run.get('attn')} · "
                     f"batch {run.get('batch_size')} × {run.get('context_length')} · {run.get('steps')} measured "
                     "step(s) recorded")
        lines.append("")
    when = "the window's start" if r["peak_time_us"] is None else f"{r['peak_time_us'] / 1e3:,.3f} ms into the window"
    torch_peak = r["torch_max_memory_allocated"]
    check = ("" if torch_peak is None else
             f"; torch's max_memory_allocated {_mib(torch_peak)} MiB ({torch_peak:,} B): "
             + ("equal" if r["peak_equals_torch"] else f"differs by {r['peak_allocated_bytes'] - torch_peak:+,} B"))
    lines += [f"- **Peak allocated: {_mib(r['peak_allocated_bytes'])} MiB** ({r['peak_allocated_bytes']:,} B) at "
              f"{when}, in `{r['peak_path']}`{check}",
              f"- Peak reserved: {_mib(r['peak_reserved_bytes'])} MiB"
              + ("" if r["torch_max_memory_reserved"] is None
                 else f" (torch's max_memory_reserved {_mib(r['torch_max_memory_reserved'])} MiB)"),
              f"- {r['events']:,} allocator events; held when the window opened: "
              f"{_mib(r['window_start_allocated_bytes'])} MiB; range times: "
              + {"snapshot": "torch's own annotation clock", "host": "the host clock (no annotations matched)",
                 "none": "no profkit ranges"}[r["clock"]]]
    if r["oom"]:
        lines.append("- **The measured steps ran out of memory**: the history ends at the failed allocation")
    lines += [f"- Note: {n}" for n in r["notes"][:5]]
    lines += ["", "## At the peak, by category", ""]
    lines.append(markdown_table(["category", "MiB", "% of peak", "allocations"],
                                [[mem.CATEGORIES.get(c["category"], c["category"]), _mib(c["bytes"]),
                                  f"{c['pct']:.1f}", f"{c['allocations']:,}"] for c in r["categories"]]))
    lines += ["## At the peak, by path where allocated", ""]
    lines.append(markdown_table(["path", "MiB", "% of peak", "allocations"],
                                [[f"`{p['path']}`", _mib(p["bytes"]), f"{p['pct']:.1f}", f"{p['allocations']:,}"]
                                 for p in r["at_peak_by_path"][:top]]))
    lines += ["## Largest allocations at the peak", ""]
    lines.append(markdown_table(["MiB", "requested B", "category", "path", "top user frame"],
                                [[_mib(a["bytes"]), f"{a['requested']:,}", mem.CATEGORIES.get(a["category"], ""),
                                  f"`{a['path']}`", f"`{a['frame']}`" if a["frame"] else "(no Python frame)"]
                                 for a in r["top_allocations"]], align="rrlll"))
    if r["residual_stream"]:
        res = r["residual_stream"]
        lines += ["## Residual stream per layer", "",
                  f"The residual stream of one layer, batch × context × d_model × 4 B (float32, as the parameters, "
                  f"under autocast too): **{_mib(res[0]['residual_bytes'])} MiB**. What the snapshot holds for each "
                  "layer's forward when the forward ends (every saved activation alive):", ""]
        lines.append(markdown_table(
            ["layer", "saved for backward MiB", "× residual", "blocks of exactly one residual", "autocast copies MiB"],
            [[str(x["layer"]), _mib(x["saved_bytes"]), f"{x['saved_over_residual']:.2f}",
              str(x["residual_sized_blocks"]), _mib(x["autocast_copy_bytes"])] for x in res]))
    paths = pd.DataFrame(r["paths"])
    if not paths.empty:
        step = r["peak_path"].split("/", 1)[0]
        shown = paths[paths["path"].str.startswith(step)] if step.startswith("step_") else paths
        heading = f"## Per path ({step}, the peak's step)" if step.startswith("step_") else "## Per path"
        lines += [heading, "", "Bytes allocated inside (children included), memory alive at entry and exit, the peak "
                  "inside and its rise over entry.", ""]
        lines.append(markdown_table(["path", "allocated MiB", "at entry MiB", "at exit MiB", "peak MiB", "rise MiB"],
                                    [[f"`{p}`", _mib(a), _mib(e), _mib(x), _mib(k), _mib(s)] for p, a, e, x, k, s in
                                     shown[["path", "allocated_bytes", "entry_bytes", "exit_bytes", "peak_bytes",
                                            "rise_bytes"]].itertuples(index=False)]))
    if "kernels" in r:
        lines += ["## GPU time beside memory", "",
                  "Per path of the capture: its kernels' GPU time (share of the measured steps') and the memory its "
                  "range allocated and raised the peak by (share of the largest rise).", ""]
        rows = [[f"`{k['path']}`", f"{k['gpu_ns'] / 1e6:,.3f}", f"{k['gpu_pct']:.1f}", _mib(k["allocated_bytes"]),
                 _mib(k["rise_bytes"]), f"{k['rise_pct']:.1f}"] for k in r["kernels"]
                if k["path"].count("/") <= 2]
        lines.append(markdown_table(["path", "GPU ms", "% GPU time", "allocated MiB", "rise MiB", "% of top rise"],
                                    rows))
    return "\n".join(lines).rstrip() + "\n"


def report(data: MemoryData, m: mem.MemoryAnalysis, *, fmt: str, title: str, top: int = 10,
           kernels: pd.DataFrame | None = None) -> str:
    """`profkit report memory`: markdown or JSON."""
    return "".join(report_pieces(data, m, fmt=fmt, title=title, top=top, kernels=kernels))


def report_pieces(data: MemoryData, m: mem.MemoryAnalysis, *, fmt: str, title: str, top: int = 10,
                  kernels: pd.DataFrame | None = None) -> Iterator[str]:
    """report()'s text in pieces (the JSON's as json_pieces() writes it), its result computed first."""
    if fmt == "json":
        return json_pieces(result(data, m, top=top, kernels=kernels, paths_frame=True))
    r = result(data, m, top=top, kernels=kernels, for_markdown=True)
    return iter([markdown(r, title=title, top=top)])


JSON_PIECE = 20_000
"""Rows of a large table turned into JSON records at a time by dump_json()."""
_PLACE = "\x00profkit: the rows go here\x00"


def dump_json(r: dict[str, Any]) -> str:
    """json.dumps(r, indent=1) + newline, the same text (json_pieces() joined)."""
    return "".join(json_pieces(r))


def json_pieces(r: dict[str, Any]) -> Iterator[str]:
    """json.dumps(r, indent=1) + newline, the same text in pieces, where the values that are DataFrames
    (a long window's `paths`: a row per range of every step) are written as their records JSON_PIECE
    rows at a time: no list of a million dicts is ever built, and a writer that takes the pieces one
    by one never holds the whole text (a 1 GB snapshot's is ~90 MB)."""
    frames = {k: v for k, v in r.items() if isinstance(v, pd.DataFrame)}
    text = json.dumps({k: _PLACE if k in frames else v for k, v in r.items()}, indent=1)
    marker = json.dumps(_PLACE)
    at = 0
    for key in frames:  # the dict's order: the order of the placeholders in the text
        head = f"{json.dumps(key)}: {marker}"
        found = text.index(head, at)
        yield text[at:found + len(head) - len(marker)]
        at = found + len(head)
        frame = frames[key]
        if not len(frame):
            yield "[]"
            continue
        for lo in range(0, len(frame), JSON_PIECE):
            piece = json.dumps(_records(frame.iloc[lo:lo + JSON_PIECE]), indent=1)
            yield ("[\n" if lo == 0 else ",\n") + " " + piece[2:-2].replace("\n", "\n ")  # a level deeper
            del piece
        yield "\n ]"
    yield text[at:] + "\n"


def title_of(data: MemoryData) -> str:
    """A snapshot's name for headings: its folder's for memory.pickle, else the file's stem."""
    return data.path.parent.name if data.path.name == layout.MEMORY_SNAPSHOT else data.path.stem


def outputs(data: MemoryData, m: mem.MemoryAnalysis, *, fmt: str, top: int = 10, kernels: pd.DataFrame | None = None,
            png: bool = False, html: bool = False) -> tuple[Iterator[str], bytes | None, str | None]:
    """`profkit report memory`'s text (in pieces, to be written one by one: report_pieces()), and its
    PNG and HTML when asked: all computed before anything is written."""
    title = title_of(data)
    text = report_pieces(data, m, fmt=fmt, title=title, top=top, kernels=kernels)
    image = chart_png(m, title=f"{title}: allocated memory") if png else None
    doc = page(result(data, m, top=top, kernels=kernels), m, title=title, top=top) if html else None
    return text, image, doc


# --- the chart --------------------------------------------------------------------------------

def _nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about `ticks` ticks.

    >>> _nice_step(0.6), _nice_step(119.6), _nice_step(7)
    (0.2, 25.0, 2.0)
    """
    raw = max(span, 1e-12) / ticks
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag * (1 + 1e-9):
            return round(m * mag, 12)
    return 10 * mag


def chart_png(m: mem.MemoryAnalysis, *, title: str, width: int = 1100, height: int = 460) -> bytes:
    """Allocated memory over the window (filled), reserved (a gray line), forward/backward/optimizer
    shaded, the peak marked in red."""
    line = mem.timeline(m, points=width)
    ph = mem.phases(m)
    c = Canvas(width, height)
    left, right, top, bottom = 110, width - 20, 60, height - 60
    c.text(left, 14, title[:80], scale=2)
    t_end = float(max(line["t_us"].max() if len(line) else 1, 1))
    y_max = float(max(m.replay.peak_reserved_bytes, m.replay.peak_allocated_bytes, 1)) * 1.05
    gib = y_max >= 2**30
    unit, div = ("GiB", 2**30) if gib else ("MiB", 2**20)

    def x_of(t: float) -> int:
        return left + int(round((right - left) * min(max(t, 0.0), t_end) / t_end))

    def y_of(b: float) -> int:
        return bottom - int(round((bottom - top) * b / y_max))

    for _, p in ph.iterrows():
        c.rect(x_of(p["start_us"]), top, max(x_of(p["end_us"]), x_of(p["start_us"]) + 1), bottom,
               PHASE_COLORS[p["phase"]])
    # allocated: the highest value of each pixel column, as a step function
    ts, alloc, res = line["t_us"].tolist(), line["allocated_bytes"].tolist(), line["reserved_bytes"].tolist()
    col_a: dict[int, int] = {}
    col_r: dict[int, int] = {}
    for t, a, r in zip(ts, alloc, res, strict=True):
        x = x_of(t)
        col_a[x] = max(col_a.get(x, 0), a)
        col_r[x] = max(col_r.get(x, 0), r)
    last_a = last_r = None
    prev_y = None
    for x in range(left, right + 1):
        a = col_a.get(x, last_a)
        r = col_r.get(x, last_r)
        if a is not None:
            c.rect(x, y_of(a), x + 1, bottom, ALLOCATED_COLOR)
            last_a = a
        if r is not None:
            y = y_of(r)
            c.line(x, prev_y if prev_y is not None else y, x, y, RESERVED_COLOR, 2)
            prev_y = y
            last_r = r
    # axes, ticks
    c.line(left, bottom, right, bottom, (0, 0, 0))
    c.line(left, top, left, bottom, (0, 0, 0))
    step = _nice_step(y_max / div)
    v = 0.0
    while v * div <= y_max:
        y = y_of(v * div)
        c.line(left - 5, y, left, y, (0, 0, 0))
        label = f"{v:g}"
        c.text(left - 10 - text_width(label), y - 7, label)
        v += step
    c.text(8, top - 22, unit, scale=2)
    ms_end = t_end / 1e3
    step = _nice_step(ms_end)
    v = 0.0
    while v <= ms_end + 1e-9:
        x = x_of(v * 1e3)
        c.line(x, bottom, x, bottom + 5, (0, 0, 0))
        label = f"{v:g}"
        c.text(x - text_width(label) // 2, bottom + 10, label)
        v += step
    c.text(right - text_width("ms"), bottom + 32, "ms")
    # the peak
    if m.peak_time_us is not None:
        x, y = x_of(m.peak_time_us), y_of(m.replay.peak_allocated_bytes)
        c.line(x, top, x, bottom, PEAK_COLOR, 2)
        c.rect(x - 4, y - 4, x + 5, y + 5, PEAK_COLOR)
        label = f"peak {m.replay.peak_allocated_bytes / div:,.2f} {unit}"
        lx = x + 8 if x + 8 + text_width(label) < right else x - 8 - text_width(label)
        c.text(lx, top + 4, label, PEAK_COLOR)
    # legend
    lx = left + text_width(title[:80]) + 30
    for name, color in [("allocated", ALLOCATED_COLOR), ("reserved", RESERVED_COLOR),
                        *[(k, v) for k, v in PHASE_COLORS.items() if k in set(ph["phase"])]]:
        if lx + 20 + text_width(name) > width:
            break
        c.rect(lx, 16, lx + 14, 30, color)
        lx = c.text(lx + 20, 16, name) + 16
    return c.png()


# --- the page ---------------------------------------------------------------------------------

def _svg(m: mem.MemoryAnalysis, width: int = 1000, height: int = 380) -> str:
    line = mem.timeline(m, points=width)
    ph = mem.phases(m)
    left, right, top, bottom = 70, width - 10, 10, height - 40
    t_end = float(max(line["t_us"].max() if len(line) else 1, 1))
    y_max = float(max(m.replay.peak_reserved_bytes, m.replay.peak_allocated_bytes, 1)) * 1.05
    unit, div = ("GiB", 2**30) if y_max >= 2**30 else ("MiB", 2**20)

    def x_of(t: float) -> float:
        return left + (right - left) * min(max(t, 0.0), t_end) / t_end

    def y_of(b: float) -> float:
        return bottom - (bottom - top) * b / y_max

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
             'font-family="sans-serif" font-size="12">']
    for _, p in ph.iterrows():
        color = "rgb({},{},{})".format(*PHASE_COLORS[p["phase"]])
        x0, x1 = x_of(p["start_us"]), x_of(p["end_us"])
        parts.append(f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 0.5):.1f}" height="{bottom - top}" '
                     f'fill="{color}"><title>{html.escape(p["step"])}/{p["phase"]}: '
                     f'{p["start_us"] / 1e3:,.3f}-{p["end_us"] / 1e3:,.3f} ms</title></rect>')
    pts = []
    prev = None
    for t, a in zip(line["t_us"].tolist(), line["allocated_bytes"].tolist(), strict=True):
        if prev is not None:
            pts.append(f"{x_of(t):.1f},{y_of(prev):.1f}")
        pts.append(f"{x_of(t):.1f},{y_of(a):.1f}")
        prev = a
    if pts:
        area = f"{x_of(0):.1f},{bottom} " + " ".join(pts) + f" {pts[-1].split(',')[0]},{bottom}"
        parts.append(f'<polygon points="{area}" fill="rgb(31,94,168)" fill-opacity="0.85"/>')
    rpts = " ".join(f"{x_of(t):.1f},{y_of(r):.1f}" for t, r in zip(line["t_us"].tolist(),
                                                                     line["reserved_bytes"].tolist(), strict=True))
    parts.append(f'<polyline points="{rpts}" fill="none" stroke="gray" stroke-width="1.5"/>')
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>')
    step = _nice_step(y_max / div)
    v = 0.0
    while v * div <= y_max:
        y = y_of(v * div)
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        v += step
    parts.append(f'<text x="4" y="{top + 12}">{unit}</text>')
    step = _nice_step(t_end / 1e3)
    v = 0.0
    while v <= t_end / 1e3 + 1e-9:
        parts.append(f'<text x="{x_of(v * 1e3):.1f}" y="{bottom + 16}" text-anchor="middle">{v:g}</text>')
        v += step
    parts.append(f'<text x="{right}" y="{bottom + 32}" text-anchor="end">ms</text>')
    if m.peak_time_us is not None:
        x, y = x_of(m.peak_time_us), y_of(m.replay.peak_allocated_bytes)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="rgb(200,30,30)" '
                     f'stroke-width="1.5"/><circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="rgb(200,30,30)">'
                     f'<title>peak {m.replay.peak_allocated_bytes:,} B in {html.escape(m.peak_path)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(r: dict[str, Any], m: mem.MemoryAnalysis, *, title: str, top: int = 10) -> str:
    """memory.html: the timeline as inline SVG and the report's tables, one file that needs no
    network (no script, no stylesheet or font from anywhere)."""
    legend = " ".join(f'<span class="key" style="background:rgb{c}"></span>{html.escape(k)}'
                      for k, c in [("allocated", ALLOCATED_COLOR), ("reserved", RESERVED_COLOR), *PHASE_COLORS.items()])
    cats = _html_table(["category", "MiB", "% of peak", "allocations"],
                       [[mem.CATEGORIES.get(c["category"], c["category"]), _mib(c["bytes"]), f"{c['pct']:.1f}",
                         f"{c['allocations']:,}"] for c in r["categories"]])
    by_path = _html_table(["path", "MiB", "% of peak"], [[p["path"], _mib(p["bytes"]), f"{p['pct']:.1f}"]
                                                         for p in r["at_peak_by_path"][:top]])
    tops = _html_table(["MiB", "requested B", "category", "path", "top user frame"],
                       [[_mib(a["bytes"]), f"{a['requested']:,}", mem.CATEGORIES.get(a["category"], ""), a["path"],
                         a["frame"] or "(no Python frame)"] for a in r["top_allocations"]])
    paths = _html_table(["path", "allocated MiB", "at entry MiB", "at exit MiB", "peak MiB", "rise MiB"],
                        [[p["path"], _mib(p["allocated_bytes"]), _mib(p["entry_bytes"]), _mib(p["exit_bytes"]),
                          _mib(p["peak_bytes"]), _mib(p["rise_bytes"])] for p in r["paths"]])
    kernels = "" if "kernels" not in r else "<h2>GPU time beside memory</h2>" + _html_table(
        ["path", "GPU ms", "% GPU time", "allocated MiB", "rise MiB"],
        [[k["path"], f"{k['gpu_ns'] / 1e6:,.3f}", f"{k['gpu_pct']:.1f}", _mib(k["allocated_bytes"]),
          _mib(k["rise_bytes"])] for k in r["kernels"]])
    summary = html.escape(markdown(r, title=title, top=top).split("\n## ")[0].split("\n", 2)[-1].strip())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Memory: {html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:0.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.key{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}}
pre{{white-space:pre-wrap}}</style></head><body>
<h1>Memory: {html.escape(title)}</h1>
<pre>{summary}</pre>
<p>{legend}</p>
{_svg(m)}
<h2>At the peak, by category</h2>{cats}
<h2>At the peak, by path where allocated</h2>{by_path}
<h2>Largest allocations at the peak</h2>{tops}
<h2>Per path</h2>{paths}
{kernels}
<p>The allocator history itself is the snapshot ({html.escape(Path(r["snapshot"]).name)}): PyTorch's viewer,
pytorch.org/memory_viz, opens it in the browser, which reads the file locally.</p>
</body></html>
"""


# --- compare ----------------------------------------------------------------------------------

def labels(paths: list[Path]) -> list[str]:
    """A label per snapshot: its folder's name for memory.pickle, else the file's stem; numbered when
    repeated.

    >>> labels([Path("runs/a/memory.pickle"), Path("x.pickle"), Path("b/memory.pickle")])
    ['a', 'x', 'b']
    """
    names = [p.name if p.is_dir() else p.parent.name if p.name == layout.MEMORY_SNAPSHOT else p.stem for p in paths]
    return [f"{n} ({names[:i].count(n) + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def compare(items: list[tuple[MemoryData, mem.MemoryAnalysis]], names: list[str], *, fmt: str, top: int = 15) -> str:
    """Several snapshots: peaks, and at each peak what holds memory by category and by path (steps
    folded), with deltas against the first."""
    cats = mem.compare_memory([m for _, m in items], names, by="category")
    paths = mem.compare_memory([m for _, m in items], names, by="path")
    peaks: list[dict[str, Any]] = [{"capture": n, "peak_allocated_bytes": m.replay.peak_allocated_bytes,
              "peak_reserved_bytes": m.replay.peak_reserved_bytes, "peak_path": m.peak_path,
              "delta_bytes": m.replay.peak_allocated_bytes - items[0][1].replay.peak_allocated_bytes}
             for (_, m), n in zip(items, names, strict=True)]
    if fmt == "json":
        return json.dumps({"peaks": peaks, "categories": _records(cats), "paths": _records(paths)}, indent=1) + "\n"
    lines = ["# Memory compared", ""]
    lines.append(markdown_table(["snapshot", "model · mode · dtype", "peak MiB", "Δ MiB", "reserved MiB", "peak in"],
                                [[p["capture"], " · ".join(str(d.run.get(k, "?")) for k in ("model", "mode", "dtype")),
                                  _mib(p["peak_allocated_bytes"]), _mib(p["delta_bytes"]),
                                  _mib(p["peak_reserved_bytes"]), f"`{p['peak_path']}`"]
                                 for p, (d, _) in zip(peaks, items, strict=True)], align="llrrrl"))

    def wide(frame: pd.DataFrame, label: Any) -> str:
        w = frame.pivot(index="key", columns="capture", values="bytes").reindex(frame["key"].drop_duplicates())
        rows = []
        for key, row in w.head(top).iterrows():
            cells = [label(key)]
            for i, n in enumerate(names):
                cells.append(_mib(row[n]) if i == 0 else f"{_mib(row[n])} ({_mib(row[n] - row[names[0]])})")
            rows.append(cells)
        return markdown_table(["", *[f"{n} MiB" + (" (Δ)" if i else "") for i, n in enumerate(names)]], rows)

    lines += ["## At each peak, by category", "", wide(cats, lambda k: mem.CATEGORIES.get(k, k))]
    lines += ["## At each peak, by path where allocated (steps folded)", "", wide(paths, lambda k: f"`{k}`")]
    return "\n".join(lines).rstrip() + "\n"
