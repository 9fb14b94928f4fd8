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


# Bytes per step (issue 14): nsys 2025.3.1 exports NCCL 2.28.9's ranges and their payload schema,
# but no payload; the sizes then come from the run record, checked here against torch's own count.

DDP = TESTS / "data" / "h200_small_step_bf16_ddp_1rank"


def torch_counts(name: str) -> tuple[int, int]:
    """(all trainable parameters, those of the transformer blocks) of a built-in model, by torch."""
    from profkit import models

    model = models.build(name, device="meta")
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    blocks = sum(p.numel() for block in model.layers for p in block.parameters())  # type: ignore[union-attr]
    return total, blocks


@pytest.mark.parametrize("name", ["small", "nanogpt", "tiny"])
def test_model_sizes_against_torch(name: str) -> None:
    from profkit.analyze.ranks import model_sizes

    total, blocks = torch_counts(name)
    assert model_sizes("ddp", "bf16", total, model=name) == {
        "all-reduce": (4 * total, f"model: {total:,} params x 4 bytes")}
    fsdp = model_sizes("fsdp2", "bf16", total, model=name)
    assert fsdp["reduce-scatter"][0] == 4 * total
    assert fsdp["all-gather"][0] == 2 * (2 * blocks + (total - blocks))  # bf16: blocks twice, the root once
    assert model_sizes("fsdp2", "fp32", total, model=name, grad_accum=3)["all-gather"][0] == \
        3 * 4 * (2 * blocks + (total - blocks))
    assert "all-gather" not in model_sizes("fsdp2", "bf16", total, model="pkg.mod:factory")
    assert model_sizes(None, "bf16", total) == {}


def nccl_ranges(export: Path) -> list[tuple[int, int, str, object, object]]:
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    rows = db.execute("""
        SELECT n.rowid, n.start, coalesce(n.text, s.value), n.binaryData, n.jsonText FROM NVTX_EVENTS n
        LEFT JOIN StringIds s ON s.id = n.textId
        WHERE n.eventType IN (59, 60) AND n.domainId IN (SELECT domainId FROM NVTX_EVENTS
                                                          WHERE eventType = 75 AND text = 'NCCL')""").fetchall()
    db.close()
    return rows


def step_window(export: Path) -> tuple[int, int]:
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    row = db.execute("""SELECT min(n.start), max(n.end) FROM NVTX_EVENTS n LEFT JOIN StringIds s ON s.id = n.textId
                        WHERE n.eventType = 59 AND coalesce(n.text, s.value) GLOB 'step_[0-9]*'""").fetchone()
    db.close()
    return int(row[0]), int(row[1])


def test_ddp_fixture_sizes_come_from_the_model() -> None:
    export = DDP / "rank0.sqlite"
    rows = nccl_ranges(export)
    assert rows and all(b is None and j is None for *_, b, j in rows)  # what nsys 2025.3.1 leaves out
    total, _ = torch_counts("small")
    assert json.loads((DDP / "run.json").read_text())["resolved"]["params"] == total
    md = CliRunner().invoke(cli, ["report", "ranks", str(DDP)])
    assert md.exit_code == 0, md.output
    line = next(x for x in md.stdout.splitlines() if x.startswith("| all-reduce |") and "params" in x)
    assert f"| {4 * total / 1e6:,.2f} | model: {total:,} params x 4 bytes |" in line
    assert "nsys 2025.3.1 exports NCCL's ranges without their payload" in md.stdout


def test_a_payload_size_wins_over_the_model(tmp_path: Path) -> None:
    """binaryData set on every NCCL range (hex, NCCL's schema: the size at offset 8): the report
    takes the payload, and says so."""
    import shutil

    for f in ("rank0.sqlite", "rank0.run.json", "run.json"):
        shutil.copyfile(DDP / f, tmp_path / f)
    export = tmp_path / "rank0.sqlite"
    db = sqlite3.connect(export)
    offsets = {r[0] for r in db.execute("SELECT coalesce(offset, 0) FROM NVTX_PAYLOAD_SCHEMA_ENTRIES "
                                        "WHERE name = 'Message size [bytes]'")}
    assert offsets == {8}
    rows = nccl_ranges(export)
    size = {rowid: 1_000_000 * (i + 1) for i, (rowid, *_) in enumerate(rows)}
    for rowid, nbytes in size.items():
        db.execute("UPDATE NVTX_EVENTS SET binaryData = ? WHERE rowid = ?",
                   ((bytes(8) + nbytes.to_bytes(8, "little") + bytes(8)).hex(), rowid))
    db.commit()
    db.close()
    lo, hi = step_window(export)
    expect = sum(size[rowid] for rowid, start, name, *_ in rows if name == "ncclAllReduce" and lo <= start <= hi)
    assert expect > 0
    md = CliRunner().invoke(cli, ["report", "ranks", str(tmp_path)])
    assert md.exit_code == 0, md.output
    line = next(x for x in md.stdout.splitlines() if x.startswith("| all-reduce |"))
    assert f"| {expect / 1e6:,.2f} | NVTX payload |" in line and "params" not in line


def test_png_link_is_relative_to_the_markdown(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "pics").mkdir()
    (tmp_path / "out").mkdir()
    png, md = tmp_path / "pics" / "r.png", tmp_path / "out" / "r.md"
    result = CliRunner().invoke(cli, ["report", "ranks", str(DDP), "--png", str(png), "-o", str(md)])
    assert result.exit_code == 0, result.output
    assert "](../pics/r.png)" in md.read_text()
    given = tmp_path / "pics" / "s.png"
    result = CliRunner().invoke(cli, ["report", "ranks", str(DDP), "--png", str(given)])
    assert result.exit_code == 0 and f"]({given})" in result.stdout
