"""`profkit report ranks` on real NCCL captures from the GPU machines (scripts/gpu_issue14.sh: one
H200, one NCCL rank, DDP and FSDP2; scripts/gpu_issue15.sh: two H200s, DDP), against an
independent computation from plain SQL: the exported kernels launched inside a measured step
(runtime call joined on correlation id AND process, its start inside a `step_i` range of that
process), NCCL's by name, hidden and exposed time counted by a sweep over interval boundaries.

Each fixture is a scrubbed capture folder under tests/data/ (rank{R}.sqlite, rank{R}.run.json,
run.json; see its README); a test whose fixture is not committed yet is skipped and says which."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from profkit.cli import cli
from tests.conftest import TESTS

FIXTURES = ["h200_small_step_bf16_ddp_1rank", "h200_small_step_bf16_fsdp2_1rank", "h200x2_small_step_bf16_ddp"]


def sweep(comm: list[tuple[int, int]], compute: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(comm, hidden, exposed) ns by walking every boundary once, counting open intervals of each set."""
    events = sorted([(s, 0, 1) for s, _ in comm] + [(e, 0, -1) for _, e in comm]
                    + [(s, 1, 1) for s, _ in compute] + [(e, 1, -1) for _, e in compute])
    open_ = [0, 0]
    total = hidden = 0
    last = None
    for t, which, d in events:
        if last is not None and t > last and open_[0] > 0:
            total += t - last
            hidden += (t - last) if open_[1] > 0 else 0
        open_[which] += d
        last = t
    return total, hidden, total - hidden


def by_sql(export: Path) -> tuple[int, int, int, int]:
    """(compute union, comm, hidden, exposed) of the kernels launched inside a measured step."""
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    rows = db.execute("""
        WITH steps AS (
            SELECT n.start, n.end, n.globalTid & ~16777215 AS pid FROM NVTX_EVENTS n
            LEFT JOIN StringIds s ON s.id = n.textId
            WHERE n.eventType = 59 AND coalesce(n.text, s.value) GLOB 'step_[0-9]*'
              AND coalesce(n.text, s.value) NOT GLOB 'step_*[^0-9]*')
        SELECT k.start, k.end, d.value FROM CUPTI_ACTIVITY_KIND_KERNEL k
        JOIN StringIds d ON d.id = k.demangledName
        JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON r.correlationId = k.correlationId
             AND (r.globalTid & ~16777215) = k.globalPid
        WHERE EXISTS (SELECT 1 FROM steps WHERE steps.pid = k.globalPid AND r.start >= steps.start
                      AND r.start <= steps.end)""").fetchall()
    db.close()
    comm = [(s, e) for s, e, n in rows if "nccl" in n.lower()]
    compute = [(s, e) for s, e, n in rows if "nccl" not in n.lower()]
    compute_union, _, _ = sweep(compute, [])
    return (compute_union, *sweep(comm, compute))


@pytest.mark.parametrize("name", FIXTURES)
def test_report_ranks_against_sql(name: str) -> None:
    folder = TESTS / "data" / name
    if not folder.is_dir():
        pytest.skip(f"tests/data/{name} is not committed yet (scripts/gpu_issue14.sh / gpu_issue15.sh make it)")
    result = CliRunner().invoke(cli, ["report", "ranks", str(folder), "--format", "json"])
    assert result.exit_code == 0, result.output
    for row in json.loads(result.stdout):
        steps = row["steps"]
        compute, comm, hidden, exposed = by_sql(folder / f"rank{row['rank']}.sqlite")
        assert row["compute_ns"] == compute // steps
        assert (row["comm_ns"], row["comm_hidden_ns"], row["comm_exposed_ns"]) == (comm // steps, hidden // steps,
                                                                                   exposed // steps)
    md = CliRunner().invoke(cli, ["report", "ranks", str(folder)])
    assert md.exit_code == 0 and "per measured step" in md.stdout


def test_sweep() -> None:
    assert sweep([(10, 50)], [(0, 100)]) == (40, 40, 0)
    assert sweep([(10, 40), (30, 70)], [(0, 20), (50, 60)]) == (60, 20, 40)


def test_compute_of_a_real_export_as_one_rank(tmp_path: Path) -> None:
    """Until a GPU fixture is in: a real one-GPU export as rank 0 (no NCCL) gives SQL's compute time."""
    import shutil

    src = TESTS / "data" / "h100_small_step_bf16" / "profile.sqlite"
    shutil.copyfile(src, tmp_path / "rank0.sqlite")
    result = CliRunner().invoke(cli, ["report", "ranks", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    compute, comm, hidden, exposed = by_sql(tmp_path / "rank0.sqlite")
    assert compute > 0 and (comm, hidden, exposed) == (0, 0, 0)
    assert (row["compute_ns"], row["comm_ns"]) == (compute // row["steps"], 0)
