"""profkit's command line: a thin click layer over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click_default_group import DefaultGroup

from profkit import __version__
from profkit.config import DEVICES, DTYPES, MEMORY_STACKS, MODES, RunConfig
from profkit.errors import ProfkitError
from profkit.sizes import ATTN_BACKENDS, SIZES

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
BAD_INPUT = 2  # exit code for anything the user can fix, as click uses for usage errors


class OneLineErrors(click.Group):
    """Every usage or domain error is one `Error: ...` line on stderr, exit code 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        except click.ClickException as e:
            click.echo(f"Error: {e.format_message()}", err=True)
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
@click.option("--out", type=click.Path(path_type=Path), help="Folder for run.json (default: runs/<label>-<time>).")
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


@cli.command(context_settings=CONTEXT_SETTINGS)
@run_options
@click.option("--name", help="Capture folder name (default: <label>-<time>).")
@click.option("--out-dir", type=click.Path(path_type=Path), default=Path("profiles"), show_default=True,
              help="Where capture folders go.")
@click.option("--nsys", "nsys_path", help="The nsys to use (else $PROFKIT_NSYS, PATH, .tools/nsys).")
@click.option("--force", is_flag=True, help="Replace an existing capture folder of that name.")
@click.argument("nsys_args", nargs=-1, type=click.UNPROCESSED)
def profile(name: str | None, out_dir: Path, nsys_path: str | None, force: bool, nsys_args: tuple[str, ...],
            **kwargs: Any) -> None:
    """Capture one workload with Nsight Systems and export it to SQLite.

    Runs `nsys profile` around `python -m profkit run` with profkit's defaults (on CUDA:
    --trace=cuda,nvtx,osrt,cublas,cudnn --capture-range=cudaProfilerApi
    --capture-range-end=stop --sample=none --cpuctxsw=none --cuda-memory-usage=true; on
    CPU, where there is no capture range, the whole short program with nvtx,osrt), then
    `nsys export --type sqlite`. nsys options after `--` override the defaults one flag at
    a time. Leaves OUT_DIR/NAME/{profile.nsys-rep, profile.sqlite, run.json, nsys.log}.

    \b
    Example:
        profkit profile --model small --mode step --dtype bf16
        profkit profile --model tiny --device cpu --name tiny-cpu -- --trace=nvtx,osrt,python-gil
    """
    cfg = make_config(**kwargs)
    from profkit.collect import launch, workload  # workload imports torch
    from profkit.console import status
    from profkit.nsys import check_options, find_nsys
    from profkit.pipeline import check_capture

    def go() -> Path:
        folder_name = launch.capture_name(cfg, name)
        device, cuda = workload.preflight(cfg)  # everything `run` would refuse, refused before nsys starts
        nsys = find_nsys(nsys_path)
        check_options(nsys, list(nsys_args))
        launch.refuse_early(nsys, cfg, device=device, cuda=cuda, user_args=list(nsys_args))
        with status() as say:
            return launch.profile(nsys, cfg, device=device, name=folder_name, out_dir=out_dir,
                                  user_args=list(nsys_args), check=check_capture, force=force, status=say)

    folder = library(go)
    from profkit import layout
    from profkit.report.timeline import step_line

    click.echo(f"capture: {folder}/")
    for f in sorted(folder.iterdir()):
        click.echo(f"  {f.name:<20} {f.stat().st_size / 2**20:8.2f} MiB")
    click.echo(step_line(library(lambda: layout.RunRecord.read(folder)).steps_ms) + " (under nsys)")
    click.echo(f"next: profkit report {folder}")


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--nsys", "nsys_path", help="Check this nsys instead of searching.")
def doctor(nsys_path: str | None) -> None:
    """One screen: versions, GPU, nsys and what it can trace, what is missing and how to fix it.

    Exits 1 when anything needs fixing.

    \b
    Example:
        profkit doctor
    """
    from profkit.collect.doctor import diagnose
    from profkit.console import print_doctor

    rows = diagnose(nsys_path)
    print_doctor(rows)
    if any(fix for _, _, fix in rows):
        sys.exit(1)  # something needs fixing: the table says what


def report_options(f: Any) -> Any:
    """Options every `profkit report` command shares."""
    f = click.option("--allow-incomplete", is_flag=True,
                     help="Report an export whose nsys analysis stopped early instead of refusing it.")(f)
    f = click.option("--rules", type=click.Path(path_type=Path), help="Extra kernel category rules (TOML).")(f)
    f = click.option("--no-cache", is_flag=True, help="Neither read nor write the result cache "
                     "($XDG_CACHE_HOME/profkit).")(f)
    return f


def output_options(f: Any) -> Any:
    f = click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file (never over one "
                     "that exists; - for stdout) instead of stdout.")(f)
    f = click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "json"]), default="markdown",
                     show_default=True)(f)
    return f


def emit(text: str, output: Path | None) -> None:
    """Print `text` (one final newline) or write it to a new file; `-o -` is stdout."""
    text = text if text.endswith("\n") else text + "\n"
    if output is None or str(output) == "-":
        click.echo(text, nl=False)
        return
    from profkit import layout

    if output.exists():
        raise bad_input(f"{output} exists; choose another -o FILE")
    library(lambda: layout.write_text(output, text, replace=False))
    click.echo(f"wrote {output}", err=True)


def _load(profile: Path, rules: Path | None, allow_incomplete: bool, nvtx: bool = True, activity: bool = True,
          use_cache: bool = False) -> Any:
    from profkit import pipeline

    return library(lambda: pipeline.load(profile, rules=rules, allow_incomplete=allow_incomplete, nvtx=nvtx,
                                         activity=activity, use_cache=use_cache))


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
@click.argument("profile", type=click.Path(path_type=Path), required=False)
@click.option("--demo", is_flag=True, help="Report on the H100 export that ships with profkit.")
@click.option("--top", type=int, default=15, show_default=True, help="Kernels listed.")
@click.option("--force", is_flag=True, help="Replace an existing report.md.")
@report_options
def capture(profile: Path | None, demo: bool, top: int, force: bool, rules: Path | None,
            allow_incomplete: bool, no_cache: bool) -> None:
    """Write report.md for a capture: config, categories, top kernels, NVTX ranges.

    A capture folder gets PROFILE/report.md; a .sqlite or .nsys-rep elsewhere gets
    NAME.report.md beside it. An existing report.md is kept unless --force.

    \b
    Example:
        profkit report profiles/small-step-bf16
        profkit report --demo
    """
    from profkit import layout, pipeline
    from profkit.report import capture_markdown

    if demo:
        a = library(pipeline.load_demo)
        title = "Demo: CS336 small, one AdamW step per capture step, on an H100"
        click.echo(capture_markdown(a, title=title, top=top), nl=False)
        return
    if profile is None:
        raise bad_input("give a capture folder (profiles/NAME), a subcommand (kernels, nvtx, compare) or --demo")
    out = library(lambda: layout.report_path(profile))
    if out.exists() and not force:
        raise bad_input(f"{out} exists; pass --force to replace it")
    title = layout.capture_title(profile)
    text = library(lambda: pipeline.cached_report(
        profile, "capture", {"top": top, "title": title, "allow_incomplete": allow_incomplete},
        lambda: capture_markdown(_load(profile, rules, allow_incomplete, use_cache=not no_cache), title=title,
                                  top=top),
        rules=rules, use_cache=not no_cache))
    library(lambda: layout.write_text(out, text))
    click.echo(f"report: {out}")


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=click.Path(path_type=Path))
@click.option("--range", "range_regex", help="Only kernels launched inside ranges whose path matches this regex.")
@click.option("--top", type=int, default=20, show_default=True, help="Rows listed, the rest folded into `others` "
              "(0: all).")
@click.option("--by", type=click.Choice(["name", "category"]), default="name", show_default=True)
@click.option("--name", type=click.Choice(["demangled", "short"]), default="demangled", show_default=True)
@output_options
@report_options
def kernels(profile: Path, range_regex: str | None, top: int, by: str, name: str, fmt: str, output: Path | None,
            rules: Path | None, allow_incomplete: bool, no_cache: bool) -> None:
    """Kernel time by name (as nsys stats -r cuda_gpu_kern_sum) or by category.

    \b
    Example:
        profkit report kernels profiles/small-step/profile.sqlite --top 10
        profkit report kernels profiles/small-step --range backward --by category --format json
    """
    from profkit import pipeline

    def make() -> str:
        from profkit import report as reports

        a = _load(profile, rules, allow_incomplete, nvtx=bool(range_regex), activity=False, use_cache=not no_cache)
        return library(lambda: reports.kernels(a, range_regex=range_regex, top=top, by=by, name=name, fmt=fmt))

    options: dict[str, object] = {"range": range_regex, "top": top, "by": by, "name": name, "fmt": fmt,
                                  "allow_incomplete": allow_incomplete}
    emit(library(lambda: pipeline.cached_report(profile, "kernels", options, make, rules=rules,
                                                use_cache=not no_cache)), output)


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=click.Path(path_type=Path))
@click.option("--by", type=click.Choice(["path", "name"]), default="path", show_default=True)
@click.option("--steps", type=click.Choice(["each", "merged"]), default="each", show_default=True,
              help="merged: one row per path of the measured steps, per step, largest first (warm-up left out).")
@click.option("--depth", type=click.IntRange(min=1), help="Paths of at most this many parts (below the step when "
              "merged).")
@output_options
@report_options
def nvtx(profile: Path, by: str, steps: str, depth: int | None, fmt: str, output: Path | None, rules: Path | None,
         allow_incomplete: bool, no_cache: bool) -> None:
    """GPU time of each NVTX range path (or name), backward's autograd thread included.

    \b
    Example:
        profkit report nvtx profiles/small-step --by name
        profkit report nvtx profiles/small-step --steps merged --depth 2
    """
    from profkit import pipeline

    def make() -> str:
        from profkit import report as reports

        a = _load(profile, rules, allow_incomplete, activity=False, use_cache=not no_cache)  # ranges, kernels
        return reports.nvtx(a, by=by, steps=steps, depth=depth, fmt=fmt)

    options: dict[str, object] = {"by": by, "steps": steps, "depth": depth, "fmt": fmt,
                                  "allow_incomplete": allow_incomplete}
    emit(library(lambda: pipeline.cached_report(profile, "nvtx", options, make, rules=rules,
                                                use_cache=not no_cache)), output)


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=click.Path(path_type=Path))
@output_options
@report_options
def modules(profile: Path, fmt: str, output: Path | None, rules: Path | None, allow_incomplete: bool,
            no_cache: bool) -> None:
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

        return reports.modules(_load(profile, rules, allow_incomplete, use_cache=not no_cache), fmt=fmt)

    options: dict[str, object] = {"fmt": fmt, "allow_incomplete": allow_incomplete}
    emit(library(lambda: pipeline.cached_report(profile, "modules", options, make, rules=rules,
                                                use_cache=not no_cache)), output)


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profiles", type=click.Path(path_type=Path), nargs=-1, required=True)
@click.option("--top", type=int, default=10, show_default=True, help="Top kernels listed per capture (markdown).")
@output_options
@report_options
def compare(profiles: tuple[Path, ...], top: int, fmt: str, output: Path | None, rules: Path | None,
            allow_incomplete: bool, no_cache: bool) -> None:
    """Category shares and top kernels of several captures side by side, deltas against the first.

    \b
    Example:
        profkit report compare profiles/small-fwd profiles/small-fwd_bwd profiles/small-step
    """
    from profkit import report as reports

    if len(profiles) < 2:
        raise bad_input("compare needs at least two captures")
    pickles = [p.suffix == ".pickle" for p in profiles]
    if any(pickles):
        if not all(pickles):
            raise bad_input("compare takes captures or memory snapshots (.pickle), not both")
        from profkit.report import memory as memory_report

        if fmt == "csv":
            raise bad_input("memory snapshots compare as markdown or json")
        items = [_memory(p) for p in profiles]
        emit(memory_report.compare(items, memory_report.labels(list(profiles)), fmt=fmt, top=max(top, 15)), output)
        return
    analyses = [_load(p, rules, allow_incomplete) for p in profiles]  # NVTX: the step_i ranges count the steps
    emit(library(lambda: reports.compare(analyses, reports.labels(list(profiles)), top=top, fmt=fmt)), output)


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=click.Path(path_type=Path))
@click.option("--by", type=click.Choice(["phase", "name"]), default="phase", show_default=True,
              help="phase: the measured steps' step, forward, backward, optimizer; name: every range name.")
@output_options
@report_options
def timeline(profile: Path, by: str, fmt: str, output: Path | None, rules: Path | None, allow_incomplete: bool,
             no_cache: bool) -> None:
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

        return timeline_report(_load(profile, rules, allow_incomplete, use_cache=not no_cache), by=by, fmt=fmt)

    options: dict[str, object] = {"by": by, "fmt": fmt, "allow_incomplete": allow_incomplete}
    emit(library(lambda: pipeline.cached_report(profile, "timeline", options, make, rules=rules,
                                                use_cache=not no_cache)), output)


def _memory(path: Path) -> Any:
    """(MemoryData, MemoryAnalysis) of a snapshot, or one `Error:` line."""
    from profkit import snapshot
    from profkit.report import memory as memory_report

    data = library(lambda: snapshot.read(path))
    return data, memory_report.analyze(data)


@report.command("memory", context_settings=CONTEXT_SETTINGS)
@click.argument("snapshot", type=click.Path(path_type=Path))
@click.option("--profile", "capture", type=click.Path(path_type=Path),
              help="A capture of the same run: its GPU time per path beside the memory (default: the snapshot's "
              "folder, when it is a capture).")
@click.option("--top", type=int, default=10, show_default=True, help="Rows of the at-peak tables.")
@click.option("--png", type=click.Path(path_type=Path), help="Write memory over time as a PNG (never over a file).")
@click.option("--html", "html_out", type=click.Path(path_type=Path),
              help="Write a self-contained HTML page (timeline and tables; opens offline).")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file (never over one that "
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
    from profkit import analyze, layout
    from profkit.report import memory as memory_report

    for out in (png, html_out, output if output is not None and str(output) != "-" else None):
        if out is not None and out.exists():
            raise bad_input(f"{out} exists; choose another file")
    data, m = _memory(snapshot)
    if capture is None and (data.path.parent / layout.EXPORT).is_file():
        capture = data.path.parent
    kernels = None
    if capture is not None:
        a = _load(capture, None, False)
        kernels = analyze.nvtx_summary(a.ranges, a.kernels, by="path")
    text, image, page = memory_report.outputs(data, m, fmt=fmt, top=top, kernels=kernels, png=png is not None,
                                              html=html_out is not None)
    if image is not None and png is not None:
        library(lambda: layout.write_bytes(png, image, replace=False))
        click.echo(f"wrote {png}", err=True)
    if page is not None and html_out is not None:
        library(lambda: layout.write_text(html_out, page, replace=False))
        click.echo(f"wrote {html_out}", err=True)
    emit(text, output)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--model", default=RunConfig().model, show_default=True,
              help=f"Size ({', '.join(SIZES)}) or package.module:factory.")
@click.option("--mode", default=RunConfig().mode, show_default=True, help=f"One of {', '.join(MODES)}.")
@click.option("--attn", default=RunConfig().attn, show_default=True, help=f"One of {', '.join(ATTN_BACKENDS)}.")
@click.option("--dtype", default=RunConfig().dtype, show_default=True, help=f"One of {', '.join(DTYPES)}.")
@click.option("--batch-size", type=int, help="Default: the size's.")
@click.option("--context-length", type=int, help="Default: the size's.")
@click.option("--nvtx-depth", type=int, default=RunConfig().nvtx_depth, show_default=True,
              help="Module levels with ranges, for your own model.")
@click.option("--format", "fmt", type=click.Choice(["json", "markdown"]), default="json", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Write flops.json into this run or capture folder.")
def flops(model: str, mode: str, attn: str, dtype: str, batch_size: int | None, context_length: int | None,
          nvtx_depth: int, fmt: str, out: Path | None) -> None:
    """FLOPs and minimum bytes per NVTX path of one step, counted on the meta device (CPU is
    enough): the paths a capture of the same config has, under step_0.

    \b
    Example:
        profkit flops --model small --mode step --dtype bf16 --attn flash
        profkit flops --model small --mode step --dtype bf16 --out profiles/small-step
    """
    try:
        cfg = RunConfig(model=model, mode=mode, attn=attn, dtype=dtype, batch_size=batch_size,
                        context_length=context_length, nvtx_depth=nvtx_depth, device="cpu")
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


def _flops_of(profile: Path, a: Any) -> Any:
    """The capture's flops.json, or counted from its run.json when torch is importable."""
    import importlib.util

    from profkit.report import flops as flops_report

    try:
        return flops_report.read_flops(profile)
    except flops_report.FlopsMissing as e:
        if a.run is None or importlib.util.find_spec("torch") is None:
            raise bad_input(str(e)) from None
    from profkit.collect import flops as counting

    return library(lambda: counting.count(a.run.config))


@report.command("flops", context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=click.Path(path_type=Path))
@click.option("--peaks", type=click.Choice(["datasheet", "measured"]), default="datasheet", show_default=True,
              help="The peak table to compare with (measured: this project's measured ceilings).")
@click.option("--png", type=click.Path(path_type=Path), help="Write a roofline PNG (needs matplotlib).")
@output_options
@report_options
def flops_command(profile: Path, peaks: str, png: Path | None, fmt: str, output: Path | None, rules: Path | None,
                  allow_incomplete: bool, no_cache: bool) -> None:
    """FLOPs and bytes beside GPU time per NVTX path: achieved TFLOP/s, % of peak, intensity,
    compute- or memory-bound, whole-step MFU and the floor. Reads the capture's flops.json.

    \b
    Example:
        profkit report flops profiles/small-step
        profkit report flops profiles/small-step --format json
    """
    from profkit.report import flops as flops_report

    a = _load(profile, rules, allow_incomplete)
    counted = _flops_of(profile, a)
    emit(library(lambda: flops_report.report(a, counted, fmt=fmt, measured=peaks == "measured")), output)
    if png is not None:  # pragma: no cover - needs matplotlib
        t, s, peak = library(lambda: flops_report.table(a, counted, measured=peaks == "measured"))
        click.echo(flops_report.roofline_png(t, peak, s.precision, png), err=True)
