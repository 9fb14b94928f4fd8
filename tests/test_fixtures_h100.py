"""The H100 captures of `small` (tests/data/h100_small_*, profkit/data): what the reports say
about real exports of profkit's own models, with exact numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from profkit import analyze
from profkit.analyze.categories import triton_fuses
from profkit.cli import cli
from profkit.pipeline import demo_path
from profkit.pipeline import load as analyze_profile

DATA = Path(__file__).parent / "data"
FIXTURES = {
    "h100_small_fwd_fp32": DATA / "h100_small_fwd_fp32" / "profile.sqlite",
    "h100_small_step_fp32": demo_path(),
    "h100_small_step_bf16": DATA / "h100_small_step_bf16" / "profile.sqlite",
    "h100_small_step_bf16_flash": DATA / "h100_small_step_bf16_flash" / "profile.sqlite",
    "h100_small_step_bf16_flash_compile": DATA / "h100_small_step_bf16_flash_compile" / "profile.sqlite",
}
KERNELS = {"h100_small_fwd_fp32": 1176, "h100_small_step_fp32": 3494, "h100_small_step_bf16": 4152,
           "h100_small_step_bf16_flash": 3768, "h100_small_step_bf16_flash_compile": 1468}


@pytest.fixture(scope="module")
def analyses():
    return {name: analyze_profile(path) for name, path in FIXTURES.items()}


def shares(a) -> dict[str, float]:
    return analyze.category_shares(a.kernels).set_index("category")["pct"].round(2).to_dict()


@pytest.mark.parametrize("name", FIXTURES)
def test_every_kernel_attributed_and_categorized(analyses, name: str) -> None:
    a = analyses[name]
    assert len(a.kernels) == KERNELS[name]
    assert a.unattributed_pct == 0.0  # the goal for step captures of the built-in models
    assert shares(a).get("other", 0.0) < 1.0


@pytest.mark.parametrize("name", ["h100_small_step_fp32", "h100_small_step_bf16", "h100_small_step_bf16_flash"])
def test_backward_per_layer_on_the_autograd_thread(analyses, name: str) -> None:
    a = analyses[name]
    r = a.ranges.set_index("path")
    for step in ("step_0", "step_1"):
        layers = [f"{step}/backward/layer_{i}" for i in range(12)]
        assert all(r.loc[p, "grafted"] for p in layers)  # pushed on the autograd thread
        assert all(r.loc[p, "kernels"] > 0 for p in layers)
        assert all(r.loc[f"{p}/attention", "kernels"] > 0 and r.loc[f"{p}/mlp", "kernels"] > 0 for p in layers)
        inside = sum(r.loc[p, "gpu_total_ns"] for p in layers) + r.loc[f"{step}/backward/lm_head", "gpu_total_ns"]
        assert inside / r.loc[f"{step}/backward", "gpu_total_ns"] > 0.9


def test_gemm_share_falls_from_forward_to_full_step(analyses) -> None:
    """Seed 002 (4090D, fp32): 66.4% of forward, 47.3% of a full AdamW step. Here, on an H100:"""
    fwd, step = shares(analyses["h100_small_fwd_fp32"]), shares(analyses["h100_small_step_fp32"])
    assert (fwd["gemm"], step["gemm"]) == (80.81, 70.73)
    assert step["optimizer"] == 13.01 and "optimizer" not in fwd


def test_flash_replaces_the_naive_attention_kernels(analyses) -> None:
    naive, flash = shares(analyses["h100_small_step_bf16"]), shares(analyses["h100_small_step_bf16_flash"])
    assert "attention" not in naive and flash["attention"] == 3.43
    assert naive["softmax"] == 2.47 and flash["softmax"] == 0.71  # the loss's log-softmax stays
    naive_ms = analyses["h100_small_step_bf16"].kernels["dur_ns"].sum() / 2e6
    flash_ms = analyses["h100_small_step_bf16_flash"].kernels["dur_ns"].sum() / 2e6
    assert round(naive_ms, 2) == 12.2 and round(flash_ms, 2) == 11.09  # GPU kernel ms per step


def test_compiled_run_is_triton_and_its_kernels_say_what_they_fuse(analyses) -> None:
    a = analyses["h100_small_step_bf16_flash_compile"]
    assert shares(a)["triton"] == 19.4
    triton = a.kernels.loc[a.kernels["category"] == "triton", "name"].unique()
    assert len(triton) > 10 and all(triton_fuses(n) for n in triton)


def test_demo_report_runs_from_the_package() -> None:
    result = CliRunner().invoke(cli, ["report", "--demo"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("# Demo: CS336 small, one AdamW step per capture step, on an H100\n")
    assert "3,494 kernels" in out and "0.00% of it launched outside every NVTX range" in out
    assert "| gemm |" in out and "| backward |" in out
