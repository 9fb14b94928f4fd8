"""profkit's command line: a thin click layer over the library."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from click_default_group import DefaultGroup

from profkit import __version__
from profkit.config import COMPILE_MODES, DEVICES, DTYPES, MEMORY_STACKS, MODES, OPTIMIZERS, STRATEGIES, RunConfig
from profkit.errors import ProfkitError
from profkit.layout import DEFAULT_DB
from profkit.sizes import ATTN_BACKENDS, SIZES

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
BAD_INPUT = 2  # exit code for anything the user can fix, as click uses for usage errors
PATH = click.Path(path_type=Path)
"""Every path argument's type, made once: click looks up its translations on disk for each one
(gettext, ~1 ms a type), a cost every command's start-up paid 27 times."""


class OneLineErrors(click.Group):
    """Every usage or domain error is one `Error: ...` line on stderr, exit code 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        except click.ClickException as e:  # one line, whatever the message holds (SQLite quotes a schema's lines)
            click.echo(f"Error: {' '.join(e.format_message().split())}", err=True)
            sys.exit(BAD_INPUT if isinstance(e, click.UsageError) else e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)


class BadInput(click.ClickException):
    exit_code = BAD_INPUT


def bad_input(message: str) -> click.ClickException:
    """The exception for anything the user can fix: one `Error: ...` line, exit code 2."""
    return BadInput(message)


def library(fn: Any) -> Any:
    """Call `fn()`, turning profkit's own errors into one `Error: ...` line (exit code 2)."""
    try:
        return fn()
    except ProfkitError as e:
        raise bad_input(str(e)) from None


@click.group(cls=OneLineErrors, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="profkit")
def cli() -> None:
    """Profile PyTorch transformer models with NVIDIA Nsight Systems.

    \b
    Example:
        profkit run --model small --mode fwd_bwd --dtype bf16 --attn flash
    """


def run_options(f: Any) -> Any:
    """The options of `profkit run` (shared with `profkit profile`); defaults live in RunConfig."""
    d = RunConfig()
    options = [
        click.option("--model", default=d.model, show_default=True,
                     help=f"Size ({', '.join(SIZES)}) or package.module:factory."),
        click.option("--mode", default=d.mode, show_default=True, help=f"One of {', '.join(MODES)}."),
        click.option("--attn", default=d.attn, show_default=True, help=f"One of {', '.join(ATTN_BACKENDS)}."),
        click.option("--dtype", default=d.dtype, show_default=True, help=f"One of {', '.join(DTYPES)} (autocast)."),
        click.option("--compile/--no-compile", "compile_", default=d.compile, help="torch.compile the model."),
        click.option("--compile-mode", default=d.compile_mode, show_default=True,
                     help=f"torch.compile mode with --compile: {', '.join(COMPILE_MODES)}."),
        click.option("--grad-accum", type=int, default=d.grad_accum, show_default=True,
                     help="Micro-batches (forward+backward) per step, gradients accumulated, one optimizer step."),
        click.option("--optimizer", default=d.optimizer, show_default=True,
                     help=f"mode step's optimizer: {', '.join(OPTIMIZERS)}."),
        click.option("--batch-size", type=int, default=d.batch_size, help="Default: the size's (CS336: 4)."),
        click.option("--context-length", type=int, default=d.context_length,
                     help="Default: the size's (CS336: 256)."),
        click.option("--warmup", type=int, default=d.warmup, show_default=True, help="Unmeasured steps first."),
        click.option("--steps", type=int, default=d.steps, show_default=True, help="Measured steps."),
        click.option("--device", default=d.device, help=f"One of {', '.join(DEVICES)}; default cuda if available."),
        click.option("--seed", type=int, default=d.seed, show_default=True),
        click.option("--nvtx", default=d.nvtx, show_default=True,
                     help="NVTX ranges: auto (when nsys or another tool is attached), on, off."),
        click.option("--nvtx-depth", type=int, default=d.nvtx_depth, show_default=True,
                     help="Module levels with ranges, for your own model."),
        click.option("--strategy", default=d.strategy, show_default=True,
                     help=f"Data parallelism across ranks: {', '.join(STRATEGIES)} (fsdp2: fully_shard per block)."),
        click.option("--nproc-per-node", type=int, default=d.nproc_per_node, show_default=True,
                     help="Ranks on this node, one GPU each, started by torchrun."),
        click.option("--nnodes", default=d.nnodes, show_default=True, help="torchrun's --nnodes (N or MIN:MAX)."),
        click.option("--node-rank", type=int, default=d.node_rank, help="torchrun's --node-rank."),
        click.option("--rdzv-backend", default=d.rdzv_backend, help="torchrun's --rdzv-backend (c10d)."),
        click.option("--rdzv-endpoint", default=d.rdzv_endpoint, help="torchrun's --rdzv-endpoint HOST:PORT."),
        click.option("--rdzv-id", default=d.rdzv_id, help="torchrun's --rdzv-id (under srun: SLURM_JOB_ID)."),
        click.option("--timeout", type=int, default=d.timeout, show_default=True,
                     help="Seconds a multi-rank job may run before it is ended and its ranks' stacks reported."),
        click.option("--memory-snapshot/--no-memory-snapshot", default=d.memory_snapshot,
                     help="Record the allocator history of the measured steps into memory.pickle (CUDA)."),
        click.option("--memory-stacks", type=click.Choice(MEMORY_STACKS), default=d.memory_stacks,
                     show_default=True, help="Frames per allocator event (all: C++ too, slow dumps)."),
        click.option("--memory-max-entries", type=int, default=d.memory_max_entries, show_default=True,
                     help="Allocator events kept by --memory-snapshot."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def make_config(**kwargs: Any) -> RunConfig:
    kwargs["compile"] = kwargs.pop("compile_")
    try:
        return RunConfig(**kwargs)
    except ValueError as e:
        raise bad_input(str(e)) from None


@cli.command(context_settings=CONTEXT_SETTINGS)
@run_options
@click.option("--out", type=PATH, help="Folder for run.json (default: runs/<label>-<time>).")
@click.option("--force", is_flag=True, help="Overwrite an existing run.json.")
def run(**kwargs: Any) -> None:
    """Run one workload and time its measured steps.

    Warm-up steps run first; the measured steps sit inside NVTX ranges step_0..step_{n-1}
    and between cudaProfilerStart/Stop, so an nsys capture launched with
    --capture-range=cudaProfilerApi records exactly them. Writes run.json to --out.

    \b
    Example:
        profkit run --model small --mode step --dtype bf16 --attn flash
        profkit run --model tiny --device cpu --out runs/tiny
    """
    cfg = make_config(**kwargs)
    from profkit.collect import distributed

    rank = library(distributed.rank_env)
    if rank is None and cfg.distributed:
        return _run_ranks(cfg)
    if rank is not None:
        return _run_rank(cfg, rank)
    from profkit.collect.workload import run as run_workload  # imports torch
    from profkit.console import print_run, progress

    try:
        with progress(cfg) as report:
            record = run_workload(cfg, progress=report)
    except ProfkitError as e:
        raise bad_input(str(e)) from None
    print_run(record)
    if record.memory is not None:
        m = record.memory
        cost = f"{m.overhead_pct:+.1f}% step time" if m.overhead_pct is not None else "cost not measured"
        click.echo(f"memory snapshot: {record.config.out}/{m.snapshot} ({m.events:,} events, "
                   f"{m.pickle_bytes / 2**20:.2f} MiB, dumped in {m.dump_ms:.0f} ms; history {cost})"
                   + (" OVERFLOWED: raise --memory-max-entries" if m.overflowed else ""))
        click.echo(f"next: profkit report memory {record.config.out}/{m.snapshot}")


def _run_ranks(cfg: RunConfig) -> None:
    """`profkit run --nproc-per-node N`: torchrun starts the ranks; one line per rank after."""
    from profkit import layout
    from profkit.collect import distributed, workload
    from profkit.console import print_run, status
    from profkit.report.timeline import step_line

    def go() -> Path:
        c = distributed.with_slurm(cfg)
        device, _ = workload.preflight(c)
        distributed.check_launch(c, device=device, gpus=workload.gpu_count())
        with status() as say:
            return distributed.run_ranks(c, device=device, status=say)

    folder = library(go)
    print_run(library(lambda: layout.RunRecord.read(folder)))
    for r, path in layout.rank_files(folder, layout.RANK_RUN).items():
        click.echo(f"rank {r}: " + step_line(library(lambda p=path: layout.RunRecord.read_file(p)).steps_ms))
    click.echo(f"run: {folder}/")


def _run_rank(cfg: RunConfig, rank: Any) -> None:
    """One rank of a torchrun job (profkit's or the user's own torchrun)."""
    import os

    from profkit.collect import distributed
    from profkit.collect.workload import run as run_workload  # imports torch

    if cfg.strategy == "none" and rank.world_size > 1:
        raise bad_input(f"running as rank {rank.rank} of {rank.world_size} under torchrun: pass --strategy ddp or "
                        "fsdp2, or each rank trains its own copy")
    if os.environ.get(distributed.LAUNCHED_ENV) and cfg.out is not None:
        library(lambda: distributed.redirect_output(cfg.out, rank.rank))
    record = library(lambda: run_workload(cfg, rank=rank))
    s = record.summary
    click.echo(f"rank {rank.rank}/{rank.world_size}: median {s.median_ms:.2f} ms/step, {s.tokens_per_s:,.0f} tokens/s")


@cli.command(context_settings=CONTEXT_SETTINGS)
@run_options
@click.option("--name", help="Capture folder name (default: <label>-<time>).")
@click.option("--out-dir", type=PATH, default=Path("profiles"), show_default=True,
              help="Where capture folders go.")
@click.option("--nsys", "nsys_path", help="The nsys to use (else $PROFKIT_NSYS, PATH, .tools/nsys).")
@click.option("--force", is_flag=True, help="Replace an existing capture folder of that name.")
@click.option("--single-file", is_flag=True, help="Several ranks: one nsys around torchrun, every rank a process "
              "of one export (default: one nsys per rank, rank{R}.nsys-rep).")
@click.argument("nsys_args", nargs=-1, type=click.UNPROCESSED)
def profile(name: str | None, out_dir: Path, nsys_path: str | None, force: bool, single_file: bool,
            nsys_args: tuple[str, ...], **kwargs: Any) -> None:
    """Capture one workload with Nsight Systems and export it to SQLite.

    Runs `nsys profile` around `python -m profkit run` with profkit's defaults (on CUDA:
    --trace=cuda,nvtx,osrt,cublas,cudnn --capture-range=cudaProfilerApi
    --capture-range-end=stop --sample=none --cpuctxsw=none --cuda-memory-usage=true, and
    --cuda-graph-trace=node when this nsys has it, so CUDA graphs show every kernel; on
    CPU, where there is no capture range, the whole short program with nvtx,osrt), then
    `nsys export --type sqlite`. nsys options after `--` override the defaults one flag at
    a time (`-- --cuda-graph-trace=graph` for nsys's own). Leaves
    OUT_DIR/NAME/{profile.nsys-rep, profile.sqlite, run.json, nsys.log}.

    \b
    Example:
        profkit profile --model small --mode step --dtype bf16
        profkit profile --model tiny --device cpu --name tiny-cpu -- --trace=nvtx,osrt,python-gil
    """
    cfg = make_config(**kwargs)
    from profkit.collect import distributed, launch, workload  # workload imports torch
    from profkit.console import status
    from profkit.nsys import check_options, find_nsys, profile_flags
    from profkit.pipeline import check_capture
    from profkit.ranks import check_rank_capture

    if single_file and not cfg.distributed:
        raise bad_input("--single-file puts several ranks into one export; give --nproc-per-node and --strategy")
    if library(distributed.rank_env) is not None:
        raise bad_input("profkit profile starts torchrun itself; run it once per node, not under torchrun")

    def go() -> Path:
        c = distributed.with_slurm(cfg)
        folder_name = launch.capture_name(c, name)
        device, cuda = workload.preflight(c)  # everything `run` would refuse, refused before nsys starts
        if c.distributed:
            distributed.check_launch(c, device=device, gpus=workload.gpu_count())
        nsys = find_nsys(nsys_path)
        flags = profile_flags(nsys)  # what it lists: the user's options are checked, profkit's added where it has them
        check_options(nsys, list(nsys_args), flags)
        launch.refuse_early(nsys, c, device=device, cuda=cuda, user_args=list(nsys_args))
        with status() as say:
            if c.distributed:
                return distributed.profile_ranks(nsys, c, device=device, name=folder_name, out_dir=out_dir,
                                                 user_args=list(nsys_args), single_file=single_file,
                                                 check=check_rank_capture, force=force, status=say, flags=flags)
            return launch.profile(nsys, c, device=device, name=folder_name, out_dir=out_dir,
                                  user_args=list(nsys_args), check=check_capture, force=force, status=say,
                                  flags=flags)

    folder = library(go)
    from profkit import layout
    from profkit.report.timeline import step_line

    click.echo(f"capture: {folder}/")
    for f in sorted(folder.iterdir()):
        click.echo(f"  {f.name:<20} {f.stat().st_size / 2**20:8.2f} MiB")
    records: dict[int | None, Path] = dict(layout.rank_files(folder, layout.RANK_RUN).items())
    for r, path in (records or {None: folder / layout.RUN_FILE}).items():
        line = step_line(library(lambda p=path: layout.RunRecord.read_file(p)).steps_ms) + " (under nsys)"
        click.echo(line if r is None else f"rank {r}: {line}")
    click.echo(f"next: profkit report {folder}" + (f"; profkit report ranks {folder}" if cfg.distributed else ""))


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--nsys", "nsys_path", help="Check this nsys instead of searching.")
@click.option("--measure-peaks", is_flag=True, help="Measure this GPU's matmul (bf16, fp16, tf32, fp32) and copy "
              "ceilings (~10 s) and cache them for `report flops --peaks measured`.")
def doctor(nsys_path: str | None, measure_peaks: bool) -> None:
    """One screen: versions, GPU, nsys and what it can trace, what is missing and how to fix it.

    Exits 1 when anything needs fixing. With --measure-peaks, first measures this GPU's
    ceilings (medians of large random matmuls and a device copy), cached per GPU and driver
    under $XDG_CACHE_HOME/profkit/peaks/.

    \b
    Example:
        profkit doctor
        profkit doctor --measure-peaks
    """
    from profkit.collect.doctor import diagnose, gpu_driver, summary
    from profkit.console import print_doctor

    if measure_peaks:
        from profkit import peaks
        from profkit.collect import peaks as measuring  # imports torch

        m = library(lambda: measuring.measure_this_gpu(gpu_driver()))
        click.echo(f"{m.gpu}: {summary(m)} (medians of {m.method['repeats']}); cached in "
                   f"{peaks.entry_path(m.gpu, m.driver)}")
    rows = diagnose(nsys_path)
    print_doctor(rows)
    if any(fix for _, _, fix in rows):
        sys.exit(1)  # something needs fixing: the table says what


def report_options(f: Any) -> Any:
    """Options every `profkit report` command shares."""
    f = click.option("--allow-incomplete", is_flag=True,
                     help="Report an export whose nsys analysis stopped early instead of refusing it.")(f)
    f = click.option("--rules", type=PATH, help="Extra kernel category rules (TOML).")(f)
    f = click.option("--no-cache", is_flag=True, help="Neither read nor write the result cache "
                     "($XDG_CACHE_HOME/profkit).")(f)
    return f


def rank_option(f: Any) -> Any:
    return click.option("--rank", type=click.IntRange(min=0), help="In a multi-rank capture, this rank's export "
                        "(default: rank 0, said on stderr).")(f)


def _rank_note(profile: Path, rank: int | None) -> None:
    """On a multi-rank capture without --rank, say which rank the report is of."""
    if rank is not None:
        return
    from profkit.pipeline import rank_note

    if (note := rank_note(profile)) is not None:
        click.echo(note, err=True)


def output_options(f: Any) -> Any:
    f = click.option("-o", "--output", type=PATH, help="Write to this file (never over one "
                     "that exists; - for stdout) instead of stdout.")(f)
    f = click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "json"]), default="markdown",
                     show_default=True)(f)
    return f


def emit(text: str, output: Path | None) -> None:
    """Print `text` (one final newline) or write it to a new file; `-o -` is stdout."""
    emit_pieces([text if text.endswith("\n") else text + "\n"], output)


def emit_pieces(pieces: Iterable[str], output: Path | None) -> None:
    """emit() of text that comes in pieces (ending in a newline), each written as it comes."""
    if output is None or str(output) == "-":
        for piece in pieces:
            click.echo(piece, nl=False)
        return
    from profkit import layout

    if output.exists():
        raise bad_input(f"{output} exists; choose another -o FILE")
    library(lambda: layout.write_pieces(output, pieces, replace=False))
    click.echo(f"wrote {output}", err=True)



def _png_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A PNG option's file: refused unless it ends in .png (the plotting library would guess a format)."""
    if value is not None and value.suffix.lower() != ".png":
        raise bad_input(f"--{param.name} {value}: give a file name ending in .png")
    return value


def _load(profile: Path, rules: Path | None, allow_incomplete: bool, nvtx: bool = True, activity: bool = True,
          use_cache: bool = False, rank: int | None = None) -> Any:
    from profkit import pipeline

    return library(lambda: pipeline.load(profile, rules=rules, allow_incomplete=allow_incomplete, nvtx=nvtx,
                                         activity=activity, use_cache=use_cache, rank=rank, compact=True))


@cli.group(cls=DefaultGroup, default="capture", default_if_no_args=True, context_settings=CONTEXT_SETTINGS)
def report() -> None:
    """Report on nsys exports: kernels, NVTX ranges, comparisons, a capture's report.md.

    Every report command takes a capture folder (profiles/NAME), its profile.sqlite or a
    .nsys-rep (exported to SQLite beside it first). `profkit report PROFILE` (the `capture`
    subcommand) writes report.md; `profkit report --demo` prints the report of a real H100
    export shipped with profkit.

    \b
    Example:
        profkit report profiles/small-step
        profkit report kernels profiles/small-step/profile.sqlite --by category
        profkit report compare profiles/small-fwd profiles/small-fwd_bwd profiles/small-step
    """


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=PATH, required=False)
@click.option("--demo", is_flag=True, help="Report on the H100 export that ships with profkit.")
@click.option("--top", type=int, default=15, show_default=True, help="Kernels listed.")
@click.option("--force", is_flag=True, help="Replace an existing report.md (and report.html).")
@click.option("--html", "html_page", is_flag=True, help="Also write report.html beside report.md: one self-contained "
              "page (tables, plots, the JSON of each section), no network.")
@rank_option
@report_options
def capture(profile: Path | None, demo: bool, top: int, force: bool, html_page: bool, rank: int | None,
            rules: Path | None, allow_incomplete: bool, no_cache: bool) -> None:
    """Write report.md for a capture: config, categories, top kernels, NVTX ranges.

    A capture folder gets PROFILE/report.md; a .sqlite or .nsys-rep elsewhere gets
    NAME.report.md beside it. An existing report.md is kept unless --force. --html adds
    report.html (NAME.report.html) beside it, under the same rule.

    \b
    Example:
        profkit report profiles/small-step-bf16
        profkit report profiles/small-step-bf16 --html
        profkit report --demo
    """
    from profkit import layout, pipeline
    from profkit.report import capture_markdown

    if demo and html_page:
        raise bad_input("--html writes report.html beside a capture; give PROFILE instead of --demo")
    if demo:
        a = library(pipeline.load_demo)
        title = "Demo: CS336 small, one AdamW step per capture step, on an H100"
        click.echo(capture_markdown(a, title=title, top=top), nl=False)
        return
    if profile is None:
        raise bad_input("give a capture folder (profiles/NAME), a subcommand (kernels, nvtx, compare) or --demo")
    out = library(lambda: layout.report_path(profile))
    page_out = library(lambda: layout.html_report_path(profile)) if html_page else None
    for path in (out, page_out):
        if path is not None and path.exists() and not force:
            raise bad_input(f"{path} exists; pass --force to replace it")
    title = layout.capture_title(profile)
    ranks = pipeline.capture_ranks(profile)
    r = (ranks[0] if rank is None else rank) if ranks else rank
    if ranks:  # a multi-rank capture: the ranks section, then one rank's sections
        from profkit.ranks import load_ranks
        from profkit.report.ranks import timeline_png

        merged: Any = library(lambda: load_ranks(profile, rules=rules))
        a = _load(profile, rules, allow_incomplete, use_cache=not no_cache, rank=r).slim()  # before any file is written
        png = out.with_name("ranks_timeline.png")
        note = timeline_png(merged, png)
        click.echo(note, err=True)
        text = capture_markdown(a, title=title, top=top, ranks=merged, rank=r,
                                png=png.name if note.startswith("wrote") else None)
    else:
        from profkit.report.flops import flops_stamp  # report.md has a FLOPs section when flops.json is there

        text = library(lambda: pipeline.cached_report(
            profile, "capture", {"top": top, "title": title, "allow_incomplete": allow_incomplete,
                                 "flops": flops_stamp(profile)},
            lambda: capture_markdown(_load(profile, rules, allow_incomplete, use_cache=not no_cache,
                                           rank=rank).slim(),
                                      title=title, top=top),
            rules=rules, use_cache=not no_cache, rank=rank))
    page = (_capture_html(profile, title, rules, allow_incomplete, no_cache, rank=r,
                          ranks=merged if ranks else None) if page_out is not None else None)
    library(lambda: layout.write_text(out, text))
    click.echo(f"report: {out}")
    if page_out is not None and page is not None:
        library(lambda: layout.write_text(page_out, page))
        click.echo(f"html: {page_out}")


def _capture_html(profile: Path, title: str, rules: Path | None, allow_incomplete: bool, no_cache: bool,
                  rank: int | None = None, ranks: Any = None) -> str:
    """report.html's text: the capture's sections, FLOPs from flops.json (or counted) when they can be had,
    memory when the folder holds memory.pickle, the ranks section of a multi-rank capture (`ranks`)."""
    import json

    from profkit import analyze, layout
    from profkit.report import html
    from profkit.report import memory as memory_report

    a = _load(profile, rules, allow_incomplete, use_cache=not no_cache, rank=rank)
    try:
        counted: Any = _flops_of(profile, a)
    except click.ClickException as e:  # no flops.json and nothing to count it with: the section says why
        counted = html.Unavailable(e.format_message())
    memory: Any = None
    if profile.is_dir() and (profile / layout.MEMORY_SNAPSHOT).is_file():
        try:  # as `report memory FOLDER/memory.pickle --format json` reports it (the folder is the capture)
            data, m = _memory(profile / layout.MEMORY_SNAPSHOT)
            kernels = analyze.nvtx_summary(a.ranges, a.kernels, by="path")
            memory = json.loads(memory_report.report(data, m, fmt="json", title="", kernels=kernels))
        except click.ClickException as e:
            memory = html.Unavailable(e.format_message())
    ranks_doc = None
    if ranks is not None:
        from profkit.report.ranks import ranks_report

        ranks_doc = json.loads(ranks_report(ranks, fmt="json"))
    return library(lambda: html.capture_page(a, title=title, profile=str(profile), name=title, flops=counted,
                                             memory=memory, ranks=ranks_doc))


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=PATH)
@click.option("--range", "range_regex", help="Only kernels launched inside ranges whose path matches this regex.")
@click.option("--top", type=int, default=20, show_default=True, help="Rows listed, the rest folded into `others` "
              "(0: all).")
@click.option("--by", type=click.Choice(["name", "category"]), default="name", show_default=True)
@click.option("--name", type=click.Choice(["demangled", "short"]), default="demangled", show_default=True)
@output_options
@rank_option
@report_options
def kernels(profile: Path, range_regex: str | None, top: int, by: str, name: str, fmt: str, output: Path | None,
            rank: int | None, rules: Path | None, allow_incomplete: bool, no_cache: bool) -> None:
    """Kernel time by name (as nsys stats -r cuda_gpu_kern_sum) or by category.

    \b
    Example:
        profkit report kernels profiles/small-step/profile.sqlite --top 10
        profkit report kernels profiles/small-step --range backward --by category --format json
    """
    from profkit import pipeline

    def make() -> str:
        from profkit import report as reports

        return library(lambda: reports.kernels_text(profile, rules=rules, allow_incomplete=allow_incomplete,
                                                    rank=rank, range_regex=range_regex, top=top, by=by, name=name,
                                                    fmt=fmt))

    options: dict[str, object] = {"range": range_regex, "top": top, "by": by, "name": name, "fmt": fmt,
                                  "allow_incomplete": allow_incomplete}
    _rank_note(profile, rank)
    emit(library(lambda: pipeline.cached_report(profile, "kernels", options, make, rules=rules,
                                                use_cache=not no_cache, rank=rank)), output)


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=PATH)
@click.option("--by", type=click.Choice(["path", "name"]), default="path", show_default=True)
@click.option("--steps", type=click.Choice(["each", "merged"]), default="each", show_default=True,
              help="merged: one row per path of the measured steps, per step, largest first (warm-up left out).")
@click.option("--depth", type=click.IntRange(min=1), help="Paths of at most this many parts (below the step when "
              "merged).")
@output_options
@rank_option
@report_options
def nvtx(profile: Path, by: str, steps: str, depth: int | None, fmt: str, output: Path | None, rank: int | None,
         rules: Path | None, allow_incomplete: bool, no_cache: bool) -> None:
    """GPU time of each NVTX range path (or name), backward's autograd thread included.

    \b
    Example:
        profkit report nvtx profiles/small-step --by name
        profkit report nvtx profiles/small-step --steps merged --depth 2
    """
    from profkit import pipeline

    def make() -> str:
        from profkit import report as reports

        return library(lambda: reports.nvtx_text(profile, rules=rules, allow_incomplete=allow_incomplete, rank=rank,
                                                 by=by, steps=steps, depth=depth, fmt=fmt))

    options: dict[str, object] = {"by": by, "steps": steps, "depth": depth, "fmt": fmt,
                                  "allow_incomplete": allow_incomplete}
    _rank_note(profile, rank)
    emit(library(lambda: pipeline.cached_report(profile, "nvtx", options, make, rules=rules,
                                                use_cache=not no_cache, rank=rank)), output)


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=PATH)
@output_options
@rank_option
@report_options
def modules(profile: Path, fmt: str, output: Path | None, rank: int | None, rules: Path | None,
            allow_incomplete: bool, no_cache: bool) -> None:
    """Per module: forward and backward GPU ms per measured step, their ratio, share of the step.

    One row per module path below step_i/forward and step_i/backward (JSON keys module,
    fwd_gpu_ns, bwd_gpu_ns, bwd_fwd_ratio, step_pct, kernels).

    \b
    Example:
        profkit report modules profiles/small-step
        profkit report modules profiles/llama-step --format json
    """
    from profkit import pipeline

    def make() -> str:
        from profkit import report as reports

        # no memcpy, memset or GPUs: a module's GPU time is its kernels' (half the memory of report.md's analysis)
        return reports.modules(_load(profile, rules, allow_incomplete, activity=False, use_cache=not no_cache,
                                     rank=rank), fmt=fmt)

    options: dict[str, object] = {"fmt": fmt, "allow_incomplete": allow_incomplete}
    _rank_note(profile, rank)
    emit(library(lambda: pipeline.cached_report(profile, "modules", options, make, rules=rules,
                                                use_cache=not no_cache, rank=rank)), output)


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profiles", type=PATH, nargs=-1, required=True)
@click.option("--top", type=int, default=10, show_default=True, help="Top kernels listed per capture (markdown).")
@click.option("--html", "html_out", type=PATH, help="Also write the comparison as one "
              "self-contained page to this file (never over one that exists).")
@click.option("--fail-if", "fail_if", multiple=True, metavar="METRIC>LIMIT",
              help="Exit 1 (a one-line verdict on stderr) when a capture got worse than the first by more than "
              "LIMIT: METRIC step_ms, gpu_ms or category:NAME; LIMIT +PCT% or +Xms, e.g. 'step_ms>+5%'. Repeatable.")
@click.option("--fail-above", "fail_above", type=click.FloatRange(min=0), metavar="PCT",
              help="Exit 1 when ms/step (or a --range's GPU time per step) got slower than the first capture's by "
              "more than PCT percent beyond the noise of both captures' per-step spreads (one line per check on "
              "stderr; with --format json, one JSON object).")
@click.option("--range", "range_names", multiple=True, metavar="NAME",
              help="With --fail-above: also gate this range's GPU time per step (a range name such as backward, "
              "or a path below the step such as forward/layer_2). Repeatable.")
@click.option("--noise-k", type=click.FloatRange(min=0), default=None,
              help="With --fail-above: the noise is k robust standard deviations (1.4826 x MAD) of the steps "
              "(default 2: profkit.analyze.gate.NOISE_K).")
@output_options
@report_options
def compare(profiles: tuple[Path, ...], top: int, html_out: Path | None, fail_if: tuple[str, ...],
            fail_above: float | None, range_names: tuple[str, ...], noise_k: float | None, fmt: str,
            output: Path | None, rules: Path | None, allow_incomplete: bool, no_cache: bool) -> None:
    """Category shares and top kernels of several captures side by side, deltas against the first.

    With --fail-if or --fail-above, a CI gate: exit 1 on a regression, 0 otherwise, 2 on bad input.

    \b
    Example:
        profkit report compare profiles/small-fwd profiles/small-fwd_bwd profiles/small-step
        profkit report compare profiles/small-step profiles/small-step-flash --html compare.html
        profkit report compare base/ new/ --fail-if 'step_ms>+5%' --fail-if 'category:gemm>+10%'
        profkit report compare base/ new/ --fail-above 3 --range backward --format json
    """
    from profkit import layout
    from profkit import report as reports
    from profkit.analyze.gate import parse_threshold

    if len(profiles) < 2:
        raise bad_input("compare needs at least two captures")
    try:
        thresholds = [parse_threshold(t) for t in fail_if]
    except ValueError as e:
        raise bad_input(str(e)) from None
    if (range_names or noise_k is not None) and fail_above is None:
        flag = "--range" if range_names else "--noise-k"
        raise bad_input(f"{flag} goes with --fail-above PCT (the noise-aware gate)")
    pickles = [p.suffix == ".pickle" for p in profiles]
    if any(pickles):
        if thresholds or fail_above is not None:
            raise bad_input("--fail-if and --fail-above gate captures (ms/step, GPU time), not memory snapshots")
        if not all(pickles):
            raise bad_input("compare takes captures or memory snapshots (.pickle), not both")
        from profkit.report import memory as memory_report

        if fmt == "csv":
            raise bad_input("memory snapshots compare as markdown or json")
        items = [_memory(p) for p in profiles]
        emit(memory_report.compare(items, memory_report.labels(list(profiles)), fmt=fmt, top=max(top, 15)), output)
        return
    if html_out is not None and html_out.exists():
        raise bad_input(f"{html_out} exists; choose another --html FILE")
    from profkit.report.compare import capture

    analyses = []  # one at a time, each reduced to its aggregates (a few hundred rows) before the next
    for p in profiles:
        a = _load(p, rules, allow_incomplete)  # NVTX: the step_i ranges count the steps
        analyses.append(library(functools.partial(capture, a)))
        del a
    names = reports.labels(list(profiles))
    from profkit.report.compare import crossed, gate_json, noise_gate

    try:
        crossings = library(lambda: crossed(analyses, names, thresholds)) if thresholds else None
        checks = (library(lambda: noise_gate(analyses, names, fail_above, list(range_names),
                                                       **({} if noise_k is None else {"k": noise_k})))
                  if fail_above is not None else None)
    except ValueError as e:
        raise bad_input(str(e)) from None
    text = library(lambda: reports.compare(analyses, names, top=top, fmt=fmt))
    if checks is not None and fmt == "json":
        text = gate_json(checks, crossings, text)
    emit(text, output)
    if html_out is not None:
        from profkit.report import html

        page = library(lambda: html.compare_page(analyses, names, profiles=" ".join(map(str, profiles)), top=top))
        library(lambda: layout.write_text(html_out, page, replace=False))
        click.echo(f"html: {html_out}", err=True)
    if checks is not None:
        from profkit.analyze.gate import noise_summary

        for c in checks:
            click.echo(c.line(), err=True)
        click.echo(noise_summary(checks), err=True)
    if crossings is not None:
        from profkit.analyze.gate import summary

        click.echo(summary(crossings, len(thresholds) * (len(analyses) - 1)), err=True)
    if (checks is not None and any(c.failed for c in checks)) or crossings:
        sys.exit(1)  # a regression: the lines above say which


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=PATH)
@click.option("--by", type=click.Choice(["phase", "name"]), default="phase", show_default=True,
              help="phase: the measured steps' step, forward, backward, optimizer; name: every range name.")
@output_options
@rank_option
@report_options
def timeline(profile: Path, by: str, fmt: str, output: Path | None, rank: int | None, rules: Path | None,
             allow_incomplete: bool, no_cache: bool) -> None:
    """Is the GPU busy? Wall time, GPU span, busy (union of kernel, memcpy, memset) and idle time,
    launch rate, launch-to-start queue and a verdict, per phase or per range name.

    \b
    Example:
        profkit report timeline profiles/small-step
        profkit report timeline profiles/small-step --by name --format json
    """
    from profkit import pipeline

    def make() -> str:
        from profkit.report.timeline import timeline as timeline_report

        return timeline_report(_load(profile, rules, allow_incomplete, use_cache=not no_cache, rank=rank), by=by,
                               fmt=fmt)

    options: dict[str, object] = {"by": by, "fmt": fmt, "allow_incomplete": allow_incomplete}
    _rank_note(profile, rank)
    emit(library(lambda: pipeline.cached_report(profile, "timeline", options, make, rules=rules,
                                                use_cache=not no_cache, rank=rank)), output)


@report.command("ranks", context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=PATH)
@click.option("--png", type=PATH, callback=_png_file,
              help="Write one step's timeline, a lane per rank (needs "
              "matplotlib); never over a file that exists.")
@click.option("--jobs", type=click.IntRange(min=1), help="Processes parsing ranks at once (default: the CPUs).")
@output_options
@report_options
def ranks_command(profile: Path, png: Path | None, jobs: int | None, fmt: str, output: Path | None,
                  rules: Path | None, allow_incomplete: bool, no_cache: bool) -> None:
    """Every rank of a multi-rank capture: step time, compute and communication GPU time by
    collective, hidden against exposed communication, waits at collectives, bus bandwidth, the
    slowest rank and why. JSON keys rank, step_ms, compute_ns, comm_ns, comm_hidden_ns,
    comm_exposed_ns, wait_ns, by_collective (per measured step).

    \b
    Example:
        profkit report ranks profiles/small-ddp
        profkit report ranks profiles/small-ddp --format json --png ranks.png
    """
    from profkit.ranks import load_ranks
    from profkit.report.ranks import ranks_report, timeline_png

    if png is not None and png.exists():
        raise bad_input(f"{png} exists; choose another --png FILE")
    merged = library(lambda: load_ranks(profile, rules=rules, jobs=jobs))
    if png is not None:
        click.echo(timeline_png(merged, png), err=True)
    link = None
    if png is not None and png.exists():  # the markdown links the PNG from where the markdown lies
        link = os.path.relpath(png.absolute(), output.absolute().parent) if output is not None else str(png)
    emit(library(lambda: ranks_report(merged, fmt=fmt, png=link)), output)


def _memory(path: Path) -> Any:
    """(MemoryData, MemoryAnalysis) of a snapshot, or one `Error:` line."""
    from profkit import snapshot
    from profkit.report import memory as memory_report

    data = library(lambda: snapshot.read(path))
    return data, memory_report.analyze(data, lean=True)


@report.command("memory", context_settings=CONTEXT_SETTINGS)
@click.argument("snapshot", type=PATH)
@click.option("--profile", "capture", type=PATH,
              help="A capture of the same run: its GPU time per path beside the memory (default: the snapshot's "
              "folder, when it is a capture).")
@click.option("--top", type=int, default=10, show_default=True, help="Rows of the at-peak tables.")
@click.option("--png", type=PATH, callback=_png_file,
              help="Write memory over time as a PNG (never over a file).")
@click.option("--html", "html_out", type=PATH,
              help="Write a self-contained HTML page (timeline and tables; opens offline).")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("-o", "--output", type=PATH, help="Write to this file (never over one that "
              "exists; - for stdout) instead of stdout.")
def memory_command(snapshot: Path, capture: Path | None, top: int, png: Path | None, html_out: Path | None, fmt: str,
                   output: Path | None) -> None:
    """A memory snapshot's peak and what fills it: by category (parameters, gradients, optimizer
    state, activations saved for backward, autocast copies, temporaries), by range path, the
    largest allocations, per path, the residual stream per layer. Reads the pickle with a
    restricted unpickler (no torch needed).

    \b
    Example:
        profkit report memory runs/small-step/memory.pickle
        profkit report memory profiles/small-step/memory.pickle --png memory.png --html memory.html
        profkit report memory runs/small-step --format json
    """
    from profkit import layout
    from profkit.report import memory as memory_report

    for out in (png, html_out, output if output is not None and str(output) != "-" else None):
        if out is not None and out.exists():
            raise bad_input(f"{out} exists; choose another file")
    data, m = _memory(snapshot)
    if capture is None and (data.path.parent / layout.EXPORT).is_file():
        capture = data.path.parent
    kernels = None
    if capture is not None:  # GPU time per path, as `report nvtx` reads it (its arrays: no frame per kernel)
        from profkit import pipeline
        from profkit.analyze.nvtx import summarize

        att = library(lambda: pipeline.attributed(capture, short=False))
        kernels = summarize(att.ranges, att.kernels, by="path").to_frame()
        del att
        if not len(kernels):
            click.echo(f"note: {capture} has no NVTX ranges with kernels; GPU time per path skipped", err=True)
            kernels = None
    text, image, page = memory_report.outputs(data, m, fmt=fmt, top=top, kernels=kernels, png=png is not None,
                                              html=html_out is not None)
    if image is not None and png is not None:
        library(lambda: layout.write_bytes(png, image, replace=False))
        click.echo(f"wrote {png}", err=True)
    if page is not None and html_out is not None:
        library(lambda: layout.write_text(html_out, page, replace=False))
        click.echo(f"wrote {html_out}", err=True)
    emit_pieces(text, output)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--model", default=RunConfig().model, show_default=True,
              help=f"Size ({', '.join(SIZES)}) or package.module:factory.")
@click.option("--mode", default=RunConfig().mode, show_default=True, help=f"One of {', '.join(MODES)}.")
@click.option("--attn", default=RunConfig().attn, show_default=True, help=f"One of {', '.join(ATTN_BACKENDS)}.")
@click.option("--dtype", default=RunConfig().dtype, show_default=True, help=f"One of {', '.join(DTYPES)}.")
@click.option("--batch-size", type=int, help="Default: the size's.")
@click.option("--context-length", type=int, help="Default: the size's.")
@click.option("--compile/--no-compile", "compile_", default=RunConfig().compile,
              help="As the capture was run (a compiled model has no per-module ranges to count under).")
@click.option("--grad-accum", type=int, default=RunConfig().grad_accum, show_default=True,
              help="Micro-batches per step, as the capture's `profkit run --grad-accum`.")
@click.option("--optimizer", default=RunConfig().optimizer, show_default=True,
              help=f"mode step's optimizer: {', '.join(OPTIMIZERS)}.")
@click.option("--nvtx-depth", type=int, default=RunConfig().nvtx_depth, show_default=True,
              help="Module levels with ranges, for your own model.")
@click.option("--format", "fmt", type=click.Choice(["json", "markdown"]), default="json", show_default=True)
@click.option("--out", type=PATH, help="Write flops.json into this run or capture folder.")
def flops(model: str, mode: str, attn: str, dtype: str, batch_size: int | None, context_length: int | None,
          compile_: bool, grad_accum: int, optimizer: str, nvtx_depth: int, fmt: str, out: Path | None) -> None:
    """FLOPs and minimum bytes per NVTX path of one step, counted on the meta device (CPU is
    enough): the paths a capture of the same config has, under step_0.

    \b
    Example:
        profkit flops --model small --mode step --dtype bf16 --attn flash
        profkit flops --model small --mode step --dtype bf16 --out profiles/small-step
    """
    try:
        cfg = RunConfig(model=model, mode=mode, attn=attn, dtype=dtype, batch_size=batch_size,
                        context_length=context_length, compile=compile_, grad_accum=grad_accum,
                        optimizer=optimizer, nvtx_depth=nvtx_depth, device="cpu")
    except ValueError as e:
        raise bad_input(str(e)) from None
    from profkit.collect import flops as counting

    result = library(lambda: counting.count(cfg))
    if out is not None:
        click.echo(f"wrote {library(lambda: counting.write(result, out))}", err=True)
        return
    if fmt == "json":
        import json

        click.echo(json.dumps(result, indent=1))
        return
    click.echo("| path | GFLOP | vector GFLOP | MB |\n| --- | ---: | ---: | ---: |")
    for r in result["paths"]:
        click.echo(f"| {r['path']} | {r['flops'] / 1e9:,.3f} | {r['vector_flops'] / 1e9:,.3f} | "
                   f"{r['bytes'] / 1e6:,.1f} |")


def _flops_available(profile: Path) -> None:
    """Refuse at once when the FLOPs cannot come from anywhere: no flops.json, and no run.json
    beside the export or no torch to count from it (what _flops_of would find after the load)."""
    import importlib.util

    from profkit import layout
    from profkit.report import flops as flops_report

    folder = profile if profile.is_dir() else profile.parent
    if flops_report.flops_file(profile).is_file():
        return
    if (folder / layout.RUN_FILE).is_file() and importlib.util.find_spec("torch") is not None:
        return
    try:
        flops_report.read_flops(profile)
    except flops_report.FlopsMissing as e:
        raise bad_input(str(e)) from None


def _flops_of(profile: Path, a: Any) -> Any:
    """The capture's flops.json, or counted from its run.json when torch is importable."""
    import importlib.util

    from profkit.report import flops as flops_report

    try:
        return flops_report.read_flops(profile)
    except flops_report.FlopsMissing as e:
        if a.run is None or importlib.util.find_spec("torch") is None:
            raise bad_input(str(e)) from None
    except ProfkitError as e:  # a damaged flops.json
        raise bad_input(str(e)) from None
    from profkit.collect import flops as counting

    return library(lambda: counting.count(a.run.config))


@report.command("flops", context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=PATH)
@click.option("--peaks", type=click.Choice(["datasheet", "measured"]), default="datasheet", show_default=True,
              help="The ceilings to compare with: the GPU's datasheet, or measured (this GPU's `profkit doctor "
              "--measure-peaks` entry in the cache, else profkit's built-in measurement of that GPU).")
@click.option("--png", type=PATH, callback=_png_file,
              help="Write a roofline PNG (needs matplotlib).")
@click.option("--waterfall", type=PATH, callback=_png_file,
              help="Write the floor-and-gap waterfall PNG (needs matplotlib).")
@output_options
@rank_option
@report_options
def flops_command(profile: Path, peaks: str, png: Path | None, waterfall: Path | None, fmt: str,
                  output: Path | None, rank: int | None, rules: Path | None, allow_incomplete: bool,
                  no_cache: bool) -> None:
    """FLOPs and bytes beside GPU time per NVTX path: achieved TFLOP/s, % of peak, intensity,
    compute- or memory-bound, whole-step MFU, the floor and the gap. Reads the capture's
    flops.json (or counts it from run.json when torch is installed).

    \b
    Example:
        profkit report flops profiles/small-step
        profkit report flops profiles/small-step --peaks measured --png roofline.png --waterfall gap.png
        profkit report flops profiles/small-step --format json
    """
    from profkit.report import flops as flops_report

    _rank_note(profile, rank)
    for png_out in (png, waterfall):
        if png_out is not None and png_out.exists():
            raise bad_input(f"{png_out} exists; choose another file")
    _flops_available(profile)  # before the export is read: a 10 M-kernel analysis takes a minute
    a = _load(profile, rules, allow_incomplete, rank=rank)
    counted = _flops_of(profile, a)
    measured = peaks == "measured"
    emit(library(lambda: flops_report.report(a, counted, fmt=fmt, measured=measured)), output)
    if png is not None or waterfall is not None:
        t, s, peak = library(lambda: flops_report.table(a, counted, measured=measured))
        if png is not None:
            click.echo(flops_report.roofline_png(t, peak, s.precision, png), err=True)
        if waterfall is not None:
            g = library(lambda: flops_report.gap(a, t, s))
            from profkit import layout

            click.echo(flops_report.waterfall_png(g, waterfall, title=layout.capture_title(profile)), err=True)


# -- sweeps ------------------------------------------------------------------------------------

def sweep_options(f: Any) -> Any:
    """Options every `profkit sweep` command shares."""
    f = click.option("--force", is_flag=True, help="Replace an existing report in --report DIR.")(f)
    f = click.option("--html", "html_page", is_flag=True, help="With --report DIR: also write KIND.html there (one "
                     "self-contained page of the tables and plots, no network).")(f)
    f = click.option("--report", "report_dir", type=PATH,
                     help="Write markdown tables and PNG plots of the table into this folder.")(f)
    f = click.option("--redo", is_flag=True, help="Run again the points already in the database.")(f)
    f = click.option("--db", type=PATH, default=DEFAULT_DB, show_default=True,
                     help="The results database (SQLite; created when missing).")(f)
    f = click.option("--device", type=click.Choice(DEVICES), help="Default: cuda if available.")(f)
    return f


def _grid(fn: Any) -> Any:
    try:
        return fn()
    except ValueError as e:
        raise bad_input(str(e)) from None


def _sweep(kind: str, run: Any, db: Path, report_dir: Path | None, force: bool, report_args: dict[str, Any],
           html_page: bool = False) -> None:
    """Run a sweep under the progress bar, say what it wrote, then the report; Ctrl-C says how to resume."""
    from profkit import results
    from profkit.console import sweep_progress

    if html_page and report_dir is None:
        raise bad_input("--html writes KIND.html into the --report folder; give --report DIR")
    for name in (f"{kind}.md", f"{kind}.html") if html_page else (f"{kind}.md",):
        if report_dir is not None and (report_dir / name).exists() and not force:
            raise bad_input(f"{report_dir / name} exists; pass --force to replace it, or give another --report")
    try:
        with sweep_progress(f"sweep {kind}") as bar:
            summary = library(lambda: run(bar))
    except KeyboardInterrupt:
        click.echo(f"Error: interrupted; every finished point is in {db} (the one in progress is lost). Run the "
                   "same command again to resume.", err=True)
        sys.exit(130)
    statuses = ", ".join(f"{n} {s}" for s, n in summary.statuses.items()) or "nothing new"
    click.echo(f"{db} ({kind}): {summary.written} written ({statuses}), {summary.skipped} already there, "
               f"{summary.total} in the grid")
    if report_dir is not None:
        from profkit.report.sweeps import write_report

        rows = library(lambda: results.read(db, kind))
        for line in library(lambda: write_report(kind, rows, report_dir, force=True, html=html_page, db=str(db),
                                                 **report_args)):
            click.echo(line)


@cli.group(context_settings=CONTEXT_SETTINGS)
def sweep() -> None:
    """Grids of attention shapes or model runs into a results database, with reports.

    Every point is one row of a SQLite database (--db, default results/profkit.db; tables
    `attention` and `models`) written as soon as it is measured: a rerun skips the points
    already there (--redo runs them again) and Ctrl-C loses only the point in progress.

    \b
    Example:
        profkit sweep attention --preset cs336 --report reports/cs336
        profkit sweep models --preset nanogpt --report reports/nanogpt
        profkit sweep report attention --db results/profkit.db --out reports/cs336 --preset cs336
    """


@sweep.command("attention", context_settings=CONTEXT_SETTINGS)
@click.option("--preset", type=click.Choice(["cs336", "flash2", "mac"]),
              help="A seed's grid: cs336 (seed 002), flash2 (seed 003), mac (seed 001).")
@click.option("--impl", "impls", help="Comma list of naive, math, flash, efficient, cudnn, compiled [default: "
              "naive,math,flash,efficient]; with --preset, only these of its.")
@click.option("--batch-size", "batch_sizes", help="Comma list [default: 8].")
@click.option("--heads", help="Comma list [default: 12].")
@click.option("--seq-len", "seq_lens", help="Comma list [default: 256,1024,4096].")
@click.option("--head-dim", "head_dims", help="Comma list [default: 64].")
@click.option("--embed", "embeds", help="Comma list of embedding dims, split over the heads (instead of --head-dim).")
@click.option("--causal/--no-causal", default=None, help="Causal mask [default: causal].")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16"]), help="[default: bf16]")
@click.option("--reps", type=int, help="Timed passes per mode [default: 30; presets 100].")
@click.option("--warmup", type=int, help="Untimed passes per mode first [default: 5].")
@click.option("--max-seconds", type=float, help="Per point and mode, fewer passes past this [default: 3].")
@click.option("--seed", type=int, help="Seed of q, k, v [default: 0].")
@sweep_options
def sweep_attention(preset: str | None, reps: int | None, warmup: int | None, max_seconds: float | None,
                    seed: int | None, device: str | None, db: Path, redo: bool, report_dir: Path | None, force: bool,
                    html_page: bool, **grid: Any) -> None:
    """Time attention implementations over a grid of shapes: forward, backward, forward+backward.

    Per point: the median pass time of each mode (CUDA events, L2 flushed; perf_counter on a
    CPU), FLOPs by FlashAttention's convention and TFLOP/s, peak memory; OOM and a backend's
    refusal are recorded with PyTorch's reason and the sweep goes on.

    \b
    Example:
        profkit sweep attention --preset cs336 --report reports/cs336
        profkit sweep attention --impl naive,math --seq-len 64,128 --heads 2 --dtype fp32 --device cpu
    """
    from profkit import sweeps

    kinds = {"impls": str, "batch_sizes": int, "heads": int, "seq_lens": int, "head_dims": int, "embeds": int}
    options = _grid(lambda: {k: (sweeps.split(v, sweeps.flag(k), kinds[k]) if k in kinds else v)
                              for k, v in grid.items()})
    grids = _grid(lambda: sweeps.attention_grids(preset, options))
    d = sweeps.AttentionSettings()
    settings = _grid(lambda: sweeps.AttentionSettings(
        reps=reps or (sweeps.ATTENTION_PRESETS[preset].reps if preset else d.reps),
        warmup=d.warmup if warmup is None else warmup, max_seconds=max_seconds or d.max_seconds,
        seed=d.seed if seed is None else seed))
    from profkit.analyze.sweeps import attention_metrics
    from profkit.collect import sweep as runner

    def run(bar: Any) -> Any:
        from profkit.collect.workload import resolve_device  # torch
        from profkit.config import RunConfig as Cfg

        dev = resolve_device(Cfg(device=device)).type
        return runner.attention(sweeps.attention_points(grids, dev), settings, db, redo=redo,
                                derive=attention_metrics, progress=bar)

    source = sweeps.ATTENTION_PRESETS[preset].source if preset else ""
    _sweep("attention", run, db, report_dir, force, {"grids": grids if preset else None, "source": source}, html_page)


@sweep.command("models", context_settings=CONTEXT_SETTINGS)
@click.option("--preset", type=click.Choice(["nanogpt", "cs336"]),
              help="nanogpt: seed 000's study; cs336: seed 002's sizes small..2.7B x modes x fp32/bf16.")
@click.option("--model", "models", help=f"Comma list of sizes ({', '.join(SIZES)}) or package.module:factory.")
@click.option("--mode", "modes", help="Comma list of fwd, fwd_bwd, step [default: all three].")
@click.option("--dtype", "dtypes", help="Comma list of fp32, bf16, fp16 [default: fp32,bf16].")
@click.option("--attn", "attns", help=f"Comma list of {', '.join(ATTN_BACKENDS)} [default: naive].")
@click.option("--compile", "compiles", help="Comma list of off, on [default: off].")
@click.option("--compile-mode", "compile_modes", help=f"Comma list of {', '.join(COMPILE_MODES)}.")
@click.option("--batch-size", "batch_sizes", help="Comma list [default: the size's].")
@click.option("--context-length", "context_lengths", help="Comma list [default: the size's].")
@click.option("--grad-accum", "grad_accums", help="Comma list of micro-batches per step [default: 1].")
@click.option("--optimizer", "optimizers", help=f"Comma list of {', '.join(OPTIMIZERS)} [default: adamw].")
@click.option("--warmup", type=int, help=f"Warm-up steps per run [default: {RunConfig().warmup}; presets 3].")
@click.option("--steps", type=int, help=f"Measured steps per run [default: {RunConfig().steps}].")
@click.option("--seed", type=int, help="[default: 0]")
@click.option("--profile", is_flag=True, help="Also capture each point with `profkit profile` (nsys), and keep its "
              "report.md, step verdict, categories and exact FLOPs.")
@click.option("--timeout", type=float, help="Seconds a point may run before it is stopped (recorded `timeout`).")
@click.option("--runs-dir", type=PATH,
              help="Each point's run folder goes here [default: runs/ beside --db].")
@sweep_options
def sweep_models(preset: str | None, warmup: int | None, steps: int | None, seed: int | None, profile: bool,
                 timeout: float | None, runs_dir: Path | None, device: str | None, db: Path, redo: bool,
                 report_dir: Path | None, force: bool, html_page: bool, **grid: Any) -> None:
    """Run model sizes x modes x dtypes x attention x compile, each point a fresh `profkit run`.

    Per point: ms/step and per micro-batch, tokens/s, MFU (PaLM's FLOPs against the datasheet
    peak), peak memory, and under --compile the compile time and first step. A point that
    fails (OOM, a refused backend, a crash, --timeout) is recorded with its reason.

    \b
    Example:
        profkit sweep models --preset nanogpt --report reports/nanogpt
        profkit sweep models --model small,medium --mode step --dtype bf16 --attn flash --compile off,on
    """
    from profkit import sweeps

    kinds = {"compiles": bool, "batch_sizes": int, "context_lengths": int, "grad_accums": int}
    options = _grid(lambda: {k: sweeps.split(v, sweeps.flag(k), kinds.get(k, str)) for k, v in grid.items()})
    grids = _grid(lambda: sweeps.model_grids(preset, options, warmup=warmup, steps=steps, seed=seed))
    from profkit.analyze.sweeps import model_metrics
    from profkit.collect import sweep as runner

    def run(bar: Any) -> Any:
        configs = _grid(lambda: sweeps.model_configs(grids, runner.resolve_device(device)))
        return runner.models(configs, db, runs_dir or db.parent / "runs", profile=profile, redo=redo,
                             timeout=timeout, derive=model_metrics, progress=bar)

    source = sweeps.MODEL_PRESETS[preset].source if preset else ""
    _sweep("models", run, db, report_dir, force, {"source": source}, html_page)


@sweep.command("report", context_settings=CONTEXT_SETTINGS)
@click.argument("kind", type=click.Choice(["attention", "models"]))
@click.option("--db", type=PATH, default=DEFAULT_DB, show_default=True)
@click.option("--out", type=PATH, required=True, help="The folder for KIND.md and its PNGs.")
@click.option("--preset", help="Group attention points by this preset's grids (cs336, flash2, mac).")
@click.option("--force", is_flag=True, help="Replace an existing KIND.md (KIND.html) and its plots.")
@click.option("--html", "html_page", is_flag=True, help="Also write KIND.html: one self-contained page of the tables "
              "and their plots (no network).")
def sweep_report(kind: str, db: Path, out: Path, preset: str | None, force: bool, html_page: bool) -> None:
    """Write the markdown tables and PNG plots of a database's table (no torch, no GPU); --html
    adds one page of them.

    \b
    Example:
        profkit sweep report attention --db reports/h200/sweeps/profkit.db --out reports/h200/sweeps --preset cs336
        profkit sweep report models --db reports/h200/sweeps/nanogpt.db --out reports/h200/sweeps/nanogpt --html
    """
    from profkit import results, sweeps
    from profkit.report.sweeps import write_report

    if preset is not None and (kind != "attention" or preset not in sweeps.ATTENTION_PRESETS):
        raise bad_input(f"--preset {preset}: for attention, one of {', '.join(sweeps.ATTENTION_PRESETS)}")
    rows = library(lambda: results.read(db, kind))
    grids = list(sweeps.ATTENTION_PRESETS[preset].grids) if preset else None
    source = sweeps.ATTENTION_PRESETS[preset].source if preset else ""
    for line in library(lambda: write_report(kind, rows, out, grids=grids, source=source, force=force, html=html_page,
                                             db=str(db))):
        click.echo(line)
