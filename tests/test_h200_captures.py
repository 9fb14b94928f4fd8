"""What the H200 captures show (tests/data/h200_*): categories hold on every attention backend,
and a real transformers Llama gets backward time in every module, the numbers checked against SQL.

tests/data/h200_kernel_names.jsonl holds, for each capture of scripts/gpu_issue9.sh, every kernel
name with its instances and total time, read from the export with plain SQL on the GPU machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from profkit import analyze, pipeline
from profkit.cli import cli
from tests.test_against_sql import RANGES, launched_in, query

DATA = Path(__file__).parent / "data"
NAMES = [json.loads(line) for line in (DATA / "h200_kernel_names.jsonl").read_text().splitlines()]
LLAMA = DATA / "h200_llama_step_bf16"


def test_the_sweep_covers_every_backend_both_dtypes_and_compile() -> None:
    configs = {(c["config"]["attn"], c["config"]["dtype"], c["config"]["mode"], c["config"]["compile"])
               for c in NAMES if c["config"]["model"] == "small"}
    for attn in ("naive", "math", "flash", "efficient", "cudnn"):
        assert (attn, "bf16", "step", False) in configs and (attn, "bf16", "fwd", False) in configs
    for attn in ("naive", "math", "efficient"):  # flash and cuDNN have no fp32 kernels
        assert (attn, "fp32", "step", False) in configs
    assert any(compiled for *_, compiled in configs)
    assert {c["config"]["model"] for c in NAMES} >= {"small", "scripts.hf_models:llama", "scripts.hf_models:gpt2"}


@pytest.mark.parametrize("capture", NAMES, ids=[c["capture"] for c in NAMES])
def test_other_stays_under_one_percent(capture: dict) -> None:
    rules = analyze.load_rules()
    names = pd.Series([k[0] for k in capture["kernels"]])
    cats = analyze.categorize(names, rules).tolist()
    total = sum(t for _, _, t in capture["kernels"])
    other = [(n, t) for (n, _, t), c in zip(capture["kernels"], cats, strict=True) if c == "other"]
    assert 100 * sum(t for _, t in other) / total < 1.0, other


def modules_json() -> dict[str, dict]:
    result = CliRunner().invoke(cli, ["report", "modules", str(LLAMA), "--format", "json"])
    assert result.exit_code == 0, result.output
    return {r["module"]: r for r in json.loads(result.stdout)}


def test_llama_every_module_gets_backward_time_and_children_fit_their_parent() -> None:
    rows = modules_json()
    layers = {m for m in rows if re.fullmatch(r"model/layers\.\d+", m)}
    assert len(layers) == 8
    for layer in layers:
        for part in ("self_attn", "mlp", "input_layernorm", "post_attention_layernorm", "self_attn/q_proj",
                     "self_attn/k_proj", "self_attn/v_proj", "self_attn/o_proj", "mlp/gate_proj", "mlp/up_proj",
                     "mlp/down_proj"):
            assert rows[f"{layer}/{part}"]["bwd_gpu_ns"] > 0, f"{layer}/{part}"
    assert rows["model/embed_tokens"]["bwd_gpu_ns"] > 0 and rows["model/rotary_emb"]["bwd_gpu_ns"] == 0
    for module, r in rows.items():
        children = [c for m, c in rows.items() if m.rpartition("/")[0] == module]
        for key in ("fwd_gpu_ns", "bwd_gpu_ns"):
            assert sum(c[key] for c in children) <= r[key] * (1 + 1e-12), (module, key)


def test_llama_backward_of_the_first_attention_equals_sql() -> None:
    """Backward runs last layer first, so in each step's backward the last `self_attn` range the
    autograd thread opens is layers.0's: the kernels launched while it was open, by SQL."""
    export = LLAMA / "profile.sqlite"
    steps = query(export, RANGES + " SELECT start, end, tid FROM r WHERE name GLOB 'step_[0-9]*'")
    total = 0
    for start, end, tid in steps:
        (b_start, b_end), = query(export, RANGES + " SELECT start, end FROM r WHERE name = 'backward' AND tid = ? "
                                                   "AND start >= ? AND end <= ?", (tid, start, end))
        attn = query(export, RANGES + " SELECT start, end, tid FROM r WHERE name = 'self_attn' AND tid != ? "
                                      "AND start >= ? AND end <= ? ORDER BY start DESC LIMIT 1", (tid, b_start, b_end))
        total += launched_in(export, *attn[0])[1]
    assert total > 0
    assert modules_json()["model/layers.0/self_attn"]["bwd_gpu_ns"] == total / len(steps)


def test_llama_report_suggests_only_what_the_capture_shows() -> None:
    a = pipeline.load(LLAMA)
    t = analyze.timeline(a.ranges, a.activity())
    assert t.set_index("name").loc["step", "verdict"] == "launch-bound"
    tries = analyze.what_to_try(t, a.kernels, attn="naive", builtin=False, peak_bytes=a.run.peak_memory_bytes,
                                gpu_bytes=a.run.environment.gpu_memory_bytes)
    assert any(s.startswith("CUDA graphs or `torch.compile`") for s in tries)
    # Its softmax kernels are the loss's log-softmax over the vocabulary, not attention: no backend advice.
    assert not any("SDPA backend" in s for s in tries)
