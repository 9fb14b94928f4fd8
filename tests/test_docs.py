"""Every command has help text and appears in README (as sqlite-utils' test_docs does)."""

from __future__ import annotations

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


@pytest.mark.parametrize("option", [p.opts[0] for p in cli.commands["run"].params if isinstance(p, click.Option)
                                    and p.opts[0] not in ("--out", "--force")])
def test_every_run_option_is_in_readme_table(option: str) -> None:
    assert re.search(rf"\| `{re.escape(option)}`", README) or f"`{option}`" in README


def test_readme_defaults_match_runconfig() -> None:
    d = RunConfig()
    for option, value in [("--model", d.model), ("--mode", d.mode), ("--attn", d.attn), ("--dtype", d.dtype),
                          ("--nvtx", d.nvtx), ("--nvtx-depth", d.nvtx_depth), ("--seed", d.seed)]:
        assert f"| `{option}` | `{value}` |" in README or f"| `{option}` | {value} |" in README, option


def test_quickstart_is_two_commands_and_ci_runs_the_second() -> None:
    block = README.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert lines == ["bash scripts/quickstart.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci/run").read_text()


def test_analysis_modules_import_without_torch() -> None:
    code = ("import sys, profkit, profkit.config, profkit.report, profkit.sizes, profkit.models, profkit.ranges; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
