"""Capture the nsys exports that tests use, scrub them, and write each one's README.

Runs `profkit profile` for each fixture below, then copies the scrubbed SQLite export and
run.json to tests/data/<name>/ (or --dest). Needs a GPU and nsys for the CUDA fixtures.

Example (on the GPU machine, with the Nsight Systems 2025.3.1 of its Nsight Compute):
    python scripts/make_fixtures.py --nsys /tmp/nsys25/target-linux-x64/nsys --dest tests/data
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from profkit import layout  # noqa: E402
from profkit.layout import RunRecord  # noqa: E402
from profkit.nsys import find_nsys  # noqa: E402
from profkit.scrub import scrub_export  # noqa: E402

COMMON = ["--warmup", "3", "--steps", "2"]
FIXTURES = {
    # The nsys issue's captures: `small` in three modes x fp32/bf16, naive attention; the same
    # step with flash attention, and compiled (what the report issue compares).
    **{f"h100_small_{mode}_{dtype}": ["--model", "small", "--mode", mode, "--dtype", dtype]
       for mode in ("fwd", "fwd_bwd", "step") for dtype in ("fp32", "bf16")},
    "h100_small_step_bf16_flash": ["--model", "small", "--mode", "step", "--dtype", "bf16", "--attn", "flash"],
    "h100_small_step_bf16_flash_compile": ["--model", "small", "--mode", "step", "--dtype", "bf16", "--attn",
                                           "flash", "--compile"],
    # nsys's own per-op ranges on the autograd thread, with sequence numbers (made on request: --only)
    "h100_small_step_bf16_autograd_nvtx": ["--model", "small", "--mode", "step", "--dtype", "bf16", "--",
                                           "--pytorch=autograd-nvtx"],
    # torch.compile(mode="reduce-overhead"): CUDA-graph replays, as nsys records them by default
    # (one CUPTI_ACTIVITY_KIND_GRAPH_TRACE row per replay, no kernel rows) and per node (made on request)
    **{f"h200_small_step_bf16_flash_graphs_{trace}": ["--model", "small", "--mode", "step", "--dtype", "bf16",
                                                      "--attn", "flash", "--compile", "--compile-mode",
                                                      "reduce-overhead", "--", f"--cuda-graph-trace={trace}"]
       for trace in ("graph", "node")},
}
ON_REQUEST = {"h100_small_step_bf16_autograd_nvtx", "h200_small_step_bf16_flash_graphs_graph",
              "h200_small_step_bf16_flash_graphs_node"}
README = """# {name}

A real Nsight Systems export, scrubbed (process environment and host name removed with
`profkit.scrub.scrub_export`), made by `scripts/make_fixtures.py`:

```
{command}
```

- nsys: {nsys}
- GPU: {gpu}, driver {driver}
- torch {torch}, CUDA {cuda}
- workload: {label}, batch {batch} x {context}, {steps} measured steps ({warmup} warm-up steps outside the capture)
- run.json: the run's own record (config, environment, step times under nsys)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nsys", default=None)
    p.add_argument("--dest", type=Path, default=Path("tests/data"))
    p.add_argument("--work", type=Path, default=Path("/tmp/profkit-fixtures"))
    p.add_argument("--only", nargs="*", default=None)
    a = p.parse_args()
    nsys = find_nsys(a.nsys)
    for name, options in FIXTURES.items():
        if (a.only and name not in a.only) or (not a.only and name in ON_REQUEST):
            continue
        split = options.index("--") if "--" in options else len(options)
        run_opts, nsys_opts = options[:split], options[split:]  # nsys options after `--`
        cmd = ["profkit", "profile", *run_opts, *COMMON, "--name", name, "--out-dir", str(a.work), "--force",
               "--nsys", str(nsys.path), *nsys_opts]
        print("$", shlex.join(cmd), flush=True)
        proc = subprocess.run([sys.executable, "-m", "profkit", *cmd[1:]], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, flush=True)
            continue
        dest = a.dest / name
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        counts = scrub_export(a.work / name / layout.EXPORT, dest / layout.EXPORT)
        shutil.copyfile(a.work / name / layout.RUN_FILE, dest / layout.RUN_FILE)
        run = RunRecord.read(dest)
        env, res, cfg = run.environment, run.resolved, run.config
        shown = [c for c in cmd if c != "--force"]
        shown = shown[:shown.index("--out-dir")] + ["--out-dir", "profiles"] + nsys_opts
        (dest / "README.md").write_text(README.format(
            name=name, command=shlex.join(shown) + f"   # with nsys {nsys.version_str}", nsys=nsys.version_str,
            gpu=env.gpu, driver=env.driver, torch=env.torch, cuda=env.cuda,
            label=f"{cfg.model} {cfg.mode} {cfg.dtype} attn={cfg.attn}" + (" compiled" if cfg.compile else ""),
            batch=res.batch_size, context=res.context_length, steps=cfg.steps, warmup=cfg.warmup))
        size = (dest / layout.EXPORT).stat().st_size / 2**20
        print(f"   {dest}: {size:.2f} MiB, scrubbed {counts}", flush=True)


if __name__ == "__main__":
    main()
