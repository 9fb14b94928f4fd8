"""`profkit report ranks` and report.md's multi-rank section: one row per rank, communication by
collective, hidden against exposed, waits, bus bandwidth, the slowest rank and why, and a timeline
PNG of one step with a lane per rank. Every number comes from profkit.analyze.ranks."""

from __future__ import annotations

import json
import math
from pathlib import Path

from profkit.analyze.ranks import RanksResult
from profkit.report.formats import FORMATS, ReportError, graph_note
from profkit.report.tables import markdown_table

JSON_KEYS = ["rank", "steps", "step_ms", "step_min_ms", "step_max_ms", "compute_ns", "comm_ns", "comm_hidden_ns",
             "comm_exposed_ns", "wait_ns", "by_collective"]


def _ms(ns: float) -> str:
    return f"{ns / 1e6:,.3f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


def ranks_markdown(r: RanksResult, *, png: str | None = None, heading: str = "##") -> str:
    """The ranks report as markdown (report.md embeds it under its own heading level)."""
    t = r.table
    gpu = bool((t["compute_ns"] + t["comm_ns"]).sum()) if not t.empty else False
    lines = [f"{heading} Ranks: {len(t)}, per measured step", "",
             f"Clocks: {r.alignment}. GPU time per measured step: compute is the union of the rank's non-NCCL kernels, "
             "communication the union of its NCCL kernels; communication is *hidden* while a compute kernel of the "
             "same device runs, *exposed* otherwise; wait: the time the rank's collectives waited for the last rank "
             "to arrive.", ""]
    rows = [[str(int(x["rank"])), str(int(x["steps"])), f"{x['step_ms']:.2f}", f"{x['step_min_ms']:.2f} – "
             f"{x['step_max_ms']:.2f}", _ms(x["compute_ns"]), _ms(x["comm_ns"]), _ms(x["comm_hidden_ns"]),
             _ms(x["comm_exposed_ns"]), _pct(x["comm_exposed_ns"], x["comm_ns"]), _ms(x["wait_ns"])]
            for _, x in t.iterrows()]
    lines += [markdown_table(["rank", "steps", "step ms (median)", "min – max", "compute ms", "comm ms", "hidden ms",
                              "exposed ms", "exposed %", "wait ms"], rows)]
    if not gpu:
        lines += ["No CUDA kernels in these captures (CPU ranks talk through gloo, which runs no kernels): step "
                  "times only.", ""]
    c = r.collectives
    if not c.empty:
        rows = [[str(int(x["rank"])), str(x["collective"]), f"{x['count']:g}", _ms(x["gpu_ns"]), _ms(x["hidden_ns"]),
                 _ms(x["exposed_ns"])] for _, x in c.sort_values(["collective", "rank"]).iterrows()]
        lines += [f"{heading}# Communication by collective (per step)", "",
                  markdown_table(["rank", "collective", "kernels", "GPU ms", "hidden ms", "exposed ms"], rows)]
    b = r.bandwidth
    if not b.empty:
        rows = [[str(x["collective"]), f"{x['instances']:g}",
                 "—" if x["size_bytes"] < 0 else f"{x['size_bytes'] / 1e6:,.2f}", str(x["source"]) or "—",
                 _ms(x["time_ns"]),
                 "—" if math.isnan(x["algbw_gbps"]) else f"{x['algbw_gbps']:,.1f}",
                 "—" if math.isnan(x["busbw_gbps"]) else f"{x['busbw_gbps']:,.1f}"] for _, x in b.iterrows()]
        lines += [f"{heading}# Bandwidth (nccl-tests' definitions)", "",
                  "size S per step: from NCCL's NVTX payload where the export has it (all-gather, reduce-scatter: "
                  f"{len(t)} x the per-rank message), else from the run record (model: parameters x bytes each; DDP "
                  "all-reduces every fp32 gradient once per backward, FSDP2 all-gathers the blocks' parameters in "
                  "forward and backward and the root's once, and reduce-scatters fp32 gradients); nsys 2025.3.1 "
                  "exports NCCL's ranges without their payload. time: from the last rank's arrival to the end (the "
                  "kernel's own time with one rank); algbw = S / time, busbw = algbw x 2(n-1)/n for all-reduce, "
                  "x (n-1)/n for all-gather and reduce-scatter. — where neither gives a size.", "",
                  markdown_table(["collective", "instances", "S MB", "S from", "time ms", "algbw GB/s", "busbw GB/s"],
                                 rows)]
    lines += slowest_lines(r) + [""]
    notes = [f"rank {rank}: {note.removeprefix('Note: ')}" for rank, (n, ns) in sorted(r.graphs.items())
             if (note := graph_note(n, ns)) is not None]
    if notes:
        lines += [f"Note: {'; '.join(notes)}", ""]
    if png:
        lines += [f"![one step, a lane per rank]({png})", ""]
    return "\n".join(lines)


def slowest_lines(r: RanksResult) -> list[str]:
    s, sp = r.slowest, r.spread
    if not s:
        return []
    line = f"**Slowest rank: {s['rank']}**"
    if s["by"] == "waits":
        line += (f" (the others wait for it: it waited {_ms(float(s['wait_ns']))} ms per step at collectives, the "  # type: ignore[arg-type]
                 f"others {_ms(float(s.get('others_wait_ns', 0)))} ms)")  # type: ignore[arg-type]
    else:
        line += f" (largest median step, {float(s['step_ms']):.2f} ms" + (  # type: ignore[arg-type]
            f" against {float(s['others_step_ms']):.2f} ms for the others)" if "others_step_ms" in s else ")")  # type: ignore[arg-type]
    if "others_compute_ns" in s and (s["compute_ns"] or s["others_compute_ns"]):
        line += (f"; its compute {_ms(float(s['compute_ns']))} ms per step against the others' median "  # type: ignore[arg-type]
                 f"{_ms(float(s['others_compute_ns']))} ms")  # type: ignore[arg-type]
    line += "; every rank had the same batch (the same tokens per step), so its input did not differ."
    spread = [f"step {sp['step_ms']:.2f} ms"] + [f"{k.removesuffix('_gpu_ns')} {_ms(v)} ms" for k, v in sp.items()
                                                   if k.endswith("_gpu_ns")]
    return [line, "", "Spread across ranks (max - min): " + ", ".join(spread) + "."]


def ranks_report(r: RanksResult, *, fmt: str = "markdown", png: str | None = None) -> str:
    """`profkit report ranks`: markdown, or JSON (one object per rank, JSON_KEYS) / CSV (one row per
    rank, by_collective flattened to `<collective>_<field>` columns)."""
    if fmt == "markdown":
        return ranks_markdown(r, png=png, heading="#")
    if fmt == "json":
        records = json.loads(r.table[JSON_KEYS].to_json(orient="records"))
        return json.dumps(records, indent=2) + "\n"
    if fmt == "csv":
        flat = r.table.drop(columns=["by_collective"])
        for _, x in r.collectives.iterrows():
            for field in ("count", "gpu_ns", "hidden_ns", "exposed_ns"):
                flat.loc[flat["rank"] == x["rank"], f"{x['collective']}_{field}"] = x[field]
        return flat.to_csv(index=False)
    raise ReportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


LANE_COLORS = {"compute": "#4c72b0", "communication": "#dd8452"}


def timeline_png(r: RanksResult, path: Path) -> str:  # pragma: no cover - needs matplotlib
    """One measured step, a lane per rank (compute, communication, idle in between); returns a note."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "timeline PNG skipped: matplotlib is not installed (pip install matplotlib)"
    lanes = r.lanes
    if lanes.empty:
        return "timeline PNG skipped: no measured step ranges"
    ranks = sorted(lanes["rank"].unique())
    fig, ax = plt.subplots(figsize=(12, 0.6 + 0.5 * len(ranks)))
    for y, rank in enumerate(ranks):
        mine = lanes[lanes["rank"] == rank]
        step = mine[mine["lane"] == "step"]
        ax.broken_barh([(s / 1e6, (e - s) / 1e6) for s, e in zip(step["start_ns"], step["end_ns"], strict=True)],
                       (y - 0.4, 0.8), facecolors="#eeeeee")
        for lane, dy in (("compute", -0.35), ("communication", 0.0)):
            f = mine[mine["lane"] == lane]
            ax.broken_barh([(s / 1e6, (e - s) / 1e6) for s, e in zip(f["start_ns"], f["end_ns"], strict=True)],
                           (y + dy, 0.35), facecolors=LANE_COLORS[lane], label=lane if y == 0 else None)
    ax.set_yticks(range(len(ranks)), [f"rank {r}" for r in ranks])
    ax.set_xlabel(f"ms ({r.alignment}); grey: the step range, white gaps: idle")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"

