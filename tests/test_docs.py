"""Every command has help text and appears in README (as sqlite-utils' test_docs does)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from profkit.cli import cli
from profkit.config import RunConfig

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def commands(group: click.Group, prefix: str = "profkit") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((f"{prefix} {name}", cmd))
        if isinstance(cmd, click.Group):
            out += commands(cmd, f"{prefix} {name}")
    return out


@pytest.mark.parametrize("name,cmd", commands(cli))
def test_command_has_help_and_is_in_readme(name: str, cmd: click.Command) -> None:
    assert cmd.help and "Example:" in cmd.help
    assert f"`{name}`" in README or f"{name} " in README


def run_table() -> dict[str, str]:
    """README's `profkit run` options table: option -> its default cell, from rows `| `--opt` | default | ...`."""
    section = README.split("## `profkit run`", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(--[a-z-]+)` \| ([^|]+?) \|", section, flags=re.M)
    assert len(rows) == len({opt for opt, _ in rows}), "an option has two rows"
    return dict(rows)


# What a default of None means, as README says it (RunConfig resolves these at run time).
NONE_MEANS = {"batch_size": "the size's", "context_length": "the size's", "device": "cuda if available",
              "out": "`runs/<model>-<mode>-<dtype>-<attn>-<time>/`", "node_rank": "torchrun's",
              "rdzv_backend": "torchrun's", "rdzv_endpoint": "none", "rdzv_id": "torchrun's"}


def readme_default(field: str, value: object) -> str:
    """The default cell README must show for a RunConfig field's default."""
    if value is None:
        return NONE_MEANS[field]
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"`{value}`" if isinstance(value, str) else str(value)


def test_every_run_option_has_a_row_in_readme_table() -> None:
    options = {p.opts[0] for p in cli.commands["run"].params if isinstance(p, click.Option)}
    assert set(run_table()) == options  # every option a row, and no row for an option that is gone


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(RunConfig)])
def test_readme_table_shows_each_runconfig_default(field: str) -> None:
    value = getattr(RunConfig(), field)
    option = "--" + field.replace("_", "-")
    assert run_table().get(option) == readme_default(field, value)
    # What `profkit run` with no options hands RunConfig is RunConfig's own default.
    given = cli.commands["run"].make_context("run", []).params
    assert given["compile_" if field == "compile" else field] == value


def test_none_defaults_are_all_explained() -> None:
    assert {f.name for f in dataclasses.fields(RunConfig) if getattr(RunConfig(), f.name) is None} == set(NONE_MEANS)


def test_quickstart_is_two_commands_and_ci_runs_the_second() -> None:
    block = README.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert lines == ["bash scripts/quickstart.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci/run").read_text()


def test_analysis_modules_import_without_torch() -> None:
    code = ("import sys, profkit, profkit.config, profkit.report, profkit.sizes, profkit.models, profkit.ranges; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
