"""GPU tier: transformers' GPT-2 and Llama under `profkit profile`, backward ranges per module.

Every ranged module with parameters must get backward GPU time > 0 (the kernels of its
backward land in its own range, on autograd's device thread), and children never add up to
more than their parent. Needs CUDA, nsys and transformers; skipped elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from profkit import analyze, pipeline  # noqa: E402
from profkit.cli import cli  # noqa: E402
from profkit.collect.hooks import module_paths  # noqa: E402
from profkit.nsys import NsysNotFound, find_nsys  # noqa: E402


def _nsys() -> str | None:
    try:
        return str(find_nsys().path)
    except NsysNotFound:
        return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available() or _nsys() is None,
                                                  reason="needs a CUDA GPU and nsys")]


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_every_module_with_parameters_has_backward_time(tmp_path: Path, kind: str) -> None:
    from scripts import hf_models

    depth = 4
    result = CliRunner().invoke(cli, ["profile", "--model", f"scripts.hf_models:{kind}", "--mode", "step",
                                      "--dtype", "bf16", "--batch-size", "2", "--context-length", "512",
                                      "--warmup", "2", "--steps", "3", "--nvtx-depth", str(depth), "--name", kind,
                                      "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = analyze.module_table(pipeline.load(tmp_path / kind).ranges).set_index("module")
    model, _ = hf_models.build(kind, 1, 8)
    with_params = [p for p, m in module_paths(model, depth) if any(True for _ in m.parameters())]
    assert with_params and set(with_params) <= set(table.index)
    no_backward = [p for p in with_params if not table.loc[p, "bwd_gpu_ns"] > 0]
    assert not no_backward, no_backward
    parent = {m: m.rpartition("/")[0] for m in table.index}
    for col in ("fwd_gpu_ns", "bwd_gpu_ns"):  # means per step: float sums may differ in the last digit
        sums: dict[str, float] = {}
        for m, p in parent.items():
            if p in table.index:
                sums[p] = sums.get(p, 0.0) + float(table.loc[m, col])
        over = {p: (s, table.loc[p, col]) for p, s in sums.items() if s > table.loc[p, col] * (1 + 1e-12)}
        assert not over, (col, over)
