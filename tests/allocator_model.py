"""An independent model of PyTorch's CUDA caching allocator, for the memory tests.

Written from the allocator's rules, not from profkit's replay: where profkit follows the
addresses a trace names, this model *chooses* blocks itself (best fit: the smallest free block
of the pool, then the lowest address), asks for segments when nothing fits, splits and merges,
and keeps torch's allocated_bytes statistic (block sizes, peak since reset). It writes the
trace torch would (alloc, free_requested, free_completed, segment_alloc, segment_free with
addr, size, stream, time_us, frames) and snapshots in torch's shape. Driven by a real trace
(`drive`), it checks that every allocation lands where the GPU's allocator put it.

Constants: c10/cuda/CUDACachingAllocator.cpp (kMinBlockSize 512, kSmallSize 1 MiB,
kSmallBuffer 2 MiB, kLargeBuffer 20 MiB, kMinLargeAlloc 10 MiB, kRoundLarge 2 MiB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KB, MB = 1024, 1024 * 1024


@dataclass
class Block:
    addr: int
    size: int
    segment: int
    small: bool
    allocated: bool = False
    requested: int = 0
    pending: bool = False  # freed, not yet free_completed: neither reused nor merged

    @property
    def free(self) -> bool:
        return not self.allocated and not self.pending


@dataclass
class Model:
    next_address: int = 0x7F0000000000
    time_us: int = 1_000_000
    blocks: dict[int, Block] = field(default_factory=dict)  # every block by address
    segments: dict[int, tuple[int, bool]] = field(default_factory=dict)  # addr -> (size, small)
    trace: list[dict[str, Any]] = field(default_factory=list)
    allocated: int = 0
    peak: int = 0
    reserved: int = 0
    peak_reserved: int = 0
    frame: tuple[str, int, str] = ("/repo/models/toy.py", 1, "forward")

    # -- the rules ------------------------------------------------------------------------
    @staticmethod
    def rounded(n: int) -> int:
        return 512 if n < 512 else (n + 511) // 512 * 512

    @staticmethod
    def segment_size(size: int) -> int:
        if size <= MB:
            return 2 * MB
        if size < 10 * MB:
            return 20 * MB
        return (size + 2 * MB - 1) // (2 * MB) * (2 * MB)

    def _best_fit(self, size: int, small: bool) -> Block | None:
        free = sorted((b.size, b.addr) for b in self.blocks.values() if b.free and b.small == small and b.size >= size)
        return self.blocks[free[0][1]] if free else None

    def _event(self, action: str, addr: int, size: int) -> None:
        self.time_us += 3
        file, line, name = self.frame
        self.trace.append({"action": action, "addr": addr, "size": size, "stream": 0, "time_us": self.time_us,
                           "frames": [{"filename": "/site-packages/torch/nn/functional.py", "line": 9, "name": "x"},
                                      {"filename": file, "line": line, "name": name}]})

    def add_segment(self, addr: int, size: int, small: bool) -> Block:
        self.segments[addr] = (size, small)
        b = self.blocks[addr] = Block(addr, size, addr, small)
        self.reserved += size
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        self._event("segment_alloc", addr, size)
        return b

    def malloc(self, orig: int, *, at: int | None = None) -> int:
        """Allocate `orig` bytes; `at`: the address a real trace says (the choice is checked)."""
        size = self.rounded(orig)
        small = size <= MB
        b = self._best_fit(size, small)
        if b is None:
            raise LookupError("no free block: call add_segment first (drive) or use alloc()")
        if at is not None and b.addr != at:
            raise AssertionError(f"the model picked {b.addr:#x} for {orig} B, the trace says {at:#x}")
        rest = b.size - size
        if (rest >= 512) if small else (rest > MB):
            self.blocks[b.addr + size] = Block(b.addr + size, rest, b.segment, small)
            b.size = size
        b.allocated, b.requested = True, orig
        self.allocated += b.size
        self.peak = max(self.peak, self.allocated)
        self._event("alloc", b.addr, orig)
        return b.addr

    def alloc(self, orig: int) -> int:
        size = self.rounded(orig)
        if self._best_fit(size, size <= MB) is None:
            addr = self.next_address
            seg = self.segment_size(size)
            self.next_address += seg + 64 * MB
            self.add_segment(addr, seg, size <= MB)
        return self.malloc(orig)

    def free(self, addr: int) -> None:
        b = self.blocks[addr]
        assert b.allocated
        b.allocated = False
        self.allocated -= b.size
        self._event("free_requested", addr, b.requested)
        self._event("free_completed", addr, b.requested)
        self._merge(b)

    def _neighbours(self, b: Block) -> tuple[Block | None, Block | None]:
        same = sorted(a for a, x in self.blocks.items() if x.segment == b.segment)
        i = same.index(b.addr)
        before = self.blocks[same[i - 1]] if i > 0 else None
        after = self.blocks[same[i + 1]] if i + 1 < len(same) else None
        return before, after

    def _merge(self, b: Block) -> None:
        before, after = self._neighbours(b)
        if after is not None and after.free:
            b.size += after.size
            del self.blocks[after.addr]
        if before is not None and before.free:
            before.size += b.size
            del self.blocks[b.addr]

    def empty_cache(self) -> None:
        for addr, (size, _) in list(self.segments.items()):
            b = self.blocks.get(addr)
            if b is not None and not b.allocated and b.size == size:
                del self.blocks[addr], self.segments[addr]
                self.reserved -= size
                self._event("segment_free", addr, size)

    def reset_peak(self) -> None:
        self.peak, self.peak_reserved = self.allocated, self.reserved

    # -- torch's shapes -------------------------------------------------------------------
    def segments_state(self) -> list[dict[str, Any]]:
        out = []
        for addr, (size, small) in sorted(self.segments.items()):
            blocks = [b for b in sorted(self.blocks.values(), key=lambda b: b.addr) if b.segment == addr]
            out.append({"device": 0, "address": addr, "total_size": size, "stream": 0,
                        "segment_type": "small" if small else "large",
                        "allocated_size": sum(b.size for b in blocks if b.allocated),
                        "blocks": [{"address": b.addr, "size": b.size, "requested_size": b.requested or b.size,
                                    "state": "active_allocated" if b.allocated else "inactive", "frames": []}
                                   for b in blocks]})
        return out

    def snapshot(self, since: int = 0) -> dict[str, Any]:
        return {"segments": self.segments_state(), "device_traces": [self.trace[since:]],
                "allocator_settings": {"expandable_segments": False, "max_split_size": -1}}

    # -- a real trace ---------------------------------------------------------------------
    @classmethod
    def from_segments(cls, segments: list[dict[str, Any]]) -> Model:
        m = cls()
        for s in segments:
            m.segments[s["address"]] = (s["total_size"], s["segment_type"] == "small")
            m.reserved += s["total_size"]
            for b in s["blocks"]:
                blk = Block(b["address"], b["size"], s["address"], s["segment_type"] == "small",
                            allocated=b["state"] == "active_allocated", requested=b["requested_size"],
                            pending=b["state"] == "active_pending_free")
                m.blocks[blk.addr] = blk
                if blk.allocated:
                    m.allocated += blk.size
        m.reset_peak()
        return m

    def drive(self, trace: list[dict[str, Any]]) -> None:
        """Replay a real trace by the model's own choices (segments where the trace got them)."""
        for i, e in enumerate(trace):
            a = e["action"]
            if a == "segment_alloc":
                small = self.next_request_small(trace, i)
                self.segments[e["addr"]] = (e["size"], small)
                self.blocks[e["addr"]] = Block(e["addr"], e["size"], e["addr"], small)
                self.reserved += e["size"]
                self.peak_reserved = max(self.peak_reserved, self.reserved)
            elif a == "alloc":
                self.malloc(e["size"], at=e["addr"])
            elif a == "free_requested":
                b = self.blocks[e["addr"]]
                b.allocated, b.pending = False, True
                self.allocated -= b.size
            elif a == "free_completed":
                b = self.blocks[e["addr"]]
                b.pending = False
                self._merge(b)
            elif a == "segment_free":
                del self.blocks[e["addr"]], self.segments[e["addr"]]
                self.reserved -= e["size"]

    @staticmethod
    def next_request_small(trace: list[dict[str, Any]], i: int) -> bool:
        """The pool of the segment trace[i] made: the pool of the allocation it was made for."""
        for later in trace[i + 1:]:
            if later["action"] == "alloc":
                return Model.rounded(later["size"]) <= MB
        return trace[i]["size"] == 2 * MB
