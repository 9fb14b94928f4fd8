"""`profkit report compare --fail-if`: the CI gate, on real captures; limits placed around growths
computed independently (run.json's medians, plain SQL over the exports)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from profkit.analyze.gate import Threshold, crossed, parse_threshold
from profkit.cli import cli

DATA = Path(__file__).parent / "data"
PLAIN, FLASH = DATA / "h100_small_step_bf16", DATA / "h100_small_step_bf16_flash"


def invoke(*args: object):
    return CliRunner().invoke(cli, ["report", "compare", *map(str, args)])


def median_ms(capture: Path) -> float:
    return json.loads((capture / "run.json").read_text())["summary"]["median_ms"]


def gpu_ms(capture: Path) -> float:
    """Kernels, memcpy and memset time per measured step (2 step_i ranges), by SQL."""
    db = sqlite3.connect(capture / "profile.sqlite")
    total = sum(db.execute(f"SELECT sum([end] - start) FROM {t}").fetchone()[0] or 0 for t in (
        "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET"))
    steps = db.execute("SELECT count(*) FROM NVTX_EVENTS n LEFT JOIN StringIds s ON n.textId = s.id "
                       "WHERE coalesce(n.text, s.value) GLOB 'step_[0-9]*'").fetchone()[0]
    return total / steps / 1e6


def test_same_capture_passes() -> None:
    result = invoke(PLAIN, PLAIN, "--fail-if", "step_ms>+0%", "--fail-if", "gpu_ms>+0ms", "--fail-if",
                    "category:gemm>+0%")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == "gate: passed (3 threshold checks, none crossed)"
    assert result.stdout == invoke(PLAIN, PLAIN).stdout  # the comparison itself is unchanged


@pytest.mark.parametrize("metric, value", [("step_ms", median_ms), ("gpu_ms", gpu_ms)])
def test_limits_around_the_real_growth(metric: str, value) -> None:
    base, new = value(FLASH), value(PLAIN)
    growth = 100 * (new - base) / base
    assert growth > 5  # the plain-attention step is slower than flash's
    below = invoke(FLASH, PLAIN, "--fail-if", f"{metric}>+{growth - 0.2:.2f}%")
    assert below.exit_code == 1, below.output
    line = below.stderr.strip()
    assert line.startswith("gate: 1 regression: h100_small_step_bf16: ") and "\n" not in line
    assert f"{metric} {base:,.3f} -> {new:,.3f} ms ({growth:+.1f}%" in line
    assert invoke(FLASH, PLAIN, "--fail-if", f"{metric}>+{growth + 0.2:.2f}%").exit_code == 0
    grew = new - base  # absolute limits, in ms
    assert invoke(FLASH, PLAIN, "--fail-if", f"{metric}>+{grew - 0.01:.3f}ms").exit_code == 1
    assert invoke(FLASH, PLAIN, "--fail-if", f"{metric}>+{grew + 0.01:.3f}ms").exit_code == 0
    assert invoke(PLAIN, FLASH, "--fail-if", f"{metric}>+0%").exit_code == 0  # faster: no regression


def test_categories_and_several_thresholds() -> None:
    result = invoke(FLASH, PLAIN, "--fail-if", "step_ms>+5%", "--fail-if", "category:gemm>+10%", "--fail-if",
                    "category:optimizer>+50%")
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line.startswith("gate: 2 regressions: ") and "step_ms" in line and "category:gemm" in line
    assert "optimizer" not in line


@pytest.mark.parametrize("bad, says", [
    ("step_ms>5", "METRIC>+PCT%"), ("latency>+5%", "METRIC one of"), ("step_ms<-5%", "METRIC>+PCT%"),
    ("category:tensorcore>+5%", "no capture has category 'tensorcore'"),
])
def test_bad_thresholds(bad: str, says: str) -> None:
    result = invoke(FLASH, PLAIN, "--fail-if", bad)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error: ") and says in result.stderr and len(result.stderr.splitlines()) == 1


def test_step_ms_needs_run_json(tmp_path: Path) -> None:
    bare = tmp_path / "bare.sqlite"
    bare.write_bytes((PLAIN / "profile.sqlite").read_bytes())
    result = invoke(FLASH, bare, "--fail-if", "step_ms>+5%")
    assert result.exit_code == 2 and "needs each capture's run.json (bare has none)" in result.stderr
    assert invoke(FLASH, bare, "--fail-if", "gpu_ms>+5%").exit_code == 1


def test_parse_and_cross() -> None:
    assert parse_threshold(" category:flash attn > 2.5 ms ") == Threshold("category:flash attn", 2.5, "ms")
    t = parse_threshold("gpu_ms>+10%")
    assert not crossed(t, 10.0, 11.0) and crossed(t, 10.0, 11.01) and crossed(t, 0.0, 0.1)
