"""GPU tier: capture the built-in models with `profkit profile` on a CUDA GPU and report them
end to end (`profkit report`, `report kernels`, `report nvtx`), every number against SQL.

Run on the GPU machine with `bash scripts/gpu_tests.sh OUTDIR`; skipped without CUDA or nsys.
Captures go to $PROFKIT_GPU_OUT when set (the script copies their report.md into OUTDIR).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from profkit.cli import cli
from profkit.nsys import NsysNotFound, find_nsys
from tests.test_against_sql import RANGES, launched_in, query, unattributed_ns


def _nsys() -> str | None:
    try:
        return str(find_nsys().path)
    except NsysNotFound:
        return None


NSYS = _nsys()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available() or NSYS is None,
                                                  reason="needs a CUDA GPU and nsys (scripts/gpu_tests.sh)")]
STEPS = 2
# small in every mode, fp32 and bf16 with naive attention; flash (bf16 only: it has no fp32 kernels).
CASES = [(mode, dtype, "naive") for mode in ("fwd", "fwd_bwd", "step") for dtype in ("fp32", "bf16")] + [
    (mode, "bf16", "flash") for mode in ("fwd", "fwd_bwd", "step")]


def invoke(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return Path(os.environ["PROFKIT_GPU_OUT"]) if os.environ.get("PROFKIT_GPU_OUT") else tmp_path


@pytest.mark.parametrize("mode,dtype,attn", CASES, ids=["-".join(c) for c in CASES])
def test_capture_and_report_small(out_dir: Path, mode: str, dtype: str, attn: str) -> None:
    name = f"small-{mode}-{dtype}-{attn}"
    invoke("profile", "--model", "small", "--mode", mode, "--dtype", dtype, "--attn", attn, "--device", "cuda",
           "--warmup", "3", "--steps", STEPS, "--name", name, "--out-dir", out_dir, "--nsys", NSYS, "--force")
    folder = out_dir / name
    export = folder / "profile.sqlite"
    n, total = query(export, "SELECT count(*), sum(end - start) FROM CUPTI_ACTIVITY_KIND_KERNEL")[0]
    assert n > 0
    assert unattributed_ns(export) == 0

    # report.md: the headline says 0.00% unattributed, with SQL's count and total.
    invoke("report", folder, "--force")
    text = (folder / "report.md").read_text()
    assert f"{n:,} kernels, {total / 1e6:,.3f} ms of kernel time; 0.00% of it launched outside every NVTX range." \
        in text

    # report kernels: per-name instances and totals add up to SQL's.
    rows = json.loads(invoke("report", "kernels", folder, "--format", "json", "--top", "0"))
    assert (sum(r["instances"] for r in rows), sum(r["total_ns"] for r in rows)) == (n, total)
    by_name = dict(query(export, "SELECT s.value, sum(k.end - k.start) FROM CUPTI_ACTIVITY_KIND_KERNEL k "
                                 "JOIN StringIds s ON s.id = k.demangledName GROUP BY s.value"))
    assert {r["name"]: r["total_ns"] for r in rows} == by_name

    # report nvtx: every measured step, its GPU time the kernels launched inside it (any thread).
    paths = {r["path"]: r for r in json.loads(invoke("report", "nvtx", folder, "--format", "json"))}
    steps = query(export, RANGES + " SELECT name, start, end, tid FROM r WHERE name GLOB 'step_[0-9]*' ORDER BY start")
    assert [s[0] for s in steps] == [f"step_{i}" for i in range(STEPS)]
    for step, start, end, tid in steps:
        kernels, ns = launched_in(export, start, end, tid)
        assert (paths[step]["kernels"], paths[step]["gpu_total_ns"]) == (kernels, ns), step
        assert paths[step]["cpu_total_ns"] == end - start
    assert sum(paths[s[0]]["gpu_total_ns"] for s in steps) == total  # the capture holds the measured steps only
    phases = {"fwd": ["forward"], "fwd_bwd": ["forward", "backward"], "step": ["forward", "backward", "optimizer"]}
    for i in range(STEPS):
        for phase in phases[mode]:
            assert paths[f"step_{i}/{phase}"]["gpu_total_ns"] > 0, (i, phase)
    if attn == "flash":
        assert not any(p.endswith("attn_softmax") for p in paths)
        assert any(p.endswith("attention/sdpa") for p in paths)
