"""profkit's command line: a thin click layer over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

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
