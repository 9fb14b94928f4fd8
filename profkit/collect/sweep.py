"""`profkit sweep`: run a grid's points one at a time, each row into the results database as soon
as it is measured.

- attention: every point in this process (collect/attention_bench.py, torch imported on first use);
- models: every point a fresh `python -m profkit run` (a crash or OOM in one cannot take the sweep
  down), optionally a `profkit profile` with its reports (`profile=True`); this module imports
  no torch for it.

A rerun skips the points already in the table unless `redo`. Ctrl-C (KeyboardInterrupt) leaves
every finished row committed and loses only the point in progress; the caller says how to resume.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from profkit import __version__, layout, results
from profkit.config import RunConfig
from profkit.sweeps import AttentionPoint, AttentionSettings, model_config, model_point_id

Derive = Callable[[dict[str, Any]], dict[str, Any]]


class Progress(Protocol):
    """What the runner tells the progress bar (profkit.console.sweep_progress)."""

    def begin(self, todo: int, skipped: int) -> None: ...

    def start(self, label: str) -> None: ...

    def done(self, label: str, status: str) -> None: ...


@dataclasses.dataclass(slots=True)
class Summary:
    total: int
    skipped: int = 0
    written: int = 0
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _env_columns(env: layout.Environment | dict[str, Any] | None) -> dict[str, Any]:
    e = dataclasses.asdict(env) if isinstance(env, layout.Environment) else (env or {})
    return {"profkit_version": e.get("profkit"), "torch": e.get("torch"), "cuda": e.get("cuda"), "gpu": e.get("gpu"),
            "driver": e.get("driver"), "python": e.get("python"), "platform": e.get("platform"), "timestamp": _now()}


def _loop(items: list[tuple[str, str, Callable[[], dict[str, Any]]]], db_path: Path, table: str, *, redo: bool,
          progress: Progress | None) -> Summary:
    """Run `(point_id, label, measure)` items not yet in `table` (all with `redo`), writing each row."""
    db = results.open_db(db_path, table)
    done = set() if redo else results.done(db, table)
    todo = [it for it in items if it[0] not in done]
    summary = Summary(total=len(items), skipped=len(items) - len(todo))
    if progress:
        progress.begin(len(todo), summary.skipped)
    for _pid, label, measure in todo:
        if progress:
            progress.start(label)
        row = measure()
        results.write(db, table, row)
        summary.written += 1
        summary.statuses[row["status"]] = summary.statuses.get(row["status"], 0) + 1
        if progress:
            progress.done(label, row["status"])
    return summary


def attention(points: list[AttentionPoint], settings: AttentionSettings, db_path: Path, *, redo: bool = False,
              derive: Derive = dict, progress: Progress | None = None,
              impls: dict[str, Any] | None = None) -> Summary:
    """Measure every attention point not yet in the database's `attention` table.

    Args:
        derive: adds the derived metrics to a row (the CLI passes analyze.sweeps.attention_metrics).
        impls: replaces implementations by name (tests: fakes that raise).
    """
    from profkit.collect import attention_bench  # torch
    from profkit.collect.env import environment

    envs: dict[str, dict[str, Any]] = {}

    def env_of(device: str) -> dict[str, Any]:
        if device not in envs:
            import torch

            envs[device] = _env_columns(environment(torch.device(device)))
        return {**envs[device], "timestamp": _now()}

    def item(p: AttentionPoint) -> tuple[str, str, Callable[[], dict[str, Any]]]:
        def measure() -> dict[str, Any]:
            row = {"point_id": p.id, **p.config(), "embed": p.embed, **attention_bench.measure(p, settings, impls)}
            return derive({**row, **env_of(p.device)})
        return p.id, p.label, measure

    return _loop([item(p) for p in points], db_path, results.ATTENTION, redo=redo, progress=progress)


# -- models ------------------------------------------------------------------------------------

def resolve_device(device: str | None) -> str:
    """`cuda` when asked or, with none asked, when torch in a child process sees a GPU; else `cpu`.

    A child process keeps torch (and CUDA's initialisation) out of the sweep's own process.
    """
    if device is not None:
        return device
    code = "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "cpu"


def _error_line(output: str) -> str | None:
    lines = [line for line in output.splitlines() if line.startswith("Error: ")]
    return lines[-1].removeprefix("Error: ").strip() if lines else None


def classify(returncode: int, output: str) -> tuple[str, str | None]:
    """(status, reason) of a finished `profkit run` from its exit code and output.

    >>> classify(2, "Error: out of memory on cuda: --model xl ... did not fit")
    ('oom', 'out of memory on cuda: --model xl ... did not fit')
    >>> classify(2, "Error: attention backend 'flash' cannot run float32 ...")
    ('refused', "attention backend 'flash' cannot run float32 ...")
    >>> classify(-11, "")
    ('error', 'the run died of signal 11')
    """
    if returncode == 0:
        return "ok", None
    reason = _error_line(output)
    if reason is None:
        tail = [line for line in output.strip().splitlines() if line.strip()][-1:]
        reason = (f"the run died of signal {-returncode}" if returncode < 0
                  else f"exit code {returncode}: {tail[0][:300] if tail else 'no output'}")
    if "out of memory" in reason.lower():
        return "oom", reason
    if reason.startswith("attention backend '"):  # check_backend's refusals: the shape, dtype or device
        return "refused", reason
    return "error", reason


def _profkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "profkit", *args]


def _run_child(cmd: list[str], log: Path, timeout: float | None) -> tuple[int, str, str, float]:
    """Run `cmd`, both its streams into `log`; (exit code, stdout, stderr, wall seconds), 124 on timeout."""
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def text(raw: str | bytes | None) -> str:
        return raw.decode(errors="replace") if isinstance(raw, bytes) else (raw or "")

    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        code, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        code, out, err = 124, text(e.stdout), text(e.stderr)
    layout.write_text(log, f"$ {' '.join(cmd)}\n{out}{err}")
    return code, out, err, time.perf_counter() - t0


def _record_columns(rec: layout.RunRecord) -> dict[str, Any]:
    s = rec.summary
    micro = statistics.median(rec.micro_batch_ms) if rec.micro_batch_ms else None
    return {"ms_per_step": s.median_ms, "mean_ms": s.mean_ms, "std_ms": s.std_ms, "min_ms": s.min_ms,
            "max_ms": s.max_ms, "ms_per_micro_batch": micro, "tokens_per_step": rec.resolved.tokens_per_step,
            "tokens_per_s": s.tokens_per_s, "first_step_ms": rec.first_step_ms, "compile_s": rec.compile_s,
            "peak_memory_bytes": rec.peak_memory_bytes, "params": rec.resolved.params}


def _profile_columns(cfg: RunConfig, name: str, captures: Path, log_dir: Path,
                     timeout: float | None) -> dict[str, Any]:
    """`profkit profile` of the point, then report.md, its step verdict, categories and FLOPs.

    Each report that fails leaves its reason in profile_note; the point's bare run stands.
    """
    notes: list[str] = []
    out: dict[str, Any] = {}
    code, out_text, err, _ = _run_child(_profkit("profile", *cfg.to_args(), "--name", name, "--out-dir",
                                                 str(captures), "--force"), log_dir / "profile.log", timeout)
    capture = captures / name
    if code != 0:
        return {"profile_note": f"profile: {classify(code, out_text + err)[1]}"}
    out["capture"] = str(capture)

    def report(kind: str, *args: str) -> Any:
        code, stdout, stderr, _ = _run_child(_profkit("report", kind, str(capture), *args),
                                             log_dir / f"report-{kind}.log", timeout)
        if code != 0:
            notes.append(f"report {kind}: {classify(code, stdout + stderr)[1]}")
            return None
        return json.loads(stdout) if args[-1] == "json" else stdout

    report("capture", "--force")
    phases = report("timeline", "--format", "json")
    step = [r for r in phases or [] if str(r.get("name")) == "step"]
    if step:
        out["verdict"], out["gpu_idle_pct"] = step[0].get("verdict"), step[0].get("gpu_idle_pct")
    cats = report("kernels", "--by", "category", "--format", "json")
    if cats is not None:
        out["categories"] = json.dumps({str(r["name"]): r.get("time_pct") for r in cats})
    flops = report("flops", "--format", "json")
    if flops is not None:
        # the step's top-level paths (forward, loss, backward, optimizer) hold every counted FLOP once
        out["exact_flops"] = sum(float(r["flops"]) for r in flops if "/" not in str(r["path"]))
    if notes:
        out["profile_note"] = "; ".join(notes)
    return out


def models(configs: list[RunConfig], db_path: Path, runs_dir: Path, *, profile: bool = False, redo: bool = False,
           timeout: float | None = None, derive: Derive = dict, progress: Progress | None = None) -> Summary:
    """Run every models point not yet in the `models` table, each a fresh `profkit run` process.

    Args:
        configs: the points (device resolved: see resolve_device).
        runs_dir: each point's run folder (run.json, run.log) goes in runs_dir/<label>/, and with
            `profile` its capture in runs_dir/captures/<label>/.
        timeout: seconds a point may take before it is stopped and recorded `timeout`.
        derive: adds the derived metrics (the CLI passes analyze.sweeps.model_metrics).
    """
    def item(cfg: RunConfig) -> tuple[str, str, Callable[[], dict[str, Any]]]:
        pid = model_point_id(cfg, profile=profile)
        name = layout.check_name(f"{cfg.label}-{pid[:6]}")

        def measure() -> dict[str, Any]:
            folder = runs_dir / name
            if folder.exists():  # a point redone, or one interrupted before: its leftovers go
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            row: dict[str, Any] = {"point_id": pid, **model_config(cfg), "profiled": profile, "run_dir": str(folder)}
            code, out, err, wall = _run_child(_profkit("run", *cfg.to_args(), "--out", str(folder), "--force"),
                                              folder / "run.log", timeout)
            status, reason = (("timeout", f"stopped after {timeout:g} s") if code == 124 and timeout
                              else classify(code, out + err))
            row.update(status=status, reason=reason, wall_s=wall)
            rec = layout.find_run(folder) if status == "ok" else None
            if rec is not None:
                row.update(_record_columns(rec))
                if profile:
                    row.update(_profile_columns(cfg, name, runs_dir / "captures", folder, timeout))
            env = rec.environment if rec else {"profkit": __version__, "python": platform.python_version(),
                                               "platform": platform.platform()}
            return derive({**row, **_env_columns(env)})
        return pid, cfg.label, measure

    return _loop([item(c) for c in configs], db_path, results.MODELS, redo=redo, progress=progress)
