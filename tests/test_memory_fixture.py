"""A real memory snapshot from the H200 (tests/data/h200_memory_tiny_step, made by
scripts/gpu_issue11.sh): profkit's replayed peak against torch's own max_memory_allocated over the
same window, and against an independent replay (tests/allocator_model.py choosing every block
itself from the requests, checked against the addresses the GPU's allocator gave)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profkit import layout
from profkit.analyze import memory as mem
from profkit.report import memory as memory_report
from profkit.snapshot import load_pickle, read
from tests.allocator_model import Model

FIXTURE = Path(__file__).parent / "data" / "h200_memory_tiny_step"
pytestmark = pytest.mark.skipif(
    not (FIXTURE / layout.MEMORY_SNAPSHOT).is_file(),
    reason="the GPU fixture tests/data/h200_memory_tiny_step is not committed yet: bash scripts/gpu_issue11.sh OUTDIR "
           "on the GPU machine writes it to OUTDIR/fixture/h200_memory_tiny_step (memory.pickle, memory.json, "
           "run.json, README.md); copy that folder into tests/data/")


@pytest.fixture(scope="module")
def run() -> layout.RunRecord:
    return layout.RunRecord.read(FIXTURE)


@pytest.fixture(scope="module")
def analysis() -> mem.MemoryAnalysis:
    return memory_report.analyze(read(FIXTURE / layout.MEMORY_SNAPSHOT))


def test_the_replayed_peak_is_torchs_max_memory_allocated(run: layout.RunRecord, analysis: mem.MemoryAnalysis) -> None:
    assert analysis.replay.exact and analysis.replay.notes == []
    assert run.peak_memory_bytes is not None and run.memory is not None
    assert analysis.replay.peak_allocated_bytes == run.peak_memory_bytes
    assert analysis.replay.peak_reserved_bytes == run.memory.peak_reserved_bytes
    assert analysis.replay.start_allocated_bytes == run.memory.start_allocated_bytes


def test_an_independent_replay_agrees(run: layout.RunRecord) -> None:
    side = json.loads((FIXTURE / layout.MEMORY_SIDECAR).read_text())
    trace = load_pickle(FIXTURE / layout.MEMORY_SNAPSHOT)["device_traces"][side["device"]]
    model = Model.from_segments(side["start"]["segments"])
    assert model.allocated == run.memory.start_allocated_bytes  # type: ignore[union-attr]
    model.drive(trace)  # raises where the model's best fit differs from the GPU's choice
    assert model.peak == run.peak_memory_bytes
    requested = [e["size"] for e in trace if e["action"] == "alloc"]
    assert len(requested) > 50


def test_every_allocation_is_inside_the_step_and_backward_is_placed(analysis: mem.MemoryAnalysis) -> None:
    assert analysis.clock == "snapshot"  # torch's own annotation times matched profkit's range log
    ev = analysis.replay.events
    placed = analysis.paths[ev["action"] == "alloc"]
    assert (placed != mem.OUTSIDE).all()
    assert placed.str.startswith("step_0/backward/layer_").any()  # made on the autograd thread
    assert placed.str.startswith("step_0/forward/layer_").any() and placed.str.startswith("step_0/optimizer").any()


def test_categories_hold_the_parameters_and_the_peak(run: layout.RunRecord, analysis: mem.MemoryAnalysis) -> None:
    cats = mem.at_peak(analysis, "category").set_index("category")["bytes"]
    assert int(cats.sum()) == run.peak_memory_bytes
    data = read(FIXTURE / layout.MEMORY_SNAPSHOT)
    start = data.start_blocks
    assert start is not None
    params = set(data.tensors.loc[data.tensors["kind"].isin(["parameter", "buffer"]), "address"])
    assert int(cats["parameters"]) == int(start.loc[start["address"].isin(params), "size"].sum())
    assert cats.get("optimizer_state", 0) > 0
