"""Damaged exports through every report command: a correct report or one `Error:` line, exit 2.

Every case is a copy of a real fixture (tests/data) with one damage applied: cut short, zeroed,
random bytes, a table or column gone, a column of the wrong type, NULLs where nsys never writes
them, string ids pointing nowhere, end before start, duplicated correlation ids. Each goes
through kernels, nvtx, modules, timeline, compare and report.md (capture), through click's
CliRunner. Allowed: exit 0 with a report, or exactly one `Error: ...` line on stderr, exit 2, no
traceback, and no new file beside the export. A report is allowed only where the damage leaves
the export consistent (e.g. a table nsys creates lazily is gone) or where it says what it skipped.
"""

from __future__ import annotations

import functools
import random
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from profkit.cli import cli

TESTS = Path(__file__).parent
SOURCE = TESTS / "data" / "h100_small_step_bf16" / "profile.sqlite"
MEMORY = TESTS / "data" / "h200_memory_tiny_step" / "memory.pickle"
RANKS = TESTS / "data" / "h200_small_step_bf16_ddp_1rank"
GRAPHS = TESTS / "data" / "h200_small_step_bf16_flash_graphs_graph" / "profile.sqlite"
NODES = TESTS / "data" / "h200_small_step_bf16_flash_graphs_node" / "profile.sqlite"
K, R, N = "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "NVTX_EVENTS"
G = "CUPTI_ACTIVITY_KIND_GRAPH_TRACE"
MC, MS = "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET"


def loosen(table: str) -> list[str]:
    """The table rebuilt without its constraints (NOT NULL, keys), so that any value fits."""
    return [f"CREATE TABLE _loose AS SELECT * FROM {table}", f"DROP TABLE {table}",
            f"ALTER TABLE _loose RENAME TO {table}"]

# (name, SQL statements) applied to a copy: the export stays a readable SQLite file.
SQL_DAMAGE = {
    "no-kernels": [f"DROP TABLE {K}"],
    "no-strings": ["DROP TABLE StringIds"],
    "no-runtime": [f"DROP TABLE {R}"],
    "no-nvtx": [f"DROP TABLE {N}"],
    "kernel-no-start": [f"ALTER TABLE {K} DROP COLUMN start"],
    "kernel-no-corr": [f"ALTER TABLE {K} DROP COLUMN correlationId"],
    "kernel-no-name": [f"ALTER TABLE {K} DROP COLUMN demangledName", f"ALTER TABLE {K} DROP COLUMN shortName"],
    "runtime-no-corr": [f"ALTER TABLE {R} DROP COLUMN correlationId"],
    "nvtx-no-end": [f"ALTER TABLE {N} DROP COLUMN [end]"],
    "kernel-start-text": [f"UPDATE {K} SET start = 'soon' WHERE rowid % 7 = 0"],
    "kernel-end-real": [f"UPDATE {K} SET [end] = [end] + 0.5 WHERE rowid % 5 = 0"],
    "kernel-null-corr": [f"UPDATE {K} SET correlationId = NULL WHERE rowid % 9 = 0"],
    "nvtx-null-tid": [f"UPDATE {N} SET globalTid = NULL WHERE rowid % 9 = 0"],
    "name-nowhere": [f"UPDATE {K} SET demangledName = 987654321, shortName = 987654321 WHERE rowid % 11 = 0"],
    "kernel-end-before-start": [f"UPDATE {K} SET [end] = start - 1000 WHERE rowid % 13 = 0"],
    "nvtx-end-before-start": [f"UPDATE {N} SET [end] = start - 1000 WHERE [end] IS NOT NULL AND rowid % 13 = 0"],
    "runtime-end-before-start": [f"UPDATE {R} SET [end] = start - 1000 WHERE rowid % 13 = 0"],
    "kernel-dup-corr": [f"INSERT INTO {K} SELECT * FROM {K} WHERE rowid % 17 = 0"],
    "runtime-dup-corr": [f"INSERT INTO {R} SELECT * FROM {R} WHERE rowid % 17 = 0"],
    "kernel-huge": [f"UPDATE {K} SET [end] = 9223372036854775807 WHERE rowid % 19 = 0"],
    "kernel-negative": [f"UPDATE {K} SET start = -5, [end] = -1 WHERE rowid % 19 = 0"],
    # found by tests/test_fuzz.py: each was a traceback or a report counting damage as data
    "memset-null-end": [*loosen(MS), f"UPDATE {MS} SET [end] = NULL WHERE rowid % 9 = 0"],  # read as -1
    "memcpy-end-before-start": [f"UPDATE {MC} SET [end] = start - 1000 WHERE rowid % 13 = 0"],
    "memcpy-dup-rows": [f"INSERT INTO {MC} SELECT * FROM {MC} WHERE rowid % 17 = 0"],  # counted twice
    "nvtx-dup-rows": [f"INSERT INTO {N} SELECT * FROM {N} WHERE rowid % 17 = 0"],  # ranges counted twice
    "strings-null-value": [*loosen("StringIds"), "UPDATE StringIds SET value = NULL WHERE rowid % 3 = 1"],
    "strings-null-id": [*loosen("StringIds"), "UPDATE StringIds SET id = NULL WHERE rowid % 3 = 2"],  # int()
    "nvtx-name-nowhere": [f"UPDATE {N} SET text = NULL, textId = 987654321 WHERE rowid % 11 = 0"],  # were ""
    "nvtx-name-blob": [f"UPDATE {N} SET text = CAST(coalesce(text, (SELECT value FROM StringIds WHERE id = textId)) "
                       "AS BLOB), textId = NULL WHERE rowid % 7 = 3"],  # TypeError in the op-name regex
    "nvtx-end-blob": [f"UPDATE {N} SET [end] = x'0700000000000000' WHERE rowid % 50 = 11"],  # max(end): int(bytes)
    "nvtx-end-inf": [f"UPDATE {N} SET [end] = 1e999 WHERE rowid % 50 = 11"],  # max(end) is inf: int(inf)
    "strings-dup-ids": [*loosen("StringIds"), "INSERT INTO StringIds SELECT * FROM StringIds WHERE rowid % 5 = 0"],
    "schema-broken": ["PRAGMA writable_schema = ON",  # SQLite's message quotes the schema, over several lines
                      "UPDATE sqlite_master SET sql = 'CREATE TABLE TARGET_INFO_GPU (\n    `id INTEGER NOT NULL,\n"
                      "    name TEXT\n)' WHERE name = 'TARGET_INFO_GPU'"],
}
def _cut(b: bytes, frac: float) -> bytes:
    return b[: int(len(b) * frac)]


def _flip(b: bytes, seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(b)
    for _ in range(n):
        i = rng.randrange(100, len(out))  # keep the header: damage the pages
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


# (name, bytes transform) applied to the file itself.
BYTE_DAMAGE = {
    "zeros": lambda b: bytes(len(b)),
    "random": lambda b: random.Random(17).randbytes(len(b)),
    "empty": lambda b: b"",
    **{f"cut-{frac}": functools.partial(_cut, frac=frac) for frac in (0.01, 0.3, 0.7, 0.97)},
    "header-only": lambda b: b[:100],
    "flipped": lambda b: _flip(b, 17, 64),
}
# Damage to the whole-graph rows of a --cuda-graph-trace=graph export (GRAPHS).
GRAPH_DAMAGE = {
    "no-graphs": [f"DROP TABLE {G}"],
    "graph-no-id": [f"ALTER TABLE {G} DROP COLUMN graphId"],
    "graph-no-exec": [f"ALTER TABLE {G} DROP COLUMN graphExecId"],
    "graph-id-text": [f"UPDATE {G} SET graphId = 'four' WHERE rowid = 2"],
    "graph-id-negative": [f"UPDATE {G} SET graphId = -4 WHERE rowid = 2"],
    "graph-id-huge": [f"UPDATE {G} SET graphExecId = 9223372036854775807 WHERE rowid = 3"],
    "graph-null-corr": [f"UPDATE {G} SET correlationId = NULL WHERE rowid = 1"],
    "graph-end-before-start": [f"UPDATE {G} SET [end] = start - 1000 WHERE rowid = 1"],
    "graph-dup": [f"INSERT INTO {G} SELECT * FROM {G} WHERE rowid = 1"],
    "graph-huge": [f"UPDATE {G} SET [end] = 9223372036854775807 WHERE rowid = 4"],
}
SQL_DAMAGE |= GRAPH_DAMAGE
# Damage that leaves a consistent export: a report is the right answer (nsys creates tables lazily).
REPORT_OK = {"no-kernels", "no-nvtx", "no-runtime", "kernel-no-name",  # the last: mangled names
             "no-graphs", "graph-no-exec",  # graphs nsys did not trace; graph ids without their exec ids
             "graph-null-corr"}  # a replay whose launch is unknown: GPU work outside every range, as a kernel's


def damaged(tmp_path: Path, name: str, source: Path = SOURCE, file: str = "profile.sqlite") -> Path:
    """A copy of `source` with the damage `name`, as FOLDER/`file` (a fresh folder per case)."""
    folder = tmp_path / name
    folder.mkdir()
    copy = folder / file
    if name in BYTE_DAMAGE:
        copy.write_bytes(BYTE_DAMAGE[name](source.read_bytes()))
        return copy
    shutil.copyfile(source, copy)
    db = sqlite3.connect(copy)
    for statement in SQL_DAMAGE[name]:
        db.execute(statement)
    db.commit()
    db.close()
    return copy


COMMANDS = {
    "kernels": lambda p: ["report", "kernels", p, "--no-cache"],
    "kernels-json": lambda p: ["report", "kernels", p, "--format", "json", "--by", "category", "--no-cache"],
    "nvtx": lambda p: ["report", "nvtx", p, "--no-cache"],
    "modules": lambda p: ["report", "modules", p, "--no-cache"],
    "timeline": lambda p: ["report", "timeline", p, "--no-cache"],
    "compare": lambda p: ["report", "compare", SOURCE, p, "--no-cache"],
    "memory": lambda p: ["report", "memory", MEMORY, "--profile", p.parent],
    "capture": lambda p: ["report", "capture", p, "--no-cache"],
}


_ORIGINAL: dict[tuple[Path, str], str] = {}


def normal(text: str, path: Path) -> str:
    """A report with its export's path and folder name (compare's column label) made neutral."""
    return text.replace(str(path.parent), "<folder>").replace(path.parent.name, "<folder>")


def output(command: str, result, path: Path) -> str:
    """What the command reported: stdout, or for `capture` the report.md it wrote (then removed)."""
    if command != "capture":
        return normal(result.stdout, path)
    written = path.parent / "profile.report.md"
    written = written if written.exists() else path.parent / "report.md"
    text = written.read_text()
    written.unlink()
    return normal(text, path)


def original(command: str, tmp: Path, source: Path = SOURCE) -> str:
    """The command's output on the undamaged fixture (copied, so its folder stays clean)."""
    if (source, command) not in _ORIGINAL:
        folder = tmp / f"original-{source.parent.name}"
        folder.mkdir(exist_ok=True)
        copy = folder / "profile.sqlite"
        if not copy.exists():
            shutil.copyfile(source, copy)
        result = CliRunner().invoke(cli, [str(a) for a in COMMANDS[command](copy)])
        assert result.exit_code == 0, result.output
        _ORIGINAL[source, command] = output(command, result, copy)
    return _ORIGINAL[source, command]


def check(command: str, path: Path, damage: str, tmp: Path, source: Path = SOURCE) -> None:
    folder = path.parent
    before = set(folder.iterdir())
    args = COMMANDS[command](path)
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        damage, command, repr(result.exception))
    assert "Traceback" not in result.output, (damage, result.output)
    if result.exit_code == 0:  # a report: the original's (the damage is in what it does not read) or said so
        same = output(command, result, path) == original(command, tmp, source)
        assert same or damage in REPORT_OK or "skipped" in result.output, (damage, command, result.output[-2000:])
        return
    assert result.exit_code == 2, (damage, command, result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), (damage, command, result.stderr)
    assert result.stdout == "", (damage, command, result.stdout)
    assert set(folder.iterdir()) == before, (damage, command, set(folder.iterdir()) - before)


@pytest.mark.parametrize("damage", sorted(set(SQL_DAMAGE) - set(GRAPH_DAMAGE)) + sorted(BYTE_DAMAGE))
def test_damaged_export_never_crashes(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, damage: str) -> None:
    path = damaged(tmp_path, damage)
    tmp = tmp_path_factory.getbasetemp()
    for command in COMMANDS:
        check(command, path, damage, tmp)


# On the CUDA-graph captures: their own damage, and a few of every export's (those the graph rows meet).
GRAPH_CASES = [(GRAPHS, d) for d in [*sorted(GRAPH_DAMAGE), "no-kernels"]] + [
    (source, d) for source in (GRAPHS, NODES) for d in ("flipped", "cut-0.7", "kernel-dup-corr", "runtime-dup-corr",
                                                        "kernel-end-before-start", "no-runtime")]


@pytest.mark.parametrize("source,damage", GRAPH_CASES, ids=[f"{s.parent.name[-5:]}-{d}" for s, d in GRAPH_CASES])
def test_damaged_graph_export_never_crashes(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, source: Path,
                                            damage: str) -> None:
    path = damaged(tmp_path, damage, source)
    tmp = tmp_path_factory.getbasetemp()
    for command in ("kernels", "nvtx", "timeline", "capture"):
        check(command, path, damage, tmp, source)


@pytest.mark.parametrize("damage", ["cut-0.3", "zeros", "flipped", "no-strings", "kernel-start-text",
                                    "kernel-end-before-start", "kernel-dup-corr", "runtime-dup-corr", "name-nowhere",
                                    "nvtx-end-before-start", "runtime-no-corr"])
def test_damaged_rank_never_crashes(tmp_path: Path, damage: str) -> None:
    """`report ranks` on a multi-rank capture whose rank export is damaged: one Error: line, exit 2."""
    path = damaged(tmp_path, damage, RANKS / "rank0.sqlite", "rank0.sqlite")
    for extra in ("run.json", "rank0.run.json"):
        shutil.copyfile(RANKS / extra, path.parent / extra)
    before = set(path.parent.iterdir())
    result = CliRunner().invoke(cli, ["report", "ranks", str(path.parent)])
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    assert result.exit_code == 2, (damage, result.output)
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith("Error: ")
    assert set(path.parent.iterdir()) == before


REMOVE = object()


def test_unnamed_ranges_count_each_kernel_once(tmp_path: Path) -> None:
    """Ranges without a name (no text, no textId) nest as `(unnamed)/(unnamed)/...`: each level its
    own path, so no path counts a kernel twice (an empty name gave a child its parent's path)."""
    copy = tmp_path / "profile.sqlite"
    shutil.copyfile(SOURCE, copy)
    db = sqlite3.connect(copy)
    db.execute(f"UPDATE {N} SET text = NULL, textId = NULL")
    db.commit()
    kernels = db.execute(f"SELECT count(*) FROM {K}").fetchone()[0]
    db.close()
    result = CliRunner().invoke(cli, ["report", "nvtx", str(copy), "--format", "json", "--no-cache"])
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.stdout)
    assert rows[0]["path"] == "(unnamed)" and max(r["kernels"] for r in rows) <= kernels
    assert len({r["path"] for r in rows}) == len(rows) and "(unnamed)/(unnamed)" in {r["path"] for r in rows}


def _snapshot_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "snap"
    shutil.copytree(MEMORY.parent, folder)
    return folder


@pytest.mark.parametrize("where, value, says", [
    (("ranges", "rows", 5, 2), 7, "memory.json is damaged (ranges row 5 is [0, 'B', 7,"),  # a name: was a TypeError
    (("ranges", "rows", 3), [0, "B"], "ranges row 3 is"),
    (("tensors", "rows", 2, 3), -1, "tensors row 2 is"),
    (("run", "mode"), None, None),  # a missing value is no damage: reported without it
    (("run", "mode"), 1.5, "run.mode is 1.5"),  # was printed as `mode = 1.5` (or nan) in the report
    (("end", "peak_allocated_bytes"), "big", "end.peak_allocated_bytes is big"),
    (("max_entries",), "many", "max_entries is many"),  # was int(): a ValueError
    (("start",), REMOVE, "no start state"),  # was a report of peak allocated above peak reserved (0)
])
def test_damaged_sidecar(tmp_path: Path, where: tuple, value: object, says: str | None) -> None:
    import json

    folder = _snapshot_copy(tmp_path)
    doc = json.loads((folder / "memory.json").read_text())
    node = doc
    for key in where[:-1]:
        node = node[key]
    if value is REMOVE:
        del node[where[-1]]
    else:
        node[where[-1]] = value
    (folder / "memory.json").write_text(json.dumps(doc))
    result = CliRunner().invoke(cli, ["report", "memory", str(folder)])
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    if says is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.startswith("Error: ") and says in result.stderr and len(result.stderr.splitlines()) == 1


def test_snapshot_segments_of_the_wrong_type(tmp_path: Path) -> None:
    import pickle

    from profkit.snapshot import load_pickle

    folder = _snapshot_copy(tmp_path)
    data = load_pickle(folder / "memory.pickle")
    data["segments"] = 3  # was `TypeError: 'int' object is not iterable`
    (folder / "memory.pickle").write_bytes(pickle.dumps(data, protocol=4))
    result = CliRunner().invoke(cli, ["report", "memory", str(folder)])
    assert result.exit_code == 2 and "not a torch memory snapshot (no 'segments' list)" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("field, value", [("addr", "0x7f"), ("size", -4096), ("time_us", 2**70), ("size", 1.5)])
def test_snapshot_event_of_the_wrong_type(tmp_path: Path, field: str, value: object) -> None:
    import pickle

    from profkit.snapshot import load_pickle

    folder = _snapshot_copy(tmp_path)
    data = load_pickle(folder / "memory.pickle")
    data["device_traces"][0][5][field] = value  # was int()'s ValueError, or an int64 overflow
    (folder / "memory.pickle").write_bytes(pickle.dumps(data, protocol=4))
    result = CliRunner().invoke(cli, ["report", "memory", str(folder)])
    assert result.exit_code == 2 and "trace entry 5" in result.stderr, result.output
    assert field in result.stderr or "does not fit in 64 bits" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("field, value", [("max_split_size", "big"), ("expandable_segments", "yes")])
def test_snapshot_settings_of_the_wrong_type(tmp_path: Path, field: str, value: object) -> None:
    import pickle

    from profkit.snapshot import load_pickle

    folder = _snapshot_copy(tmp_path)
    data = load_pickle(folder / "memory.pickle")
    data["allocator_settings"][field] = value  # max_split_size was int()'s ValueError; "yes" read as True
    (folder / "memory.pickle").write_bytes(pickle.dumps(data, protocol=4))
    result = CliRunner().invoke(cli, ["report", "memory", str(folder)])
    assert result.exit_code == 2 and f"allocator_settings.{field} is {value}" in result.stderr, result.output
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("damage", [["ALTER TABLE TARGET_INFO_SESSION_START_TIME DROP COLUMN utcEpochNs"],
                                    ["UPDATE TARGET_INFO_SESSION_START_TIME SET utcEpochNs = 'soon'"]])
def test_rank_without_a_session_start(tmp_path: Path, damage: list[str]) -> None:
    """The wall-clock start only aligns ranks when no collective does: without it, the same report."""
    for name in ("damaged", "original"):
        shutil.copytree(RANKS, tmp_path / name / RANKS.name)
    db = sqlite3.connect(tmp_path / "damaged" / RANKS.name / "rank0.sqlite")
    for statement in damage:  # was a traceback (no such column)
        db.execute(statement)
    db.commit()
    db.close()
    got, want = (CliRunner().invoke(cli, ["report", "ranks", str(tmp_path / n / RANKS.name), "--format", "json"])
                 for n in ("damaged", "original"))
    assert got.exit_code == 0 and got.stdout == want.stdout, got.output


GRAPH_CAPTURE = GRAPHS.parent  # a capture folder with run.json: report.md, flops and compare read it


@pytest.mark.parametrize("where, value, says", [
    (("resident_memory_bytes",), "text", "resident_memory_bytes is 'text', not int | None"),
    (("peak_memory_bytes",), -5, "peak_memory_bytes holds -5, not a finite number of 0 or more"),
    (("steps_ms", 1), "fast", "steps_ms is"),
    (("summary", "median_ms"), [], "median_ms is [], not float"),
    (("resolved", "world_size"), True, "world_size is True, not int"),
    (("config", "compile"), "yes", "compile is 'yes', not bool"),
    (("config", "steps"), 2.5, "steps is 2.5, not int"),
])
def test_damaged_run_record_is_refused(tmp_path: Path, where: tuple, value: object, says: str) -> None:
    """A run.json field of the wrong type or out of range: one Error: line naming it, before any report
    that reads the record (report.md, the gate's ms/step)."""
    import json

    case = tmp_path / GRAPH_CAPTURE.name
    shutil.copytree(GRAPH_CAPTURE, case, ignore=shutil.ignore_patterns("README.md"))
    doc = json.loads((case / "run.json").read_text())
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (case / "run.json").write_text(json.dumps(doc))
    before = sorted(case.iterdir())
    for args in (["report", "capture", str(case), "--no-cache"],
                 ["report", "compare", str(GRAPH_CAPTURE), str(case), "--fail-above", "5"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and result.stdout == "", (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], (args, lines)
    assert sorted(case.iterdir()) == before


@pytest.mark.parametrize("change, says", [
    (lambda d: d.pop("params"), "params is None, not a count"),
    (lambda d: d.update(tokens="many"), "tokens is 'many', not a count"),
    (lambda d: d["paths"][3].update(bytes=-1), "bytes is -1, not a count"),
    (lambda d: d.update(shape={"n_layers": 0, "n_heads": 2, "head_dim": 8}), "not n_layers, n_heads and head_dim"),
    (lambda d: d.update(paths={}), "no list of paths"),
])
def test_damaged_flops_json_is_refused(tmp_path: Path, change, says: str) -> None:
    """flops.json (written by `profkit flops`, here for the tiny gate capture) damaged: `report flops`
    and report.md refuse it with one line saying what is wrong and how to write it again."""
    import json

    pytest.importorskip("torch")
    from profkit import layout
    from profkit.collect import flops as counting

    case = tmp_path / "capture"
    shutil.copytree(TESTS / "data" / "h200_tiny_step_bf16_a", case, ignore=shutil.ignore_patterns("README.md"))
    doc = counting.count(layout.RunRecord.read(case).config)
    assert all(isinstance(doc[k], int) and doc[k] > 0 for k in ("params", "tokens", "total_flops"))
    change(doc)
    (case / "flops.json").write_text(json.dumps(doc))
    result = CliRunner().invoke(cli, ["report", "flops", str(case), "--no-cache"])
    assert result.exit_code == 2 and result.stdout == "", result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "write it again with `profkit flops" in lines[0], lines
    # report.md keeps its other sections and says in its FLOPs section why that one is not shown
    result = CliRunner().invoke(cli, ["report", "capture", str(case), "--no-cache"])
    assert result.exit_code == 0, result.output
    text = (case / "report.md").read_text()
    assert f"Not shown: {lines[0].removeprefix('Error: ')}" in text and "## Top 15 kernels" in text


@pytest.mark.parametrize("damage", sorted(set(SQL_DAMAGE) - set(GRAPH_DAMAGE)) + sorted(BYTE_DAMAGE))
def test_damaged_export_through_the_fast_path(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], damage: str) -> None:
    """What the `profkit` console script runs first for a plain `report kernels|nvtx` (profkit.fastpath,
    without click): the same outcomes as through the command line, the same report when it makes one."""
    from profkit import fastpath

    path = damaged(tmp_path, damage)
    tmp = tmp_path_factory.getbasetemp()
    for command in ("kernels", "nvtx"):
        before = set(path.parent.iterdir())
        capsys.readouterr()
        try:
            assert fastpath.compute(["report", command, str(path), "--no-cache"]), (damage, command)
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        if code == 0:
            cli_text = original(command, tmp)
            assert normal(out, path) == cli_text or damage in REPORT_OK or "skipped" in out, (damage, command)
            continue
        assert code == 2, (damage, command, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (damage, command, err)
        assert out == "" and set(path.parent.iterdir()) == before, (damage, command)
