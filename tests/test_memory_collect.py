"""The collect side of --memory-snapshot on CPU: the range timeline (backward on another thread,
as on CUDA) and the storages the recorder notes. The snapshot itself is CUDA-only (torch's
allocator history); tests/test_memory_fixture.py checks a real one from the GPU."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from profkit import ranges
from profkit.analyze import memory as mem
from profkit.cli import cli
from profkit.collect import hooks, memory, workload
from profkit.config import RunConfig


def test_recorder_logs_every_threads_ranges_and_the_storages(tmp_path: Path) -> None:
    cfg = RunConfig(model="tiny", mode="step", device="cpu", warmup=0, steps=1, dtype="fp32", out=tmp_path)
    device = torch.device("cpu")
    w = workload.build_workload(cfg, device)
    hooks.add_backward_ranges(w.model)
    opt = torch.optim.AdamW(w.model.parameters(), lr=1e-4)
    inputs, targets = w.make_batch(device)
    rec = memory.Recorder(cfg, w.model, device, tmp_path)
    ranges.set_enabled(False)  # no NVTX: the tap alone must switch the ranges on
    with rec.window():
        rec.step = 0
        with ranges.phase("step_0"):
            with ranges.phase("forward"):
                logits = w.model(inputs)
                loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            with ranges.phase("backward"):  # as CUDA's autograd thread: another thread than the main one
                t = threading.Thread(target=loss.backward)
                t.start()
                t.join()
            with ranges.phase("optimizer"):
                opt.step()
                opt.zero_grad(set_to_none=True)
    ranges.set_enabled(True)
    assert not (tmp_path / "memory.pickle").exists()  # no history on CPU
    log = pd.DataFrame(rec.log, columns=["thread", "kind", "name", "host_ns"])
    assert set(log["thread"]) == {0, 1}
    tree = mem.range_tree(log.assign(time_us=log["host_ns"] // 1000))
    paths = set(tree["path"])
    assert {"step_0/forward/layer_1/attention/attn_softmax", "step_0/backward/layer_1/attention",
            "step_0/backward/layer_0/mlp", "step_0/backward/lm_head", "step_0/optimizer"} <= paths
    backward_roots = tree[(tree["thread"] == 1) & tree["grafted"]]
    assert set(backward_roots["path"].str.rsplit("/", n=1).str[0]) == {"step_0/backward"}
    kinds = pd.DataFrame(rec.tensors, columns=["kind", "step", "address", "bytes", "name"])
    names = [n for n, _ in w.model.named_parameters()]
    assert sorted(kinds.loc[kinds["kind"] == "parameter", "name"]) == sorted(names)
    grads = kinds[(kinds["kind"] == "gradient") & (kinds["step"] == 0)]
    assert sorted(grads["name"]) == sorted(names)  # every gradient, seen once, on the autograd thread
    assert (kinds["kind"] == "saved").sum() > 10
    assert (kinds["kind"] == "optimizer_state").sum() == 3 * len(names)  # step, exp_avg, exp_avg_sq on CPU
    params = {p.untyped_storage().data_ptr() for p in w.model.parameters()}
    assert set(kinds.loc[kinds["kind"] == "parameter", "address"]) == params


def test_memory_snapshot_needs_cuda(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", "--model", "tiny", "--device", "cpu", "--memory-snapshot",
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --memory-snapshot needs a CUDA GPU") and result.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_record_reports_the_cost_against_the_baseline(tmp_path: Path) -> None:
    cfg = RunConfig(model="tiny", device="cpu", memory_snapshot=True, out=tmp_path)
    rec = memory.Recorder(cfg, torch.nn.Linear(2, 2), torch.device("cpu"), tmp_path)
    r = rec.record([10.0, 12.0, 11.0], [10.0, 10.0, 10.0])
    assert r.overhead_pct == pytest.approx(10.0, rel=1e-12)
    assert r.steps_ms_without == [10.0, 10.0, 10.0] and r.stacks == "python"


def test_out_of_memory_in_the_window_is_re_raised_and_named(tmp_path: Path) -> None:
    cfg = RunConfig(model="tiny", device="cpu", memory_snapshot=True, out=tmp_path)
    model = torch.nn.Linear(2, 2)
    rec = memory.Recorder(cfg, model, torch.device("cpu"), tmp_path)
    with pytest.raises(torch.OutOfMemoryError, match="boom"), rec.window():
        raise torch.OutOfMemoryError("boom")
    assert rec.oom and rec._handles == []
    (tmp_path / "memory.pickle").write_bytes(b"")  # where the GPU run dumps the history
    message = workload._out_of_memory(cfg, torch.device("cuda"), "CUDA out of memory. Tried to allocate 2.00 GiB")
    assert message.endswith(f"(profkit report memory {tmp_path / 'memory.pickle'} says what filled it)")
