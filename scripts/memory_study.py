"""Seed 002's memory study, done by profkit: `small` and CS336 `2.7B` at contexts 128, 256, 512,
forward-only against a full AdamW step, fp32 against bf16, each with --memory-snapshot, and
`profkit report memory` for each (markdown, JSON, PNG, HTML) plus one summary; first, the cost of
history (10 measured steps of `small` bf16 with it, then 10 without: OUTDIR/cost.json).

    python scripts/memory_study.py OUTDIR            # on the GPU machine (scripts/gpu_issue11.sh calls it)
    PROFKIT_GPU_DRY=1 python scripts/memory_study.py OUTDIR   # plumbing check on CPU: tiny, fabricated snapshots

All runs share one process (one torch import and CUDA start-up): each runs in a fresh model, and
the allocator's cache is emptied between them. Each run fails on its own (logged in
OUTDIR/study.log); the others go on. Writes:
  OUTDIR/runs/NAME/{run.json, memory.pickle, memory.json}
  OUTDIR/reports/h200/memory/NAME.memory.{md,json,png,html} and OUTDIR/reports/h200/memory/README.md
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profkit import layout  # noqa: E402
from profkit.config import RunConfig  # noqa: E402
from profkit.report import memory as memory_report  # noqa: E402
from profkit.snapshot import read  # noqa: E402

DRY = os.environ.get("PROFKIT_GPU_DRY") == "1"
MODELS = ["tiny"] if DRY else ["small", "2.7B"]
CONTEXTS = [16, 32] if DRY else [128, 256, 512]
MODES = ["fwd", "step"]
DTYPES = ["fp32", "bf16"]


def log(out: Path, line: str) -> None:
    print(line, flush=True)
    with (out / "study.log").open("a") as f:
        f.write(line + "\n")


def record(cfg: RunConfig) -> layout.RunRecord:
    """One run with --memory-snapshot (on CPU, dry: the run without it and a fabricated snapshot)."""
    from profkit.collect import workload

    if not DRY:
        return workload.run(cfg)
    from tests.memory_scenario import build

    rec = workload.run(dataclasses.replace(cfg, memory_snapshot=False, device="cpu"))
    assert cfg.out is not None
    s = build(cfg.out, seed=cfg.resolved_context_length + len(cfg.mode) + len(cfg.dtype))
    side = json.loads((cfg.out / layout.MEMORY_SIDECAR).read_text())
    side["run"] = {"model": cfg.model, "mode": cfg.mode, "dtype": cfg.dtype, "attn": cfg.attn,
                   "batch_size": cfg.resolved_batch_size, "context_length": cfg.resolved_context_length,
                   "steps": cfg.steps}
    (cfg.out / layout.MEMORY_SIDECAR).write_text(json.dumps(side))
    rec = dataclasses.replace(rec, peak_memory_bytes=s.peak, memory=layout.MemoryRecord(
        snapshot=layout.MEMORY_SNAPSHOT, events=len(s.model.trace) - s.trace_start, max_entries=100_000,
        overflowed=False, stacks="python", pickle_bytes=(cfg.out / layout.MEMORY_SNAPSHOT).stat().st_size,
        dump_ms=0.0, steps_ms_without=rec.steps_ms, overhead_pct=0.0, peak_reserved_bytes=s.model.peak_reserved,
        start_allocated_bytes=side["start"]["allocated_bytes"]))
    rec.write(cfg.out)
    return rec


def report(run_dir: Path, dest: Path, name: str) -> dict[str, Any]:
    data = read(run_dir / layout.MEMORY_SNAPSHOT)
    m = memory_report.analyze(data)
    r = memory_report.result(data, m)
    (dest / f"{name}.memory.md").write_text(memory_report.markdown(r, title=name))
    (dest / f"{name}.memory.json").write_text(json.dumps(r, indent=1) + "\n")
    (dest / f"{name}.memory.png").write_bytes(memory_report.chart_png(m, title=f"{name}: allocated memory"))
    (dest / f"{name}.memory.html").write_text(memory_report.page(r, m, title=name))
    return r


def free_cuda() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    except ImportError:
        pass


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    dest = out / "reports" / "h200" / "memory"
    dest.mkdir(parents=True, exist_ok=True)
    # The cost of history first: 10 measured steps of small bf16, with history, then 10 without.
    cost = RunConfig(model=MODELS[0], mode="step", dtype="bf16", warmup=3, steps=10, memory_snapshot=True,
                     out=out / "runs" / "cost", force=True)
    try:
        rec = record(cost)
        (out / "cost.json").write_text(json.dumps({"steps_ms": rec.steps_ms, **(rec.to_dict()["memory"] or {})},
                                                  indent=1) + "\n")
        m = rec.memory
        assert m is not None
        log(out, f"cost: {m.events:,} events, {m.pickle_bytes:,} B pickle, dumped in {m.dump_ms:.0f} ms, "
                 f"median step {sorted(rec.steps_ms)[len(rec.steps_ms) // 2]:.2f} ms with history, "
                 f"{sorted(m.steps_ms_without)[len(m.steps_ms_without) // 2]:.2f} ms without ({m.overhead_pct:+.1f}%)")
    except Exception as e:  # noqa: BLE001 - one item failing must not stop the study
        log(out, f"cost: FAILED {type(e).__name__}: {str(e)[:300]}")
        (out / "cost.error.txt").write_text(traceback.format_exc())
    finally:
        free_cuda()
    rows = []
    for model in MODELS:
        for ctx in CONTEXTS:
            for mode in MODES:
                for dtype in DTYPES:
                    name = f"{model}-{mode}-{dtype}-ctx{ctx}"
                    cfg = RunConfig(model=model, mode=mode, dtype=dtype, context_length=ctx, warmup=2, steps=1,
                                    memory_snapshot=True, out=out / "runs" / name, force=True)
                    t0 = time.perf_counter()
                    try:
                        rec = record(cfg)
                        r = report(out / "runs" / name, dest, name)
                        rows.append({"name": name, "model": model, "context": ctx, "mode": mode, "dtype": dtype,
                                     "run": rec.to_dict(), "report": r})
                        log(out, f"{name}: peak {r['peak_allocated_bytes']:,} B (torch {rec.peak_memory_bytes:,} B, "
                                 f"equal: {r['peak_equals_torch']}), clock {r['clock']}, {r['events']:,} events, "
                                 f"{time.perf_counter() - t0:.1f} s")
                    except Exception as e:  # noqa: BLE001 - one run failing must not stop the study
                        log(out, f"{name}: FAILED {type(e).__name__}: {str(e)[:300]}")
                        (out / f"{name}.error.txt").write_text(traceback.format_exc())
                    finally:
                        free_cuda()
                    # after every run: a time limit that stops the study still leaves its summary
                    (out / "study.json").write_text(json.dumps(rows, indent=1) + "\n")
                    (dest / "README.md").write_text(summary(rows))
    log(out, f"study: {len(rows)} of {len(MODELS) * len(CONTEXTS) * len(MODES) * len(DTYPES)} runs reported")
    return 0 if rows else 1


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def _cat(r: dict[str, Any], key: str) -> int:
    return sum(c["bytes"] for c in r["categories"] if c["category"] == key)


def summary(rows: list[dict[str, Any]]) -> str:
    """The study's table and the comparisons it answers, every number from the reports' JSON."""
    env = rows[0]["run"]["environment"] if rows else {}
    lines = ["# Memory: seed 002's study on the H200, by profkit", "",
             f"Made by `scripts/gpu_issue11.sh` ({env.get('gpu')}, torch {env.get('torch')}): `profkit run "
             "--memory-snapshot --warmup 2 --steps 1` per configuration, batch 4, naive attention, then `profkit "
             "report memory` on each (NAME.memory.md/json/png/html here). Peak = the replayed peak of the one "
             "measured step, checked against torch's max_memory_allocated of the same window.", "",
             "| model | context | mode | dtype | peak MiB | = torch | reserved MiB | parameters | gradients | "
             "optimizer | activations | autocast copies | temporaries | other | residual MiB/layer | saved ÷ "
             "residual (mean/layer) |",
             "| :--- | ---: | :--- | :--- | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
             "---: | ---: |"]
    for row in rows:
        r = row["report"]
        res = r["residual_stream"]
        ratio = sum(x["saved_over_residual"] for x in res) / len(res) if res else float("nan")
        residual = f"{res[0]['residual_bytes'] / 2**20:,.1f} | {ratio:.1f}" if res else "— | —"
        cats = " | ".join(mib(_cat(r, k)) for k in ("parameters", "gradients", "optimizer_state", "activations",
                                                    "autocast_copies", "temporaries", "other"))
        lines.append(f"| `{row['model']}` | {row['context']} | {row['mode']} | {row['dtype']} | "
                     f"[{mib(r['peak_allocated_bytes'])}]({row['name']}.memory.md) | "
                     f"{'yes' if r['peak_equals_torch'] else 'NO'} | {mib(r['peak_reserved_bytes'])} | {cats} | "
                     f"{residual} |")
    lines += ["", "## What the numbers say", ""]
    by = {(r["model"], r["context"], r["mode"], r["dtype"]): r["report"] for r in rows}
    for (model, ctx, mode, dtype), r in sorted(by.items()):
        if mode == "step" and (model, ctx, "fwd", dtype) in by:
            f = by[(model, ctx, "fwd", dtype)]
            lines.append(f"- `{model}` context {ctx} {dtype}: a full step peaks at {mib(r['peak_allocated_bytes'])} "
                         f"MiB, forward-only at {mib(f['peak_allocated_bytes'])} MiB "
                         f"({r['peak_allocated_bytes'] / max(f['peak_allocated_bytes'], 1):.2f}x); the step's peak "
                         f"is in `{r['peak_path']}`.")
        if dtype == "bf16" and (model, ctx, mode, "fp32") in by:
            f = by[(model, ctx, mode, "fp32")]
            lines.append(f"- `{model}` context {ctx} {mode}: bf16 autocast peaks at "
                         f"{mib(r['peak_allocated_bytes'])} MiB against fp32's {mib(f['peak_allocated_bytes'])} MiB "
                         f"({r['peak_allocated_bytes'] / max(f['peak_allocated_bytes'], 1):.2f}x); activations "
                         f"{mib(_cat(r, 'activations'))} against {mib(_cat(f, 'activations'))} MiB, autocast copies "
                         f"{mib(_cat(r, 'autocast_copies'))} MiB.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
