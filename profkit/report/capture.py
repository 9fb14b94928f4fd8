"""A capture folder's report.md: the run, where the GPU time went, the top kernels, the ranges."""

from __future__ import annotations

from profkit import analyze
from profkit.layout import RunRecord
from profkit.pipeline import Analysis
from profkit.report.tables import (
    categories_markdown,
    kernels_markdown,
    markdown_table,
    modules_markdown,
    nvtx_markdown,
)


def run_lines(run: RunRecord) -> list[str]:
    """The command, the machine and the step time, from the capture's run.json."""
    c, res, env, s = run.config, run.resolved, run.environment, run.summary
    machine = (f"On {env.gpu} (driver {env.driver}), torch {env.torch}, CUDA {env.cuda}. " if env.gpu
               else f"On CPU ({env.cpu_threads} threads), torch {env.torch}. ")
    return [
        f"`profkit run --model {c.model} --mode {c.mode} --dtype {c.dtype} --attn {c.attn}"
        + (" --compile" if c.compile else "") + f"` — batch {res.batch_size} x {res.context_length}, "
        f"{res.params:,} parameters, {len(run.steps_ms)} measured steps.", "",
        machine + f"Step time under the profiler: median {s.median_ms:.2f} ms, mean {s.mean_ms:.2f} ± "
        f"{s.std_ms:.2f} ms (profiled times are not bare times).", "",
    ]


def capture_markdown(a: Analysis, *, title: str, top: int = 15) -> str:
    """report.md's text for one analysed capture (its run.json, when it has one, first)."""
    lines = [f"# {title}", ""]
    if a.run is not None:
        lines += run_lines(a.run)
    k = a.kernels
    if a.data.has_kernel_table and not k.empty:
        total = k["dur_ns"].sum()
        lines += [f"{len(k):,} kernels, {total / 1e6:,.3f} ms of kernel time; "
                  f"{a.unattributed_pct:.2f}% of it launched outside every NVTX range.", "",
                  "## Where the GPU time went, by category", "",
                  categories_markdown(analyze.category_shares(k, a.data.memcpy, a.data.memset)), "",
                  f"## Top {top} kernels", "", kernels_markdown(analyze.rank_kernels(k, top_k=top)), ""]
    else:
        lines += ["No CUDA kernels in this capture (a CPU run, or no CUDA traced).", ""]
    if not a.ranges.empty:
        summary = analyze.nvtx_summary(a.ranges, a.kernels, by="name")
        if k.empty:  # a CPU capture: only host time to show
            rows = [[str(r.name), f"{int(r.instances):,}", f"{r.cpu_total_ns / 1e6:,.3f}"]
                    for r in summary.itertuples()]
            table = markdown_table(["name", "instances", "CPU ms"], rows)
            note = "CPU ms: time between push and pop, all instances added."
        else:
            table = nvtx_markdown(summary, "name")
            note = ("GPU kernel ms: kernels launched while the range was open, nested ranges and other threads "
                    "(backward's autograd thread) included.")
        lines += ["## NVTX ranges, by name (all instances added)", "", note, "", table, ""]
        lines += modules_section(a)
    return "\n".join(lines)


def modules_section(a: Analysis) -> list[str]:
    """report.md's module table: forward against backward per module, when kernels ran in them."""
    table = analyze.module_table(a.ranges)
    if table.empty or a.kernels.empty:
        return []
    return ["## Modules: forward against backward (mean per measured step)", "",
            "GPU ms of the kernels under `step_i/forward/MODULE` and `step_i/backward/MODULE`, nested ranges "
            "included; bwd/fwd near 2 is usual for matmul-heavy modules; step %: both phases, of the step's GPU "
            "time.", "", modules_markdown(table), ""]
