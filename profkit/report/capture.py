"""A capture folder's report.md: the run, where the GPU time went, the top kernels, the ranges."""

from __future__ import annotations

from profkit import analyze
from profkit.analyze.ranks import RanksResult
from profkit.layout import RunRecord
from profkit.pipeline import Analysis
from profkit.report.flops import section as flops_section
from profkit.report.formats import frame_graph_note
from profkit.report.ranks import ranks_markdown
from profkit.report.tables import (
    categories_markdown,
    category_steps_markdown,
    kernels_markdown,
    mib,
    modules_markdown,
    steps_markdown,
)
from profkit.report.timeline import step_line, verdict_section

RANGE_DEPTH = 3  # report.md's range table: step > phase > layer > part
RANGE_ROWS = 40


def run_lines(run: RunRecord) -> list[str]:
    """The command, the machine and the step time, from the capture's run.json."""
    c, res, env, s = run.config, run.resolved, run.environment, run.summary
    machine = (f"On {env.gpu} (driver {env.driver}), torch {env.torch}, CUDA {env.cuda}. " if env.gpu
               else f"On CPU ({env.cpu_threads} threads), torch {env.torch}. ")
    return [
        f"`{c.command()}` — batch {res.batch_size} x {res.context_length}, "
        f"{res.params:,} parameters, {len(run.steps_ms)} measured steps.", "",
        machine + f"Under the profiler: mean {s.mean_ms:.2f} ± {s.std_ms:.2f} ms per step (profiled times are "
        "not bare times).", "", step_line(run.steps_ms), "",
    ] + ([f"Peak allocated memory over the measured steps (torch.cuda.max_memory_allocated): "
          f"{mib(run.peak_memory_bytes)} MiB; {mib(run.resident_memory_bytes)} MiB was allocated when they began "
          "(what warm-up left: weights, optimizer state, kept gradients).", ""]
         if run.peak_memory_bytes is not None else [])


def capture_markdown(a: Analysis, *, title: str, top: int = 15, ranks: RanksResult | None = None,
                     rank: int | None = None, png: str | None = None) -> str:
    """report.md's text for one analysed capture (its run.json, when it has one, first); for a
    multi-rank capture the ranks section (`ranks`) comes next, then rank `rank`'s sections."""
    lines = [f"# {title}", ""]
    if a.run is not None:
        lines += run_lines(a.run)
    if ranks is not None:
        lines += [ranks_markdown(ranks, png=png), f"## Rank {rank}", "",
                  f"The sections below are rank {rank}'s (`profkit report PROFILE --rank R` for another).", ""]
    lines += verdict_section(a)
    k = a.kernels
    if a.data.has_kernel_table and not k.empty:
        total = k["dur_ns"].sum()
        per_step = analyze.category_steps(k, a.transfers, a.ranges)
        lines += [f"{len(k):,} kernels, {total / 1e6:,.3f} ms of kernel time; "
                  f"{a.unattributed_pct:.2f}% of it launched outside every NVTX range.", ""]
        if (note := frame_graph_note(k)) is not None:
            lines += [note, ""]
        if per_step.empty:
            lines += ["## Where the GPU time went, by category (the whole capture)", "",
                      categories_markdown(analyze.category_shares(k, a.data.memcpy, a.data.memset)), ""]
        else:
            lines += ["## Where the GPU time went, by category, per measured step", "",
                      category_steps_markdown(per_step), ""]
        ranked = analyze.rank_kernels(k, top_k=top)
        lines += [f"## Top {top} kernels (all measured steps)", "", kernels_markdown(ranked), ""]
    else:
        lines += ["No CUDA kernels in this capture (a CPU run, or no CUDA traced).", ""]
    if not a.ranges.empty:
        folded = analyze.fold_steps(a.ranges, a.kernels, depth=RANGE_DEPTH)
        if not folded.empty:
            note = ("CPU ms: push to pop. GPU kernel ms: kernels launched while the range was open, nested ranges "
                    "and other threads (backward's autograd thread) included." if not k.empty else
                    "CPU ms: push to pop (a CPU capture: no GPU time).")
            lines += [f"## Ranges, per measured step (steps merged, {RANGE_DEPTH} levels, largest first)", "",
                      note + " Warm-up and compile are outside the steps and not counted; `profkit report nvtx "
                      "--steps merged` lists every level.", "",
                      steps_markdown(folded, gpu=not k.empty, top=RANGE_ROWS), ""]
        lines += modules_section(a)
    lines += flops_section(a)
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
