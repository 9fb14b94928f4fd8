"""profkit report memory on synthetic snapshots from an independent allocator model
(tests/allocator_model.py, tests/memory_scenario.py): the replayed peak, the categories and paths
at it, placement across threads and clocks, the outputs, and every bad input."""

from __future__ import annotations

import json
import pickle
import struct
import zlib
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from profkit.analyze import memory as mem
from profkit.cli import cli
from profkit.report import memory as memory_report
from profkit.snapshot import MemoryInputError, read
from tests.allocator_model import MB
from tests.memory_scenario import build


def analysis(folder: Path) -> mem.MemoryAnalysis:
    return memory_report.analyze(read(folder / "memory.pickle"))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_replayed_peak_equals_the_allocator_models(tmp_path: Path, seed: int) -> None:
    s = build(tmp_path, seed=seed)
    m = analysis(tmp_path)
    assert m.replay.exact and m.replay.notes == []
    assert m.replay.peak_allocated_bytes == s.peak == s.model.peak
    assert m.replay.peak_reserved_bytes == s.model.peak_reserved
    # every allocation's block is the model's (rounding, and splitting only when the rest is worth it)
    ev = m.replay.events
    allocs = ev[ev["action"] == "alloc"]
    assert dict(zip(allocs["seq"], allocs["block_size"], strict=True)) == {
        i - s.trace_start: n for i, n in s.alloc_blocks.items()}
    assert int(ev["allocated_bytes"].iloc[-1]) == s.model.allocated


def test_requested_sizes_alone_would_miss_the_peak(tmp_path: Path) -> None:
    """Some allocations take a free block whole (the rest too small to split off): counted at the
    requested size (rounded), the peak would come out low."""
    s = build(tmp_path, seed=0)
    m = analysis(tmp_path)
    ev = m.replay.events
    naive = m.replay.start_allocated_bytes
    peak = naive
    sizes: dict[int, int] = {}
    for act, addr, size in zip(ev["action"], ev["addr"], ev["size"], strict=True):
        if act == "alloc":
            sizes[addr] = mem.round_size(int(size))
            naive += sizes[addr]
            peak = max(peak, naive)
        elif act == "free_requested" and addr in sizes:
            naive -= sizes.pop(addr)
    assert peak < s.peak
    allocs = ev[ev["action"] == "alloc"]
    assert (allocs["block_size"] > allocs["size"].map(mem.round_size)).any()


def test_categories_at_the_peak_are_the_scenarios(tmp_path: Path) -> None:
    s = build(tmp_path, seed=1)
    m = analysis(tmp_path)
    got = mem.at_peak(m, "category")
    assert dict(zip(got["category"], got["bytes"], strict=True)) == {k: v for k, v in s.peak_categories.items() if v}
    assert int(got["bytes"].sum()) == s.peak
    assert list(got["category"]) == [c for c in mem.CATEGORIES if c in s.peak_categories]


def test_every_allocation_is_placed_under_the_scenarios_path(tmp_path: Path) -> None:
    """Backward ranges run on thread 1, grafted under thread 0's step_i/backward."""
    s = build(tmp_path, seed=2, host_offset_us=5_000_000)  # host clock far off: torch's annotation times must win
    m = analysis(tmp_path)
    assert m.clock == "snapshot"
    ev = m.replay.events
    placed = dict(zip(ev["seq"], m.paths, strict=True))
    want = {i - s.trace_start: p for i, p in s.alloc_paths.items()}
    assert {i: placed[i] for i in want} == want
    assert "step_1/backward/layer_0" in set(want.values())
    assert m.peak_path == s.peak_path
    tree = m.tree
    assert tree.loc[tree["path"] == "step_0/backward/layer_1", "grafted"].tolist() == [True]


def test_without_annotations_the_host_clock_places_events(tmp_path: Path) -> None:
    s = build(tmp_path, seed=2, annotations=False)
    m = analysis(tmp_path)
    assert m.clock == "host"
    placed = dict(zip(m.replay.events["seq"], m.paths, strict=True))
    assert {i - s.trace_start: placed[i - s.trace_start] for i in s.alloc_paths} == {
        i - s.trace_start: p for i, p in s.alloc_paths.items()}


def test_path_table_sums_what_the_model_allocated_inside(tmp_path: Path) -> None:
    s = build(tmp_path, seed=3)
    t = mem.path_table(analysis(tmp_path)).set_index("path")
    for prefix in ("step_0", "step_0/forward", "step_0/backward", "step_1/backward/layer_1", "step_1/optimizer"):
        want = sum(n for i, n in s.alloc_blocks.items()
                   if s.alloc_paths[i] == prefix or s.alloc_paths[i].startswith(prefix + "/"))
        assert t.loc[prefix, "allocated_bytes"] == want, prefix
    assert t.loc["step_1", "entry_bytes"] == t.loc["step_0", "exit_bytes"]
    assert (t["rise_bytes"] >= 0).all()
    assert t["peak_bytes"].max() == s.peak


def test_range_tree_nests_by_order_and_grafts_other_threads() -> None:
    log = pd.DataFrame([[0, "B", "step_0", 10], [0, "B", "backward", 20], [1, "B", "layer_1", 21],
                        [1, "B", "mlp", 22], [1, "E", "mlp", 30], [1, "E", "layer_1", 31], [0, "E", "backward", 40],
                        [0, "B", "optimizer", 41]], columns=["thread", "kind", "name", "time_us"])
    t = mem.range_tree(log)
    assert t["path"].tolist() == ["step_0", "step_0/backward", "step_0/backward/layer_1",
                                  "step_0/backward/layer_1/mlp", "step_0/optimizer"]
    assert t["grafted"].tolist() == [False, False, True, False, False]
    assert t["end_us"].tolist() == [41, 40, 31, 30, 41]  # still open at the end: the last time


@pytest.mark.parametrize("size,divisions,want", [
    (0, 0, 512), (511, 0, 512), (512, 0, 512), (513, 0, 1024), (1200, 4, 1536), (5000, 4, 5120), (4096, 4, 4096),
    (3 * MB + 1, 0, 3 * MB + 512)])
def test_round_size(size: int, divisions: int, want: int) -> None:
    assert mem.round_size(size, divisions) == want


@pytest.mark.parametrize("block,size,small,want", [
    (2 * MB, 2 * MB - 512, True, True), (2 * MB, 2 * MB - 511, True, False), (20 * MB, 19 * MB, False, False),
    (20 * MB, 19 * MB - 1, False, True)])
def test_should_split(block: int, size: int, small: bool, want: bool) -> None:
    assert mem.should_split(block, size, small=small) is want


def test_without_the_sidecar_the_replay_says_it_is_approximate(tmp_path: Path) -> None:
    build(tmp_path, seed=0)
    (tmp_path / "memory.json").unlink()
    data = read(tmp_path / "memory.pickle")
    assert not data.sidecar and data.clock == "none"
    m = memory_report.analyze(data)
    assert not m.replay.exact and "approximate" in m.replay.notes[0]
    r = memory_report.result(data, m)
    assert r["exact"] is False and r["peak_path"] in (mem.OUTSIDE, mem.BEFORE)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_report_memory_markdown_json_png_html(tmp_path: Path) -> None:
    s = build(tmp_path / "run", seed=1)
    code, out, _ = invoke("report", "memory", str(tmp_path / "run"))
    assert code == 0
    assert f"**Peak allocated: {s.peak / 2**20:,.1f} MiB** ({s.peak:,} B)" in out and "equal" in out
    assert f"in `{s.peak_path}`" in out and "## At the peak, by category" in out
    code, out, _ = invoke("report", "memory", str(tmp_path / "run" / "memory.pickle"), "--format", "json",
                          "--png", str(tmp_path / "m.png"), "--html", str(tmp_path / "m.html"))
    assert code == 0
    r = json.loads(out)
    for key in ("peak_allocated_bytes", "peak_reserved_bytes", "peak_time_us", "peak_path", "paths", "categories",
                "top_allocations"):
        assert key in r
    assert r["peak_allocated_bytes"] == r["torch_max_memory_allocated"] == s.peak and r["peak_equals_torch"]
    assert r["top_allocations"][0]["bytes"] == max(r["top_allocations"][i]["bytes"]
                                                   for i in range(len(r["top_allocations"])))
    assert r["top_allocations"][0]["frame"] == "models/toy.py:1 forward"  # torch's own frame skipped
    page = (tmp_path / "m.html").read_text()
    assert "<svg" in page and "<script" not in page and "src=" not in page and "href=" not in page
    width, height, pixels = decode_png((tmp_path / "m.png").read_bytes())
    assert (width, height) == (1100, 460)
    assert memory_report.PEAK_COLOR in pixels and memory_report.PHASE_COLORS["backward"] in pixels


def decode_png(data: bytes) -> tuple[int, int, set[tuple[int, int, int]]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, i = b"", 8
    while i < len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        if data[i + 4:i + 8] == b"IDAT":
            idat += data[i + 8:i + 8 + n]
        i += 12 + n
    raw = zlib.decompress(idat)
    stride = width * 3 + 1
    colors = set()
    for y in range(height):
        row = raw[y * stride + 1:(y + 1) * stride]
        colors.update(zip(row[0::3], row[1::3], row[2::3], strict=True))
    return width, height, colors


def test_compare_two_snapshots(tmp_path: Path) -> None:
    a, b = build(tmp_path / "a", seed=0), build(tmp_path / "b", seed=1)
    code, out, _ = invoke("report", "compare", str(tmp_path / "a" / "memory.pickle"),
                          str(tmp_path / "b" / "memory.pickle"), "--format", "json")
    assert code == 0
    r = json.loads(out)
    assert [p["peak_allocated_bytes"] for p in r["peaks"]] == [a.peak, b.peak]
    assert r["peaks"][1]["delta_bytes"] == b.peak - a.peak
    cats = {(c["key"], c["capture"]): c for c in r["categories"]}
    assert cats[("activations", "b")]["delta_bytes"] == b.peak_categories["activations"] - a.peak_categories[
        "activations"]
    code, out, _ = invoke("report", "compare", str(tmp_path / "a" / "memory.pickle"),
                          str(tmp_path / "b" / "memory.pickle"))
    assert code == 0 and "## At each peak, by category" in out and "forward/layer_1/attention" in out


def bad(tmp_path: Path, kind: str) -> Path:
    build(tmp_path, seed=0)
    p = tmp_path / "memory.pickle"
    if kind == "not a pickle":
        p.write_text("hello, I am text\n")
    elif kind == "something else":
        p.write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    elif kind == "truncated":
        p.write_bytes(p.read_bytes()[:5000])
    elif kind == "names an object":
        p.write_bytes(pickle.dumps(OrderedDict(segments=[]), protocol=4))
    elif kind == "no history":
        snap = pickle.loads(p.read_bytes())
        p.write_bytes(pickle.dumps({**snap, "device_traces": [[]]}, protocol=4))
    elif kind == "overflowed":
        side = json.loads((tmp_path / "memory.json").read_text())
        side["max_entries"] = len(pickle.loads(p.read_bytes())["device_traces"][0])
        (tmp_path / "memory.json").write_text(json.dumps(side))
    elif kind == "damaged sidecar":
        (tmp_path / "memory.json").write_text("{")
    elif kind == "missing":
        p.unlink()
    return p


@pytest.mark.parametrize("kind,message", [
    ("not a pickle", "is not a pickle"), ("something else", "is a pickle of a list, not a torch memory snapshot"),
    ("truncated", "is truncated or damaged"), ("names an object", "names the Python object collections.OrderedDict"),
    ("no history", "has no allocator history (device_traces is empty)"),
    ("overflowed", "history overflowed"), ("damaged sidecar", "memory.json is not readable JSON"),
    ("missing", "does not exist")])
def test_bad_input_is_one_error_line_and_nothing_is_written(tmp_path: Path, kind: str, message: str) -> None:
    p = bad(tmp_path, kind)
    outs = [tmp_path / "out.md", tmp_path / "out.png", tmp_path / "out.html"]
    code, out, err = invoke("report", "memory", str(p), "-o", str(outs[0]), "--png", str(outs[1]),
                            "--html", str(outs[2]))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("Error: ") and message in err, err
    assert not any(o.exists() for o in outs)
    with pytest.raises(MemoryInputError):
        read(p)


def test_existing_outputs_are_never_replaced(tmp_path: Path) -> None:
    build(tmp_path, seed=0)
    (tmp_path / "m.png").write_text("mine")
    code, _, err = invoke("report", "memory", str(tmp_path), "--png", str(tmp_path / "m.png"))
    assert code == 2 and "exists" in err and (tmp_path / "m.png").read_text() == "mine"


def test_the_unpickler_runs_no_code(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("ran",))

    p = tmp_path / "memory.pickle"
    p.write_bytes(pickle.dumps({"segments": [], "device_traces": [[Boom()]]}, protocol=4))
    code, out, err = invoke("report", "memory", str(p))
    assert code == 2 and "ran" not in out and "names the Python object builtins.print" in err


CAPTURE = Path(__file__).parent / "data" / "h100_small_step_bf16"


def test_profile_puts_gpu_time_beside_memory(tmp_path: Path) -> None:
    """--profile (or a snapshot inside a capture folder) joins each path's kernel time, as report
    nvtx gives it, to its memory."""
    build(tmp_path / "run", seed=0)
    code, out, _ = invoke("report", "memory", str(tmp_path / "run"), "--profile", str(CAPTURE), "--format", "json")
    assert code == 0
    rows = {k["path"]: k for k in json.loads(out)["kernels"]}
    code, nvtx, _ = invoke("report", "nvtx", str(CAPTURE), "--format", "json", "--no-cache")
    gpu = {r["path"]: r["gpu_total_ns"] for r in json.loads(nvtx)}
    for path in ("step_0", "step_0/forward", "step_0/backward", "step_0/optimizer", "step_0/forward/layer_1/attention"):
        assert rows[path]["gpu_ns"] == gpu[path] > 0, path
    assert rows["step_0/forward"]["rise_bytes"] == mem.path_table(analysis(tmp_path / "run")).set_index("path").loc[
        "step_0/forward", "rise_bytes"]
    # a snapshot inside a capture folder pairs with it by itself
    folder = tmp_path / "capture"
    folder.mkdir()
    for name in ("profile.sqlite", "run.json"):
        (folder / name).symlink_to((CAPTURE / name).resolve())
    for name in ("memory.pickle", "memory.json"):
        (folder / name).write_bytes((tmp_path / "run" / name).read_bytes())
    code, out, _ = invoke("report", "memory", str(folder / "memory.pickle"))
    assert code == 0 and "## GPU time beside memory" in out


def test_an_out_of_memory_history_says_so(tmp_path: Path) -> None:
    s = build(tmp_path, seed=0)
    snap = pickle.loads((tmp_path / "memory.pickle").read_bytes())
    snap["device_traces"][0].append({"action": "oom", "addr": 1 << 30, "size": 80 * MB, "stream": 0,
                                     "time_us": s.model.time_us + 5, "frames": []})
    (tmp_path / "memory.pickle").write_bytes(pickle.dumps(snap, protocol=4))
    side = json.loads((tmp_path / "memory.json").read_text())
    (tmp_path / "memory.json").write_text(json.dumps({**side, "oom": True}))
    code, out, _ = invoke("report", "memory", str(tmp_path))
    assert code == 0 and "**The measured steps ran out of memory**" in out
    assert f"({s.peak:,} B)" in out


def test_residual_stream_per_layer_is_what_forward_leaves_saved(tmp_path: Path) -> None:
    s = build(tmp_path, seed=3)
    data = read(tmp_path / "memory.pickle")
    t = mem.residual_stream(memory_report.analyze(data), data.run)
    assert t["residual_bytes"].tolist() == [2 * 32 * 64 * 4] * 2  # tiny: batch 2 x context 32 x d_model 64, fp32
    assert t["saved_bytes"].tolist() == [s.forward_end[0], s.forward_end[1]] and min(s.forward_end.values()) > 0
