"""`--memory-snapshot`: the CUDA caching allocator's history over the measured steps.

torchtitan's MemoryProfiler, grown for profkit's ranges. Two files go into the run folder:

- `memory.pickle`: `torch.cuda.memory._snapshot()` as recorded over the measured steps only,
  pickled with protocol 4 (PyTorch's viewer, pytorch.org/memory_viz, cannot read newer ones);
- `memory.json`: what the snapshot does not say, for `profkit report memory`: the allocator's
  blocks when the window opened (the replay starts from them), torch's own peak counters over
  the window, the timeline of profkit's ranges on every thread, and the storages that tell what
  a block holds (parameters, buffers, gradients, optimizer state, tensors saved for backward,
  autocast's weight copies), by address.

Ranges: while the window is open every profkit range (phases, model annotations, the backward
ranges that hooks push on the autograd thread) is tapped (`ranges.tap`), with or without a
profiler attached. Each push and pop is logged with its thread, in host time, and is also a
`record_function`, which torch stores in the snapshot's `external_annotations` in the
snapshot's own clock when history runs with `global_record_annotations=True`: the report
places allocations against those times. `_set_memory_metadata` would not do: it is per thread,
so backward's allocations, made on the autograd thread, did not carry it (3 of ~2,400 events).

On `torch.OutOfMemoryError` inside the window, what was recorded is dumped, said, and the error
re-raised (torchtitan once swallowed it).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from profkit import layout, ranges
from profkit.config import RunConfig

ANNOTATION_PREFIX = "profkit:"  # record_function names: tells profkit's annotations from torch's own
SIDECAR_FORMAT = "profkit-memory"
SIDECAR_VERSION = 1
PICKLE_PROTOCOL = 4  # memory_viz's reader stops at protocol 4


def _record_history(cfg: RunConfig) -> None:
    # Python stacks by default: C++ frames (stacks="all") make every dump symbolize native
    # frames, which is slow (torchtitan skips them for that reason).
    kwargs: dict[str, Any] = dict(enabled="all", context="all", stacks=cfg.memory_stacks,
                                  max_entries=cfg.memory_max_entries)
    try:
        torch.cuda.memory._record_memory_history(**kwargs, global_record_annotations=True)
    except TypeError:  # torch before global_record_annotations: the host-time timeline still places events
        torch.cuda.memory._record_memory_history(**kwargs)


def _segments(snapshot: dict[str, Any], device: int) -> list[dict[str, Any]]:
    """The snapshot's segments of `device`, reduced to what the replay needs (no frames)."""
    out = []
    for s in snapshot.get("segments", []):
        if s.get("device", device) != device:
            continue
        out.append({"address": s["address"], "total_size": s["total_size"], "stream": s.get("stream", 0),
                    "segment_type": s.get("segment_type", "large"),
                    "blocks": [{"address": b["address"], "size": b["size"],
                                "requested_size": b.get("requested_size", b["size"]), "state": b["state"]}
                               for b in s.get("blocks", [])]})
    return out


def _write_atomic(path: Path, write: Callable[[Any], None]) -> int:
    """Write `path` through a temporary name beside it, mode 0644; returns its size."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, layout.FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        write(f)
    os.chmod(tmp, layout.FILE_MODE)
    os.replace(tmp, path)
    return path.stat().st_size


class Recorder:
    """The window's taps and hooks, and what they saw; `window()` opens and closes it.

    Works on CPU too, without history (tests check the timeline and tensors there); the
    snapshot itself is CUDA-only, as torch's allocator history is.
    """

    def __init__(self, cfg: RunConfig, model: nn.Module, device: torch.device, out: Path) -> None:
        self.cfg, self.model, self.device, self.out = cfg, model, device, out
        self.cuda = device.type == "cuda"
        self.step = -1
        self.log: list[list[Any]] = []  # [thread, "B"|"E", name, host time ns]
        self.threads: dict[int, int] = {}  # thread ident -> index (0: the thread that opened the window)
        self.tensors: list[list[Any]] = []  # [kind, step, storage address, storage bytes, name]
        self.start: dict[str, Any] = {}
        self.end: dict[str, Any] = {}
        self.oom = False
        self.snapshot_events = 0
        self.pickle_bytes = 0
        self.dump_ms = 0.0
        self._local = threading.local()
        self._handles: list[Any] = []
        self._names = {id(p): n for n, p in model.named_parameters()}
        self._shapes = {tuple(p.shape) for p in model.parameters() if p.dtype == torch.float32}
        self._autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.dtype)

    # -- the range timeline --------------------------------------------------------------
    def _thread(self) -> int:
        ident = threading.get_ident()
        k = self.threads.get(ident)
        if k is None:
            k = self.threads[ident] = len(self.threads)
        return k

    def _push(self, name: str) -> None:
        self.log.append([self._thread(), "B", name, time.time_ns()])  # CLOCK_REALTIME, as torch's trace times
        rf = torch.autograd.profiler.record_function(ANNOTATION_PREFIX + name)
        rf.__enter__()
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append(rf)

    def _pop(self, name: str) -> None:
        stack = getattr(self._local, "stack", None)
        if stack:
            stack.pop().__exit__(None, None, None)
        self.log.append([self._thread(), "E", name, time.time_ns()])

    # -- what the blocks hold ------------------------------------------------------------
    def _note(self, kind: str, t: Tensor | None, name: str = "") -> None:
        if t is None or t.device.type != self.device.type or t.device.type == "meta":
            return
        storage = t.untyped_storage()
        self.tensors.append([kind, self.step, storage.data_ptr(), storage.nbytes(), name])

    def _pack(self, t: Tensor) -> Tensor:
        # Autograd hands inputs over detached, so a weight copy's ToCopyBackward0 is gone by
        # now: autocast's copy is told by its dtype and a float32 parameter's exact shape.
        copy = self._autocast is not None and t.dtype == self._autocast and tuple(t.shape) in self._shapes
        self._note("autocast_copy" if copy else "saved", t)
        return t.detach()  # never the tensor itself: a saved output holding its grad_fn is a cycle

    def _after_optimizer_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for p, state in opt.state.items():
            for key, value in state.items():
                if isinstance(value, Tensor):
                    self._note("optimizer_state", value, f"{self._names.get(id(p), '?')}.{key}")

    def _attach(self) -> None:
        for name, p in self.model.named_parameters():
            self._note("parameter", p, name)
            self._note("gradient", p.grad, name)  # step -1: alive when the window opened
            if p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(
                    lambda p, name=name: self._note("gradient", p.grad, name)))
        for name, b in self.model.named_buffers():
            self._note("buffer", b, name)
        self._handles.append(register_optimizer_step_post_hook(self._after_optimizer_step))

    def _detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # -- the window ----------------------------------------------------------------------
    @contextlib.contextmanager
    def window(self) -> Iterator[None]:
        """Open the window: taps, hooks, history; on the way out (the steps synchronized by the
        caller), dump memory.pickle and memory.json. Out of memory inside: dump, say, re-raise."""
        self._thread()  # this thread is thread 0
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = {"allocated_bytes": torch.cuda.memory_allocated(self.device),
                          "reserved_bytes": torch.cuda.memory_reserved(self.device),
                          "segments": _segments(torch.cuda.memory._snapshot(), self._index())}
        self._attach()
        if self.cuda:
            _record_history(self.cfg)
        try:
            # Saved-tensor hooks would break a compiled graph: under --compile, saved tensors are not told apart.
            saved = (contextlib.nullcontext() if self.cfg.compile
                     else torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t))
            with ranges.tap(self._push, self._pop, inner=not self.cfg.compile), saved:
                yield
        except torch.OutOfMemoryError as e:
            self.oom = True
            self._detach()
            if self.cuda:
                path = self.dump()
                print(f"out of memory: the allocator history up to it is in {path}", file=sys.stderr)
                e.add_note(f"the allocator history up to it is in {path} (profkit report memory {path})")
            raise
        self._detach()
        if self.cuda:
            self.dump()

    def _index(self) -> int:
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def dump(self) -> Path:
        """Write memory.pickle (the snapshot, protocol 4) and memory.json; stop the history."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.end = {"allocated_bytes": torch.cuda.memory_allocated(self.device),
                    "reserved_bytes": torch.cuda.memory_reserved(self.device),
                    "peak_allocated_bytes": torch.cuda.max_memory_allocated(self.device),
                    "peak_reserved_bytes": torch.cuda.max_memory_reserved(self.device)}
        t0 = time.perf_counter()
        snapshot = torch.cuda.memory._snapshot()  # before disabling: that clears the history
        path = self.out / layout.MEMORY_SNAPSHOT
        self.pickle_bytes = _write_atomic(path, lambda f: pickle.dump(snapshot, f, protocol=PICKLE_PROTOCOL))
        self.dump_ms = (time.perf_counter() - t0) * 1e3
        torch.cuda.memory._record_memory_history(enabled=None)
        traces = snapshot.get("device_traces", [])
        index = self._index()
        self.snapshot_events = len(traces[index]) if index < len(traces) else 0
        annotations = [a for a in snapshot.get("external_annotations", [])
                       if str(a.get("name", "")).startswith(ANNOTATION_PREFIX)]
        sidecar = {
            "format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "device": index,
            "stacks": self.cfg.memory_stacks, "max_entries": self.cfg.memory_max_entries,
            "overflowed": self.snapshot_events >= self.cfg.memory_max_entries, "oom": self.oom,
            "annotation_prefix": ANNOTATION_PREFIX, "annotations": len(annotations),
            "start": self.start, "end": self.end,
            "ranges": {"columns": ["thread", "kind", "name", "host_ns"], "rows": self.log},
            "tensors": {"columns": ["kind", "step", "address", "bytes", "name"], "rows": self.tensors},
            "run": {"model": self.cfg.model, "mode": self.cfg.mode, "dtype": self.cfg.dtype, "attn": self.cfg.attn,
                    "batch_size": self.cfg.resolved_batch_size, "context_length": self.cfg.resolved_context_length,
                    "steps": self.cfg.steps},
        }
        layout.write_text(self.out / layout.MEMORY_SIDECAR, json.dumps(sidecar, separators=(",", ":")) + "\n")
        return path

    def record(self, steps_ms: list[float], steps_ms_without: list[float]) -> layout.MemoryRecord:
        """run.json's `memory`: the files, the history's size, and its cost against steps without it."""
        with_, without = statistics.median(steps_ms), statistics.median(steps_ms_without) if steps_ms_without else 0
        return layout.MemoryRecord(
            snapshot=layout.MEMORY_SNAPSHOT, events=self.snapshot_events, max_entries=self.cfg.memory_max_entries,
            overflowed=self.snapshot_events >= self.cfg.memory_max_entries, stacks=self.cfg.memory_stacks,
            pickle_bytes=self.pickle_bytes, dump_ms=self.dump_ms, steps_ms_without=steps_ms_without,
            overhead_pct=(with_ / without - 1) * 100 if without > 0 else None,
            peak_reserved_bytes=int(self.end.get("peak_reserved_bytes", 0)),
            start_allocated_bytes=int(self.start.get("allocated_bytes", 0)), oom=self.oom)
