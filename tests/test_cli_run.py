"""`profkit run` through the CLI on CPU: the three modes, run.json, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from profkit.cli import cli
from tests.conftest import TESTS, read_run

RUN_KEYS = {"version", "config", "resolved", "environment", "steps_ms", "micro_batch_ms", "summary", "first_step_ms",
            "compile_s",
            "peak_memory_bytes", "resident_memory_bytes", "memory"}


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd", "step"])
def test_tiny_runs_each_mode_and_writes_run_json(tmp_path: Path, mode: str) -> None:
    out = tmp_path / mode
    result = invoke("run", "--model", "tiny", "--mode", mode, "--device", "cpu", "--warmup", "1",
                    "--steps", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    run = read_run(out)
    assert set(run) == RUN_KEYS
    assert run["config"]["mode"] == mode and run["config"]["model"] == "tiny"
    assert run["resolved"] == {"device": "cpu", "batch_size": 2, "context_length": 32, "tokens_per_step": 64,
                               "params": 196_928, "timer": "host_clock", "nvtx": False, "nvtx_in_model": False,
                               "rank": None, "local_rank": None, "world_size": 1, "backend": None}  # one process
    assert len(run["steps_ms"]) == 3 and all(t > 0 for t in run["steps_ms"])
    s = run["summary"]
    assert s["min_ms"] <= s["median_ms"] <= s["max_ms"] and s["min_ms"] <= s["mean_ms"] <= s["max_ms"]
    assert s["tokens_per_s"] == pytest.approx(64 / (s["mean_ms"] / 1e3))
    assert run["environment"]["torch"].startswith("2.") and run["environment"]["gpu"] is None
    assert "ms/step (mean ± std)" in result.stdout and "tokens/s" in result.stdout
    # Brackets are text, not rich markup: the label and the [min, max] values both print.
    assert "ms/step median [min, max]" in result.stdout
    assert f"[{s['min_ms']:.2f}, {s['max_ms']:.2f}]" in result.stdout
    # stdout is not a terminal here: plain progress lines, one when each phase starts.
    assert f"tiny-{mode}-fp32-naive: warmup step 1/1\n" in result.stdout
    assert f"tiny-{mode}-fp32-naive: measure step 1/3\n" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("dtype,attn", [("bf16", "naive"), ("fp16", "naive"), ("fp32", "math")])
def test_mixed_precision_and_math_step_on_cpu(tmp_path: Path, dtype: str, attn: str) -> None:
    result = invoke("run", "--model", "tiny", "--mode", "step", "--dtype", dtype, "--attn", attn, "--device", "cpu",
                    "--warmup", "1", "--steps", "2", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert read_run(tmp_path)["config"]["dtype"] == dtype


def test_never_overwrites_run_json_without_force(tmp_path: Path) -> None:
    args = ["run", "--model", "tiny", "--device", "cpu", "--warmup", "0", "--steps", "1", "--out", str(tmp_path)]
    (tmp_path / "run.json").write_text('{"mine": 1}')
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {tmp_path / 'run.json'} exists; choose another --out "
                             "or pass --force to overwrite it\n")
    assert json.loads((tmp_path / "run.json").read_text()) == {"mine": 1}
    assert invoke(*args, "--force").exit_code == 0
    assert "steps_ms" in read_run(tmp_path)


def test_user_model_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    result = invoke("run", "--model", "user_models:make_encoder", "--mode", "step", "--device", "cpu",
                    "--batch-size", "2", "--context-length", "16", "--warmup", "1", "--steps", "2",
                    "--nvtx-depth", "3", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    run = read_run(tmp_path)
    assert run["resolved"]["tokens_per_step"] == 32
    assert run["resolved"]["params"] == 97 * 32 + 2 * 8_544 + 32 * 97 + 97  # embed, 2 encoder layers, head


def test_compiled_run_reports_first_step_and_compile_time(tmp_path: Path) -> None:
    result = invoke("run", "--model", "tiny", "--mode", "fwd_bwd", "--compile", "--device", "cpu",
                    "--warmup", "2", "--steps", "2", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    run = read_run(tmp_path)
    assert run["compile_s"] > 0
    assert run["first_step_ms"] > run["summary"]["max_ms"]  # compilation happens in the first step


@pytest.mark.parametrize("args,message", [
    (["--model", "huge"], "Error: unknown model 'huge'; choose from tiny, small, medium, large, xl, 2.7B, "
                          "cs336-2026-xl, cs336-2026-10b, nanogpt or give package.module:factory"),
    (["--mode", "train"], "Error: unknown mode 'train'; choose from fwd, fwd_bwd, step"),
    (["--attn", "sparse"],
     "Error: unknown attention backend 'sparse'; choose from naive, math, flash, efficient, cudnn"),
    (["--dtype", "fp8"], "Error: unknown dtype 'fp8'; choose from fp32, bf16, fp16"),
    (["--device", "tpu"], "Error: unknown device 'tpu'; choose from cuda, cpu"),
    (["--attn", "flash", "--device", "cpu"],
     "Error: attention backend 'flash' is a CUDA kernel and the device is cpu; use --attn naive or math"),
    (["--attn", "cudnn", "--device", "cpu"],
     "Error: attention backend 'cudnn' is a CUDA kernel and the device is cpu; use --attn naive or math"),
    (["--context-length", "129"], "Error: context length 129 is longer than model 'tiny' allows (128)"),
    (["--steps", "0"], "Error: steps must be at least 1, got 0"),
    (["--nvtx", "yes"], "Error: unknown nvtx setting 'yes'; choose from auto, on, off"),
    (["--batch-size", "two"], "Error: Invalid value for '--batch-size': 'two' is not a valid integer."),
    (["--model", "no_such_pkg:f"], "Error: cannot import 'no_such_pkg' for --model no_such_pkg:f: "
                                   "No module named 'no_such_pkg'"),
    (["--model", "user_models:nothing"],
     "Error: 'user_models' has no callable 'nothing' for --model user_models:nothing"),
    (["--model", "user_models:not_a_factory"],
     "Error: --model user_models:not_a_factory: the factory must return (nn.Module, make_batch); see README"),
])
def test_bad_options_give_one_error_line(tmp_path: Path, args: list[str], message: str) -> None:
    base = ["--model", "tiny", "--device", "cpu", "--warmup", "0", "--steps", "1", "--out", str(tmp_path / "o")]
    proc = subprocess.run([sys.executable, "-m", "profkit", "run", *base, *args], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent}"})
    assert proc.returncode == 2
    assert proc.stderr == message + "\n"
    assert "Traceback" not in proc.stdout
    assert not (tmp_path / "o").exists()  # nothing written


def test_cuda_asked_for_without_gpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = invoke("run", "--model", "tiny", "--device", "cuda", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert result.stderr == "Error: device cuda was asked for but torch sees no CUDA GPU; use --device cpu\n"
