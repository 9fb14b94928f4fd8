"""GPU busy and idle time: hand-built timelines (table-driven) and the fixtures against plain SQL."""

from __future__ import annotations

import json
import sqlite3
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from profkit import analyze
from profkit.cli import cli

DATA = Path(__file__).parent / "data"
TIMELINE_KEYS = ["name", "instances", "wall_ns", "gpu_span_ns", "gpu_busy_ns", "gpu_idle_pct", "kernels",
                 "launches_per_ms", "median_queue_ns", "verdict"]


@dataclass
class TC:
    name: str
    intervals: list[tuple[int, int]]
    busy: int


CASES = [
    TC("one kernel", [(0, 10)], 10),
    TC("back to back", [(0, 10), (10, 20)], 20),
    TC("two streams overlapping", [(0, 10), (5, 15)], 15),
    TC("one inside another", [(0, 100), (10, 20), (30, 40)], 100),
    TC("gaps", [(0, 10), (20, 30), (50, 55)], 25),
    TC("unsorted, three streams", [(50, 60), (0, 30), (25, 40), (55, 70)], 60),
    TC("nothing", [], 0),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_union_of_intervals(case: TC) -> None:
    s = np.array([a for a, _ in case.intervals], dtype=np.int64)
    e = np.array([b for _, b in case.intervals], dtype=np.int64)
    assert analyze.union_ns(s, e) == case.busy


def _tree(rows: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    nvtx = pd.DataFrame(rows, columns=["name", "start_ns", "end_ns", "global_tid"]).assign(global_pid=0)
    return analyze.nvtx_tree(nvtx)


def test_phases_on_a_hand_built_step_with_an_autograd_thread() -> None:
    # main thread 1: step_0 [0, 100) > forward [0, 30), backward [30, 90); autograd thread 2: layer [35, 85)
    tree = _tree([("step_0", 0, 100, 1), ("forward", 0, 30, 1), ("backward", 30, 90, 1), ("layer", 35, 85, 2)])
    ids = dict(zip(tree["name"], tree["range_id"], strict=True))
    activity = pd.DataFrame({
        # forward: two kernels on two streams that overlap; backward: one kernel from the autograd thread's
        # layer range and one memcpy; one kernel outside every range
        "start_ns": [40, 45, 60, 80, 200], "end_ns": [50, 55, 70, 84, 210],
        "owner": [ids["forward"], ids["forward"], ids["layer"], ids["backward"], -1],
        "launch_ns": [5, 6, 58, 79, 199], "is_kernel": [True, True, True, False, True]})
    t = analyze.timeline(tree, activity).set_index("name")
    assert list(t.index) == ["step", "forward", "backward"]
    assert t.loc["forward", ["wall_ns", "gpu_span_ns", "gpu_busy_ns", "kernels"]].tolist() == [30, 15, 15, 2]
    assert t.loc["backward", ["wall_ns", "gpu_span_ns", "gpu_busy_ns", "kernels"]].tolist() == [60, 24, 14, 1]
    assert t.loc["step", ["gpu_span_ns", "gpu_busy_ns", "kernels"]].tolist() == [44, 29, 3]
    assert t.loc["forward", "median_queue_ns"] == 37.0  # (40-5, 45-6)
    assert t.loc["backward", "gpu_idle_pct"] == pytest.approx(100 * 10 / 24)


def _sql_busy(export: Path) -> dict[str, tuple[int, int, int, list[int]]]:
    """Per step_i range: (wall, busy, kernels, queues), computed from the export with plain SQL and a
    plain merge of intervals: the work whose launching call (same process) began inside the range."""
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    steps = db.execute("SELECT n.start, n.end FROM NVTX_EVENTS n LEFT JOIN StringIds s ON s.id = n.textId "
                       "WHERE coalesce(n.text, s.value) GLOB 'step_[0-9]*' AND n.eventType = 59").fetchall()
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    work = []
    for table, kernel in (("CUPTI_ACTIVITY_KIND_KERNEL", True), ("CUPTI_ACTIVITY_KIND_MEMCPY", False),
                          ("CUPTI_ACTIVITY_KIND_MEMSET", False)):
        if table not in tables:
            continue
        work += [(s, e, r, kernel) for s, e, r in db.execute(
            f"SELECT a.start, a.end, r.start FROM {table} a JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON "
            "r.correlationId = a.correlationId AND (r.globalTid & -16777216) = a.globalPid")]
    db.close()
    out = {}
    for i, (start, end) in enumerate(sorted(steps)):
        mine = sorted((s, e) for s, e, r, _ in work if start <= r < end)
        busy, reach = 0, None
        for s, e in mine:
            if reach is None or s > reach:
                busy += e - s
                reach = e
            elif e > reach:
                busy += e - reach
                reach = e
        queues = [s - r for s, _, r, k in work if k and start <= r < end]
        out[f"step_{i}"] = (end - start, busy, len(queues), queues)
    return out


@pytest.mark.parametrize("fixture", ["h100_small_step_bf16", "h100_small_step_bf16_flash_compile",
                                     "h100_encoder_layer_nsys2023"])
def test_step_busy_time_equals_plain_sql(fixture: str) -> None:
    export = DATA / fixture / "profile.sqlite"
    result = CliRunner().invoke(cli, ["report", "timeline", str(export), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert all(list(r) == TIMELINE_KEYS for r in rows.values())
    truth = _sql_busy(export)
    step = rows["step"]
    assert step["instances"] == len(truth)
    assert step["wall_ns"] == sum(w for w, _, _, _ in truth.values())
    assert step["gpu_busy_ns"] == sum(b for _, b, _, _ in truth.values())
    assert step["kernels"] == sum(k for _, _, k, _ in truth.values())
    assert step["median_queue_ns"] == statistics.median(q for *_, qs in truth.values() for q in qs)
    assert 0 <= step["gpu_idle_pct"] <= 100 and step["gpu_busy_ns"] <= step["gpu_span_ns"] <= step["wall_ns"]


def test_launch_bound_step_and_what_to_try_in_report_md(tmp_path: Path) -> None:
    folder = tmp_path / "cap"
    folder.mkdir()
    for f in ("profile.sqlite", "run.json"):
        (folder / f).write_bytes((DATA / "h100_small_step_bf16" / f).read_bytes())
    assert CliRunner().invoke(cli, ["report", str(folder)]).exit_code == 0
    text = (folder / "report.md").read_text()
    head = text.split("## Where the GPU time went")[0]
    assert "## What bounds the step" in head
    assert "- **step**: launch-bound" in head and "- **optimizer**: GPU-bound" in head
    assert "`torch.optim.AdamW(fused=True)`: the foreach optimizer runs 112 multi_tensor_apply kernels" in head
    assert "Step time (2 measured steps): median 105.24 ms, min 103.50, max 106.99" in head
    assert "| step_0 |" not in text  # per-step rows live in the step-time line


@pytest.mark.parametrize("chunk", [1, 2, 1 << 18])
def test_queues_beyond_32_bits(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # the queues are kept in 32 bits while they fit: one of 3 s (and one of -3 s: a clock skew) after
    # others have been stored, in any chunk, moves them to 64 bits with the values kept
    import importlib

    tl = importlib.import_module("profkit.analyze.timeline")
    monkeypatch.setattr(tl, "GATHER_ROWS", chunk)
    tree = _tree([("step_0", 0, 10**10, 1)])
    start = np.array([10, 20, 4_000_000_000, 30, 4_000_000_100, 40], dtype=np.int64)
    launch = np.array([5, 18, 1_000_000_000, 29, 7_000_000_100, 35], dtype=np.int64)
    activity = pd.DataFrame({"start_ns": start, "end_ns": start + 5, "owner": 0, "launch_ns": launch,
                             "is_kernel": True})
    t = analyze.timeline(tree, activity).set_index("name")
    assert t.loc["step", "median_queue_ns"] == float(np.median(start - launch))  # 3.5
    activity["launch_ns"] = [5, 18, 1_000_000_000, 29, 35, 40]
    t = analyze.timeline(tree, activity).set_index("name")
    assert t.loc["step", "median_queue_ns"] == float(np.median(start - activity["launch_ns"].to_numpy()))


def test_work_in_parts_and_small_chunks_equal_one_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    # report.md takes the kernels and the transfers as two Work parts viewing their columns; the rows
    # straddle the parts' boundary inside every range and, with tiny chunks, every chunk boundary too
    import importlib

    from profkit import pipeline

    tl = importlib.import_module("profkit.analyze.timeline")  # (profkit.analyze.timeline names the function)

    a = pipeline.load(DATA / "h100_small_step_bf16" / "profile.sqlite")
    assert len(a.transfers) and (a.transfers["owner"] >= 0).any()
    whole = {by: analyze.timeline(a.ranges, a.activity(), by=by) for by in ("phase", "name")}
    monkeypatch.setattr(tl, "GATHER_ROWS", 7)
    for by, expected in whole.items():
        pd.testing.assert_frame_equal(analyze.timeline(a.ranges, a.work(), by=by), expected)
    parts = [tl.Work(np.array([5, 0]), np.array([9, 4]), np.array([0, 0]), np.array([1, -1]), True),
             tl.Work(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                     False),
             tl.Work(np.array([3]), np.array([6]), np.array([0]), np.array([2]), False)]
    assert tl._take(parts, "start_ns", np.array([2, 0, 1])).tolist() == [3, 5, 0]
    assert tl._take(parts, "is_kernel", np.array([2, 0, 1])).tolist() == [False, True, True]


def test_slim_analysis_drops_only_attribution_columns_and_report_md_is_the_same() -> None:
    from profkit import pipeline
    from profkit.report import capture_markdown

    a = pipeline.load(DATA / "h100_small_step_bf16" / "profile.sqlite")
    slim = a.slim()
    for full, lean in ((a.kernels, slim.kernels), (a.data.kernels, slim.data.kernels)):
        assert set(full.columns) - set(lean.columns) == {"correlation_id", "global_pid", "launch_tid"}
        assert list(lean.columns) == [c for c in full.columns if c in set(lean.columns)]
        assert np.shares_memory(full["start_ns"].to_numpy(), lean["start_ns"].to_numpy())  # nothing copied
    assert capture_markdown(slim, title="t") == capture_markdown(a, title="t")


def _preorder(parent: np.ndarray) -> tuple[list[int], list[int]]:
    """Entry index and last descendant's entry index of each node, by a recursive walk (children and
    roots in index order): the plain definition _euler is checked against."""
    tin, tout = [0] * len(parent), [0] * len(parent)
    clock = 0

    def visit(v: int) -> None:
        nonlocal clock
        tin[v] = clock
        clock += 1
        for c in np.flatnonzero(parent == v).tolist():
            visit(c)
        tout[v] = clock - 1

    for r in np.flatnonzero(parent < 0).tolist():
        visit(r)
    return tin, tout


def test_preorder_of_random_forests_equals_a_recursive_walk() -> None:
    # timeline() takes each range's work as one slice of the work in preorder of its owner; _euler
    # numbers a forest a depth level at a time. Against a plain recursive walk on forests whose parents
    # come before or after their children in index order, as grafted ranges (another thread's, sorted
    # later) do.
    import importlib

    tl = importlib.import_module("profkit.analyze.timeline")
    rng = np.random.default_rng(17)
    for _ in range(300):
        n = int(rng.integers(0, 60))
        labels = rng.permutation(n)
        parent = np.full(n, -1, dtype=np.int64)
        for k in range(1, n):  # node labels[k] hangs under an earlier-made node, or is a root
            if rng.random() < 0.85:
                parent[labels[k]] = labels[rng.integers(0, k)]
        tin, tout = tl._euler(parent)
        assert (tin.tolist(), tout.tolist()) == _preorder(parent), parent.tolist()
