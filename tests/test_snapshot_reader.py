"""The streaming snapshot reader (profkit/unpickle.py) against pickle's own loader.

The expected columns come from `pickle.loads` of files this test wrote itself (trusted data) and
the plain conversion the first reader did per event (int(v or 0), top_frame of the frames list);
the large-snapshot shape comes from scripts/bench_snapshot.py, which repeats the H200 fixture's
step, so every step of a built snapshot must report what step 0 reports.
"""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from profkit import layout, snapshot, unpickle
from profkit.cli import cli
from profkit.report import memory as memory_report

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "h200_memory_tiny_step"
TORCH_PEAK = 71_079_936  # run.json's max_memory_allocated


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_snapshot", ROOT / "scripts" / "bench_snapshot.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def expected_columns(data: bytes, device: int = 0) -> pd.DataFrame:
    """What the first reader built: pickle.loads, then one row per event."""
    trace = pickle.loads(data)["device_traces"][device]
    rows = [(i, str(e["action"]), int(e.get("addr", 0) or 0), int(e.get("size", 0) or 0),
             int(e.get("time_us", 0) or 0), snapshot.top_frame(e.get("frames"))) for i, e in enumerate(trace)]
    return pd.DataFrame(rows, columns=["seq", "action", "addr", "size", "time_us", "frame"])


def read_columns(path: Path) -> pd.DataFrame:
    with open(path, "rb") as f:
        loaded = unpickle.load(f, snapshot.top_frame)
    trace = loaded.data["device_traces"][0]
    events = snapshot._events_frame(loaded.traces.get(id(trace)), loaded)
    return events


def assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want)
    for c in want.columns:
        assert got[c].astype(object).tolist() == want[c].tolist(), c


def test_the_fixture_reads_as_pickle_loads_it() -> None:
    data = (FIXTURE / "memory.pickle").read_bytes()
    assert_same(read_columns(FIXTURE / "memory.pickle"), expected_columns(data))
    with open(FIXTURE / "memory.pickle", "rb") as f:
        loaded = unpickle.load(f, snapshot.top_frame)
    plain = pickle.loads(data)
    for key in ("segments", "allocator_settings"):
        assert _plain(loaded.data[key]) == _plain(plain[key])
    anns = loaded.data["external_annotations"]
    assert all(isinstance(a, unpickle.Annotation) for a in anns)
    assert [(a.stage, a.name, a.time_us) for a in anns] == [
        (a["stage"], a["name"], a["time_us"]) for a in plain["external_annotations"]]


def _plain(x: Any) -> Any:
    """A structure with the reader's stand-ins for frames lists (segments' block frames) as []."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items() if k != "frames"}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_protocol_reads_the_same(tmp_path: Path, protocol: int) -> None:
    """Protocols 2 and 3 memoize with BINPUT (no MEMOIZE, so no fast path); 4 and 5 frame the data."""
    snap = snapshot.load_pickle(FIXTURE / "memory.pickle")
    data = pickle.dumps(snap, protocol=protocol)
    (tmp_path / "s.pickle").write_bytes(data)
    assert_same(read_columns(tmp_path / "s.pickle"), expected_columns(data))


def test_events_off_the_learned_shape_read_the_generic_way(tmp_path: Path) -> None:
    """Events that do not fit the shape the fast path learned (a float, None, a new key, new frame
    dicts, a first-seen action string) are read by the opcode loop, in order."""
    snap = snapshot.load_pickle(FIXTURE / "memory.pickle")
    trace = snap["device_traces"][0]
    rng = random.Random(3)
    for i in rng.sample(range(10, len(trace)), 60):
        e = dict(trace[i])
        pick = i % 5
        if pick == 0:
            e["size"] = float(e["size"])
        elif pick == 1:
            e["stream"] = None
        elif pick == 2:
            e["extra"] = [1, 2]
        elif pick == 3:
            e["frames"] = [{"filename": f"/x/models/new_{i}.py", "line": i, "name": "fresh"}]
        else:
            e["action"] = "user_defined" if i % 2 else e["action"]
        trace[i] = e
    data = pickle.dumps(snap, protocol=4)
    (tmp_path / "s.pickle").write_bytes(data)
    assert_same(read_columns(tmp_path / "s.pickle"), expected_columns(data))


def test_a_built_snapshot_reads_as_pickle_loads_it(tmp_path: Path) -> None:
    meta = _bench().write_snapshot(tmp_path / "snap", 5)
    data = (tmp_path / "snap" / "memory.pickle").read_bytes()
    assert meta["events"] == 5 * 1071
    assert_same(read_columns(tmp_path / "snap" / "memory.pickle"), expected_columns(data))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 steps of the fixture (8 MB of pickle, a 1 MB sidecar; the tests read its rows in 64 kB
    pieces)."""
    out = tmp_path_factory.mktemp("built") / "snap"
    _bench().write_snapshot(out, 90)
    return out


def test_every_step_of_a_built_snapshot_reports_what_the_fixture_does(built: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "_PIECE", 1 << 16)
    pieces = snapshot._sidecar_json((built / "memory.json").read_text())
    assert isinstance(pieces["ranges"]["rows"], snapshot._Rows) and len(pieces["ranges"]["rows"].parts) > 3
    data = snapshot.read(built)
    m = memory_report.analyze(data)
    r = memory_report.result(data, m)
    one = memory_report.result(*(lambda d: (d, memory_report.analyze(d)))(snapshot.read(FIXTURE)))
    assert r["events"] == 90 * 1071
    assert r["peak_allocated_bytes"] == TORCH_PEAK and r["peak_equals_torch"] and r["exact"]
    assert r["peak_path"] == one["peak_path"] == "step_0/optimizer"
    assert r["categories"] == one["categories"]
    assert r["top_allocations"] == one["top_allocations"]
    paths = pd.DataFrame(r["paths"])
    base = pd.DataFrame(one["paths"]).set_index("path")
    for k in (0, 1, 45, 89):
        mine = paths[paths["path"].str.match(rf"step_{k}(/|$)")].copy()
        mine["path"] = mine["path"].str.replace(rf"^step_{k}", "step_0", regex=True)
        assert mine.set_index("path")[["instances", "allocated_bytes", "rise_bytes"]].equals(
            base[["instances", "allocated_bytes", "rise_bytes"]]), k
    # the storages of every step found their blocks: each step's gradients are named
    assert len(data.tensors) == 24 + 90 * 162


def test_the_sidecar_read_in_pieces_equals_json_loads(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "_PIECE", 1 << 16)
    text = (built / "memory.json").read_text()
    plain = json.loads(text)
    pieces = snapshot._sidecar_json(text)
    for key, cols in (("ranges", ["thread", "kind", "name", "host_ns"]),
                      ("tensors", ["kind", "step", "address", "bytes", "name"])):
        got = snapshot._rows_frame(pieces[key]["rows"], cols)
        want = pd.DataFrame(plain[key]["rows"], columns=cols)
        assert [got[c].tolist() for c in cols] == [want[c].tolist() for c in cols]
    assert {k: v for k, v in pieces.items() if k not in ("ranges", "tensors")} == {
        k: v for k, v in plain.items() if k not in ("ranges", "tensors")}


def test_report_json_of_the_built_snapshot_equals_markdown_figures(built: Path, tmp_path: Path) -> None:
    """The CLI on the built snapshot: markdown and JSON agree on the peak, and the markdown's
    per-path table is the peak step's."""
    res = CliRunner().invoke(cli, ["report", "memory", str(built)])
    assert res.exit_code == 0, res.output
    assert "(71,079,936 B) at" in res.output and "equal" in res.output
    assert "## Per path (step_0, the peak's step)" in res.output
    assert "`step_1/" not in res.output.split("## Per path")[1]


def _mutations(data: bytes, n: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for k in range(n):
        how = k % 4
        if how == 0:
            cut = rng.randrange(2, len(data) - 1)
            out.append((f"truncated at {cut}", data[:cut]))
        elif how == 1:
            b = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(2, len(b))] = rng.randrange(256)
            out.append(("flipped bytes", bytes(b)))
        elif how == 2:
            i = rng.randrange(2, len(data) - 64)
            out.append(("a slice dropped", data[:i] + data[i + rng.randint(1, 64):]))
        else:
            i = rng.randrange(2, len(data) - 1)
            out.append(("a slice repeated", data[:i] + data[i - rng.randint(1, 40):]))
    return out


def test_damaged_snapshots_give_the_reader_error_or_a_report(tmp_path: Path) -> None:
    """Seeded mutations of the fixture's pickle: snapshot.read either refuses with MemoryInputError
    (the CLI's one Error: line) or returns data the analysis runs on; nothing else escapes."""
    data = (FIXTURE / "memory.pickle").read_bytes()
    (tmp_path / "memory.json").write_text((FIXTURE / "memory.json").read_text())
    target = tmp_path / "memory.pickle"
    refused = 0
    for what, bad in _mutations(data, 160, seed=17):
        target.write_bytes(bad)
        try:
            d = snapshot.read(target)
        except snapshot.MemoryInputError as e:
            assert str(e).startswith(str(target)), what
            refused += 1
            continue
        m = memory_report.analyze(d)
        r = memory_report.result(d, m)
        assert r["peak_allocated_bytes"] >= 0 and all(c["bytes"] >= 0 for c in r["categories"]), what
    assert refused >= 100


def test_a_damaged_snapshot_through_the_cli_is_one_error_line(tmp_path: Path) -> None:
    data = (FIXTURE / "memory.pickle").read_bytes()
    for name, bad in (("cut", data[: len(data) // 3]), ("global", data[:-1] + b"cos\nsystem\n.")):
        p = tmp_path / f"{name}.pickle"
        p.write_bytes(bad)
        res = CliRunner().invoke(cli, ["report", "memory", str(p)])
        assert res.exit_code == 2 and res.output.count("\n") == 1 and res.output.startswith("Error: "), res.output


def test_a_reference_to_a_dropped_event_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An event the reader turned into a row leaves the memo WINDOW conversions later: a reference
    to it after that (torch refers back only from the next event) is refused, not guessed."""
    events = [{"action": "alloc", "addr": (1 << 20) * (k + 1), "size": 512, "stream": 0, "time_us": 5 + k,
               "frames": []} for k in range(6)]
    snap = {"segments": [], "device_traces": [events], "again": events[0]}
    p = tmp_path / "s.pickle"
    p.write_bytes(pickle.dumps(snap, protocol=4))
    assert len(snapshot.read(p).events) == 6  # within the window: read
    monkeypatch.setattr(unpickle, "WINDOW", 2)
    with pytest.raises(snapshot.MemoryInputError, match="memo reference"):
        snapshot.read(p)


def test_numpy_columns_have_the_compact_types() -> None:
    d = snapshot.read(FIXTURE)
    assert d.events["addr"].dtype == np.int64 and d.events["time_us"].dtype == np.int64
    assert isinstance(d.events["action"].dtype, pd.CategoricalDtype)
    assert isinstance(d.events["frame"].dtype, pd.CategoricalDtype)
    assert sys.getsizeof(d.events) < 100_000


def test_the_lean_analysis_reports_the_same_text(built: Path) -> None:
    """report memory's lean analysis (the trace's columns dropped once nothing reads them) writes
    the full analysis's markdown and JSON, byte for byte; its events keep action and time_us."""
    for fmt in ("markdown", "json"):
        full = snapshot.read(built)
        want = memory_report.report(full, memory_report.analyze(full), fmt=fmt, title="t")
        lean = snapshot.read(built)
        m = memory_report.analyze(lean, lean=True)
        assert list(lean.events.columns) == ["action", "time_us"]
        assert m.replay.source is lean.events
        assert memory_report.report(lean, m, fmt=fmt, title="t") == want


def test_dump_json_writes_json_dumps_text(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON report's per-range table, written in pieces of records, is json.dumps's text of the
    whole list of records."""
    monkeypatch.setattr(memory_report, "JSON_PIECE", 7)
    data = snapshot.read(built)
    m = memory_report.analyze(data)
    r = memory_report.result(data, m, paths_frame=True)
    assert isinstance(r["paths"], pd.DataFrame) and len(r["paths"]) > 7 * 3
    want = json.dumps(memory_report.result(data, m), indent=1) + "\n"
    assert memory_report.dump_json(r) == want
    pieces = list(memory_report.json_pieces(r))  # what the CLI writes one by one: none of them the whole text
    assert "".join(pieces) == want and len(pieces) >= len(r["paths"]) // 7 and max(map(len, pieces)) < len(want) / 3
    empty = {"a": 1, "paths": pd.DataFrame(columns=["x"]), "b": [2]}
    assert memory_report.dump_json(empty) == json.dumps({"a": 1, "paths": [], "b": [2]}, indent=1) + "\n"
    two = {"paths": pd.DataFrame({"x": [1, 2, 3]}), "n": None, "more": pd.DataFrame({"y": ["a"]})}
    assert memory_report.dump_json(two) == json.dumps({"paths": [{"x": 1}, {"x": 2}, {"x": 3}], "n": None,
                                                       "more": [{"y": "a"}]}, indent=1) + "\n"


def test_report_memory_json_to_a_file_is_its_stdout(built: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """--format json -o FILE writes the pieces as they come: the file is stdout's text, byte for byte,
    and json.dumps's of the result; a failure while writing leaves no file (nor its temporary)."""
    monkeypatch.setattr(memory_report, "JSON_PIECE", 50)
    res = CliRunner().invoke(cli, ["report", "memory", str(built), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = snapshot.read(built)
    stdout = res.stdout
    assert stdout == json.dumps(memory_report.result(data, memory_report.analyze(data)), indent=1) + "\n"
    out = tmp_path / "m.json"
    res = CliRunner().invoke(cli, ["report", "memory", str(built), "--format", "json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text() == stdout and res.stdout == ""

    def broken() -> Any:
        yield "{"
        raise RuntimeError("made to fail")

    with pytest.raises(RuntimeError):
        layout.write_pieces(tmp_path / "x.json", broken(), replace=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_annotation_names_are_one_string_per_text() -> None:
    """Every step repeats its range names: the reader keeps one str per distinct name and stage."""
    texts = [("profkit:", "forward"), ("profkit:", "forward"), ("STA", "RT")]
    ann = [{"stage": "".join(("ST", "ART")), "name": "".join(t), "device": 0, "time_us": i}
           for i, t in enumerate(texts)]
    assert ann[0]["name"] is not ann[1]["name"]
    data = pickle.dumps({"segments": [], "device_traces": [[]], "external_annotations": ann}, protocol=4)
    loaded = unpickle.load(io.BytesIO(data), snapshot.top_frame)
    got = loaded.data["external_annotations"]
    assert [(a.stage, a.name, a.time_us) for a in got] == [(a["stage"], a["name"], a["time_us"]) for a in ann]
    assert got[0].name is got[1].name and got[0].stage is got[1].stage is got[2].stage
