"""A multi-rank capture in, the ranks report's tables out: each rank parsed on its own, in parallel
processes, down to small tables (its communication kernels, NCCL's ranges, one step's merged
intervals, its totals), then merged by profkit.analyze.ranks.

    profiles/NAME/rank{R}.sqlite   one export per rank: one process per rank (up to --jobs), each
                                   returning an analyze.ranks.RankInput (no compute kernel rows)
    profiles/NAME/profile.sqlite   --single-file: parsed once, split by process (the rank each
                                   process's `profkit/rank{R}` NVTX domain names)

So 64 ranks cost about 64 / cores times one rank, and memory holds a few ranks' exports at a
time (scripts/bench_parser.py --ranks measures both). `check_rank_capture` is the launcher's test
of a fresh multi-rank capture.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from profkit import layout
from profkit.pipeline import InputError, capture_ranks, check_export, load, single_file, summarize

if TYPE_CHECKING:
    from profkit.analyze.ranks import RankInput, RanksResult
    from profkit.pipeline import Analysis


def _steps(a: Analysis) -> object:
    """The measured `step_i` ranges (top level) of an analysed export: name, start_ns, end_ns."""
    r = a.ranges
    top = r[(r["depth"] == 0) & r["name"].astype(str).str.fullmatch(r"step_\d+")] if not r.empty else r
    return top[["name", "start_ns", "end_ns"]].reset_index(drop=True) if not r.empty else \
        a.data.nvtx.iloc[:0][["name", "start_ns", "end_ns"]]


def rank_input(folder: Path, rank: int, *, rules: Path | None = None) -> RankInput:
    """One rank's part of the report, read from its own export (what a worker process returns)."""
    from profkit.analyze import ranks as analysis
    from profkit.parse_ranks import load_nccl_ranges, session_start_ns

    a = load(folder, rules=rules, activity=False, rank=rank, compact=True)  # one process of --single-file: in full
    export = a.data.path
    pid = int(a.data.kernels["global_pid"].iloc[0]) if single_file(folder) and len(a.data.kernels) else None
    nccl = load_nccl_ranges(export)
    if single_file(folder) and pid is not None:
        nccl = nccl[nccl["global_pid"] == pid]
    record = layout.find_run(folder, rank)
    return analysis.rank_input(rank, a.kernels, _steps(a), nccl,  # type: ignore[arg-type]
                               steps_ms=record.steps_ms if record is not None else None,
                               session_start=session_start_ns(export))


def _job(args: tuple[Path, int, Path | None]) -> RankInput:
    folder, rank, rules = args
    return rank_input(folder, rank, rules=rules)


def load_ranks(folder: Path, *, rules: Path | None = None, jobs: int | None = None) -> RanksResult:
    """Every rank of a multi-rank capture folder, merged.

    Args:
        jobs: worker processes (default: the CPUs, at most the ranks); 1 reads in this process.

    Raises:
        InputError: not a multi-rank capture; ProfkitError: a rank's export cannot be used.
    """
    from profkit.analyze.ranks import merge

    ranks = capture_ranks(folder)
    if not ranks:
        raise InputError(f"{folder} is not a multi-rank capture (no rank{{R}}.sqlite, rank{{R}}.nsys-rep or "
                         "rank{R}.run.json); capture one with profkit profile --nproc-per-node N --strategy ddp")
    one = single_file(folder)
    n = max(1, min(jobs or os.cpu_count() or 1, len(ranks)))
    args = [(folder, r, rules) for r in ranks]
    if n == 1 or one:  # one export: parsed once per rank here (a worker would parse it again)
        inputs = [_job(a) for a in args]
    else:
        with ProcessPoolExecutor(max_workers=n) as pool:
            inputs = list(pool.map(_job, args))
    return merge(inputs, one_clock=one, model=record_sizes(folder, ranks[0]))


def record_sizes(folder: Path, rank: int) -> dict[str, tuple[int, str]]:
    """The bytes per step each collective moves, from the run record (analyze.ranks.model_sizes);
    empty without a record."""
    from profkit.analyze.ranks import model_sizes

    record = layout.find_run(folder, rank)
    if record is None:
        return {}
    c = record.config
    return model_sizes(c.strategy, c.dtype, record.resolved.params, model=c.model, grad_accum=c.grad_accum)


def check_rank_capture(folder: Path) -> None:
    """`profkit profile --nproc-per-node N`'s test of a fresh capture: every rank's record and
    export, with kernels on CUDA and its ranges (in a single file: one process per rank).

    Raises:
        ProfkitError: a rank's export misses what its run emitted.
    """
    from profkit import parse
    from profkit.parse_ranks import process_ranks

    records = layout.rank_files(folder, layout.RANK_RUN)
    if single_file(folder):
        export = folder / layout.EXPORT
        pids = process_ranks(export)
        missing = sorted(set(records) - set(pids.values()))
        record = layout.RunRecord.read_file(next(iter(records.values())))
        if missing and record.resolved.nvtx:
            raise InputError(f"the export holds no process for rank(s) {', '.join(map(str, missing))}: nsys did not "
                             "follow torchrun's children, or their ranges were lost")
        data = parse.load(export, allow_incomplete=True, launches=False)
        device = record.resolved.device.split(":")[0]
        check_export(summarize(data), device=device, steps=record.config.steps, ranges=record.resolved.nvtx)
        if device == "cuda":
            parse.check_complete(data)
        return
    for rank, path in records.items():
        record = layout.RunRecord.read_file(path)
        data = parse.load(folder / layout.RANK_EXPORT.format(rank=rank), allow_incomplete=True, launches=False)
        device = record.resolved.device.split(":")[0]
        try:
            check_export(summarize(data), device=device, steps=record.config.steps, ranges=record.resolved.nvtx)
            if device == "cuda":
                parse.check_complete(data)
        except InputError as e:
            raise InputError(f"rank {rank}: {e}") from None
