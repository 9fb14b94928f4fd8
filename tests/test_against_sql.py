"""Every number a report shows, checked against plain SQL over the committed exports.

The expected values are computed here, from the .sqlite with sqlite3 (as nsys's own reports do),
never from profkit's earlier output: a change of rules, parsing or attribution that moves a
number fails here. Only a kernel's category comes from profkit's rules (one per distinct name);
every sum, count and duration is SQL's.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import statistics
from collections import defaultdict
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from profkit.analyze import categorize, load_rules
from profkit.cli import cli
from profkit.pipeline import demo_path

DATA = Path(__file__).parent / "data"
FIXTURES = {p.parent.name: p for p in sorted(DATA.glob("*/profile.sqlite"))} | {"demo": demo_path()}
IDS = sorted(FIXTURES)
PHASES = ("forward", "backward", "optimizer")
PID = "& ~0xFFFFFF"  # globalPid = globalTid & ~0xFFFFFF (the low 24 bits are the thread)


def query(export: Path, sql: str, params: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def has_table(export: Path, table: str) -> bool:
    return bool(query(export, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)))


GRAPHS = "CUPTI_ACTIVITY_KIND_GRAPH_TRACE"
GRAPH_NAME = "'CUDA graph ' || g.graphId || ' (exec ' || g.graphExecId || ')'"


@cache
def work(export: Path) -> str:
    """A CTE `w` of the GPU work reports count as kernels: every kernel row (its demangled name)
    and, where nsys traced CUDA graphs whole (--cuda-graph-trace=graph), every graph replay,
    named `CUDA graph G (exec E)`."""
    kernels = ("SELECT k.start, k.end, k.correlationId, k.globalPid, s.value AS name "
               "FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.demangledName")
    graphs = (f" UNION ALL SELECT g.start, g.end, g.correlationId, g.globalPid, {GRAPH_NAME} FROM {GRAPHS} g"
              if has_table(export, GRAPHS) else "")
    return f"w AS ({kernels}{graphs})"


def report_json(*args: object) -> list[dict]:
    result = CliRunner().invoke(cli, ["report", *map(str, args), "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@cache
def kernel_durations(fixture: str) -> dict[str, list[int]]:
    """Demangled name -> every kernel's duration, from CUPTI_ACTIVITY_KIND_KERNEL (and graph replays)."""
    out: dict[str, list[int]] = defaultdict(list)
    export = FIXTURES[fixture]
    for name, dur in query(export, f"WITH {work(export)} SELECT name, end - start FROM w"):
        out[name].append(dur)
    return dict(out)


@cache
def per_name(fixture: str) -> dict[str, tuple[int, int, int, int]]:
    """Demangled name -> (instances, total, min, max), grouped in SQL."""
    export = FIXTURES[fixture]
    rows = query(export, f"WITH {work(export)} SELECT name, count(*), sum(end - start), min(end - start), "
                         "max(end - start) FROM w GROUP BY name")
    return {name: (n, total, lo, hi) for name, n, total, lo, hi in rows}


@cache
def category_totals(fixture: str) -> dict[str, tuple[int, int]]:
    """Category -> (instances, total): SQL's per-name sums, each name placed by profkit's rules."""
    names = per_name(fixture)
    cats = categorize(pd.Series(list(names)), load_rules(None))
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (n, total, _, _), cat in zip(names.values(), cats, strict=True):
        out[cat][0] += n
        out[cat][1] += total
    return {c: (n, t) for c, (n, t) in out.items()}


def copy_totals(export: Path) -> dict[str, int]:
    """memcpy and memset time from their own tables (absent tables: nothing)."""
    out = {}
    for cat, table in (("memcpy", "CUPTI_ACTIVITY_KIND_MEMCPY"), ("memset", "CUPTI_ACTIVITY_KIND_MEMSET")):
        if has_table(export, table):
            total = query(export, f"SELECT sum(end - start) FROM {table}")[0][0]
            if total:
                out[cat] = total
    return out


RANGES = """WITH r AS (SELECT n.rowid AS id, coalesce(n.text, s.value) AS name, n.start, n.end, n.globalTid AS tid
                       FROM NVTX_EVENTS n LEFT JOIN StringIds s ON s.id = n.textId
                       WHERE n.eventType = (SELECT id FROM ENUM_NSYS_EVENT_TYPE WHERE name = 'NvtxPushPopRange'))"""


@cache
def top_level_ranges(fixture: str) -> dict[str, list[tuple[int, int, int]]]:
    """Path (step_i, step_i/forward, ...) -> [(start, end, globalTid)] of every such range."""
    export = FIXTURES[fixture]
    out: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for name, start, end, tid in query(export, RANGES + " SELECT name, start, end, tid FROM r "
                                               "WHERE name GLOB 'step_[0-9]*'"):
        out[name].append((start, end, tid))
    phases = ", ".join(f"'{p}'" for p in PHASES)
    for step, name, start, end, tid in query(export, RANGES + f""" SELECT st.name, ph.name, ph.start, ph.end, ph.tid
            FROM r st JOIN r ph ON ph.tid = st.tid AND ph.start >= st.start AND ph.end <= st.end AND ph.id != st.id
            WHERE st.name GLOB 'step_[0-9]*' AND ph.name IN ({phases})"""):
        out[f"{step}/{name}"].append((start, end, tid))
    return dict(out)


def launched_in(export: Path, start: int, end: int, tid: int) -> tuple[int, int]:
    """(kernels, total ns) whose launching runtime call started in [start, end) on any thread of
    `tid`'s process, joined on correlationId and process."""
    n, total = query(export, f"""WITH {work(export)} SELECT count(*), coalesce(sum(k.end - k.start), 0)
        FROM w k JOIN CUPTI_ACTIVITY_KIND_RUNTIME r
          ON r.correlationId = k.correlationId AND (r.globalTid {PID}) = k.globalPid
        WHERE r.start >= ? AND r.start < ? AND (r.globalTid {PID}) = (? {PID})""", (start, end, tid))[0]
    return n, total


def unattributed_ns(export: Path) -> int:
    """Kernel time whose launch no range of its process covered (or whose launch is unknown)."""
    return query(export, RANGES + f""", {work(export)} SELECT coalesce(sum(k.end - k.start), 0) FROM w k
        LEFT JOIN CUPTI_ACTIVITY_KIND_RUNTIME c ON c.correlationId = k.correlationId
          AND (c.globalTid {PID}) = k.globalPid
        WHERE c.start IS NULL OR NOT EXISTS (SELECT 1 FROM r WHERE (r.tid {PID}) = k.globalPid
          AND r.start <= c.start AND c.start < r.end)""")[0][0]


@pytest.mark.parametrize("fixture", IDS)
def test_kernels_per_name_equal_sql(fixture: str) -> None:
    rows = report_json("kernels", FIXTURES[fixture], "--top", "0")
    ours = {r["name"]: r for r in rows}
    sql = per_name(fixture)
    assert set(ours) == set(sql)
    grand = sum(t for _, t, _, _ in sql.values())
    for name, (n, total, lo, hi) in sql.items():
        r, durs = ours[name], kernel_durations(fixture)[name]
        assert (r["instances"], r["total_ns"], r["min_ns"], r["max_ns"]) == (n, total, lo, hi), name
        assert r["median_ns"] == float(np.median(durs)), name
        assert r["avg_ns"] == pytest.approx(total / n, rel=1e-9)
        assert r["stddev_ns"] == pytest.approx(statistics.stdev(durs) if n > 1 else 0.0, rel=1e-6)
        assert r["time_pct"] == pytest.approx(100 * total / grand, abs=1e-9)
    # Largest first, as nsys lists them.
    assert [r["total_ns"] for r in rows] == sorted((t for _, t, _, _ in sql.values()), reverse=True)


@pytest.mark.parametrize("fixture", IDS)
def test_kernels_by_category_equal_sql(fixture: str) -> None:
    rows = report_json("kernels", FIXTURES[fixture], "--by", "category", "--top", "0")
    assert {r["name"]: (r["instances"], r["total_ns"]) for r in rows} == category_totals(fixture)
    assert all(r["category"] == r["name"] for r in rows)


@pytest.mark.parametrize("fixture", IDS)
def test_category_shares_with_memcpy_and_memset_equal_sql(fixture: str) -> None:
    export = FIXTURES[fixture]
    expected = {c: t for c, (_, t) in category_totals(fixture).items()} | copy_totals(export)
    grand = sum(expected.values())
    rows = [r for r in report_json("compare", export, export) if r["capture"].endswith("(1)")]
    assert {r["category"]: r["total_ns"] for r in rows} == expected
    for r in rows:
        assert r["pct"] == pytest.approx(100 * expected[r["category"]] / grand, abs=1e-9)
        assert (r["delta_ns"], r["delta_pp"]) == (0, 0.0)


@pytest.mark.parametrize("fixture", IDS)
def test_top_level_ranges_equal_sql(fixture: str) -> None:
    export = FIXTURES[fixture]
    expected = top_level_ranges(fixture)
    assert any(p.startswith("step_") for p in expected) and any(p.endswith("/forward") for p in expected)
    ours = {r["path"]: r for r in report_json("nvtx", export, "--by", "path")}
    assert {p for p in ours if re.fullmatch(r"step_\d+(/(forward|backward|optimizer))?", p)} == set(expected)
    for path, ranges in expected.items():
        kernels = [launched_in(export, *r) for r in ranges]
        r = ours[path]
        assert r["instances"] == len(ranges), path
        assert r["cpu_total_ns"] == sum(end - start for start, end, _ in ranges), path
        assert (r["kernels"], r["gpu_total_ns"]) == (sum(n for n, _ in kernels), sum(t for _, t in kernels)), path


@pytest.mark.parametrize("fixture", IDS)
def test_range_instances_by_name_equal_sql(fixture: str) -> None:
    counts = dict(query(FIXTURES[fixture], RANGES + " SELECT name, count(*) FROM r WHERE name GLOB 'step_[0-9]*' "
                                                    "OR name IN ('warmup', 'forward', 'loss', 'backward', "
                                                    "'optimizer') GROUP BY name"))
    ours = {r["name"]: r["instances"] for r in report_json("nvtx", FIXTURES[fixture], "--by", "name")}
    assert counts and {name: ours.get(name) for name in counts} == counts


def _ms(ns: int) -> str:
    return f"{ns / 1e6:,.3f}"


def category_per_step(fixture: str) -> dict[str, list[int]]:
    """Category -> time in each measured step: kernels (category of each name by profkit's rules),
    memcpy and memset whose launching call started inside the step_i range, by plain SQL."""
    export = FIXTURES[fixture]
    rules = load_rules()
    steps = sorted(top_level_ranges(fixture)[p][0] for p in top_level_ranges(fixture) if "/" not in p)
    out: dict[str, list[int]] = defaultdict(lambda: [0] * len(steps))
    tables = [("CUPTI_ACTIVITY_KIND_KERNEL", None), (GRAPHS, None), ("CUPTI_ACTIVITY_KIND_MEMCPY", "memcpy"),
              ("CUPTI_ACTIVITY_KIND_MEMSET", "memset")]
    for i, (start, end, tid) in enumerate(steps):
        for table, kind in tables:
            if not has_table(export, table):
                continue
            name = "NULL" if kind is not None else GRAPH_NAME.replace("g.", "a.") if table == GRAPHS else "s.value"
            join = " JOIN StringIds s ON s.id = a.demangledName" if table == "CUPTI_ACTIVITY_KIND_KERNEL" else ""
            for n, total in query(export, f"""SELECT {name}, sum(a.end - a.start) FROM {table} a{join}
                    JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON r.correlationId = a.correlationId
                      AND (r.globalTid {PID}) = a.globalPid
                    WHERE r.start >= ? AND r.start < ? AND (r.globalTid {PID}) = (? {PID}) GROUP BY 1""",
                                  (start, end, tid)):
                cat = kind or categorize(pd.Series([n]), rules).iloc[0]
                out[cat][i] += total
    return dict(out)


def check_report_md(text: str, fixture: str, run: dict | None) -> None:
    """report.md's headline, per-step category table, top kernels and per-step ranges, against SQL."""
    export = FIXTURES[fixture]
    sql = per_name(fixture)
    n = sum(v[0] for v in sql.values())
    total = sum(v[1] for v in sql.values())
    lines = text.splitlines()
    assert f"{n:,} kernels, {total / 1e6:,.3f} ms of kernel time; {100 * unattributed_ns(export) / total:.2f}% of it " \
           "launched outside every NVTX range." in lines
    if run is not None:
        steps_ms = run["steps_ms"]
        assert f"{run['resolved']['params']:,} parameters, {len(steps_ms)} measured steps." in text
        assert f"mean {statistics.fmean(steps_ms):.2f} ± {statistics.stdev(steps_ms):.2f} ms per step" in text
        assert (f"Step time ({len(steps_ms)} measured steps): median {statistics.median(steps_ms):.2f} ms, "
                f"min {min(steps_ms):.2f}, max {max(steps_ms):.2f}") in text
        if run["peak_memory_bytes"] is not None:
            assert (f"(torch.cuda.max_memory_allocated): {run['peak_memory_bytes'] / 2**20:,.1f} MiB; "
                    f"{run['resident_memory_bytes'] / 2**20:,.1f} MiB was allocated when they began") in text
    # Categories per measured step (memcpy and memset included), largest first: mean, min, max, share.
    per_step = category_per_step(fixture)
    means = {c: sum(v) / len(v) for c, v in per_step.items()}
    grand = sum(means.values())
    table = lines[lines.index("| category | GPU ms per step | min ms | max ms | share % |") + 2:]
    table = table[:table.index("")]
    assert table == [f"| {c} | {_ms(means[c])} | {_ms(min(per_step[c]))} | {_ms(max(per_step[c]))} | "
                     f"{100 * means[c] / grand:.1f} |" for c in sorted(means, key=lambda c: (-means[c], c))]
    # Top 15 kernels (all measured steps): the numbers of each row, then `others` with the rest.
    top = lines[lines.index("## Top 15 kernels (all measured steps)") + 4:]
    top = [row.split(" | ")[2:] for row in top[:top.index("")]]
    ranked = sorted(sql.items(), key=lambda kv: (-kv[1][1], kv[0]))
    for cells, (name, (k, t, lo, hi)) in zip(top, ranked[:15], strict=False):
        durs = kernel_durations(fixture)[name]
        assert cells == [f"{k:,}", _ms(t), f"{t / k / 1e3:,.1f}", f"{np.median(durs) / 1e3:,.1f}",
                         f"{lo / 1e3:,.1f}", f"{hi / 1e3:,.1f}", f"{100 * t / total:.1f} |"], name
    rest = ranked[15:]
    assert len(top) == min(15, len(ranked)) + bool(rest)
    if rest:
        assert top[-1][:2] == [f"{sum(v[0] for _, v in rest):,}", _ms(sum(v[1] for _, v in rest))]
    # Ranges per measured step, steps merged: the phases' instances, CPU ms, GPU kernel ms, kernels per step.
    n_steps = sum(1 for p in top_level_ranges(fixture) if "/" not in p)
    by_phase: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for path, ranges in top_level_ranges(fixture).items():
        if "/" in path:
            by_phase[path.rsplit("/", 1)[-1]] += ranges
    section = text.split("## Ranges, per measured step")[1]
    rows = {row.split(" | ")[0].removeprefix("| "): row.split(" | ")[1:] for row in section.splitlines()
            if row.startswith("| ") and row.count(" | ") == 5}
    for phase, ranges in by_phase.items():
        kernels = [launched_in(export, *r) for r in ranges]
        cells = rows[phase]
        assert cells[0] == f"{len(ranges) / n_steps:,.1f}", phase
        assert cells[1] == _ms(sum(e - s for s, e, _ in ranges) / n_steps), phase
        assert cells[2] == _ms(sum(t for _, t in kernels) / n_steps), phase
        assert cells[3] == f"{sum(k for k, _ in kernels) / n_steps:,.1f}", phase


@pytest.mark.parametrize("fixture", [f for f in IDS if f != "demo"])
def test_report_md_numbers_equal_sql(tmp_path: Path, fixture: str) -> None:
    folder = tmp_path / fixture
    shutil.copytree(FIXTURES[fixture].parent, folder)
    result = CliRunner().invoke(cli, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    run = folder / "run.json"
    check_report_md((folder / "report.md").read_text(), fixture,
                    json.loads(run.read_text()) if run.exists() else None)


def test_demo_report_numbers_equal_sql() -> None:
    result = CliRunner().invoke(cli, ["report", "--demo"])
    assert result.exit_code == 0, result.output
    check_report_md(result.stdout, "demo", json.loads(demo_path().with_suffix(".run.json").read_text()))
