"""CUDA graphs, as torch.compile(mode="reduce-overhead") captures them, on two real H200 exports of
the same compiled small step (tests/data/h200_small_step_bf16_flash_graphs_{graph,node}):

- `graph`: nsys's default --cuda-graph-trace=graph. Each replay is one CUPTI_ACTIVITY_KIND_GRAPH_TRACE
  row and none of its kernels is in the kernel table; profkit counts each replay as one row of GPU
  work named `CUDA graph G (exec E)`, category `cuda graph`, owned by the range its cudaGraphLaunch
  was called in, and every report says so in one line.
- `node`: --cuda-graph-trace=node (profkit profile's default). Every kernel of a replay is a kernel
  row carrying its cudaGraphLaunch's correlation id.

Every expected number is plain SQL over the export (a replay's owner: the innermost NVTX range
enclosing its launch call on the launching thread, else on another thread of the process, as
profkit's projection defines it), never profkit's earlier output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from profkit import pipeline
from profkit.analyze.timeline import union_ns
from profkit.cli import cli
from tests.test_against_sql import PID, RANGES, launched_in, query

DATA = Path(__file__).parent / "data"
GRAPH = DATA / "h200_small_step_bf16_flash_graphs_graph"
NODE = DATA / "h200_small_step_bf16_flash_graphs_node"
PLAIN = DATA / "h100_small_step_bf16_flash"
G = "CUPTI_ACTIVITY_KIND_GRAPH_TRACE"
K = "CUPTI_ACTIVITY_KIND_KERNEL"
LAUNCH = ("SELECT id FROM StringIds WHERE value LIKE 'cudaGraphLaunch%'")


def invoke(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def graph_totals() -> tuple[int, int]:
    count, total = query(GRAPH / "profile.sqlite", f"SELECT count(*), sum(end - start) FROM {G}")[0]
    return count, total


def note() -> str:
    count, total = graph_totals()
    return (f"Note: {count:,} CUDA graph replays ({total / 1e6:,.3f} ms) counted as whole graphs; per-kernel detail "
            "needs `--cuda-graph-trace=node` (profkit profile's default).")


def launch_owners(export: Path) -> dict[int, tuple[str, int]]:
    """cudaGraphLaunch correlation id -> (name, start) of the range that owns its work: the innermost
    range open at the call on the calling thread, else the innermost open on another thread of
    its process (innermost: the latest start among those enclosing it)."""
    rows = query(export, RANGES + f""" SELECT l.correlationId,
        (SELECT r.name || '@' || r.start FROM r WHERE r.tid = l.globalTid AND r.start <= l.start AND l.start < r.end
         ORDER BY r.start DESC LIMIT 1),
        (SELECT r.name || '@' || r.start FROM r WHERE (r.tid {PID}) = (l.globalTid {PID})
           AND r.start <= l.start AND l.start < r.end ORDER BY r.start DESC LIMIT 1)
        FROM CUPTI_ACTIVITY_KIND_RUNTIME l WHERE l.nameId IN ({LAUNCH})""")
    out = {}
    for corr, own, other in rows:
        name, start = (own or other).rsplit("@", 1)
        out[corr] = (name, int(start))
    return out


@pytest.fixture(scope="module")
def graph_analysis() -> pipeline.Analysis:
    return pipeline.load(GRAPH)


def test_graph_replays_are_rows_of_their_own(graph_analysis: pipeline.Analysis) -> None:
    export = GRAPH / "profile.sqlite"
    per_graph = {f"CUDA graph {g} (exec {x})": (n, t) for g, x, n, t in query(
        export, f"SELECT graphId, graphExecId, count(*), sum(end - start) FROM {G} GROUP BY 1, 2")}
    rows = json.loads(invoke("report", "kernels", GRAPH, "--format", "json", "--top", "0", "--no-cache"))
    ours = {r["name"]: (r["instances"], r["total_ns"]) for r in rows if r["category"] == "cuda graph"}
    assert ours == per_graph and len(per_graph) == 2
    by_category = {r["name"]: (r["instances"], r["total_ns"]) for r in json.loads(invoke(
        "report", "kernels", GRAPH, "--by", "category", "--format", "json", "--no-cache"))}
    assert by_category["cuda graph"] == graph_totals()
    # Every row of both tables, once: the kernel table's and the replays'.
    kernels = query(export, f"SELECT count(*), sum(end - start) FROM {K}")[0]
    assert len(graph_analysis.kernels) == kernels[0] + graph_totals()[0]
    assert int(graph_analysis.kernels["dur_ns"].sum()) == kernels[1] + graph_totals()[1]


def test_each_replay_is_owned_by_the_range_of_its_launch(graph_analysis: pipeline.Analysis) -> None:
    export = GRAPH / "profile.sqlite"
    expected = launch_owners(export)
    replays = dict(query(export, f"SELECT correlationId, start FROM {G}"))
    k = graph_analysis.kernels
    graphs = k[k["category"] == "cuda graph"]
    assert sorted(graphs["start_ns"]) == sorted(replays.values())
    ranges = graph_analysis.ranges
    for corr, owner, path in zip(graphs["correlation_id"], graphs["owner"], graphs["range_path"], strict=True):
        row = ranges.iloc[int(owner)]
        assert (row["name"], int(row["start_ns"])) == expected[int(corr)], corr
        assert path.rsplit("/", 1)[-1] == expected[int(corr)][0]
    # The forward graph is launched on the main thread, the backward one on autograd's: both land in
    # their phase, so forward and backward are no longer ~0 ms.
    assert sorted({str(p).split("/", 1)[1] for p in graphs["range_path"]}) == ["backward", "forward"]


def test_phases_count_their_graphs_as_sql_does() -> None:
    """nvtx's per-step paths: kernels and replays whose launch started inside the range (any thread
    of the process), by SQL over both tables (launched_in of test_against_sql, whose `w` holds the
    replays), one replay of over a millisecond among them."""
    export = GRAPH / "profile.sqlite"
    rows = {r["path"]: r for r in json.loads(invoke("report", "nvtx", GRAPH, "--format", "json", "--no-cache"))}
    phases = query(export, RANGES + " SELECT name, start, end, tid FROM r WHERE name IN ('forward', 'backward')")
    assert len(phases) == 4
    for name, start, end, tid in phases:
        step = query(export, RANGES + " SELECT name FROM r WHERE name GLOB 'step_[0-9]*' AND start <= ? AND ? <= end",
                     (start, end))[0][0]
        n, total = launched_in(export, start, end, tid)
        graphs = query(export, f"""SELECT count(*), coalesce(sum(g.end - g.start), 0) FROM {G} g
            JOIN CUPTI_ACTIVITY_KIND_RUNTIME l
              ON l.correlationId = g.correlationId AND (l.globalTid {PID}) = g.globalPid
            WHERE l.start >= ? AND l.start < ? AND (l.globalTid {PID}) = (? {PID})""", (start, end, tid))[0]
        assert graphs[0] == 1 and graphs[1] > 1_000_000  # one replay per phase, over a millisecond
        assert (rows[f"{step}/{name}"]["kernels"], rows[f"{step}/{name}"]["gpu_total_ns"]) == (n, total)
        assert total > graphs[1]


def test_busy_time_holds_the_replays() -> None:
    """timeline's step busy time: the union of every kernel, replay, memcpy and memset interval
    launched inside each step_i (SQL picks the intervals, a sweep unites them)."""
    export = GRAPH / "profile.sqlite"
    steps = query(export, RANGES + " SELECT start, end, tid FROM r WHERE name GLOB 'step_[0-9]*'")
    names = f"'{K}', '{G}', 'CUPTI_ACTIVITY_KIND_MEMCPY', 'CUPTI_ACTIVITY_KIND_MEMSET'"
    tables = [t for (t,) in query(export, f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({names})")]
    assert G in tables
    busy = without = 0
    for start, end, tid in steps:
        parts = {t: query(export, f"""SELECT a.start, a.end FROM {t} a JOIN CUPTI_ACTIVITY_KIND_RUNTIME l
                ON l.correlationId = a.correlationId AND (l.globalTid {PID}) = a.globalPid
                WHERE l.start >= ? AND l.start < ? AND (l.globalTid {PID}) = (? {PID})""", (start, end, tid))
                 for t in tables}
        every = [iv for rows in parts.values() for iv in rows]
        rest = [iv for t, rows in parts.items() if t != G for iv in rows]
        busy += union_ns(*map(_array, zip(*every, strict=True)))
        without += union_ns(*map(_array, zip(*rest, strict=True)))
    rows = {r["name"]: r for r in json.loads(invoke("report", "timeline", GRAPH, "--format", "json", "--no-cache"))}
    assert rows["step"]["gpu_busy_ns"] == busy
    assert busy - without > 7_000_000  # the replays' 7.4 ms, all but what overlaps other work


def _array(values: tuple[int, ...]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_every_report_says_once_that_graphs_count_whole(tmp_path: Path) -> None:
    line = note()
    for args in (["kernels"], ["kernels", "--by", "category"], ["nvtx"], ["nvtx", "--steps", "merged"], ["modules"],
                 ["timeline"], ["timeline", "--by", "name"]):
        out = invoke("report", *args, GRAPH, "--no-cache")
        assert out.count(line) == 1 and out.count("CUDA graph replays") == 1, args
        assert "CUDA graph replays" not in invoke("report", *args, NODE, "--no-cache"), args
        assert "CUDA graph replays" not in invoke("report", *args, PLAIN, "--no-cache"), args
    out = invoke("report", "compare", PLAIN, GRAPH, NODE, "--no-cache")
    assert out.count("CUDA graph replays") == 1
    assert f"Note: h200_small_step_bf16_flash_graphs_graph: {line.removeprefix('Note: ')}" in out
    folder = tmp_path / GRAPH.name
    shutil.copytree(GRAPH, folder)
    invoke("report", folder, "--html")
    assert (folder / "report.md").read_text().count(line) == 1
    assert (folder / "report.html").read_text().count(line.replace("'", "&#x27;")) == 1
    # CSV and JSON stay the tables they are (no line inside them).
    assert json.loads(invoke("report", "kernels", GRAPH, "--format", "json", "--no-cache"))


def test_node_kernels_are_owned_by_their_graph_launch() -> None:
    """With --cuda-graph-trace=node, the kernels sharing a cudaGraphLaunch's correlation id are
    attributed to the range of that launch; their count and time are SQL's."""
    export = NODE / "profile.sqlite"
    assert not query(export, f"SELECT 1 FROM sqlite_master WHERE name = '{G}'")
    expected = launch_owners(export)
    per_launch = {c: (n, t) for c, n, t in query(export, f"""SELECT k.correlationId, count(*), sum(k.end - k.start)
        FROM {K} k WHERE k.correlationId IN (SELECT correlationId FROM CUPTI_ACTIVITY_KIND_RUNTIME
        WHERE nameId IN ({LAUNCH})) GROUP BY 1""")}
    assert len(per_launch) == 4 and sum(n for n, _ in per_launch.values()) > 1000
    a = pipeline.load(NODE)
    k = a.kernels
    mine = k[k["correlation_id"].isin(list(per_launch))]
    assert len(mine) == sum(n for n, _ in per_launch.values())
    assert int(mine["dur_ns"].sum()) == sum(t for _, t in per_launch.values())
    assert (mine["category"] != "cuda graph").all()
    for corr, group in mine.groupby("correlation_id"):
        owners = set(group["owner"].tolist())
        assert len(owners) == 1, corr
        row = a.ranges.iloc[owners.pop()]
        assert (row["name"], int(row["start_ns"])) == expected[int(corr)], corr


def test_graph_and_node_captures_agree_per_phase() -> None:
    """The same compiled step, traced both ways (two runs): a phase's GPU time in graph mode (its
    replays whole) lies between node mode's kernel time and that plus the idle gaps inside node
    mode's replays (a replay's duration covers its kernels and the gaps between them), within 3%
    for what two runs differ by."""
    merged = {}
    for capture in (GRAPH, NODE):
        rows = json.loads(invoke("report", "nvtx", capture, "--steps", "merged", "--format", "json", "--no-cache"))
        merged[capture] = {r["path"]: r["gpu_ns_per_step"] for r in rows}
    export = NODE / "profile.sqlite"
    gaps: dict[str, float] = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    owners = launch_owners(export)
    for corr, span, busy in query(export, f"""SELECT correlationId, max(end) - min(start), sum(end - start) FROM {K}
            WHERE correlationId IN (SELECT correlationId FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE nameId IN ({LAUNCH}))
            GROUP BY 1"""):
        gaps[owners[corr][0]] += (span - busy) / 2  # two measured steps
    for phase in ("forward", "backward", "optimizer"):
        graph, node = merged[GRAPH][phase], merged[NODE][phase]
        assert 0.97 * node <= graph <= 1.03 * (node + gaps[phase]), (phase, graph, node, gaps[phase])
    assert merged[GRAPH]["forward"] > 1e6 and merged[GRAPH]["backward"] > 2e6  # no longer ~0


def test_compare_graph_against_node() -> None:
    rows = json.loads(invoke("report", "compare", GRAPH, NODE, "--format", "json", "--no-cache"))
    per_step = {(r["capture"], r["category"]): r["per_step_ns"] for r in rows}
    g, n = GRAPH.name, NODE.name
    count, total = graph_totals()
    assert per_step[(g, "cuda graph")] == total / 2 and per_step.get((n, "cuda graph"), 0) == 0
    graph_all = sum(v for (c, _), v in per_step.items() if c == g)
    node_all = sum(v for (c, _), v in per_step.items() if c == n)
    assert abs(graph_all - node_all) / node_all < 0.05  # the same step: whole graphs against their kernels


def test_ranks_count_a_ranks_graphs_as_its_compute(tmp_path: Path) -> None:
    """The graph capture laid out as rank 0 of a multi-rank capture: its replays are compute time
    (the union of its non-NCCL work in the measured steps, by SQL and a sweep) and the report says so."""
    folder = tmp_path / "ranks"
    folder.mkdir()
    shutil.copyfile(GRAPH / "profile.sqlite", folder / "rank0.sqlite")
    for name in ("rank0.run.json", "run.json"):
        shutil.copyfile(GRAPH / "run.json", folder / name)
    export = GRAPH / "profile.sqlite"
    steps = query(export, RANGES + " SELECT start, end, tid FROM r WHERE name GLOB 'step_[0-9]*'")
    compute = 0
    for start, end, tid in steps:
        rows = [iv for t in (K, G) for iv in query(export, f"""SELECT a.start, a.end FROM {t} a
            JOIN CUPTI_ACTIVITY_KIND_RUNTIME l
              ON l.correlationId = a.correlationId AND (l.globalTid {PID}) = a.globalPid
            WHERE l.start >= ? AND l.start < ? AND (l.globalTid {PID}) = (? {PID})""", (start, end, tid))]
        compute += union_ns(*map(_array, zip(*rows, strict=True)))
    assert query(export, "SELECT count(*) FROM StringIds WHERE value LIKE 'nccl%'") == [(0,)]
    (row,) = json.loads(invoke("report", "ranks", folder, "--format", "json"))
    assert row["compute_ns"] == compute // len(steps)  # per measured step, in whole ns
    out = invoke("report", "ranks", folder)
    assert out.count("CUDA graph replays") == 1 and f"rank 0: {note().removeprefix('Note: ')}" in out
