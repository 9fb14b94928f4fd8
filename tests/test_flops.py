"""FLOPs per NVTX path (profkit flops, report flops): counted on the meta device, checked
against FlopCounterMode, seed 002's numbers, FlashAttention's formula and the H100 fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from profkit import analyze, pipeline, ranges  # noqa: E402
from profkit.analyze import flops as af  # noqa: E402
from profkit.cli import cli  # noqa: E402
from profkit.collect import flops as counting  # noqa: E402
from profkit.collect import hooks, workload  # noqa: E402
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


def _fixtures_with_runs() -> list[str]:
    """Every committed capture (an export beside its run.json; a memory snapshot's folder has none)."""
    return sorted(p.parent.name for p in DATA.glob("*/run.json") if any(p.parent.glob("*.sqlite"))) + ["demo"]


@pytest.mark.parametrize("name", _fixtures_with_runs())
def test_no_path_above_its_peak_on_any_fixture(name: str) -> None:
    """A path above its compute peak, or moving its bytes faster than the bandwidth, means a
    FLOP count, a byte count or a time is wrong."""
    a = pipeline.load_demo() if name == "demo" else pipeline.load(DATA / name)
    assert a.run is not None
    if a.run.config.model.startswith("scripts.hf_models"):
        pytest.importorskip("transformers")
    t, s, peak = flops_report.table(a, counting.count(a.run.config))
    timed = t[t["gpu_ns"] > 0]
    assert len(timed) >= 3 and (timed["pct_of_peak"] <= 100).all()
    inclusive = timed["path"].map(lambda p: t.loc[(t["path"] == p) | t["path"].str.startswith(p + "/"),
                                                  "floor_ns"].sum())
    assert (inclusive <= timed["gpu_ns"]).all(), timed.loc[inclusive > timed["gpu_ns"], "path"].tolist()
    assert 0 < s.mfu_exact < 1 and 0 < s.floor_ms < s.step_ms


def test_naive_backward_attention_is_attention() -> None:
    # forward: scores and final matmul, 2·B·H·T²·d each; backward: two matmuls for each (2x forward).
    # The capture has those backward kernels under step_i/backward/layer_k/attention.
    cfg = RunConfig(model="small", mode="fwd_bwd")
    result = counting.count(cfg)
    rows = {r["path"]: r for r in result["paths"]}
    B, H, T, d, L = 4, 12, 256, 64, 12
    fwd = af.flash_attention_flops(B, H, T, d, causal=False)
    for i in range(L):
        assert rows[f"step_0/forward/layer_{i}/attention"]["attention_flops"] == fwd
        assert rows[f"step_0/backward/layer_{i}/attention"]["attention_flops"] == 2 * fwd
    assert result["attention_flops"] == 3 * L * fwd and result["useful_attention_flops"] == 3 * L * fwd // 2
    captured = set(analyze.fold_steps(*(lambda a: (a.ranges, a.kernels))(pipeline.load(DATA / CAPTURES[1])))["path"])
    assert {f"backward/layer_{i}/attention" for i in range(L)} <= captured


@pytest.mark.parametrize("dtype,size", [("fp32", 4), ("bf16", 2), ("fp16", 2)])
def test_bytes_in_the_dtype_autocast_gives(dtype: str, size: int) -> None:
    # tiny: B 2, T 32, C 64. Each of q, k, v: nn.Linear on (B, T, C) is one mm of (B·T, C) by (C, C).
    # fp32: read x and w, write y. Autocast: x and w cast first (read at 4 bytes, written at 2), then the mm.
    B, T, C = 2, 32, 64
    rows = {r["path"]: r for r in counting.count(RunConfig(model="tiny", mode="fwd_bwd", dtype=dtype))["paths"]}
    mm = size * (2 * B * T * C + C * C)
    casts = 0 if dtype == "fp32" else (4 + 2) * (B * T * C + C * C)
    assert rows["step_0/forward/layer_0/attention/qkv_proj"]["bytes"] == 3 * (mm + casts)
    # softmax runs in fp32 under autocast (its fp32 list): the bf16 scores are cast up, read and written at 4
    soft = rows["step_0/forward/layer_0/attention/attn_softmax"]["bytes"]
    n = B * 4 * T * T
    assert soft == 2 * 4 * n if dtype == "fp32" else (size + 4) * n + 2 * 4 * n


def test_autocast_lists_name_autocast_ops() -> None:
    """Every name in the replay's autocast lists has an AutocastCUDA kernel in this torch (the
    Python operators through the ATen op they call)."""
    python_names = {"__matmul__": "matmul", "__rmatmul__": "matmul", "__pow__": "pow", "__rpow__": "pow",
                    "__rtruediv__": "reciprocal", "__rdiv__": "reciprocal",
                    "cross_entropy": "log_softmax"}  # cross_entropy_loss: log_softmax + nll_loss, both fp32
    names = (counting.AUTOCAST_LOWP | counting.AUTOCAST_FP32 | counting.AUTOCAST_FP32_UNLESS_DTYPE
             | counting.AUTOCAST_PROMOTE)
    missing = []
    for name in sorted(names):
        op = python_names.get(name, name)
        packet = getattr(torch.ops.aten, op, None)
        overloads = packet.overloads() if packet is not None else []
        if not any(torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{op}" + (f".{o}" if o != "default" else ""),
                                                                  "AutocastCUDA") for o in overloads):
            missing.append(name)
    assert missing == []


USER_MODELS = ["tests.user_models:make_encoder", "tests.hf_like:causal_lm_with_labels",
               "tests.hf_like:causal_lm_logits"]


@pytest.mark.parametrize("model", USER_MODELS)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_user_models_per_module_path(model: str, dtype: str) -> None:
    cfg = RunConfig(model=model, mode="fwd_bwd", dtype=dtype, nvtx_depth=3, batch_size=2, context_length=16)
    result = counting.count(cfg)
    w = counting._meta_workload(cfg)
    step = workload.make_step(cfg, w, w.model, counting.META)
    with counting.META, FlopCounterMode(display=False) as m:  # the plain count: no ranges, no autocast
        step()
    assert result["total_flops"] == m.get_total_flops() > 0
    # the paths profkit's module hooks push for this model, recorded without counting anything
    hooks.add_module_ranges(w.model, 3)
    stack: list[str] = []
    pushed: set[str] = set()

    def push(name: str) -> None:
        stack.append(name)
        pushed.add("/".join(stack))

    def pop(name: str) -> None:
        del stack[len(stack) - 1 - stack[::-1].index(name)]

    with counting.META, ranges.redirect(push, pop), ranges.phase("step_0"):
        step()
    assert {r["path"] for r in result["paths"]} == pushed
    modules = {p for p, _ in hooks.module_paths(w.model, 3)}
    assert {p.removeprefix("step_0/forward/") for p in pushed if p.startswith("step_0/forward/")} - {"loss"} <= modules


def test_transformers_model() -> None:
    pytest.importorskip("transformers")
    cfg = RunConfig(model="scripts.hf_models:gpt2", mode="fwd_bwd", dtype="bf16", nvtx_depth=2, batch_size=1,
                    context_length=32)
    result = counting.count(cfg)
    w = counting._meta_workload(cfg)
    step = workload.make_step(cfg, w, w.model, counting.META)
    with counting.META, FlopCounterMode(display=False) as m:
        step()
    assert result["total_flops"] == m.get_total_flops() > 0
    assert any(r["path"].startswith("step_0/backward/") and r["flops"] > 0 for r in result["paths"])


def test_floor_gap_table() -> None:
    g = af.floor_gap(4.0, kernel_ns=10.0, busy_ns=11.0, span_ns=13.0, step_ns=14.0)
    assert g["ns"].tolist() == [4.0, 6.0, 1.0, 2.0, 1.0] and list(g["component"]) == list(af.GAP_COMPONENTS)
    assert g["pct_of_step"].sum() == pytest.approx(100)


def test_floor_gap_on_a_fixture(fixtures: dict) -> None:
    a, result = fixtures["h100_small_step_bf16"]
    t, s, _ = flops_report.table(a, result)
    g = flops_report.gap(a, t, s).set_index("component")["ns"]
    assert g.sum() == pytest.approx(s.step_ms * 1e6, rel=1e-12)  # the components make the measured step
    assert g["floor"] == pytest.approx(t["floor_ns"].sum(), rel=1e-12)
    # busy and span per step are `profkit report timeline`'s, all instances added
    r = CliRunner().invoke(cli, ["report", "timeline", str(DATA / "h100_small_step_bf16"), "--format", "json",
                                 "--no-cache"])
    step = next(row for row in json.loads(r.output) if row["name"] == "step")
    n = step["instances"]
    busy = g["floor"] + g["kernels below their roof"] + g["copies, memsets and overlap"]
    assert busy == pytest.approx(step["gpu_busy_ns"] / n, rel=1e-12)
    assert busy + g["GPU idle in its span"] == pytest.approx(step["gpu_span_ns"] / n, rel=1e-12)
    # kernel time: plain SQL over the export, the kernels that start inside a step_i range's GPU work
    ph = af.phase_floors(t).set_index("phase")
    assert set(ph.index) == {"forward", "backward", "optimizer"}
    assert (ph["below_roof_ns"] >= 0).all()


def test_report_md_section_and_pngs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = tmp_path / "cap"
    import shutil

    shutil.copytree(DATA / "h100_small_step_bf16", folder)
    runner = CliRunner()
    assert runner.invoke(cli, ["report", str(folder)]).exit_code == 0
    assert "## FLOPs, the floor and the gap" not in (folder / "report.md").read_text()
    r = runner.invoke(cli, ["flops", "--model", "small", "--mode", "step", "--dtype", "bf16", "--out", str(folder)])
    assert r.exit_code == 0, r.output
    assert runner.invoke(cli, ["report", str(folder), "--force"]).exit_code == 0  # cached report.md is not reused
    text = (folder / "report.md").read_text()
    assert "## FLOPs, the floor and the gap" in text and "| component | ms per step |" in text
    assert "Peak: NVIDIA H100 80GB HBM3, H100 SXM datasheet" in text
    pytest.importorskip("matplotlib")
    png, gap = tmp_path / "roof.png", tmp_path / "gap.png"
    r = runner.invoke(cli, ["report", "flops", str(folder), "--png", str(png), "--waterfall", str(gap)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == gap.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(cli, ["report", "flops", str(folder), "--waterfall", str(gap)])
    assert r.exit_code == 2 and r.output == f"Error: {gap} exists; choose another file\n"


@pytest.mark.parametrize("optimizer", ["adamw", "adamw-fused"])
def test_step_replay_with_the_optimizers_of_older_torch(monkeypatch: pytest.MonkeyPatch, optimizer: str) -> None:
    """torch <= 2.12's AdamW makes its step counters with a bare torch.tensor(0.0) and reads them
    with .item(): under the replay's meta device context that failed on the H200's torch 2.11
    ("Tensor.item() cannot be called on meta tensors"). This AdamW does what those versions did."""
    original = torch.optim.AdamW.step

    def old_step(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        counter = torch.tensor(0.0)  # no device, as torch 2.11's _init_group
        counter.item()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", old_step)
    cfg = RunConfig(model="tiny", mode="step", optimizer=optimizer, dtype="bf16", attn="flash")
    result = counting.count(cfg)
    assert result["total_flops"] == {r["path"]: r for r in result["paths"]}["step_0"]["flops"] > 0


def test_cli_counts_the_runs_knobs() -> None:
    """`profkit flops --grad-accum N --optimizer ...` replays the step the capture ran: N micro-batches."""
    r = CliRunner().invoke(cli, ["flops", "--model", "tiny", "--mode", "step", "--grad-accum", "3",
                                 "--optimizer", "sgd"])
    assert r.exit_code == 0, r.output
    total = json.loads(r.stdout)["total_flops"]
    cfg = RunConfig(model="tiny", mode="step", grad_accum=3, optimizer="sgd")
    assert total == _plain_total(cfg)
    assert total > _plain_total(RunConfig(model="tiny", mode="step", optimizer="sgd"))


def test_fused_adamw_moves_each_tensor_once() -> None:
    """adamw-fused: the optimizer reads parameter, gradient and both moments and writes parameter
    and moments once each (the replay runs the foreach path, which moves about twice that)."""
    from profkit import models

    fused = counting.count(RunConfig(model="tiny", mode="step", optimizer="adamw-fused"))
    foreach = counting.count(RunConfig(model="tiny", mode="step", optimizer="adamw"))
    params = models.build("tiny", attn="naive", device=torch.device("meta")).parameters()
    expected = 7 * sum(p.numel() * p.element_size() for p in params)
    by_path = {r["path"]: r for r in fused["paths"]}
    assert by_path["step_0/optimizer"]["bytes"] == expected
    assert by_path["step_0"]["bytes"] == fused["total_bytes"]
    assert expected < {r["path"]: r for r in foreach["paths"]}["step_0/optimizer"]["bytes"]
    assert fused["total_flops"] == foreach["total_flops"]
    assert fused["total_vector_flops"] == foreach["total_vector_flops"]


def test_tokens_of_a_step_count_every_micro_batch() -> None:
    cfg = RunConfig(model="tiny", mode="fwd_bwd", grad_accum=3)
    assert counting.count(cfg)["tokens"] == 3 * cfg.resolved_batch_size * cfg.resolved_context_length


def test_report_flops_refuses_before_reading_the_export(tmp_path: Path) -> None:
    """No flops.json and no run.json: the FLOPs cannot come from anywhere, so `report flops` says
    so at once instead of reading (here: failing on) the export first."""
    folder = tmp_path / "capture"
    folder.mkdir()
    (folder / "profile.sqlite").write_bytes(b"not an export")
    r = CliRunner().invoke(cli, ["report", "flops", str(folder)])
    assert r.exit_code == 2 and r.stderr.startswith("Error: ") and "flops.json does not exist" in r.stderr
    assert len(r.stderr.splitlines()) == 1
