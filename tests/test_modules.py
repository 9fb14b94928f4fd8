"""`profkit report modules`: forward against backward per module, per measured step."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from profkit import analyze, pipeline
from profkit.cli import cli
from tests.conftest import ENCODER, TESTS, export_variant

STEP_BF16 = TESTS / "data" / "h100_small_step_bf16"


def frame(rows: list[tuple[str, int, int, int]], seq: bool = False) -> pd.DataFrame:
    """Ranges as project() gives them: (path, start_ns, gpu_total_ns, kernels)."""
    f = pd.DataFrame(rows, columns=["path", "start_ns", "gpu_total_ns", "kernels"])
    f = f.assign(name=f["path"].str.rsplit("/", n=1).str[-1], depth=f["path"].str.count("/"))
    return f.assign(seq=pd.array([4211 if "aten::" in p else pd.NA for p in f["path"]], dtype="Int64")) if seq else f


@dataclass
class TC:
    id: str
    ranges: list[tuple[str, int, int, int]]
    expected: list[tuple[str, float, float, float, float, float]]  # module, fwd, bwd, ratio, step %, kernels


CASES = [
    TC("one step", [("step_0", 0, 100, 10), ("step_0/forward", 1, 30, 3), ("step_0/forward/layer_0", 2, 20, 2),
                    ("step_0/backward", 50, 70, 7), ("step_0/backward/layer_0", 51, 40, 4)],
       [("layer_0", 20, 40, 2.0, 60.0, 6)]),
    TC("mean over two steps, warm-up left out",
       [("warmup", 0, 999, 99), ("warmup/forward/layer_0", 1, 999, 99),
        ("step_0", 10, 100, 10), ("step_0/forward/layer_0", 11, 20, 2), ("step_0/backward/layer_0", 15, 40, 4),
        ("step_1", 20, 300, 30), ("step_1/forward/layer_0", 21, 40, 4), ("step_1/backward/layer_0", 25, 60, 6)],
       [("layer_0", 30, 50, 50 / 30, 40.0, 8)]),
    TC("a module called twice a step adds up; nested paths are rows of their own",
       [("step_0", 0, 200, 20), ("step_0/forward/act", 1, 10, 1), ("step_0/forward/act", 2, 10, 1),
        ("step_0/forward/mlp", 3, 30, 3), ("step_0/forward/mlp/up", 4, 20, 2),
        ("step_0/backward/mlp", 10, 60, 6), ("step_0/backward/mlp/up", 11, 40, 4),
        ("step_0/backward/act", 20, 20, 2), ("step_0/backward/act", 21, 20, 2)],
       [("act", 20, 40, 2.0, 30.0, 6), ("mlp", 30, 60, 2.0, 45.0, 9), ("mlp/up", 20, 40, 2.0, 30.0, 6)]),
    TC("forward only, backward only (after), ops and phases left out",
       [("step_0", 0, 100, 10), ("step_0/forward", 1, 50, 5), ("step_0/forward/loss", 2, 10, 1),
        ("step_0/forward/loss/aten::mm", 3, 10, 1), ("step_0/backward/extra", 10, 25, 2),
        ("step_0/optimizer", 20, 25, 2)],
       [("loss", 10, 0, 0.0, 10.0, 1), ("extra", 0, 25, np.nan, 25.0, 2)]),
    TC("no step ranges: no rows", [("forward", 0, 10, 1), ("forward/layer_0", 1, 5, 1)], []),
]


@pytest.mark.parametrize("tc", CASES, ids=[c.id for c in CASES])
def test_module_table(tc: TC) -> None:
    table = analyze.module_table(frame(tc.ranges, seq=True))
    assert list(table.columns) == ["module", "fwd_gpu_ns", "bwd_gpu_ns", "bwd_fwd_ratio", "step_pct", "kernels"]
    got = [tuple(r) for r in table.itertuples(index=False)]
    assert len(got) == len(tc.expected)
    for g, e in zip(got, tc.expected, strict=True):
        assert g[0] == e[0]
        np.testing.assert_allclose(np.array(g[1:], dtype=float), np.array(e[1:], dtype=float), rtol=1e-12)


def test_module_table_needs_columns() -> None:
    with pytest.raises(TypeError, match="ranges lacks columns"):
        analyze.module_table(pd.DataFrame({"path": []}))


@pytest.fixture(scope="module")
def step_bf16() -> pipeline.Analysis:
    return pipeline.load(STEP_BF16)


def test_fixture_numbers_match_direct_sums(step_bf16: pipeline.Analysis) -> None:
    """Each row against the kernels launched under its paths, summed directly from the kernels."""
    table = analyze.module_table(step_bf16.ranges).set_index("module")
    k = step_bf16.kernels
    path = k["range_path"].fillna("")
    steps = 2
    step_ns = k.loc[path.str.match(r"step_\d+(/|$)"), "dur_ns"].sum() / steps
    for module in ["layer_0", "layer_0/attention", "layer_11/mlp", "lm_head", "embed"]:
        fwd = path.str.fullmatch(rf"step_\d+/forward/{module}(/.*)?")
        bwd = path.str.fullmatch(rf"step_\d+/backward/{module}(/.*)?")
        row = table.loc[module]
        assert row["fwd_gpu_ns"] == k.loc[fwd, "dur_ns"].sum() / steps
        assert row["bwd_gpu_ns"] == k.loc[bwd, "dur_ns"].sum() / steps
        assert row["kernels"] == (fwd.sum() + bwd.sum()) / steps
        assert row["step_pct"] == pytest.approx(100 * (row["fwd_gpu_ns"] + row["bwd_gpu_ns"]) / step_ns, rel=1e-12)
    assert table.loc["layer_0", ["fwd_gpu_ns", "bwd_gpu_ns", "kernels"]].tolist() == [245_348.0, 418_101.0, 165.0]
    assert len(table) == 136 and list(table.index[:3]) == ["embed", "layer_0", "layer_0/attn_norm"]
    assert table.loc["layer_0/attention", "bwd_fwd_ratio"] == pytest.approx(208_419.0 / 142_402.0)


def test_fixture_children_never_exceed_their_parent(step_bf16: pipeline.Analysis) -> None:
    table = analyze.module_table(step_bf16.ranges).set_index("module")
    parent = pd.Series([m.rpartition("/")[0] for m in table.index], index=table.index)
    has_parent = parent.isin(table.index)
    children = table[has_parent].groupby(parent[has_parent])[["fwd_gpu_ns", "bwd_gpu_ns"]].sum()
    assert len(children) > 10
    for col in ("fwd_gpu_ns", "bwd_gpu_ns"):
        assert (children[col] <= table.loc[children.index, col]).all(), col
    assert (table.loc[[f"layer_{i}" for i in range(12)], "bwd_gpu_ns"] > 0).all()


def test_report_modules_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "modules", str(STEP_BF16), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert set(rows[0]) == {"module", "fwd_gpu_ns", "bwd_gpu_ns", "bwd_fwd_ratio", "step_pct", "kernels"}
    assert next(r for r in rows if r["module"] == "layer_0")["bwd_gpu_ns"] == 418_101.0
    md = CliRunner().invoke(cli, ["report", "modules", str(STEP_BF16)]).stdout
    assert md.splitlines()[0] == "| module | fwd GPU ms | bwd GPU ms | bwd/fwd | step % | kernels |"
    assert "| layer_0 | 0.245 | 0.418 | 1.70 | 5.4 | 165.0 |" in md


def test_report_md_has_the_modules_section(step_bf16: pipeline.Analysis) -> None:
    from profkit.report import capture_markdown

    text = capture_markdown(step_bf16, title="t")
    assert "## Modules: forward against backward (mean per measured step)" in text
    assert "| layer_0/attention | 0.142 | 0.208 | 1.46 | 2.9 | 97.0 |" in text


def test_report_modules_needs_kernels(tmp_path: Path) -> None:
    variant = export_variant(tmp_path, "DROP TABLE CUPTI_ACTIVITY_KIND_KERNEL", source=ENCODER)
    result = CliRunner().invoke(cli, ["report", "modules", str(variant)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {variant} has no kernels table: nsys recorded no CUDA kernels")
