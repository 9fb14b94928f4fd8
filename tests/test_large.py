"""Large captures: pipeline.load()'s compact analysis (pipeline.load_compact()) holds what
analyze_data(parse.load()) holds, value for value, in about a third of the memory, and every
report built on it is the same text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profkit import parse, pipeline
from profkit import report as reports
from profkit.report import capture_markdown
from profkit.report.timeline import timeline

DATA = Path(__file__).parent / "data"
EXPORTS = sorted([*DATA.glob("*/profile.sqlite"), *DATA.glob("*/rank0.sqlite")])
PER_KERNEL = {"start_ns": "int64", "end_ns": "int64", "launch_ns": "int64", "dur_ns": "int64", "name": "category",
              "short_name": "category", "category": "category", "owner": "int32", "range_path": "category"}


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame's rows in one order whatever order they came in."""
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.mark.parametrize("export", EXPORTS, ids=lambda p: p.parent.name)
def test_compact_analysis_equals_the_frame_analysis(export: Path) -> None:
    full = pipeline.analyze_data(parse.load(export, lean=True))
    compact = pipeline.load_compact(export)
    assert dict(compact.kernels.dtypes.astype(str)) == PER_KERNEL  # nothing else per kernel
    for column in ("name", "kind", "path"):  # a range's texts are shared objects, not one string per range
        assert len({id(v) for v in compact.ranges[column]}) <= compact.ranges[column].nunique() + 1
    for c in PER_KERNEL:
        pd.testing.assert_series_equal(compact.kernels[c], full.kernels[c])
    pd.testing.assert_frame_equal(compact.ranges, full.ranges)
    pd.testing.assert_frame_equal(compact.transfers, full.transfers)
    pd.testing.assert_frame_equal(_rows(compact.data.nvtx), _rows(full.data.nvtx))
    for table in ("memcpy", "memset"):
        mine, theirs = getattr(compact.data, table), getattr(full.data, table)
        pd.testing.assert_frame_equal(mine, theirs[list(mine.columns)])
    pd.testing.assert_frame_equal(compact.data.gpus, full.data.gpus)
    pd.testing.assert_series_equal(compact.data.names, full.data.names)
    assert (compact.data.tables, compact.data.nvtx_end_ns) == (full.data.tables, full.data.nvtx_end_ns)
    # the reports on it: the same text
    assert capture_markdown(compact, title="t") == capture_markdown(full.slim(), title="t")
    assert timeline(compact) == timeline(full)
    assert reports.modules(compact) == reports.modules(full)
    assert reports.compare([compact, compact], ["a", "b"]) == reports.compare([full, full], ["a", "b"])
    assert reports.nvtx(compact) == reports.nvtx(full)
    assert reports.kernels(compact, top=0) == reports.kernels(full, top=0)


def test_compact_analysis_without_nvtx_or_activity() -> None:
    export = DATA / "h100_small_step_bf16" / "profile.sqlite"
    for nvtx, activity in ((False, True), (True, False), (False, False)):
        full = pipeline.analyze_data(parse.load(export, lean=True, launches=nvtx, nvtx=nvtx, activity=activity),
                                     nvtx=nvtx)
        compact = pipeline.load_compact(export, nvtx=nvtx, activity=activity)
        for c in PER_KERNEL:
            pd.testing.assert_series_equal(compact.kernels[c], full.kernels[c])
        pd.testing.assert_frame_equal(compact.ranges, full.ranges)
        pd.testing.assert_frame_equal(compact.transfers, full.transfers)
        assert compact.data.nvtx_end_ns == full.data.nvtx_end_ns
        assert (compact.kernels["owner"] >= 0).any() == nvtx
        assert bool(len(compact.transfers)) == activity


def test_compact_analysis_shares_the_transfers_columns() -> None:
    """memcpy and memset in Analysis.data view the transfers' times: no second copy."""
    a = pipeline.load_compact(DATA / "h100_small_step_bf16" / "profile.sqlite")
    assert len(a.data.memcpy) and len(a.data.memset)
    assert np.shares_memory(a.data.memcpy["dur_ns"].to_numpy(), a.transfers["dur_ns"].to_numpy())
    assert np.shares_memory(a.data.memset["start_ns"].to_numpy(), a.transfers["start_ns"].to_numpy())


def test_timeline_packed_order_equals_the_index_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    """timeline()'s order of the work by owner, packed in one int64 per row or as an index array
    (beyond PACK_ROWS rows): the same table."""
    import importlib

    from profkit import analyze

    tl = importlib.import_module("profkit.analyze.timeline")  # (profkit.analyze.timeline names the function)

    a = pipeline.load(DATA / "h100_small_step_bf16" / "profile.sqlite", compact=True)
    packed = {by: analyze.timeline(a.ranges, a.work(), by=by) for by in ("phase", "name")}
    monkeypatch.setattr(tl, "PACK_ROWS", 0)
    for by, expected in packed.items():
        pd.testing.assert_frame_equal(analyze.timeline(a.ranges, a.work(), by=by), expected)
    assert (packed["phase"]["gpu_busy_ns"] > 0).all()


def test_compare_on_what_it_reads_equals_compare_on_the_analyses() -> None:
    """`report compare` keeps of each capture only its aggregates (report.compare.capture())
    before analysing the next: the same comparison, gate lines and verdicts, and no row per kernel."""
    from profkit.analyze.gate import parse_threshold, range_times_ms
    from profkit.report.compare import capture, crossed, noise_gate

    pair = [pipeline.load(DATA / name / "profile.sqlite", compact=True)
            for name in ("h100_small_step_bf16_flash", "h100_small_step_bf16")]
    small = [capture(a) for a in pair]
    for a, c in zip(pair, small, strict=True):  # per name, per category, per path: never per kernel
        assert len(c.ranked) == a.kernels["name"].nunique() < len(a.kernels)
        assert len(c.shares) <= a.kernels["category"].nunique() + 2
        assert len(c.paths) == a.ranges["path"].nunique() < len(a.kernels)
        assert len(c.path_ns) <= len(c.paths) + a.kernels["range_path"].nunique()  # re-homed paths have no range
    names = ["flash", "plain"]
    for fmt in ("markdown", "csv", "json"):
        assert reports.compare(small, names, fmt=fmt) == reports.compare(pair, names, fmt=fmt)
    limits = [parse_threshold(t) for t in ("step_ms>+5%", "gpu_ms>+1%", "category:gemm>+10%")]
    assert crossed(small, names, limits) == crossed(pair, names, limits)
    assert crossed(pair, names, limits)  # the plain capture is slower: something to agree on
    ranges = ["backward", "optimizer", "forward/layer_1"]
    mine = noise_gate(small, names, 1.0, ranges)
    assert any(c.failed for c in mine)
    for check, r in zip(mine[1:], ranges, strict=True):  # the per-step values, from the frames themselves
        base, new = (tuple(range_times_ms(a.kernels, a.ranges, r)) for a in pair)
        assert (check.quantity, check.base, check.new) == (f"range:{r}", base, new)


@pytest.mark.parametrize("export", EXPORTS, ids=lambda p: p.parent.name)
def test_modules_without_transfers_is_the_same_report(export: Path) -> None:
    """`report modules` analyses no memcpy or memset (a module's GPU time is its kernels'): the same text."""
    full = pipeline.load(export, compact=True)
    lean = pipeline.load(export, compact=True, activity=False)
    assert lean.transfers.empty and lean.data.memcpy.empty and lean.data.memset.empty
    for fmt in ("markdown", "json"):
        assert reports.modules(lean, fmt=fmt) == reports.modules(full, fmt=fmt)


@pytest.mark.parametrize("chunk", [7, 1 << 20])
@pytest.mark.parametrize("export", [DATA / "h200_tiny_step_bf16_a" / "profile.sqlite",
                                    DATA / "h200_small_step_bf16_flash_graphs_node" / "profile.sqlite"],
                         ids=lambda p: p.parent.name)
def test_path_precision_sums_per_pair_as_per_kernel(export: Path, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`report flops` finds each path's precision from time per (path, kernel name), a chunk of
    kernels at a time (a row and a string per kernel and path prefix took 6 GB at 10 M kernels):
    the same table as every kernel's every prefix counted one by one."""
    from profkit.analyze import flops as af
    from profkit.report.flops import fold_paths

    monkeypatch.setattr(af, "PAIR_CHUNK", chunk)
    a = pipeline.load(export, compact=True)
    folded = fold_paths(a.kernels["range_path"])
    expected_paths = a.kernels["range_path"].astype(str).str.replace(r"^step_\d+/", "", regex=True)
    assert folded.astype(str).where(folded.notna()).tolist() == \
        expected_paths.where(a.kernels["range_path"].notna()).tolist()
    k = a.kernels.assign(range_path=folded)
    has = k["range_path"].notna()
    by_pair = k[has].assign(p=k["range_path"][has].astype(str), n=k["name"][has].astype(str)).groupby(["p", "n"])
    assert af._pair_ns(k["range_path"], k["name"], k["dur_ns"]) == {key: int(v) for key, v in
                                                                    by_pair["dur_ns"].sum().items()}
    for graphs in (None, "bf16"):
        rows = []  # one by one: each kernel with a path and a precision, into each prefix of its path
        for path, name, dur in zip(k["range_path"], k["name"].astype(str), k["dur_ns"], strict=True):
            precision = graphs if af.GRAPH_NAME.match(name) else af.kernel_precision(name)
            if pd.isna(path) or precision is None:
                continue
            parts = str(path).split("/")
            rows += [("/".join(parts[:i]), precision, int(dur)) for i in range(1, len(parts) + 1)]
        t = pd.DataFrame(rows, columns=["path", "precision", "dur_ns"]).groupby(["path", "precision"])["dur_ns"].sum()
        best = t.reset_index().sort_values("dur_ns", ascending=False).drop_duplicates("path")
        expected = best[["path", "precision"]].reset_index(drop=True)
        got = af.path_precision(k, graphs=graphs)
        pd.testing.assert_frame_equal(got.sort_values("path").reset_index(drop=True),
                                      expected.sort_values("path").reset_index(drop=True))
        assert len(got) >= 2
