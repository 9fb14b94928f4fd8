"""A synthetic memory snapshot with everything known: built by tests/allocator_model.py's allocator,
with profkit's sidecar beside it, a two-step training window with backward ranges on a second
thread, and the answers (peak, what is alive at it by category, where) kept by the scenario
itself while it runs, not read back from profkit."""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.allocator_model import KB, MB, Model

SIZES = [100, 512, 513, 4000, 65536, 300 * KB, MB, MB + 1, 2 * MB + 300 * KB, 5 * MB, 7 * MB + 3, 11 * MB, 33 * MB]


@dataclass
class Scenario:
    model: Model = field(default_factory=Model)
    log: list[list[Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    tensors: list[list[Any]] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)  # live address -> category
    paths: list[list[str]] = field(default_factory=lambda: [[], []])  # per thread: open range names
    host_offset_us: int = 0  # host clock minus the allocator's clock
    # answers
    peak: int = 0
    peak_categories: dict[str, int] = field(default_factory=dict)
    peak_path: str = ""
    alloc_paths: dict[int, str] = field(default_factory=dict)  # trace index of an alloc -> its path
    alloc_blocks: dict[int, int] = field(default_factory=dict)  # trace index of an alloc -> its block's size
    addr_paths: dict[int, str] = field(default_factory=dict)  # live address -> where it was allocated
    forward_end: dict[int, int] = field(default_factory=dict)  # step_0: layer -> activation bytes when forward ends
    step: int = -1
    trace_start: int = 0  # where the window begins in the model's whole trace

    def path(self) -> str:
        main, other = self.paths
        if other:
            return "/".join(main + other)
        return "/".join(main) or "(outside every range)"

    def begin(self, thread: int, name: str) -> None:
        t = self.model.time_us = self.model.time_us + 1
        self.model.time_us += 1
        self.log.append([thread, "B", name, (t + self.host_offset_us) * 1000 + 123])
        self.annotations.append({"name": "profkit:" + name, "stage": "START", "device": 0, "time_us": t})
        self.paths[thread].append(name)

    def end(self, thread: int, name: str) -> None:
        t = self.model.time_us = self.model.time_us + 1
        self.model.time_us += 1
        self.log.append([thread, "E", name, (t + self.host_offset_us) * 1000 + 456])
        self.annotations.append({"name": "profkit:" + name, "stage": "END", "device": 0, "time_us": t})
        self.paths[thread].pop()

    def alloc(self, size: int, category: str, window: bool = True) -> int:
        addr = self.model.alloc(size)
        self.labels[addr] = category
        self.addr_paths[addr] = self.path()
        if window:
            self.alloc_paths[len(self.model.trace) - 1] = self.path()
            self.alloc_blocks[len(self.model.trace) - 1] = self.model.blocks[addr].size
            if self.model.allocated > self.peak:
                self.peak = self.model.allocated
                self.peak_path = self.path()
                cats: dict[str, int] = {}
                for a, c in self.labels.items():
                    cats[c] = cats.get(c, 0) + self.model.blocks[a].size
                self.peak_categories = cats
        return addr

    def free(self, addr: int) -> None:
        self.model.free(addr)
        del self.labels[addr]

    def note(self, kind: str, addr: int, size: int, name: str = "") -> None:
        self.tensors.append([kind, self.step, addr, size, name])


def build(folder: Path, *, seed: int = 0, annotations: bool = True, host_offset_us: int = 0,
          max_entries: int = 100_000, steps: int = 2) -> Scenario:
    """Write folder/memory.pickle and folder/memory.json; returns the scenario with its answers."""
    rng = random.Random(seed)
    s = Scenario(host_offset_us=host_offset_us)
    m = s.model
    # Before the window: parameters, optimizer state, the batch; some churn leaves holes.
    params = [(s.alloc(n, "parameters", window=False), n) for n in (3 * MB + 1, 700 * KB, 12 * MB, 4 * MB)]
    opt = [(s.alloc(n, "optimizer_state", window=False), n) for n in (3 * MB + 1, 12 * MB)]
    batch = s.alloc(8 * KB, "other", window=False)
    churn = [s.alloc(rng.choice(SIZES), "temporaries", window=False) for _ in range(30)]
    for a in churn[::2]:
        s.free(a)
    for a in churn[1::2]:
        s.free(a)
    m.empty_cache()
    hole = s.alloc(3 * MB, "temporaries", window=False)
    s.alloc(16 * MB, "other", window=False)  # stays: leaves a 3 MiB hole behind `hole` once it goes
    s.free(hole)
    start_trace = len(m.trace)
    start_segments = m.segments_state()
    start_allocated, start_reserved = m.allocated, m.reserved
    m.reset_peak()
    del batch
    for a, n in params:
        s.note("parameter", a, n, "w")  # step -1: when the window opened
    for step in range(steps):
        s.step = step
        s.begin(0, f"step_{step}")
        for a, n in opt:
            s.note("optimizer_state", a, n, "w.exp_avg")
        s.begin(0, "forward")
        saved = []
        for layer in range(2):
            s.begin(0, f"layer_{layer}")
            s.begin(0, "attention")
            first = s.alloc(2 * MB + 300 * KB, "activations")
            saved.append(first)
            s.note("saved", first, 0)
            for _ in range(6):
                n = rng.choice(SIZES)
                a = s.alloc(n, "temporaries")
                if rng.random() < 0.5:
                    s.labels[a] = "activations"
                    s.note("saved", a, n)
                    saved.append(a)
                else:
                    s.free(a)
            copy = s.alloc(2 * MB, "autocast_copies")
            s.note("autocast_copy", copy, 2 * MB)
            saved.append(copy)
            s.end(0, "attention")
            s.end(0, f"layer_{layer}")
        s.end(0, "forward")
        if step == 0:
            for layer in range(2):
                s.forward_end[layer] = sum(m.blocks[a].size for a, c in s.labels.items() if c == "activations"
                                           and s.addr_paths[a].startswith(f"step_0/forward/layer_{layer}"))
        s.begin(0, "backward")
        grads = []
        for layer in (1, 0):
            s.begin(1, f"layer_{layer}")  # the autograd thread: grafted under backward
            for _, n in params[layer * 2:(layer + 1) * 2]:
                g = s.alloc(n, "gradients")
                s.note("gradient", g, n)
                grads.append(g)
            tmp = [s.alloc(rng.choice(SIZES), "temporaries") for _ in range(3)]
            for a in saved[len(saved) // 2:] if layer == 1 else saved[:len(saved) // 2]:
                s.free(a)
            for a in tmp:
                s.free(a)
            s.end(1, f"layer_{layer}")
        s.end(0, "backward")
        s.begin(0, "optimizer")
        tmp = [s.alloc(rng.choice(SIZES), "temporaries") for _ in range(4)]
        for a in tmp + grads:
            s.free(a)
        s.end(0, "optimizer")
        s.end(0, f"step_{step}")
    trace = m.trace[start_trace:]
    snap = {"segments": m.segments_state(), "device_traces": [trace],
            "allocator_settings": {"expandable_segments": False, "max_split_size": -1},
            "external_annotations": s.annotations if annotations else []}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "memory.pickle").write_bytes(pickle.dumps(snap, protocol=4))
    sidecar = {"format": "profkit-memory", "version": 1, "device": 0, "stacks": "python", "max_entries": max_entries,
               "overflowed": False, "oom": False, "annotation_prefix": "profkit:", "annotations": len(s.annotations),
               "start": {"allocated_bytes": start_allocated, "reserved_bytes": start_reserved,
                         "segments": start_segments},
               "end": {"allocated_bytes": m.allocated, "reserved_bytes": m.reserved, "peak_allocated_bytes": m.peak,
                       "peak_reserved_bytes": m.peak_reserved},
               "ranges": {"columns": ["thread", "kind", "name", "host_ns"], "rows": s.log},
               "tensors": {"columns": ["kind", "step", "address", "bytes", "name"], "rows": s.tensors},
               "run": {"model": "tiny", "mode": "step", "dtype": "bf16", "attn": "naive", "batch_size": 2,
                       "context_length": 32, "steps": steps}}
    (folder / "memory.json").write_text(json.dumps(sidecar))
    s.trace_start = start_trace
    return s
