"""profkit's command line: a thin click layer over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click_default_group import DefaultGroup

from models.sizes import ATTN_BACKENDS, SIZES
from profkit import __version__
from profkit.config import DEVICES, DTYPES, MODES, RunConfig
from profkit.errors import ProfkitError

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


def fail(message: str) -> click.ClickException:
    return BadInput(message)


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
    ]
    for option in reversed(options):
        f = option(f)
    return f


def make_config(**kwargs: Any) -> RunConfig:
    kwargs["compile"] = kwargs.pop("compile_")
    try:
        return RunConfig(**kwargs)
    except ValueError as e:
        raise fail(str(e)) from None


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
        raise fail(str(e)) from None
    print_run(record)


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
    from profkit.collect.launch import profile as run_profile
    from profkit.collect.nsys import find_nsys
    from profkit.console import status

    try:
        nsys = find_nsys(nsys_path)
        device, cuda = _device_and_cuda(cfg.device)
        with status() as say:
            folder = run_profile(nsys, cfg, device=device, cuda=cuda, name=name, out_dir=out_dir,
                                 user_args=list(nsys_args), force=force, status=say)
    except ProfkitError as e:
        raise fail(str(e)) from None
    click.echo(f"capture: {folder}/")
    for f in sorted(folder.iterdir()):
        click.echo(f"  {f.name:<20} {f.stat().st_size / 2**20:8.2f} MiB")


def _device_and_cuda(device: str | None) -> tuple[str, str | None]:
    """The device a run will use and the CUDA version torch was built for (imports torch)."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ProfkitError("device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    return device or ("cuda" if torch.cuda.is_available() else "cpu"), torch.version.cuda


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--nsys", "nsys_path", help="Check this nsys instead of searching.")
def doctor(nsys_path: str | None) -> None:
    """One screen: versions, GPU, nsys and what it can trace, what is missing and how to fix it.

    \b
    Example:
        profkit doctor
    """
    from profkit.collect.doctor import diagnose
    from profkit.console import print_doctor

    print_doctor(diagnose(nsys_path))


def report_options(f: Any) -> Any:
    """Options every `profkit report` command shares."""
    f = click.option("--allow-incomplete", is_flag=True,
                     help="Report an export whose nsys analysis stopped early instead of refusing it.")(f)
    f = click.option("--rules", type=click.Path(path_type=Path), help="Extra kernel category rules (TOML).")(f)
    return f


def output_options(f: Any) -> Any:
    f = click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file (never over one "
                     "that exists) instead of stdout.")(f)
    f = click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "json"]), default="markdown",
                     show_default=True)(f)
    return f


def emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    if output.exists():
        raise fail(f"{output} exists; choose another -o FILE")
    output.write_text(text)
    click.echo(f"wrote {output}", err=True)


@cli.group(cls=DefaultGroup, default="capture", default_if_no_args=True, context_settings=CONTEXT_SETTINGS)
def report() -> None:
    """Report on nsys exports: kernels, NVTX ranges, comparisons, a capture's report.md.

    `profkit report PROFILE_DIR` (the `capture` subcommand) writes report.md into a capture
    folder; `profkit report --demo` prints the report of a real H100 export shipped with profkit.

    \b
    Example:
        profkit report profiles/small-step
        profkit report kernels profiles/small-step/profile.sqlite --by category
        profkit report compare profiles/small-fwd profiles/small-fwd_bwd profiles/small-step
    """


def _run_report(fn: Any) -> Any:
    try:
        return fn()
    except ProfkitError as e:
        raise fail(str(e)) from None


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=click.Path(path_type=Path), required=False)
@click.option("--demo", is_flag=True, help="Report on the H100 export that ships with profkit.")
@click.option("--top", type=int, default=15, show_default=True, help="Kernels listed.")
@report_options
def capture(profile: Path | None, demo: bool, top: int, rules: Path | None, allow_incomplete: bool) -> None:
    """Write report.md into a capture folder: config, categories, top kernels, NVTX ranges.

    \b
    Example:
        profkit report profiles/small-step-bf16
        profkit report --demo
    """
    from profkit import summary

    if demo:
        click.echo(_run_report(lambda: summary.demo_report(top=top)))
        return
    if profile is None:
        raise fail("give a capture folder (profiles/NAME), a subcommand (kernels, nvtx, compare) or --demo")
    out = _run_report(lambda: summary.capture_report(profile, top=top, rules=rules, allow_incomplete=allow_incomplete))
    click.echo(f"report: {out}")


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=click.Path(path_type=Path))
@click.option("--range", "range_regex", help="Only kernels launched inside ranges whose path matches this regex.")
@click.option("--top", type=int, default=20, show_default=True, help="Rows listed (0: all).")
@click.option("--by", type=click.Choice(["name", "category"]), default="name", show_default=True)
@click.option("--name", type=click.Choice(["demangled", "short"]), default="demangled", show_default=True)
@output_options
@report_options
def kernels(profile: Path, range_regex: str | None, top: int, by: str, name: str, fmt: str, output: Path | None,
            rules: Path | None, allow_incomplete: bool) -> None:
    """Kernel time by name (as nsys stats -r cuda_gpu_kern_sum) or by category.

    \b
    Example:
        profkit report kernels profiles/small-step/profile.sqlite --top 10
        profkit report kernels profiles/small-step --range backward --by category --format json
    """
    from profkit import summary

    emit(_run_report(lambda: summary.kernels_report(profile, range_regex=range_regex, top=top, by=by, name=name,
                                                     fmt=fmt, rules=rules, allow_incomplete=allow_incomplete)), output)


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profile", type=click.Path(path_type=Path))
@click.option("--by", type=click.Choice(["path", "name"]), default="path", show_default=True)
@output_options
@report_options
def nvtx(profile: Path, by: str, fmt: str, output: Path | None, rules: Path | None, allow_incomplete: bool) -> None:
    """GPU time of each NVTX range path (or name), backward's autograd thread included.

    \b
    Example:
        profkit report nvtx profiles/small-step --by name
    """
    from profkit import summary

    emit(_run_report(lambda: summary.nvtx_report(profile, by=by, fmt=fmt, rules=rules,
                                                  allow_incomplete=allow_incomplete)), output)


@report.command(context_settings=CONTEXT_SETTINGS)
@click.argument("profiles", type=click.Path(path_type=Path), nargs=-1, required=True)
@click.option("--top", type=int, default=10, show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file instead of stdout.")
@report_options
def compare(profiles: tuple[Path, ...], top: int, output: Path | None, rules: Path | None,
            allow_incomplete: bool) -> None:
    """Category shares and top kernels of several captures side by side, deltas against the first.

    \b
    Example:
        profkit report compare profiles/small-fwd profiles/small-fwd_bwd profiles/small-step
    """
    from profkit import summary

    emit(_run_report(lambda: summary.compare_report(list(profiles), top=top, rules=rules,
                                                     allow_incomplete=allow_incomplete)), output)
