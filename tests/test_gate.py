"""`profkit report compare --fail-if`: the CI gate, on real captures; limits placed around growths
computed independently (run.json's medians, plain SQL over the exports)."""

from __future__ import annotations

import json
import shutil
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


# --- --fail-above: the noise-aware gate ------------------------------------------------------------------------

STRINGS = "coalesce(n.text, s.value)"
RANGES_SQL = (f"SELECT n.start, n.[end], n.globalTid, {STRINGS} AS name FROM NVTX_EVENTS n "
              "LEFT JOIN StringIds s ON n.textId = s.id WHERE n.eventType = 59")


def robust_sd(values: list[float]) -> float:
    """1.4826 x the median absolute deviation, with the statistics module (not profkit's helpers)."""
    import statistics

    m = statistics.median(values)
    return 1.4826 * statistics.median([abs(v - m) for v in values])


def sql_range_ms(export: Path, name: str) -> list[float]:
    """Per step (in step order): kernel time launched (runtime call on the range's thread) inside
    range NAME of that step, by plain SQL."""
    db = sqlite3.connect(export)
    rows = db.execute(f"""
        WITH r AS ({RANGES_SQL}),
        steps AS (SELECT * FROM r WHERE name GLOB 'step_[0-9]*'),
        inner AS (SELECT x.start, x.[end], x.globalTid, CAST(substr(st.name, 6) AS INTEGER) AS step FROM r x
                  JOIN steps st ON x.globalTid = st.globalTid AND x.start >= st.start AND x.[end] <= st.[end]
                  WHERE x.name = ?)
        SELECT inner.step, sum(k.[end] - k.start) FROM CUPTI_ACTIVITY_KIND_KERNEL k
        JOIN CUPTI_ACTIVITY_KIND_RUNTIME rt ON rt.correlationId = k.correlationId
        JOIN inner ON rt.globalTid = inner.globalTid AND rt.start >= inner.start AND rt.start <= inner.[end]
        GROUP BY inner.step ORDER BY inner.step""", (name,)).fetchall()
    return [ns / 1e6 for _, ns in rows]


def sql_step_ms(export: Path) -> list[float]:
    db = sqlite3.connect(export)
    rows = db.execute(f"SELECT CAST(substr(name, 6) AS INTEGER) AS i, [end] - start FROM ({RANGES_SQL}) "
                      "WHERE name GLOB 'step_[0-9]*' ORDER BY i").fetchall()
    return [ns / 1e6 for _, ns in rows]


def gate_json(*args: object) -> tuple[int, dict]:
    result = invoke(*args, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def test_fail_above_same_capture_passes() -> None:
    result = invoke(PLAIN, PLAIN, "--fail-above", "0", "--range", "backward", "--range", "forward/layer_2")
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4 and all(line.endswith(": pass") for line in lines[:3]), lines
    assert lines[0].startswith("gate ms/step h100_small_step_bf16 (2): ") and "(+0.0%)" in lines[0]
    assert lines[-1] == "gate: passed (3 checks within limit + noise)"
    assert result.stdout == invoke(PLAIN, PLAIN).stdout  # the comparison itself is unchanged


def test_fail_above_slower_capture_fails_with_the_right_quantities() -> None:
    code, out = gate_json(FLASH, PLAIN, "--fail-above", "1", "--range", "forward", "--range", "optimizer")
    assert code == 1 and out["result"] == "fail" and out["exit_code"] == 1
    step, forward, optimizer = out["checks"]
    base_steps = json.loads((FLASH / "run.json").read_text())["steps_ms"]
    new_steps = json.loads((PLAIN / "run.json").read_text())["steps_ms"]
    assert step["quantity"] == "ms/step" and step["base_values_ms"] == pytest.approx(base_steps, abs=1e-6)
    assert step["new_values_ms"] == pytest.approx(new_steps, abs=1e-6)
    assert step["base_ms"] == pytest.approx(median_ms(FLASH), abs=1e-6)
    assert step["new_ms"] == pytest.approx(median_ms(PLAIN), abs=1e-6)
    noise = 2 * (robust_sd(base_steps) ** 2 + robust_sd(new_steps) ** 2) ** 0.5
    assert step["noise_ms"] == pytest.approx(noise, abs=1e-6)
    assert step["noise_pct"] == pytest.approx(100 * noise / median_ms(FLASH), abs=1e-6)
    assert step["change_pct"] > 1 + step["noise_pct"] and step["result"] == "fail"  # 11.6% > 1% + 10.2%
    for check, name in ((forward, "forward"), (optimizer, "optimizer")):
        assert check["quantity"] == f"range:{name}"
        assert check["base_values_ms"] == pytest.approx(sql_range_ms(FLASH / "profile.sqlite", name), abs=1e-6)
        assert check["new_values_ms"] == pytest.approx(sql_range_ms(PLAIN / "profile.sqlite", name), abs=1e-6)
    assert forward["result"] == "fail" and forward["change_pct"] > 5  # naive attention's softmax and matmuls
    assert optimizer["result"] == "pass" and abs(optimizer["change_pct"]) < 1  # the same AdamW
    # the limit decides around change - noise: just below fails, just above passes
    bar = step["change_pct"] - step["noise_pct"]
    assert invoke(FLASH, PLAIN, "--fail-above", f"{bar - 0.05:.2f}").exit_code == 1
    assert invoke(FLASH, PLAIN, "--fail-above", f"{bar + 0.05:.2f}").exit_code == 0
    assert invoke(PLAIN, FLASH, "--fail-above", "0").exit_code == 0  # faster: no regression


def stretched(tmp_path: Path, name: str, steps: tuple[int, ...], factor: float) -> Path:
    """A copy of PLAIN's export (no run.json: ms/step from its step ranges) whose kernels
    launched inside `forward` of the given steps last `factor` times as long (SQL UPDATE)."""
    folder = tmp_path / name
    folder.mkdir()
    export = folder / "profile.sqlite"
    export.write_bytes((PLAIN / "profile.sqlite").read_bytes())
    db = sqlite3.connect(export)
    marks = ", ".join(map(str, steps))
    db.execute(f"""
        WITH r AS ({RANGES_SQL}),
        steps AS (SELECT * FROM r WHERE name GLOB 'step_[0-9]*' AND CAST(substr(name, 6) AS INTEGER) IN ({marks})),
        fwd AS (SELECT x.* FROM r x JOIN steps st ON x.globalTid = st.globalTid AND x.start >= st.start
                AND x.[end] <= st.[end] WHERE x.name = 'forward')
        UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET [end] = start + CAST(([end] - start) * {factor} AS INTEGER)
        WHERE correlationId IN (SELECT rt.correlationId FROM CUPTI_ACTIVITY_KIND_RUNTIME rt JOIN fwd
                                ON rt.globalTid = fwd.globalTid AND rt.start BETWEEN fwd.start AND fwd.[end])""")
    db.commit()
    db.close()
    return export


def test_noise_decides(tmp_path: Path) -> None:
    """Both copies' forward median grows by about the same (one step x1.5 against both x1.25),
    but only the steady one is beyond the noise."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "profile.sqlite").write_bytes((PLAIN / "profile.sqlite").read_bytes())
    one = stretched(tmp_path, "one-step", (1,), 1.5)
    both = stretched(tmp_path, "both-steps", (0, 1), 1.25)
    original = sql_range_ms(PLAIN / "profile.sqlite", "forward")
    code_one, out_one = gate_json(base, one, "--fail-above", "5", "--range", "forward")
    code_both, out_both = gate_json(base, both, "--fail-above", "5", "--range", "forward")
    step_one, fwd_one = out_one["checks"]
    step_both, fwd_both = out_both["checks"]
    assert step_one["base_values_ms"] == pytest.approx(sql_step_ms(PLAIN / "profile.sqlite"), abs=1e-6)
    assert step_one["change_pct"] == 0 and step_one["result"] == "pass"  # the step ranges were not touched
    assert fwd_one["new_values_ms"] == pytest.approx(sql_range_ms(one, "forward"), abs=1e-6)
    assert fwd_both["new_values_ms"] == pytest.approx(sql_range_ms(both, "forward"), abs=1e-6)
    assert fwd_one["new_values_ms"][0] == pytest.approx(original[0], abs=1e-6)
    assert fwd_one["new_values_ms"][1] == pytest.approx(1.5 * original[1], rel=1e-3)
    assert 20 < fwd_one["change_pct"] < 30 and 20 < fwd_both["change_pct"] < 30
    noise = 2 * (robust_sd(original) ** 2 + robust_sd(fwd_one["new_values_ms"]) ** 2) ** 0.5
    assert fwd_one["noise_ms"] == pytest.approx(noise, abs=1e-6) and fwd_one["noise_pct"] > fwd_one["change_pct"]
    assert fwd_one["result"] == "pass" and code_one == 0
    assert fwd_both["noise_pct"] < 5 and fwd_both["result"] == "fail" and code_both == 1
    # a smaller k lets the one-step change through: k scales the noise and nothing else
    code, out = gate_json(base, one, "--fail-above", "5", "--range", "forward", "--noise-k", "0.1")
    assert code == 1 and out["checks"][1]["noise_ms"] == pytest.approx(noise / 20, abs=1e-6)


def test_gate_json_schema() -> None:
    code, out = gate_json(FLASH, PLAIN, "--fail-above", "50", "--fail-if", "category:gemm>+10%")
    assert code == 1  # --fail-if crossed, --fail-above passed: either fails the job
    assert set(out) == {"result", "exit_code", "rule", "checks", "fail_if", "comparison"}
    assert (out["result"], out["exit_code"]) == ("fail", 1)
    assert len(out["fail_if"]) == 1 and out["fail_if"][0].startswith("h100_small_step_bf16: category:gemm ")
    (check,) = out["checks"]
    types = {"quantity": str, "capture": str, "base_ms": float, "new_ms": float, "change_ms": float,
             "change_pct": float, "noise_ms": float, "noise_pct": float, "limit_pct": float, "k": float,
             "base_steps": int, "new_steps": int, "base_values_ms": list, "new_values_ms": list, "result": str}
    assert set(check) == set(types) and all(isinstance(check[k], t) for k, t in types.items()), check
    assert check["result"] == "pass" and check["limit_pct"] == 50.0 and check["k"] == 2.0
    assert out["comparison"] == json.loads(invoke(FLASH, PLAIN, "--format", "json").stdout)


def test_one_step_has_no_noise(tmp_path: Path) -> None:
    one = tmp_path / "one"
    shutil.copytree(PLAIN, one)
    record = json.loads((one / "run.json").read_text())
    record["steps_ms"] = record["steps_ms"][:1]
    (one / "run.json").write_text(json.dumps(record))
    code, out = gate_json(FLASH, one, "--fail-above", "5")
    (check,) = out["checks"]
    assert check["noise_ms"] is None and check["noise_pct"] is None and check["new_steps"] == 1
    growth = 100 * (record["steps_ms"][0] - median_ms(FLASH)) / median_ms(FLASH)
    assert check["change_pct"] == pytest.approx(growth, abs=1e-6) and growth > 5 and code == 1  # the limit alone
    line = invoke(FLASH, one, "--fail-above", "5").stderr.splitlines()[0]
    assert "noise unknown (2+1 steps: one step shows no spread)" in line and line.endswith(": FAIL")


@pytest.mark.parametrize("args, says", [
    (["--range", "backward"], "--range goes with --fail-above PCT"),
    (["--noise-k", "1"], "--noise-k goes with --fail-above PCT"),
    (["--fail-above", "5", "--range", "fowrad"], "--range 'fowrad': no range of that name inside the measured "
                                                 "steps (close: forward"),
    (["--fail-above", "-1"], "-1"),
])
def test_fail_above_bad_input(args: list[str], says: str) -> None:
    result = invoke(FLASH, PLAIN, *args)
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.startswith("Error: ") and says in result.stderr and len(result.stderr.splitlines()) == 1


def test_noise_rule_unit() -> None:
    from profkit.analyze.gate import NoiseCheck

    c = NoiseCheck("ms/step", "x", (10.0, 10.0, 10.0), (11.0, 11.0, 11.0), 5.0, 2.0)
    assert c.noise_ms == 0 and c.change_pct == pytest.approx(10.0) and c.failed
    wide = NoiseCheck("ms/step", "x", (9.0, 10.0, 11.0), (10.0, 11.0, 12.0), 5.0, 2.0)
    assert wide.noise_ms == pytest.approx(2 * (2 * 1.4826**2) ** 0.5) and not wide.failed
    assert NoiseCheck("range:r", "x", (0.0, 0.0), (0.5, 0.5), 0.0, 2.0).failed  # from 0: any growth past noise
    assert not NoiseCheck("range:r", "x", (0.0, 0.0), (0.0, 0.0), 0.0, 2.0).failed


@pytest.mark.parametrize("value", ["NaN", "-1.0", "Infinity"])
def test_damaged_step_times_are_refused(tmp_path: Path, value: str) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(PLAIN, bad)
    text = (bad / "run.json").read_text()
    record = json.loads(text)
    record["steps_ms"][1] = float(value)
    (bad / "run.json").write_text(json.dumps(record))
    result = invoke(FLASH, bad, "--fail-above", "5")
    assert result.exit_code == 2 and result.stdout == "", result.output
    want = {"NaN": "nan", "-1.0": "-1.0", "Infinity": "inf"}[value]  # refused where run.json is read
    assert f"steps_ms holds {want}, not a finite number" in result.stderr and len(result.stderr.splitlines()) == 1


# Real captures for the noise-aware gate (scripts/gpu_issue17_gate.sh, H200): two captures of one config,
# one after the other, and the same step with the unfused (foreach) AdamW; 8 measured steps each.
SAME_A, SAME_B, FOREACH = (DATA / f"h200_tiny_step_bf16_{s}" for s in ("a", "b", "foreach"))


def independent_check(base: Path, new: Path, name: str, limit: float) -> dict:
    """One --fail-above check computed without profkit: per-step values (SQL), medians and spreads
    (statistics), the rule change > limit + 2 x sqrt(s_base^2 + s_new^2), all in percent of the base."""
    import statistics

    b, n = sql_range_ms(base / "profile.sqlite", name), sql_range_ms(new / "profile.sqlite", name)
    mb, mn = statistics.median(b), statistics.median(n)
    noise = 2 * (robust_sd(b) ** 2 + robust_sd(n) ** 2) ** 0.5
    return {"base_values_ms": b, "new_values_ms": n, "base_ms": mb, "new_ms": mn, "noise_ms": noise,
            "change_pct": 100 * (mn - mb) / mb, "result": "fail" if 100 * (mn - mb - noise) / mb > limit else "pass"}


@pytest.mark.parametrize("base, new", [(SAME_A, SAME_B), (SAME_B, SAME_A)])
def test_two_real_captures_of_one_config_pass(base: Path, new: Path) -> None:
    code, out = gate_json(base, new, "--fail-above", "2", "--range", "forward", "--range", "optimizer")
    assert code == 0 and out["result"] == "pass", out
    step, *ranges = out["checks"]
    assert len(out["checks"]) == 3 and all(c["result"] == "pass" for c in out["checks"])
    for capture, key in ((base, "base_values_ms"), (new, "new_values_ms")):
        steps = json.loads((capture / "run.json").read_text())["steps_ms"]
        assert len(steps) == 8 and step[key] == pytest.approx(steps, abs=1e-6)
    for check, name in zip(ranges, ("forward", "optimizer"), strict=True):
        want = independent_check(base, new, name, 2.0)
        assert check["quantity"] == f"range:{name}" and len(check["base_values_ms"]) == 8
        for key, value in want.items():
            assert check[key] == (value if key == "result" else pytest.approx(value, abs=1e-6)), (name, key)


def test_a_real_regression_fails_on_its_range() -> None:
    """The unfused AdamW: the optimizer range's GPU time grows far beyond its steps' spread; forward is untouched."""
    code, out = gate_json(SAME_A, FOREACH, "--fail-above", "5", "--range", "forward", "--range", "optimizer")
    assert code == 1 and out["result"] == "fail"
    _, forward, optimizer = out["checks"]
    for check, name in ((forward, "forward"), (optimizer, "optimizer")):
        want = independent_check(SAME_A, FOREACH, name, 5.0)
        for key, value in want.items():
            assert check[key] == (value if key == "result" else pytest.approx(value, abs=1e-6)), (name, key)
    assert optimizer["result"] == "fail" and optimizer["change_pct"] > 50 and forward["result"] == "pass"
    lines = invoke(SAME_A, FOREACH, "--fail-above", "5", "--range", "optimizer").stderr.splitlines()
    assert lines[1].startswith("gate range:optimizer h200_tiny_step_bf16_foreach: ") and lines[1].endswith(": FAIL")
