"""`profkit run`'s knobs for the seeds and the floor: --grad-accum, --optimizer, --compile-mode."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from profkit.cli import cli
from profkit.collect import workload
from profkit.config import RunConfig
from tests.conftest import read_run

CPU = torch.device("cpu")


@pytest.mark.parametrize("kwargs,message", [
    ({"mode": "fwd", "grad_accum": 2}, "grad-accum needs mode fwd_bwd or step (a forward alone accumulates no "
                                       "gradients)"),
    ({"grad_accum": 0}, "grad-accum must be at least 1, got 0"),
    ({"mode": "fwd_bwd", "optimizer": "sgd"}, "optimizer 'sgd' needs mode step (only a step runs the optimizer)"),
    ({"mode": "step", "optimizer": "lion"}, "unknown optimizer 'lion'; choose from adamw, adamw-fused, sgd"),
    ({"compile_mode": "max-autotune"}, "compile mode 'max-autotune' needs --compile"),
    ({"compile": True, "compile_mode": "fast"}, "unknown compile mode 'fast'; choose from default, reduce-overhead, "
                                                "max-autotune"),
])
def test_knobs_that_cannot_apply_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as e:
        RunConfig(**kwargs)
    assert str(e.value) == message


def test_cli_refuses_in_one_line() -> None:
    r = CliRunner().invoke(cli, ["run", "--model", "tiny", "--mode", "fwd", "--grad-accum", "3", "--device", "cpu"])
    assert r.exit_code == 2
    assert r.output == "Error: grad-accum needs mode fwd_bwd or step (a forward alone accumulates no gradients)\n"


def test_knobs_round_trip_through_run_json_and_args() -> None:
    cfg = RunConfig(model="nanogpt", mode="step", compile=True, compile_mode="reduce-overhead", grad_accum=5,
                    optimizer="adamw-fused")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_args() == ["--model", "nanogpt", "--mode", "step", "--compile", "--compile-mode", "reduce-overhead",
                             "--grad-accum", "5", "--optimizer", "adamw-fused"]


def test_optimizers() -> None:
    model = torch.nn.Linear(4, 4)
    sgd = workload.make_optimizer(RunConfig(mode="step", optimizer="sgd"), model, CPU)
    adamw = workload.make_optimizer(RunConfig(mode="step"), model, CPU)
    fused = workload.make_optimizer(RunConfig(mode="step", optimizer="adamw-fused"), model, CPU)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["weight_decay"] == 1e-2  # seed 000's
    assert adamw.defaults["fused"] is None and fused.defaults["fused"] is True
    meta = workload.make_optimizer(RunConfig(mode="step", optimizer="adamw-fused"), model, torch.device("meta"))
    assert meta.defaults["fused"] is None  # no fused kernel on meta: profkit flops' replay counts foreach


def _grads(grad_accum: int) -> dict[str, torch.Tensor]:
    cfg = RunConfig(model="tiny", mode="fwd_bwd", grad_accum=grad_accum, device="cpu")
    w = workload.build_workload(cfg, CPU)
    marks: list[int] = []
    workload.make_step(cfg, w, w.model, CPU, micro=marks.append)()
    assert marks == list(range(grad_accum + 1))  # before each micro-batch, and after the last backward
    return {n: p.grad.clone() for n, p in w.model.named_parameters() if p.grad is not None}


def test_accumulated_gradients_are_the_mean_over_micro_batches() -> None:
    # Every micro-batch sees the same tokens, so the mean of N equal losses has the one batch's gradient.
    one, three = _grads(1), _grads(3)
    assert one.keys() == three.keys() and len(one) > 10
    for name in one:
        torch.testing.assert_close(three[name], one[name], rtol=1e-5, atol=1e-6, msg=name)


def test_run_records_every_micro_batch(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["run", "--model", "tiny", "--mode", "step", "--grad-accum", "3", "--optimizer",
                                 "sgd", "--device", "cpu", "--warmup", "1", "--steps", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    run = read_run(tmp_path)
    assert run["config"]["grad_accum"] == 3 and run["config"]["optimizer"] == "sgd"
    assert run["resolved"]["tokens_per_step"] == 2 * 32 * 3
    micro = run["micro_batch_ms"]
    assert len(micro) == 6 and all(t > 0 for t in micro)
    for step, parts in zip(run["steps_ms"], (micro[:3], micro[3:]), strict=True):
        assert sum(parts) <= step  # the micro-batches lie inside their step, the optimizer after them
    assert f"{statistics.median(micro):.2f}" in r.output and "× 3 micro-batches · sgd" in r.output


def test_label_names_the_knobs() -> None:
    cfg = dataclasses.replace(RunConfig(mode="step"), grad_accum=2)
    assert cfg.label == "small-step-fp32-naive-accum2" and RunConfig().label == "small-fwd_bwd-fp32-naive"
