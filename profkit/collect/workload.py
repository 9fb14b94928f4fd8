"""`profkit run`: build one workload, warm it up, time the measured steps, write run.json.

The measured steps sit between `torch.cuda.profiler.start()` and `stop()`, each inside an
NVTX range `step_i`, so `nsys profile --capture-range=cudaProfilerApi` records exactly them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import profkit.models as models
from profkit import layout, ranges
from profkit.collect import hooks, memory, outputs
from profkit.collect.distributed import RankEnv
from profkit.collect.env import environment
from profkit.config import RunConfig
from profkit.errors import RunError
from profkit.models.attention import SDPA_BACKENDS, AttentionBackendError, check_backend

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BatchFn = Callable[[torch.device], tuple[Any, Tensor | None]]


@dataclass(slots=True)
class Workload:
    model: nn.Module
    make_batch: BatchFn
    n_params: int
    builtin: bool


def resolve_device(cfg: RunConfig, rank: RankEnv | None = None) -> torch.device:
    """The device: --device, else cuda when available; a rank's GPU is cuda:LOCAL_RANK."""
    if cfg.device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif cfg.device == "cuda" and not torch.cuda.is_available():
        raise RunError("device cuda was asked for but torch sees no CUDA GPU; use --device cpu"
                       + (" (several ranks on CPU talk through gloo)" if cfg.distributed else ""))
    else:
        device = torch.device(cfg.device)
    if rank is not None:
        from profkit.collect import parallel

        return parallel.device_of(rank, device.type)
    return device


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def preflight(cfg: RunConfig) -> tuple[str, str | None]:
    """Everything `profkit run` refuses before any work (device, attention backend), checked
    without building the model; returns the device type and torch's CUDA version."""
    device = resolve_device(cfg)
    check_attention(cfg, device)
    check_memory_snapshot(cfg, device)
    return device.type, torch.version.cuda


def check_memory_snapshot(cfg: RunConfig, device: torch.device) -> None:
    if cfg.memory_snapshot and device.type != "cuda":
        raise RunError(f"--memory-snapshot needs a CUDA GPU (torch records allocator history on CUDA only), and this "
                       f"run is on {device.type}; drop --memory-snapshot or use --device cuda")


def out_dir(cfg: RunConfig) -> Path:
    """The run's folder; refuses one that holds a run.json already, unless --force."""
    out = cfg.out or Path("runs") / f"{cfg.label}-{datetime.now():%Y%m%d-%H%M%S}"
    if (out / layout.RUN_FILE).exists() and not cfg.force:
        raise RunError(f"{out / layout.RUN_FILE} exists; choose another --out or pass --force to overwrite it")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder")
    return out


def load_user_model(spec: str, batch_size: int, context_length: int) -> tuple[nn.Module, BatchFn]:
    """`package.module:factory` -> factory(batch_size=, context_length=) -> (model, make_batch)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise RunError(f"cannot import {module_name!r} for --model {spec}: {e}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise RunError(f"{module_name!r} has no callable {attr!r} for --model {spec}")
    result = factory(batch_size=batch_size, context_length=context_length)
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module)
            and callable(result[1])):
        raise RunError(f"--model {spec}: the factory must return (nn.Module, make_batch); see README")
    return result


def build_workload(cfg: RunConfig, device: torch.device) -> Workload:
    B, T = cfg.resolved_batch_size, cfg.resolved_context_length
    torch.manual_seed(cfg.seed)
    if models.is_user_model(cfg.model):
        model, make_batch = load_user_model(cfg.model, B, T)
        model = model.to(device)
        builtin = False
    else:
        model = models.build(cfg.model, attn=cfg.attn, device=device)
        vocab = models.SIZES[cfg.model].vocab_size
        gen = torch.Generator(device).manual_seed(cfg.seed)
        tokens = torch.randint(vocab, (B, T + 1), device=device, generator=gen)

        def make_batch(_: torch.device) -> tuple[Tensor, Tensor]:
            return tokens[:, :-1], tokens[:, 1:]

        builtin = True
    return Workload(model, make_batch, models.count_params(model), builtin)


def check_attention(cfg: RunConfig, device: torch.device) -> None:
    try:
        if models.is_user_model(cfg.model):
            check_backend(cfg.attn, device, DTYPES[cfg.dtype], seq_len=8, head_dim=64, probe=False)
        else:
            size = models.SIZES[cfg.model]
            check_backend(cfg.attn, device, DTYPES[cfg.dtype], seq_len=cfg.resolved_context_length,
                          head_dim=size.d_model // size.n_heads)
    except AttentionBackendError as e:
        raise RunError(str(e)) from None


def make_optimizer(cfg: RunConfig, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """`--optimizer`: AdamW (weight decay 1e-2, torch's default and seed 000's), fused or not, or plain SGD."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=1e-4)
    # A fused kernel has no `meta` implementation; profkit flops' replay counts the foreach path's FLOPs.
    fused = cfg.optimizer == "adamw-fused" and device.type != "meta"
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2, fused=fused or None)


def make_step(cfg: RunConfig, w: Workload, model: Callable[..., Any], device: torch.device,
              micro: Callable[[int], None] | None = None) -> Callable[[], None]:
    """One step of `cfg.mode`, with its phases as NVTX ranges; `model` may be w.model compiled.

    With --grad-accum N a step is N forward+backward micro-batches (each loss divided by N, the
    gradients accumulated) and one optimizer step; `micro(i)` is called before micro-batch i and
    `micro(N)` after the last backward, before the optimizer (the per-micro-batch timer's marks).
    """
    dtype = DTYPES[cfg.dtype]
    # On `meta` (profkit flops' replay) there is no autocast nor GradScaler: FLOPs do not depend on them.
    meta = device.type == "meta"
    autocast: Any = (contextlib.nullcontext() if meta
                     else torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32))
    train = cfg.mode != "fwd"
    w.model.train(train)
    opt = make_optimizer(cfg, w.model, device) if cfg.mode == "step" else None
    scaler = torch.amp.GradScaler(device.type) if (train and cfg.dtype == "fp16" and not meta) else None
    # For a user's model, a pinned backend covers every SDPA call it makes.
    pin = (not w.builtin and cfg.attn != "naive")
    # CUDA graphs (reduce-overhead) reuse their output buffers: each micro-batch starts a new graph step.
    graphs = cfg.compile and cfg.compile_mode == "reduce-overhead" and not meta
    inputs, targets = w.make_batch(device)
    mark = micro or (lambda i: None)

    def forward() -> Tensor:
        with ranges.phase("forward"), autocast:
            if isinstance(inputs, dict):
                out = model(**inputs)
            else:
                out = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
            with ranges.phase("loss"):
                try:
                    return outputs.loss_of(out, targets)
                except outputs.UnsupportedOutput as e:
                    raise RunError(f"--model {cfg.model}: {e}") from None

    def step() -> None:
        with torch.nn.attention.sdpa_kernel(SDPA_BACKENDS[cfg.attn]) if pin else contextlib.nullcontext():
            if not train:
                if graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                with torch.no_grad():
                    forward()
                return
            w.model.zero_grad(set_to_none=True)  # frees grads: no kernels, no accumulation
            for i in range(cfg.grad_accum):
                mark(i)
                if graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                loss = forward()
                if cfg.grad_accum > 1:
                    loss = loss / cfg.grad_accum  # the mean over the iteration's micro-batches
                with ranges.phase("backward"):
                    (scaler.scale(loss) if scaler else loss).backward()
            mark(cfg.grad_accum)
            if opt is not None:
                with ranges.phase("optimizer"):
                    if scaler:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        # On `meta`, torch <= 2.12's AdamW makes its step counters with a bare
                        # torch.tensor(0.0), which the replay's meta device context puts on `meta`,
                        # where the .item() of the update cannot read them: keep them on the CPU.
                        with torch.device("cpu") if meta else contextlib.nullcontext():
                            opt.step()
                    opt.zero_grad(set_to_none=True)

    return step


def summarize(times_ms: list[float], tokens_per_step: int) -> layout.StepSummary:
    mean = statistics.fmean(times_ms)
    return layout.StepSummary(
        mean_ms=mean,
        std_ms=statistics.stdev(times_ms) if len(times_ms) > 1 else 0.0,
        median_ms=statistics.median(times_ms),
        min_ms=min(times_ms),
        max_ms=max(times_ms),
        tokens_per_s=tokens_per_step / (mean / 1e3) if mean > 0 else math.inf,
    )


class _Timer:
    """Per-step times: CUDA events on the GPU (no sync between steps), a host clock on CPU; with
    micro-batches, a mark before each and one after the last backward (`micro`)."""

    def __init__(self, device: torch.device, n: int, n_micro: int = 0) -> None:
        self.cuda = device.type == "cuda"
        self.events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                       for _ in range(n)] if self.cuda else []
        self.host: list[float] = []
        self.n_micro = n_micro
        self.marks: list[list[Any]] = []  # per measured step: n_micro + 1 events (or perf_counter values)

    @contextlib.contextmanager
    def step(self, i: int) -> Iterator[None]:
        self.marks.append([])
        if self.cuda:
            self.events[i][0].record()
            yield
            self.events[i][1].record()
        else:
            t0 = time.perf_counter()
            yield
            self.host.append((time.perf_counter() - t0) * 1e3)

    def micro(self, i: int) -> None:
        if not self.n_micro or not self.marks:
            return
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks[-1].append(event)
        else:
            self.marks[-1].append(time.perf_counter())

    def times_ms(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in self.events]
        return self.host

    def micro_ms(self) -> list[float] | None:
        """Every measured micro-batch's forward+backward time, in order (call after times_ms)."""
        if not self.n_micro:
            return None
        out: list[float] = []
        for marks in self.marks:
            for a, b in zip(marks, marks[1:], strict=False):
                out.append(a.elapsed_time(b) if self.cuda else (b - a) * 1e3)
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compile_seconds() -> float | None:
    try:
        from torch._dynamo.utils import get_compilation_metrics
    except ImportError:  # private API; absent in some releases
        return None
    return sum(getattr(m, "entire_frame_compile_time_s", None) or 0.0 for m in get_compilation_metrics())


def run(cfg: RunConfig, *, progress: Callable[[str, int, int], None] | None = None,
        rank: RankEnv | None = None) -> layout.RunRecord:
    """Run the workload and write `run.json` into its folder; returns what was written.

    As one rank of a torchrun job (`rank`), the process group is joined first, the model wrapped
    in cfg.strategy, and the record written as rank{R}.run.json (rank 0's also as run.json).

    Raises:
        RunError: bad device, backend or model; or the run ran out of memory (the message says
            what ran out, for which size and batch).
    """
    if rank is not None and cfg.out is None:
        raise RunError("under torchrun, give --out DIR: every rank writes its rank{R}.run.json there")
    cfg = dataclasses.replace(cfg, out=out_dir(cfg) if rank is None or rank.rank == 0 else cfg.out)
    device = resolve_device(cfg, rank)
    check_attention(cfg, device)
    check_memory_snapshot(cfg, device)
    backend = None
    if rank is not None:
        from profkit.collect import parallel

        ranges.set_rank(rank.rank)
        backend = parallel.start(cfg, rank, device)
    try:
        record = _run(cfg, device, progress or (lambda what, i, n: None), rank)
    except torch.OutOfMemoryError as e:
        raise RunError(_out_of_memory(cfg, device, " ".join([str(e), *getattr(e, "__notes__", [])]))) from None
    except RuntimeError as e:
        if "can't allocate memory" not in str(e) and "out of memory" not in str(e).lower():
            raise
        raise RunError(_out_of_memory(cfg, device, str(e))) from None
    finally:
        if rank is not None:
            parallel.stop()
    assert cfg.out is not None
    cfg.out.mkdir(parents=True, exist_ok=True)
    if rank is not None:
        record = dataclasses.replace(record, resolved=dataclasses.replace(
            record.resolved, rank=rank.rank, local_rank=rank.local_rank, world_size=rank.world_size,
            backend=backend))
        record.write(cfg.out, layout.RANK_RUN.format(rank=rank.rank))
        if rank.rank != 0:
            return record
    record.write(cfg.out)
    return record


def _out_of_memory(cfg: RunConfig, device: torch.device, message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "out of memory"
    snapshot = f" (profkit report memory {cfg.out / layout.MEMORY_SNAPSHOT} says what filled it)" if (
        cfg.memory_snapshot and cfg.out is not None and (cfg.out / layout.MEMORY_SNAPSHOT).exists()) else ""
    return (f"out of memory on {device.type}: --model {cfg.model} --mode {cfg.mode} --dtype {cfg.dtype} with batch "
            f"{cfg.resolved_batch_size} x {cfg.resolved_context_length} did not fit ({first[:200]}); "
            f"try a smaller --batch-size or --context-length{snapshot}")


def _run(cfg: RunConfig, device: torch.device, report: Callable[[str, int, int], None],
         rank: RankEnv | None = None) -> layout.RunRecord:
    w = build_workload(cfg, device)
    # Inside a compiled model NVTX calls would be graph breaks: keep only the runner's phases.
    emit = ranges.resolve(cfg.nvtx)
    ranges.set_enabled(emit, inner=not cfg.compile)
    range_hooks = []
    if (emit or cfg.memory_snapshot) and not cfg.compile:  # the snapshot's timeline needs the ranges too
        if w.builtin:
            range_hooks = hooks.add_backward_ranges(w.model)
        else:
            range_hooks = hooks.add_module_ranges(w.model, cfg.nvtx_depth)
    wrapped: nn.Module = w.model
    if rank is not None:  # after the hooks, which name the model's own modules, not the wrapper's
        from profkit.collect import parallel

        wrapped = parallel.wrap(w.model, cfg, device)
    model = torch.compile(wrapped, mode=cfg.compile_mode) if cfg.compile else wrapped
    timer = _Timer(device, cfg.steps, cfg.grad_accum if cfg.grad_accum > 1 else 0)
    step = make_step(cfg, w, model, device, micro=timer.micro)
    tokens = cfg.resolved_batch_size * cfg.resolved_context_length * cfg.grad_accum

    first_ms = None
    with ranges.phase("warmup"):
        for i in range(cfg.warmup):
            report("warmup", i, cfg.warmup)
            t0 = time.perf_counter()
            step()
            if i == 0:
                _sync(device)
                first_ms = (time.perf_counter() - t0) * 1e3
    _sync(device)
    if rank is not None:  # every rank starts its measured steps together, outside the capture
        parallel.barrier(device)
        _sync(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    resident = torch.cuda.memory_allocated(device) if cuda else None

    timer.marks.clear()  # warm-up steps marked nothing (no step open), but start clean
    recorder = memory.Recorder(cfg, w.model, device, cfg.out) if cfg.memory_snapshot and cfg.out else None
    if cuda:
        torch.cuda.profiler.start()
    with recorder.window() if recorder else contextlib.nullcontext():  # history over the measured steps only
        for i in range(cfg.steps):
            report("measure", i, cfg.steps)
            if recorder:
                recorder.step = i
            with ranges.phase(f"step_{i}"), timer.step(i):
                step()
        times = timer.times_ms()  # synchronizes: every measured kernel is inside the capture
    if cuda:
        torch.cuda.profiler.stop()
    peak = torch.cuda.max_memory_allocated(device) if cuda else None
    memory_record = None
    if recorder:
        # The cost: the same steps again without history, taps or hooks (as a run without the flag).
        if not emit:
            for h in range_hooks:
                h.remove()
        baseline = _Timer(device, cfg.steps)
        for i in range(cfg.steps):
            report("baseline", i, cfg.steps)
            with baseline.step(i):
                step()
        memory_record = recorder.record(times, baseline.times_ms())

    return layout.RunRecord(
        config=cfg,
        resolved=layout.Resolved(
            device=str(device), batch_size=cfg.resolved_batch_size, context_length=cfg.resolved_context_length,
            tokens_per_step=tokens, params=w.n_params, timer="cuda_events" if cuda else "host_clock",
            nvtx=emit, nvtx_in_model=emit and not cfg.compile),
        environment=environment(device),
        steps_ms=times,
        micro_batch_ms=timer.micro_ms(),
        summary=summarize(times, tokens),
        first_step_ms=first_ms,
        compile_s=_compile_seconds() if cfg.compile else None,
        peak_memory_bytes=peak,
        resident_memory_bytes=resident,
        memory=memory_record,
    )
