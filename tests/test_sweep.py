"""`profkit sweep`: grids and presets, the results database, OOM and refusal, resumption after a
real SIGINT, the models runner's processes, the reports and their plots (all on CPU)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from profkit import results, sweeps
from profkit.analyze.sweeps import attention_metrics, model_metrics
from profkit.cli import cli
from profkit.collect import sweep as runner
from profkit.report import sweeps as report
from profkit.sweeps import AttentionGrid, AttentionSettings, ModelGrid

ROOT = Path(__file__).parents[1]
FAST = AttentionSettings(reps=3, warmup=1, max_seconds=0.2)


def invoke(*args: object):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def rows(db: Path, table: str = "attention") -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return [dict(r) for r in con.execute(f"select * from {table} order by rowid")]


# -- grids and presets ---------------------------------------------------------------------------

def test_grid_expands_impl_slowest_then_shapes() -> None:
    g = AttentionGrid(impls=("naive", "math"), batch_sizes=(2,), heads=(1, 4), seq_lens=(16, 32), head_dims=(8,),
                      causal=False, dtype="fp32")
    labels = [p.label for p in g.points("cpu")]
    assert labels == ["naive B2 H1 T16 d8 fp32", "naive B2 H1 T32 d8 fp32", "naive B2 H4 T16 d8 fp32",
                      "naive B2 H4 T32 d8 fp32", "math B2 H1 T16 d8 fp32", "math B2 H1 T32 d8 fp32",
                      "math B2 H4 T16 d8 fp32", "math B2 H4 T32 d8 fp32"]
    assert len({p.id for p in g.points("cpu")}) == 8
    assert {p.id for p in g.points("cpu")}.isdisjoint({p.id for p in g.points("cuda")})  # the device is in the key


def test_embeds_split_over_heads_and_bad_grids_are_refused() -> None:
    g = AttentionGrid(impls=("flash",), heads=(1, 2, 4), embeds=(32,), seq_lens=(1024,))
    assert [(p.heads, p.head_dim, p.embed) for p in g.points("cuda")] == [(1, 32, 32), (2, 16, 32), (4, 8, 32)]
    for kwargs, message in (({"impls": ("fast",)}, "unknown attention impl 'fast'"),
                            ({"embeds": (30,), "heads": (4,)}, "embed 30 does not split over 4 heads"),
                            ({"seq_lens": (0,)}, "seq-len must be at least 1, got 0"),
                            ({"dtype": "int8"}, "unknown dtype 'int8'")):
        with pytest.raises(ValueError, match=message):
            AttentionGrid(**kwargs)  # type: ignore[arg-type]


def test_presets_reproduce_the_seeds_grids() -> None:
    cs336 = sweeps.attention_points(sweeps.ATTENTION_PRESETS["cs336"].grids, "cuda")
    assert len(cs336) == 5 * 4 * 5
    assert {(p.batch_size, p.heads, p.causal, p.dtype) for p in cs336} == {(8, 1, False, "fp32")}
    assert sorted({p.head_dim for p in cs336}) == [16, 32, 64, 128]
    assert sorted({p.seq_len for p in cs336}) == [256, 1024, 4096, 8192, 16384]
    assert {p.impl for p in cs336} == {"naive", "compiled", "math", "efficient", "flash"}
    flash2 = sweeps.attention_points(sweeps.ATTENTION_PRESETS["flash2"].grids, "cuda")
    # 12 lengths x 2 impls + 12 not causal + 7 embeds x 2 + 5 head counts x 2, less the 2 points
    # the embedding sweep shares with the length sweep (embedding 2048 = 32 x 64 at length 1024)
    assert len(flash2) == 24 + 12 + 14 + 10 - 2
    assert max(p.seq_len for p in flash2) == 16384 and min(p.seq_len for p in flash2) == 8
    heads = [p for p in flash2 if p.embed == 32]
    assert sorted({(p.heads, p.head_dim) for p in heads}) == [(1, 32), (2, 16), (4, 8), (8, 4), (16, 2), (32, 1)]
    mac = sweeps.attention_points(sweeps.ATTENTION_PRESETS["mac"].grids, "cuda")
    assert {(p.batch_size, p.heads, p.seq_len, p.head_dim, p.dtype) for p in mac} == {(64, 32, 256, 32, "fp16")}
    assert [p.impl for p in mac] == list(sweeps.ATTN_IMPLS)
    nanogpt = sweeps.model_configs(sweeps.MODEL_PRESETS["nanogpt"].grids, "cuda")
    assert len(nanogpt) == 16
    assert {(c.model, c.mode, c.batch_size, c.context_length, c.grad_accum, c.optimizer) for c in nanogpt} == {
        ("nanogpt", "step", 6, 1024, 5, "adamw")}
    assert {(c.attn, c.compile, c.dtype) for c in nanogpt} == {
        (a, comp, d) for a in ("naive", "math", "flash", "efficient") for comp in (False, True)
        for d in ("bf16", "fp32")}
    cs = sweeps.model_configs(sweeps.MODEL_PRESETS["cs336"].grids, "cuda")
    assert {c.model for c in cs} == {"small", "medium", "large", "xl", "2.7B"} and len(cs) == 30


def test_model_grid_leaves_inapplicable_knobs_at_their_default() -> None:
    g = ModelGrid(models=("tiny",), modes=("fwd", "step"), dtypes=("fp32",), compiles=(False, True),
                  compile_modes=("default", "max-autotune"), grad_accums=(1, 4), optimizers=("adamw", "sgd"))
    labels = [c.label for c in g.configs("cpu")]
    fwd = [x for x in labels if "-fwd-" in x]
    assert fwd == ["tiny-fwd-fp32-naive", "tiny-fwd-fp32-naive-compile", "tiny-fwd-fp32-naive-compile-max-autotune"]
    assert len(labels) == len(set(labels)) == 3 + 3 * 2 * 2  # step: 3 compile settings x accum x optimizer


def test_preset_with_grid_options_is_refused(tmp_path: Path) -> None:
    r = invoke("sweep", "attention", "--preset", "cs336", "--seq-len", "64", "--db", tmp_path / "x.db")
    assert r.exit_code == 2 and r.output == ("Error: --preset cs336 sets the grid; drop --seq-len (only --impl "
                                             "narrows a preset)\n")
    r = invoke("sweep", "models", "--preset", "nanogpt", "--dtype", "bf16", "--db", tmp_path / "x.db")
    assert r.exit_code == 2 and r.output == "Error: --preset nanogpt sets the grid; drop --dtype\n"
    r = invoke("sweep", "attention", "--seq-len", "64,x", "--db", tmp_path / "x.db")
    assert r.exit_code == 2 and r.output == "Error: --seq-len: 'x' is not a whole number\n"
    assert not (tmp_path / "x.db").exists()


# -- the database and its rows -------------------------------------------------------------------

def test_attention_rows_schema_and_metrics(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    r = invoke("sweep", "attention", "--impl", "naive,math,flash", "--batch-size", "2", "--heads", "2",
               "--seq-len", "16,32", "--head-dim", "8", "--dtype", "fp32", "--device", "cpu", "--reps", "3",
               "--warmup", "1", "--db", db)
    assert r.exit_code == 0, r.output
    assert f"{db} (attention): 6 written (4 ok, 2 refused), 0 already there, 6 in the grid" in r.output
    con = sqlite3.connect(db)
    cols = {row[1]: row[2] for row in con.execute("pragma table_info(attention)")}
    assert list(cols) == list(results.ATTENTION_COLUMNS)
    assert cols["point_id"] == "TEXT" and cols["seq_len"] == "INTEGER" and cols["fwd_ms"] == "REAL"
    assert [row[5] for row in con.execute("pragma table_info(attention)") if row[1] == "point_id"] == [1]  # pk
    got = rows(db)
    assert [(x["impl"], x["seq_len"], x["status"]) for x in got] == [
        ("naive", 16, "ok"), ("naive", 32, "ok"), ("math", 16, "ok"), ("math", 32, "ok"),
        ("flash", 16, "refused"), ("flash", 32, "refused")]
    for x in got[:4]:
        # FlashAttention's count written out: 4·B·H·T²·d, causal halves it, backward 2.5x
        fwd = 4 * 2 * 2 * x["seq_len"] ** 2 * 8 / 2
        assert (x["fwd_flops"], x["bwd_flops"], x["fwd_bwd_flops"]) == (fwd, 2.5 * fwd, 3.5 * fwd)
        assert x["fwd_tflops_per_s"] == pytest.approx(fwd / (x["fwd_ms"] / 1e3) / 1e12)
        assert x["fwd_reps"] == x["bwd_reps"] == x["fwd_bwd_reps"] == 3 and x["timer"] == "perf_counter"
        assert x["fwd_ms"] > 0 and x["fwd_mean_ms"] > 0 and x["peak_fwd_bytes"] is None  # no allocator stats on CPU
        assert x["torch"] == torch.__version__ and x["profkit_version"] == "0.1.0" and x["timestamp"].endswith("+00:00")
        assert x["point_id"] == sweeps.point_id({k: bool(x[k]) if k == "causal" else x[k] for k in (
            "impl", "batch_size", "heads", "seq_len", "head_dim", "causal", "dtype", "device")})
    assert got[4]["reason"] == ("attention backend 'flash' is a CUDA kernel and the device is cpu; use --attn naive "
                                "or math")


def test_a_database_of_another_tool_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    sqlite3.connect(db).execute("create table attention (x int)").connection.commit()
    r = invoke("sweep", "attention", "--impl", "naive", "--seq-len", "8", "--device", "cpu", "--db", db)
    assert r.exit_code == 2
    assert r.output == (f"Error: {db} has a table 'attention' that profkit did not write (no point_id column); give "
                        "another --db\n")
    (tmp_path / "junk.db").write_text("not sqlite" * 100)
    r = invoke("sweep", "report", "attention", "--db", tmp_path / "junk.db", "--out", tmp_path / "rep")
    assert r.exit_code == 2 and r.output.startswith(f"Error: {tmp_path / 'junk.db'} is not a SQLite database")


# -- OOM and refusal ------------------------------------------------------------------------------

def _oom(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB (GPU 0; 139.80 GiB total)")


def _refuses(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    # What SDPA does when the pinned backend declines: a warning per failed check, then the error.
    warnings.warn("Flash attention kernel not used because:", stacklevel=1)
    warnings.warn("Flash attention requires q,k,v to have the same last dimension and to be less than or equal to "
                  "256. Got Query.size(-1): 512.", stacklevel=1)
    raise RuntimeError("No available kernel. Aborting execution.")


def _oom_in_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    class Boom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):  # type: ignore[no-untyped-def]
            return x.clone()

        @staticmethod
        def backward(ctx, g):  # type: ignore[no-untyped-def]
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    return Boom.apply(q) + k + v


def test_oom_and_refusal_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    from profkit.collect import attention_bench

    db = tmp_path / "r.db"
    grid = AttentionGrid(impls=("naive", "flash", "efficient", "math"), batch_sizes=(1,), heads=(1,), seq_lens=(8,),
                         head_dims=(4,), dtype="fp32")
    impls = {"naive": _oom, "flash": _refuses, "efficient": _oom_in_backward, "math": attention_bench.IMPLS["math"]}
    s = runner.attention(grid.points("cpu"), FAST, db, derive=attention_metrics, impls=impls)
    assert (s.written, s.statuses) == (4, {"oom": 2, "refused": 1, "ok": 1})
    got = {x["impl"]: x for x in rows(db)}
    assert (got["naive"]["status"], got["naive"]["failed_mode"], got["naive"]["reason"]) == (
        "oom", "fwd", "CUDA out of memory. Tried to allocate 64.00 GiB (GPU 0; 139.80 GiB total)")
    assert (got["flash"]["status"], got["flash"]["reason"]) == (
        "refused", "Flash attention requires q,k,v to have the same last dimension and to be less than or equal to "
                   "256. Got Query.size(-1): 512.")
    assert (got["efficient"]["status"], got["efficient"]["failed_mode"]) == ("oom", "bwd")
    assert got["naive"]["fwd_ms"] is None and got["naive"]["fwd_tflops_per_s"] is None
    assert got["math"]["status"] == "ok" and got["math"]["fwd_bwd_ms"] > 0
    # a rerun skips all four: OOM and refusals are results; an `error` would be tried again
    assert runner.attention(grid.points("cpu"), FAST, db, impls=impls).skipped == 4


# -- resumption after a real SIGINT ---------------------------------------------------------------

def test_sigint_loses_at_most_the_point_in_progress_and_a_rerun_resumes(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    lens = "8,16,24,32,40,48,56,64"
    cmd = [sys.executable, "-m", "profkit", "sweep", "attention", "--impl", "math", "--batch-size", "1", "--heads",
           "1", "--seq-len", lens, "--head-dim", "8", "--dtype", "fp32", "--device", "cpu", "--reps", "100000",
           "--warmup", "1", "--max-seconds", "0.6", "--db", str(db)]
    # 0.6 s per mode and point: the 8 points take well over 10 s, so the interrupt after the
    # second lands mid-sweep even on a loaded machine (at 0.2 s a slow poll could miss the window)
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if db.exists():
            try:
                if len(rows(db)) >= 2:
                    break
            except sqlite3.OperationalError:  # the table is being created
                pass
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (out, err)
    assert err.strip().endswith("Run the same command again to resume.")
    first = rows(db)
    assert 2 <= len(first) < 8 and all(x["status"] == "ok" and x["fwd_bwd_ms"] > 0 for x in first)
    done = len(first)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    assert f"{8 - done} written ({8 - done} ok), {done} already there, 8 in the grid" in again.stdout
    final = rows(db)
    assert [x["seq_len"] for x in final] == [int(t) for t in lens.split(",")]
    assert final[:done] == first  # the rows from before the interrupt are untouched


# -- models: each point a process -----------------------------------------------------------------

def test_models_points_are_runs_oom_and_refusal_recorded(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "profkit", "sweep", "models", "--model", "tiny,tests.sweep_models:oom",
           "--mode", "step", "--dtype", "fp32", "--attn", "naive,flash", "--grad-accum", "2", "--optimizer", "sgd",
           "--warmup", "1", "--steps", "2", "--device", "cpu", "--db", str(db), "--report", str(tmp_path / "rep")]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    got = {(x["model"], x["attn"]): x for x in rows(db, "models")}
    ok = got[("tiny", "naive")]
    assert ok["status"] == "ok" and (ok["grad_accum"], ok["optimizer"], ok["batch_size"]) == (2, "sgd", 2)
    run = json.loads((Path(ok["run_dir"]) / "run.json").read_text())
    assert ok["ms_per_step"] == statistics.median(run["steps_ms"])
    assert ok["ms_per_micro_batch"] == statistics.median(run["micro_batch_ms"]) and len(run["micro_batch_ms"]) == 4
    assert ok["tokens_per_step"] == 2 * 32 * 2 and ok["mfu"] is None  # no GPU, no peak
    assert run["config"]["grad_accum"] == 2 and run["config"]["optimizer"] == "sgd"
    refused = got[("tiny", "flash")]
    assert (refused["status"], refused["reason"]) == (
        "refused", "attention backend 'flash' is a CUDA kernel and the device is cpu; use --attn naive or math")
    oom = got[("tests.sweep_models:oom", "naive")]
    assert oom["status"] == "oom" and oom["reason"].startswith("out of memory on cpu: --model tests.sweep_models:oom")
    text = (tmp_path / "rep" / "models.md").read_text()
    # every point's row: the varying config columns (model, attn, batch, context), then status and ms/step
    assert f"| tiny | naive | 2 | 32 | ok | {ok['ms_per_step']:.2f} |" in text
    assert "| tests.sweep_models:oom | naive | 4 | 256 | oom |" in text
    assert (tmp_path / "rep" / "models-step.png").read_bytes()[:8] == PNG


# -- reports and plots ----------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_writes_seed_shaped_tables_and_plots(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    grid = AttentionGrid(name="t", impls=("naive", "math"), batch_sizes=(1,), heads=(2,), seq_lens=(8, 16, 32),
                         head_dims=(4,), dtype="fp32", causal=False)
    runner.attention(grid.points("cpu"), FAST, db, derive=attention_metrics)
    out = tmp_path / "rep"
    said = report.write_report("attention", results.read(db, "attention"), out, grids=[grid])
    names = sorted(p.name for p in out.iterdir())
    assert names == ["attention-t-tflops.png", "attention-t-time.png", "attention.md"]  # no memory plot on CPU
    import matplotlib.image

    for name in names[:2]:
        assert (out / name).read_bytes()[:8] == PNG
        assert matplotlib.image.imread(out / name).shape[1] == 3 * 4.5 * 110  # three panels wide, at 110 dpi
    assert said[0] == f"report: {out / 'attention.md'}"
    text = (out / "attention.md").read_text()
    assert "![attention-t-time.png](attention-t-time.png)" in text
    assert "| seq len | Forward (100 passes) ms | Backward (100 passes) ms | Memory Reserved MiB |" in text
    first = rows(db)[0]
    assert f"| 8 | {100 * first['fwd_mean_ms']:,.2f} | {100 * first['bwd_mean_ms']:,.2f} |" in text
    assert "| seq len | 8 | 16 | 32 |" in text and "| (naive) Forward time ms |" in text  # seed 003's shape
    with pytest.raises(report.SweepReportError, match="attention.md exists; pass --force"):
        report.write_report("attention", results.read(db, "attention"), out, grids=[grid])


def _model_row(**kw: object) -> dict:
    row = {c: None for c in results.MODELS_COLUMNS}
    row.update(model="nanogpt", mode="step", dtype="bf16", attn="flash", compile=1, compile_mode="default",
               grad_accum=5, optimizer="adamw", batch_size=6, context_length=1024, warmup=3, steps=10,
               device="cuda", seed=0, profiled=0, status="ok", gpu="NVIDIA H200", timestamp="t", params=85_000_000,
               tokens_per_step=30720)
    row.update(kw)
    return model_metrics(row)


def test_models_report_has_seed_000_columns_beside_the_seeds_figures() -> None:
    rows_ = [_model_row(attn="flash", compile=1, first_step_ms=10000.0, mean_ms=100.0, ms_per_step=99.0,
                        compile_s=45.0, peak_memory_bytes=3 * 2**30, ms_per_micro_batch=18.5),
             _model_row(attn="naive", compile=0, first_step_ms=600.0, mean_ms=250.0, ms_per_step=250.0),
             _model_row(attn="math", compile=0, status="oom", reason="out of memory on cuda: ...")]
    text = report.models_markdown(rows_)
    # (1st + 499 x mean) / 500, by hand: (10000 + 49900) / 500 = 119.8; (600 + 124750) / 500 = 250.7
    assert "| flash | Yes | 45.0 | 10,000 | 119.8 | 100.0 | 18.50 | 3,072 |" in text
    assert "| naive | No | - | 600 | 250.7 | 250.0 |" in text
    assert text.count("| 475 | 172 |") == 0 and "| 490 | 188 |" in text and "| 1360 | 505 |" in text
    assert "| math | No | OOM | OOM |" in text
    # MFU: PaLM's 6·N + 12·L·H·Q·T per token over 30,720 tokens, at the H200 datasheet's 989.4 TFLOP/s
    palm = (6 * 85_000_000 + 12 * 12 * 12 * 64 * 1024) * 30720
    assert rows_[0]["palm_flops"] == palm and rows_[0]["mfu"] == pytest.approx(palm / 0.099 / 989.4e12)


def test_report_command_reads_a_database_alone(tmp_path: Path) -> None:
    r = invoke("sweep", "report", "models", "--db", tmp_path / "none.db", "--out", tmp_path / "rep")
    assert r.exit_code == 2
    assert r.output == (f"Error: {tmp_path / 'none.db'} does not exist; run `profkit sweep models --db "
                        f"{tmp_path / 'none.db'}` first\n")
