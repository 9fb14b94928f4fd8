"""Does annotating cost anything? Step time with profkit's NVTX ranges on against off.

One process, one model, one optimizer: each round runs every variant, in an order rotated
round by round so drift hits all alike:
- `off`: ranges switched off, no hooks (what `--nvtx auto` does when no tool is attached);
- `ranges`: the runner's and the model's forward ranges, no backward hooks;
- `on`: everything, the per-layer backward ranges included (`--nvtx on`);
- `on_full_hooks`: as `on`, with backward ranges from full backward hooks instead of
  profkit's gradient hooks.
No profiler is attached: this is the cost of forcing the annotations on. Writes markdown.

Example (the issue-2 figure on the GPU machine):
    python scripts/bench_nvtx_overhead.py --model small --dtype bf16 --mode step \
        --rounds 20 --steps-per-round 5 --report reports/nvtx_overhead.md
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from profkit import ranges  # noqa: E402
from profkit.collect import hooks  # noqa: E402
from profkit.collect.env import environment  # noqa: E402
from profkit.collect.workload import _Timer, build_workload, make_step, resolve_device  # noqa: E402
from profkit.config import RunConfig  # noqa: E402
from profkit.report.tables import markdown_table  # noqa: E402


def median_ratio_ci(a: list[float], b: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of median(a) / median(b) - 1 (resampling each side's steps)."""
    rng = random.Random(seed)
    ratios = sorted(statistics.median(rng.choices(a, k=len(a))) / statistics.median(rng.choices(b, k=len(b))) - 1
                    for _ in range(n))
    return ratios[int(0.025 * n)], ratios[int(0.975 * n) - 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="small")
    p.add_argument("--mode", default="step")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--attn", default="naive")
    p.add_argument("--device", default=None)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--steps-per-round", type=int, default=5)
    p.add_argument("--report", type=Path, required=True)
    a = p.parse_args()

    cfg = RunConfig(model=a.model, mode=a.mode, dtype=a.dtype, attn=a.attn, device=a.device)
    device = resolve_device(cfg)
    w = build_workload(cfg, device)
    step = make_step(cfg, w, w.model, device)
    handles: list = []

    def annotations(variant: str) -> None:
        nonlocal handles
        for h in handles:
            h.remove()
        ranges.set_enabled(variant != "off")
        if variant.startswith("on"):
            handles = hooks.add_backward_ranges(w.model, full_hooks=variant == "on_full_hooks")
        else:
            handles = []

    annotations("on")
    for _ in range(a.warmup):
        step()
    variants = ["off", "ranges", "on", "on_full_hooks"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(a.rounds):
        for variant in variants[r % len(variants):] + variants[:r % len(variants)]:
            annotations(variant)
            timer = _Timer(device, a.steps_per_round)
            for i in range(a.steps_per_round):
                with ranges.phase(f"step_{i}"), timer.step(i):
                    step()
            times[variant] += timer.times_ms()

    med = {k: statistics.median(v) for k, v in times.items()}
    mean = {k: statistics.fmean(v) for k, v in times.items()}
    std = {k: statistics.stdev(v) for k, v in times.items()}
    over = {k: med[k] / med["off"] - 1 for k in variants}
    ci = {k: median_ratio_ci(times[k], times["off"]) for k in variants if k != "off"}
    overhead = over["on"]
    rows = [[k, str(len(times[k])), f"{med[k]:.3f}", f"{mean[k]:.3f} ± {std[k]:.3f}", f"{min(times[k]):.3f}",
             "—" if k == "off" else f"{over[k]:+.2%} [{ci[k][0]:+.2%}, {ci[k][1]:+.2%}]"] for k in variants]
    env = environment(device)
    lo, hi = ci["on"]
    verdict = ("within" if hi <= 0.01 else "over" if lo > 0.01 else "undecided against (the interval spans)")
    text = "\n".join([
        "# Cost of profkit's NVTX annotations with no profiler attached", "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {env.gpu or 'cpu'} (driver {env.driver}, "
        f"torch {env.torch}): `{cfg.label}`, batch {cfg.resolved_batch_size} x {cfg.resolved_context_length}. "
        f"{a.rounds} rounds, each running every variant (order rotated each round), {a.steps_per_round} steps "
        f"per variant per round, after {a.warmup} warm-up steps. `off`: no ranges, no hooks (the default "
        "`--nvtx auto` with no tool attached); `ranges`: forward and runner ranges only; `on`: every range "
        "plus the per-layer backward ranges (`--nvtx on`); `on_full_hooks`: the same with full backward "
        "hooks in place of profkit's gradient hooks.", "",
        markdown_table(["annotations", "steps", "median ms", "mean ± std ms", "min ms",
                        "vs off: median ratio - 1 [95% bootstrap CI]"], rows),
        "",
        f"Overhead of `on` (median on / median off - 1): **{overhead:+.2%}**, {verdict} the 1% goal.", "",
        "Command:", "", "```", "python " + shlex.join(sys.argv), "```", "",
    ])
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
