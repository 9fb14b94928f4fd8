"""FLOPs per NVTX path (profkit flops, report flops): counted on the meta device, checked
against FlopCounterMode, seed 002's numbers, FlashAttention's formula and the H100 fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from profkit import analyze, pipeline  # noqa: E402
from profkit.analyze import flops as af  # noqa: E402
from profkit.cli import cli  # noqa: E402
from profkit.collect import flops as counting  # noqa: E402
from profkit.collect import workload  # noqa: E402
from profkit.config import RunConfig  # noqa: E402
from profkit.report import flops as flops_report  # noqa: E402

DATA = Path(__file__).parent / "data"
CAPTURES = ["h100_small_fwd_fp32", "h100_small_step_bf16", "h100_small_step_bf16_flash"]


def _plain_total(cfg: RunConfig) -> int:
    """FlopCounterMode's own total for one step of cfg on meta, without profkit's paths."""
    w = counting._meta_workload(cfg)
    step = workload.make_step(cfg, w, w.model, counting.META)
    with FlopCounterMode(display=False) as m:
        step()
    return int(m.get_total_flops())


@pytest.mark.parametrize("model,mode,attn", [("tiny", "fwd", "naive"), ("tiny", "fwd_bwd", "naive"),
                                             ("tiny", "step", "naive"), ("tiny", "fwd_bwd", "flash"),
                                             ("small", "fwd", "naive"), ("small", "fwd_bwd", "naive"),
                                             ("small", "step", "naive")])
def test_total_equals_flop_counter_mode(model: str, mode: str, attn: str) -> None:
    cfg = RunConfig(model=model, mode=mode, attn=attn, dtype="bf16" if attn == "flash" else "fp32")
    result = counting.count(cfg)
    if attn == "naive":  # the fused ops are profkit's substitution; FlopCounterMode alone takes SDPA's math path
        assert result["total_flops"] == _plain_total(cfg)
    top = {r["path"]: r for r in result["paths"]}["step_0"]
    assert top["flops"] == result["total_flops"]
    assert top["bytes"] == result["total_bytes"] and top["vector_flops"] == result["total_vector_flops"]


def test_seed_002_shapes() -> None:
    # seed 002: batch 8, 12 heads, T 256, d 64; scores with the scaling, softmax at 3 per element, final matmul
    cfg = RunConfig(model="small", mode="fwd", batch_size=8)
    rows = {r["path"]: r for r in counting.count(cfg)["paths"]}
    att = "step_0/forward/layer_0/attention/"
    scores = rows[att + "attn_scores"]
    scale = 8 * 12 * 256 * 256  # one multiply per score: the vector column (the mask fill adds one more)
    assert scores["flops"] + scale == 811_597_824
    assert rows[att + "attn_softmax"]["vector_flops"] == 18_874_368
    assert rows[att + "attn_final_matmul"]["flops"] == 805_306_368


def test_flash_attention_formula() -> None:
    fwd = 4 * 8 * 12 * 256**2 * 64
    assert af.flash_attention_flops(8, 12, 256, 64, causal=False) == fwd
    assert af.flash_attention_flops(8, 12, 256, 64, causal=True) == fwd / 2
    assert af.flash_attention_flops(8, 12, 256, 64, causal=True, mode="bwd") == 2.5 * fwd / 2
    # FlopCounterMode counts causal SDPA in full: executed, not useful, FLOPs
    q = torch.empty(8, 12, 256, 64, device="meta")
    with FlopCounterMode(display=False) as m:
        torch.ops.aten._scaled_dot_product_flash_attention(q, q, q, 0.0, True)
    assert m.get_total_flops() == fwd


@pytest.fixture(scope="module")
def fixtures() -> dict[str, tuple[pipeline.Analysis, dict]]:
    out = {}
    for name in CAPTURES:
        a = pipeline.load(DATA / name)
        assert a.run is not None
        out[name] = (a, counting.count(a.run.config))
    return out


@pytest.mark.parametrize("name", CAPTURES)
def test_paths_equal_capture(fixtures: dict, name: str) -> None:
    a, result = fixtures[name]
    counted = {r["path"].removeprefix("step_0/") for r in result["paths"] if r["path"].startswith("step_0/")}
    captured = set(analyze.fold_steps(a.ranges, a.kernels)["path"])
    assert counted == captured


@pytest.mark.parametrize("name", CAPTURES)
def test_no_path_above_peak(fixtures: dict, name: str) -> None:
    a, result = fixtures[name]
    t, s, _ = flops_report.table(a, result)
    assert (t["pct_of_peak"].dropna() <= 100).all()
    assert 0 < s.mfu_exact < 1 and 0 < s.floor_ms < s.step_ms


def test_json_contract(tmp_path: Path, fixtures: dict) -> None:
    a, result = fixtures["h100_small_step_bf16"]
    rows = json.loads(flops_report.report(a, result, fmt="json"))
    assert list(rows[0]) == flops_report.KEYS
    r = CliRunner().invoke(cli, ["flops", "--model", "tiny", "--mode", "fwd"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert {"total_flops", "total_vector_flops", "total_bytes", "paths"} <= set(data)
    assert set(data["paths"][0]) >= {"path", "flops", "vector_flops", "bytes"}
    r = CliRunner().invoke(cli, ["flops", "--model", "tiny", "--mode", "fwd", "--out", str(tmp_path)])
    assert r.exit_code == 0 and json.loads((tmp_path / "flops.json").read_text())["total_flops"] > 0


def test_kernel_precision() -> None:
    assert af.kernel_precision("ampere_sgemm_128x64_tn") == "fp32"
    assert af.kernel_precision("sm80_xmma_gemm_f32f32_tf32f32_f32_nn_n_tilesize128x128x16") == "tf32"
    assert af.kernel_precision("nvjet_sm90_tst_192x96_64x5_1x2_h_bz_NTT") == "bf16"
    assert af.peak_for("NVIDIA H200", measured=True).bf16 == 772e12


def test_bad_input() -> None:
    r = CliRunner().invoke(cli, ["flops", "--model", "nope"])
    assert r.exit_code == 2 and r.output.startswith("Error: unknown model 'nope'") and r.output.count("\n") == 1
    r = CliRunner().invoke(cli, ["flops", "--model", "tiny", "--mode", "fly"])
    assert r.exit_code == 2 and r.output.startswith("Error:")


def test_missing_flops_json(tmp_path: Path) -> None:
    with pytest.raises(flops_report.FlopsMissing, match="profkit flops"):
        flops_report.read_flops(tmp_path)
