"""What fills GPU memory: pure functions over a MemoryData's frames (no torch, no I/O).

The peak. torch's `max_memory_allocated` counts each allocation at the size of the block the
caching allocator hands out, not the size asked for: requests round up to 512 bytes, and a free
block is split only when the rest is worth keeping, so an allocation can hold a whole block
larger than its rounded size. `replay()` follows the allocator's own rules
(c10/cuda/CUDACachingAllocator.cpp: round_size, should_split, free_block's merging) through the
trace, from the blocks the window opened with (the sidecar's), and so gives each allocation its
block size; its running sum is allocated memory, whose maximum is torch's number exactly. The
requested sizes alone came out 1.9% low on one `small` step.

    block at 0x1000, 3 MiB free   alloc 2.5 MiB -> rounds to 2.5 MiB; 0.5 MiB would be left: not
                                  split (large pool: split only if more than 1 MiB is left), so
                                  the allocation holds all 3 MiB and allocated grows by 3 MiB

The place. Every alloc and free is placed under profkit's range path open at its time, against
the ranges of every thread (`range_tree`: a range with no parent on its thread, such as a
backward range on the autograd thread, is grafted under the range open on another thread when it
began, as analyze.nvtx does for kernels), so the paths are the kernel report's
(`step_0/backward/layer_7/attention`).

What a block holds (`categorize`): the sidecar's storages by address and the time they were
seen: parameters (and buffers), optimizer state, gradients (alive when the step's backward
ends), activations saved for backward and autocast's weight copies (alive when the step's
forward ends), temporaries (everything else the window allocated), and other (held from before
the window: the batch, workspaces).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from profkit.analyze.nvtx import attribute, thread_timelines
from profkit.columns import increasing
from profkit.frames import require
from profkit.sizes import SIZES

# c10/cuda/CUDACachingAllocator.cpp's constants
MIN_BLOCK = 512  # kMinBlockSize: every size rounds up to a multiple of 512
SMALL_SIZE = 1 << 20  # kSmallSize: requests up to 1 MiB come from the small pool
SMALL_BUFFER = 2 << 20  # kSmallBuffer: the small pool's segments are 2 MiB

CATEGORIES = {
    "parameters": "parameters (and buffers)",
    "optimizer_state": "optimizer state",
    "gradients": "gradients",
    "activations": "activations saved for backward",
    "autocast_copies": "autocast weight copies",
    "temporaries": "temporaries",
    "other": "other (held from before the window)",
}
BEFORE = "(before the window)"
OUTSIDE = "(outside every range)"


def round_size(size: int, divisions: int = 0) -> int:
    """The allocator's round_size: at least 512 bytes, a multiple of 512, or with
    roundup_power2_divisions the next of `divisions` steps between two powers of two.

    >>> round_size(1), round_size(512), round_size(513), round_size(1200, 4), round_size(5000, 4)
    (512, 512, 1024, 1536, 5120)
    """
    if size < MIN_BLOCK:
        return MIN_BLOCK
    if divisions > 1 and size > MIN_BLOCK * divisions:
        if size & (size - 1) == 0:
            return size
        floor = 1 << (size.bit_length() - 1)
        step = floor >> (divisions.bit_length() - 1)
        if step == 0:
            return floor << 1
        low = size & ~(step - 1)
        return size if low == size else low + step
    return MIN_BLOCK * ((size + MIN_BLOCK - 1) // MIN_BLOCK)


def _divisions(setting: Any, size: int) -> int:
    """roundup_power2_divisions for `size`: one number, or torch's per-power-of-two list."""
    if isinstance(setting, int):
        return setting
    if isinstance(setting, list) and setting:
        # interval i covers sizes up to 2**(20+i): index by the power of two above 1 MiB
        i = max(0, (max(size, 1) - 1).bit_length() - 20)
        return int(setting[min(i, len(setting) - 1)])
    return 0


def should_split(block_size: int, size: int, *, small: bool, expandable: bool = False,
                 max_split: int | None = None) -> bool:
    """The allocator's should_split: keep the rest of a free block as a block of its own?

    >>> should_split(3 << 20, 5 << 19, small=False)   # 0.5 MiB left in the large pool: no
    False
    >>> should_split(2 << 20, 512, small=True)        # anything of 512 bytes or more in the small pool
    True
    """
    remaining = block_size - size
    if small or expandable:
        return remaining >= MIN_BLOCK
    return (max_split is None or size < max_split) and remaining > SMALL_SIZE


class _Block:
    __slots__ = ("addr", "size", "state", "prev", "next", "small", "lifetime")

    def __init__(self, addr: int, size: int, state: str, small: bool) -> None:
        self.addr, self.size, self.state, self.small = addr, size, state, small
        self.prev: _Block | None = None
        self.next: _Block | None = None
        self.lifetime = -1


CHUNK = 1 << 16
"""Events replayed per Python loop pass: the loop's lists hold this many, the results go to arrays."""


@dataclass(kw_only=True)
class Replay:
    """replay()'s result, as arrays (8 + 4 bytes per event, about 40 per allocation); `events`
    builds the full frame when asked."""

    source: pd.DataFrame
    """The trace as given (seq, action, addr, size, time_us, frame, ...)."""
    allocated: np.ndarray
    """Allocated bytes after each event (int64)."""
    lifetime: np.ndarray
    """Each event's lifetime (int32; -1 for events that are not an alloc or free)."""
    reserved_at: np.ndarray
    """Events after which reserved memory changed (int64, rising) ..."""
    reserved_value: np.ndarray
    """... and reserved memory after each of them."""
    lifetimes: pd.DataFrame
    """One row per allocation: lifetime, addr, size (the block's), requested, alloc_seq (-1: held
    when the window opened), free_seq (the free request; -1: still held at the dump);
    analyze_memory() adds its columns to this same table (MemoryAnalysis.lifetimes)."""
    start_allocated_bytes: int
    start_reserved_bytes: int
    exact: bool
    """Whether the replay followed the allocator's blocks from the window's start state (False: a
    snapshot without profkit's sidecar, or events that did not fit the blocks)."""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.allocated)

    def block_size(self) -> np.ndarray:
        """The block an alloc took or a free request gave back, per event (0 for other events)."""
        out = np.zeros(len(self.allocated), dtype=np.int64)
        codes, cats = action_codes(self.source)
        freeing = [i for i, c in enumerate(cats) if c in ("alloc", "free_requested")]
        mask = np.isin(codes, freeing) & (self.lifetime >= 0)
        out[mask] = self.lifetimes["size"].to_numpy()[self.lifetime[mask]]
        return out

    def alloc_sizes(self) -> np.ndarray:
        """Per event, the block an alloc took (0 for every other event)."""
        out = np.zeros(len(self.allocated), dtype=np.int64)
        codes, cats = action_codes(self.source)
        mask = (codes == cats.index("alloc")) if "alloc" in cats else np.zeros(len(codes), dtype=bool)
        mask &= self.lifetime >= 0
        out[mask] = self.lifetimes["size"].to_numpy()[self.lifetime[mask]]
        return out

    def reserved(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Reserved bytes after each event (or after the events `idx`)."""
        where = np.arange(len(self.allocated)) if idx is None else np.asarray(idx)
        k = np.searchsorted(self.reserved_at, where, side="right") - 1
        vals = np.concatenate([[self.start_reserved_bytes], self.reserved_value]).astype(np.int64)
        return vals[k + 1]

    @property
    def events(self) -> pd.DataFrame:
        """The trace with block_size (the block an alloc took or a free gave back), allocated_bytes and
        reserved_bytes after the event, and lifetime (-1 for events that are not an alloc or free).
        Built on each call (a few arrays of the trace's length): the analysis uses the arrays."""
        ix = self.source.index
        return self.source.assign(block_size=pd.Series(self.block_size(), index=ix),
                                  allocated_bytes=pd.Series(self.allocated, index=ix),
                                  reserved_bytes=pd.Series(self.reserved(), index=ix),
                                  lifetime=pd.Series(self.lifetime.astype(np.int64), index=ix))

    def times(self) -> np.ndarray:
        """time_us, made nondecreasing (each event at the latest time seen so far)."""
        t = self.source["time_us"].to_numpy()
        if increasing(t, strict=False):
            return t
        return np.maximum.accumulate(t)

    @property
    def peak_seq(self) -> int:
        """The event after which allocated memory peaked (-1: at the window's start)."""
        a = self.allocated
        if a.size == 0 or a.max() <= self.start_allocated_bytes:
            return -1
        return int(np.argmax(a))

    @property
    def peak_allocated_bytes(self) -> int:
        a = self.allocated
        return int(max(self.start_allocated_bytes, int(a.max()) if len(a) else 0))

    @property
    def peak_reserved_bytes(self) -> int:
        r = self.reserved_value
        return int(max(self.start_reserved_bytes, int(r.max()) if len(r) else 0)) if len(self.allocated) else \
            int(self.start_reserved_bytes)


def action_codes(events: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The action column as small integer codes and their names (no copy for a categorical column)."""
    col = events["action"]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(), [str(c) for c in col.cat.categories]
    codes, uniques = pd.factorize(col)
    return codes.astype(np.int16), [str(u) for u in uniques]


class _Lives:
    """The lifetimes table as it grows: Python lists of a chunk's rows, then numpy parts."""

    def __init__(self) -> None:
        self.parts: list[list[Any]] = []
        self.addr: list[int] = []
        self.size: list[int] = []
        self.req: list[int] = []
        self.alloc: list[int] = []
        self.n = 0
        self.freed_k: list[int] = []
        self.freed_i: list[int] = []
        self.freed: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, addr: int, size: int, req: int, alloc_seq: int) -> int:
        self.addr.append(addr)
        self.size.append(size)
        self.req.append(req)
        self.alloc.append(alloc_seq)
        self.n += 1
        if len(self.addr) >= CHUNK:
            self.flush()
        return self.n - 1

    def free(self, k: int, i: int) -> None:
        self.freed_k.append(k)
        self.freed_i.append(i)
        if len(self.freed_k) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.addr:
            self.parts.append([np.array(self.addr, dtype=np.int64), np.array(self.size, dtype=np.int64),
                               np.array(self.req, dtype=np.int64), np.array(self.alloc, dtype=np.int32)])
            self.addr, self.size, self.req, self.alloc = [], [], [], []
        if self.freed_k:
            self.freed.append((np.array(self.freed_k, dtype=np.int64), np.array(self.freed_i, dtype=np.int32)))
            self.freed_k, self.freed_i = [], []

    def sizes(self) -> int:
        """The sum of the block sizes so far."""
        self.flush()
        return int(sum(int(p[1].sum()) for p in self.parts))

    def frame(self) -> pd.DataFrame:
        self.flush()

        def cat(j: int, dtype: Any) -> np.ndarray:
            out = np.concatenate([p[j] for p in self.parts]) if self.parts else np.zeros(0, dtype=dtype)
            for p in self.parts:  # the column's parts go as soon as they are copied
                p[j] = None
            return out

        free_seq = np.full(self.n, -1, dtype=np.int32)
        for k, i in self.freed:
            free_seq[k] = i
        self.freed = []
        cols = {"lifetime": np.arange(self.n, dtype=np.int32), "addr": cat(0, np.int64), "size": cat(1, np.int64),
                "requested": cat(2, np.int64), "alloc_seq": cat(3, np.int32), "free_seq": free_seq}
        self.parts = []
        return pd.DataFrame(cols, copy=False)


def _chunks(events: pd.DataFrame) -> Iterable[tuple[int, list[int], list[int], list[int]]]:
    """(first index, action codes, addrs, sizes) for CHUNK events at a time, as Python lists."""
    codes, _ = action_codes(events)
    addr = events["addr"].to_numpy()
    size = events["size"].to_numpy()
    for lo in range(0, len(codes), CHUNK):
        hi = lo + CHUNK
        yield lo, codes[lo:hi].tolist(), addr[lo:hi].tolist(), size[lo:hi].tolist()


def replay(events: pd.DataFrame, start_blocks: pd.DataFrame | None, settings: dict[str, Any] | None = None,
           *, end_blocks: pd.DataFrame | None = None) -> Replay:
    """Replay the trace through the caching allocator's rules: each allocation's block size and
    allocated/reserved memory after every event.

    Args:
        events: the trace (action, addr, size), in recorded order.
        start_blocks: the blocks when the window opened (segment, segment_size, segment_type,
            address, size, state); None for a snapshot without them, replayed approximately:
            requested sizes rounded, the blocks held before the window from the dump's blocks
            that the trace never allocated and from frees of addresses it never allocated.
        settings: expandable_segments, max_split_size, roundup_power2_divisions.
        end_blocks: the dump's blocks, used only without start_blocks.

    Raises:
        TypeError: a required column is missing.
    """
    require(events, ["action", "addr", "size"], "events")
    settings = settings or {}
    if start_blocks is None:
        return _replay_approximate(events, end_blocks, settings)
    expandable = bool(settings.get("expandable_segments"))
    max_split = settings.get("max_split_size")
    div_setting = settings.get("roundup_power2_divisions")
    notes: list[str] = []
    exact = True
    blocks: dict[int, _Block] = {}
    b: _Block | None
    lives = _Lives()
    allocated = reserved = 0
    seg_sizes: dict[int, int] = {}
    for seg, part in start_blocks.groupby("segment", sort=True):
        seg_sizes[int(seg)] = int(part["segment_size"].iloc[0])
        prev = None
        for addr, size, stype, state, req in zip(part["address"], part["size"], part["segment_type"], part["state"],
                                                 part["requested_size"], strict=True):
            kind = {"active_allocated": "alloc", "inactive": "free"}.get(state, "pending")
            b = _Block(int(addr), int(size), kind, stype == "small")
            if kind == "alloc":
                b.lifetime = lives.add(b.addr, b.size, int(req), -1)
                allocated += b.size
            b.prev = prev
            if prev is not None:
                prev.next = b
            blocks[b.addr] = b
            prev = b
    reserved = sum(seg_sizes.values())
    start_allocated, start_reserved = allocated, reserved

    _, cats = action_codes(events)
    code = {name: cats.index(name) if name in cats else -1 for name in
            ("alloc", "free_requested", "free_completed", "segment_alloc", "segment_free", "segment_map",
             "segment_unmap")}
    c_alloc, c_freq, c_fcomp = code["alloc"], code["free_requested"], code["free_completed"]
    c_salloc, c_sfree, c_smap, c_sunmap = (code["segment_alloc"], code["segment_free"], code["segment_map"],
                                           code["segment_unmap"])
    n = len(events)
    alloc_after = np.zeros(n, dtype=np.int64)
    lifetime_out = np.full(n, -1, dtype=np.int32)
    res_at: list[int] = []
    res_val: list[int] = []

    def note(text: str) -> None:
        if len(notes) < 20:
            notes.append(text)

    for lo, acts, addrs, sizes in _chunks(events):
        a_out = [0] * len(acts)
        l_out = [-1] * len(acts)
        for j in range(len(acts)):
            i = lo + j
            act, addr, size = acts[j], addrs[j], sizes[j]
            if act == c_alloc:
                s = round_size(size, _divisions(div_setting, size))
                b = blocks.get(addr)
                if b is None or b.state != "free":
                    exact = False
                    note(f"event {i}: alloc at {addr:#x} found no free block there; counted at its rounded size")
                    b = _Block(addr, s, "free", s <= SMALL_SIZE)
                    blocks[addr] = b
                if b.size > s and should_split(b.size, s, small=b.small, expandable=expandable, max_split=max_split):
                    rest = _Block(addr + s, b.size - s, "free", b.small)
                    rest.prev, rest.next = b, b.next
                    if b.next is not None:
                        b.next.prev = rest
                    b.next = rest
                    b.size = s
                    blocks[rest.addr] = rest
                b.state = "alloc"
                b.lifetime = lives.add(addr, b.size, size, i)
                allocated += b.size
                l_out[j] = b.lifetime
            elif act == c_freq:
                b = blocks.get(addr)
                if b is None or b.state != "alloc":
                    exact = False
                    note(f"event {i}: free of {addr:#x}, which holds no allocation; ignored")
                else:
                    allocated -= b.size
                    b.state = "pending"
                    lives.free(b.lifetime, i)
                    l_out[j] = b.lifetime
            elif act == c_fcomp:
                b = blocks.get(addr)
                if b is not None and b.state == "pending":
                    b.state = "free"
                    l_out[j] = b.lifetime
                    b.lifetime = -1
                    for other in (b.prev, b.next):  # free_block's try_merge_blocks, both sides
                        if other is not None and other.state == "free":
                            _merge(blocks, b, other)
            elif act == c_salloc:
                b = _Block(addr, size, "free", size == SMALL_BUFFER and not expandable)
                blocks[addr] = b
                seg_sizes[addr] = size
                reserved += size
                res_at.append(i)
                res_val.append(reserved)
            elif act == c_sfree:
                b = blocks.pop(addr) if addr in blocks else None
                if b is None or b.state != "free":
                    exact = False
                    note(f"event {i}: segment_free of {addr:#x}, which is not one free block")
                reserved -= seg_sizes.pop(addr, size)
                res_at.append(i)
                res_val.append(reserved)
            elif act == c_smap:  # expandable segments: pages mapped at the segment's end
                mapped = blocks[addr] = _Block(addr, size, "free", False)
                reserved += size
                res_at.append(i)
                res_val.append(reserved)
                left = next((x for x in blocks.values() if x.addr + x.size == addr and x.state == "free"), None)
                if left is not None:
                    mapped.prev, left.next = left, mapped
                    _merge(blocks, mapped, left)
                if not any("expandable" in n_ for n_ in notes):
                    note("expandable segments: mapped pages replayed as free blocks (not checked on a GPU)")
            elif act == c_sunmap:
                reserved -= size
                res_at.append(i)
                res_val.append(reserved)
                b = blocks.get(addr)
                if b is not None and b.state == "free" and b.size <= size:
                    blocks.pop(addr)
            a_out[j] = allocated
        alloc_after[lo:lo + len(acts)] = a_out
        lifetime_out[lo:lo + len(acts)] = l_out
    return Replay(source=events, allocated=alloc_after, lifetime=lifetime_out,
                  reserved_at=np.array(res_at, dtype=np.int64), reserved_value=np.array(res_val, dtype=np.int64),
                  lifetimes=lives.frame(), start_allocated_bytes=start_allocated, start_reserved_bytes=start_reserved,
                  exact=exact, notes=notes[:20])


def _merge(blocks: dict[int, _Block], dst: _Block, src: _Block) -> None:
    """try_merge_blocks: `src` (free, adjacent to `dst`) is absorbed into `dst`."""
    if src is dst.prev:
        blocks.pop(dst.addr, None)
        dst.addr, dst.prev = src.addr, src.prev
        if src.prev is not None:
            src.prev.next = dst
        blocks[dst.addr] = dst  # in src's place
    else:
        dst.next = src.next
        if src.next is not None:
            src.next.prev = dst
        blocks.pop(src.addr, None)
    dst.size += src.size


def _replay_approximate(events: pd.DataFrame, end_blocks: pd.DataFrame | None, settings: dict[str, Any]) -> Replay:
    div_setting = settings.get("roundup_power2_divisions")
    _, cats = action_codes(events)
    c_alloc = cats.index("alloc") if "alloc" in cats else -1
    c_freq = cats.index("free_requested") if "free_requested" in cats else -1
    c_salloc = cats.index("segment_alloc") if "segment_alloc" in cats else -1
    c_sfree = cats.index("segment_free") if "segment_free" in cats else -1
    lives = _Lives()
    held: dict[int, int] = {}  # addr -> lifetime
    codes, _ = action_codes(events)
    addr_col = events["addr"].to_numpy()
    allocated_in_trace = set(np.unique(addr_col[codes == c_alloc]).tolist()) if len(codes) else set()
    seen: set[int] = set()
    # Held before the window: what the dump still holds and the trace never allocated, and
    # addresses the trace frees before allocating them.
    if end_blocks is not None:
        for addr, size, req, state in zip(end_blocks["address"], end_blocks["size"], end_blocks["requested_size"],
                                          end_blocks["state"], strict=True):
            if state == "active_allocated" and int(addr) not in allocated_in_trace:
                held[int(addr)] = lives.add(int(addr), int(size), int(req), -1)
    for _lo, acts, addrs, sizes in _chunks(events):
        for act, addr, size in zip(acts, addrs, sizes, strict=True):
            if act == c_alloc:
                seen.add(addr)
            elif act == c_freq and addr not in seen and addr not in held:
                s = round_size(size, _divisions(div_setting, size))
                held[addr] = lives.add(addr, s, size, -1)
                seen.add(addr)
    del seen, allocated_in_trace
    allocated = start = lives.sizes()
    segs = end_blocks.drop_duplicates("segment") if end_blocks is not None else None
    reserved = start_reserved = int(segs["segment_size"].sum()) if segs is not None else 0
    n = len(events)
    alloc_after = np.zeros(n, dtype=np.int64)
    lifetime_out = np.full(n, -1, dtype=np.int32)
    sizes_of: dict[int, int] = {}
    base = 0
    for p in lives.parts:  # lifetime -> block size, for the ones held so far
        for j, s in enumerate(p[1].tolist()):
            sizes_of[base + j] = s
        base += len(p[1])
    res_at: list[int] = []
    res_val: list[int] = []
    for lo, acts, addrs, sizes in _chunks(events):
        a_out = [0] * len(acts)
        l_out = [-1] * len(acts)
        for j in range(len(acts)):
            act, addr, size = acts[j], addrs[j], sizes[j]
            if act == c_alloc:
                s = round_size(size, _divisions(div_setting, size))
                k = held[addr] = lives.add(addr, s, size, lo + j)
                sizes_of[k] = s
                allocated += s
                l_out[j] = k
            elif act == c_freq and addr in held:
                k = held.pop(addr)
                allocated -= sizes_of.pop(k)
                lives.free(k, lo + j)
                l_out[j] = k
            elif act == c_salloc:
                reserved += size
                res_at.append(lo + j)
                res_val.append(reserved)
            elif act == c_sfree:
                reserved -= size
                res_at.append(lo + j)
                res_val.append(reserved)
            a_out[j] = allocated
        alloc_after[lo:lo + len(acts)] = a_out
        lifetime_out[lo:lo + len(acts)] = l_out
    note = ("approximate: no profkit sidecar (memory.json), so no window start state: sizes are requested sizes "
            "rounded to 512 bytes, without the allocator's block splitting, and the reserved memory at the start "
            "is the dump's")
    return Replay(source=events, allocated=alloc_after, lifetime=lifetime_out,
                  reserved_at=np.array(res_at, dtype=np.int64), reserved_value=np.array(res_val, dtype=np.int64),
                  lifetimes=lives.frame(), start_allocated_bytes=start, start_reserved_bytes=start_reserved,
                  exact=False, notes=[note])


# --- ranges ---------------------------------------------------------------------------------

_PID = 1 << 24  # one process; threads get tids _PID | (thread + 1) for analyze.nvtx's timelines
_NO_THREAD = _PID | 0xFFFFFF  # the allocator's events carry no thread: placed across all of them


def range_tree(log: pd.DataFrame) -> pd.DataFrame:
    """profkit's range log -> one row per range with its parent, depth and path.

    Nesting follows the log's order, which is exact (no clock involved): a range's parent is the
    range open on its own thread when it began, else (a thread's outermost range, such as a
    backward range on the autograd thread) the range begun last among those open on other
    threads at that moment, so the path reads `step_0/backward/layer_1`. A range still open at the
    end of the log ends at its last time.

    Args:
        log: thread, kind (B or E), name, time_us; in the order the events happened.

    Returns:
        range_id, thread, name, start_us, end_us, parent (-1 for roots), grafted, depth, path;
        range_id is the row's position.

    Raises:
        TypeError: a required column is missing.

    | thread | kind | name     | -> | path                     |
    | 0      | B    | step_0   |    | step_0                   |
    | 0      | B    | backward |    | step_0/backward          |
    | 1      | B    | layer_1  |    | step_0/backward/layer_1  |
    """
    require(log, ["thread", "kind", "name", "time_us"], "range log")
    rows: list[list[Any]] = []  # thread, name, start, end, parent, grafted
    stacks: dict[int, list[int]] = {}
    last = 0
    for thread, kind, name, t in zip(log["thread"].tolist(), log["kind"].tolist(), log["name"].tolist(),
                                     log["time_us"].tolist(), strict=True):
        last = max(last, t)
        stack = stacks.setdefault(thread, [])
        if kind == "B":
            if stack:
                parent, grafted = stack[-1], False
            else:
                tops = [s[-1] for th, s in stacks.items() if th != thread and s]
                parent, grafted = (max(tops), True) if tops else (-1, False)
            stack.append(len(rows))
            rows.append([thread, name, t, None, parent, grafted])
        elif stack:
            rows[stack.pop()][3] = t
    for r in rows:
        if r[3] is None:
            r[3] = last
    paths: list[str] = []
    depth: list[int] = []
    for r in rows:
        p = r[4]
        paths.append(f"{paths[p]}/{r[1]}" if p >= 0 else r[1])
        depth.append(depth[p] + 1 if p >= 0 else 0)
    return pd.DataFrame({"range_id": np.arange(len(rows), dtype=np.int64),
                         "thread": pd.Series([r[0] for r in rows], dtype="int64"),
                         "name": [r[1] for r in rows],
                         "start_us": pd.Series([r[2] for r in rows], dtype="int64"),
                         "end_us": pd.Series([r[3] for r in rows], dtype="int64"),
                         "parent": pd.Series([r[4] for r in rows], dtype="int64"),
                         "grafted": pd.Series([r[5] for r in rows], dtype=bool),
                         "depth": pd.Series(depth, dtype="int64"), "path": paths})


def place(events: pd.DataFrame, tree: pd.DataFrame) -> pd.Series:
    """The range path of every event: the innermost range open at its time on any thread (the one
    begun last), as analyze.nvtx.attribute places a kernel launched on a thread with no range;
    ranges are half-open, [start, end), in microseconds. OUTSIDE where none is open.

    Raises:
        TypeError: a required column is missing.
    """
    require(events, ["time_us"], "events")
    require(tree, ["start_us", "end_us", "thread", "path"], "range tree")
    paths = np.array([*tree["path"].tolist(), OUTSIDE], dtype=object)
    return pd.Series(paths[place_codes(events["time_us"].to_numpy(), tree)], index=events.index, dtype=object)


def place_codes(times_us: np.ndarray, tree: pd.DataFrame) -> np.ndarray:
    """place() as positions: each time's range row in `tree`, len(tree) where none is open (int32)."""
    require(tree, ["start_us", "end_us", "thread", "path"], "range tree")
    if tree.empty or len(times_us) == 0:
        return np.full(len(times_us), len(tree), dtype=np.int32)
    ranges = pd.DataFrame({"start_ns": tree["start_us"].to_numpy() * 1000, "end_ns": tree["end_us"].to_numpy() * 1000,
                           "global_pid": np.full(len(tree), _PID, dtype=np.int64),
                           "global_tid": _PID | (tree["thread"].to_numpy() + 1)})
    out = np.empty(len(times_us), dtype=np.int32)
    timelines = thread_timelines(ranges)
    step = 1 << 20
    for lo in range(0, len(times_us), step):  # the attribution's temporaries stay a chunk's size
        t = np.asarray(times_us[lo:lo + step], dtype=np.int64)
        launches = pd.DataFrame({"launch_ns": t * 1000, "launch_tid": np.full(len(t), _NO_THREAD, dtype=np.int64)})
        owner = attribute(launches, ranges, timelines)
        out[lo:lo + len(t)] = np.where(owner >= 0, owner, len(tree))
    return out


# --- what blocks hold -----------------------------------------------------------------------

_PRIORITY = {"parameter": 0, "buffer": 0, "optimizer_state": 1, "gradient": 2, "autocast_copy": 3, "saved": 4}
_CATEGORY_OF = {"parameter": "parameters", "buffer": "parameters", "optimizer_state": "optimizer_state",
                "gradient": "gradients", "autocast_copy": "autocast_copies", "saved": "activations"}


def _index_before(times: np.ndarray, t: int) -> int:
    """How many events happened before time t (the state at t is after event index-1)."""
    return int(np.searchsorted(times, t, side="left"))


def categorize(rp: Replay, tensors: pd.DataFrame, tree: pd.DataFrame) -> pd.Series:
    """Each lifetime's category (CATEGORIES' keys), from the storages the run saw.

    A storage address names the block that starts there (the allocator hands out a block's
    start). Which of the blocks that lived at that address over the window: the one alive when the
    storage was seen: parameters, buffers and gradients (step -1) when the window opened; a
    gradient of step i when step_i's backward ended; a saved tensor or autocast copy when step_i's
    forward ended; optimizer state when step_i's optimizer ended (else the step). A block named
    twice takes the first of parameter, optimizer state, gradient, autocast copy, saved.

    Raises:
        TypeError: a required column is missing.
    """
    require(tensors, ["kind", "step", "address"], "tensors")
    lt = rp.lifetimes
    times = rp.times()
    alloc_seq, free_seq = lt["alloc_seq"].to_numpy(), lt["free_seq"].to_numpy()
    ends = _phase_ends(tree)
    # each storage row: its priority, address and `at` (the state after event at-1)
    kinds = tensors["kind"].astype(object)
    pri = kinds.map(_PRIORITY)
    known = pri.notna().to_numpy()
    step = np.asarray(tensors["step"].to_numpy()[known], dtype=np.int64)
    phases = ["forward", "backward", "optimizer", ""]
    phase = kinds[known].map({"gradient": 1, "saved": 0, "autocast_copy": 0}).fillna(2).to_numpy(dtype=np.int64)
    t = _end_times(ends, step, phase, phases)  # the phase's end, else the step's; NaN: neither
    keep = (step < 0) | ~np.isnan(t)
    at_arr = np.zeros(int(keep.sum()), dtype=np.int64)
    timed = step[keep] >= 0
    at_arr[timed] = np.searchsorted(times, t[keep][timed].astype(np.int64), side="left")
    addrs = np.asarray(tensors["address"].to_numpy()[known][keep], dtype=np.int64)
    pri_arr = pri.to_numpy()[known][keep].astype(np.int8)
    del kinds, pri, known, step, phase, t, keep, timed  # the storages' columns: gone before the search
    best = np.full(len(lt), len(_PRIORITY), dtype=np.int8)  # priorities are 0..5
    k = _alive_at_address(lt["addr"].to_numpy(), alloc_seq, free_seq, addrs, at_arr)
    hit = k >= 0
    np.minimum.at(best, k[hit], pri_arr[hit])
    names = [_CATEGORY_OF[next(kind for kind, p in _PRIORITY.items() if p == v)] for v in
             range(len(set(_PRIORITY.values())))]
    codes = np.where(best < len(names), best, np.where(alloc_seq < 0, len(names) + 1, len(names))).astype(np.int8)
    return pd.Series(pd.Categorical.from_codes(codes, categories=[*names, "temporaries", "other"]), index=lt.index)


def _end_times(ends: dict[tuple[int, str], int], step: np.ndarray, phase: np.ndarray, phases: list[str]) -> np.ndarray:
    """ends[(step, phases[phase])], else ends[(step, "")], else NaN; per row (float64: times fit)."""
    out = np.full(len(step), np.nan)
    if not ends or not len(step):
        return out
    width = len(phases)
    known = {(k[0], phases.index(k[1])): v for k, v in ends.items() if k[1] in phases}
    keys = np.array(sorted(s_ * width + p for s_, p in known), dtype=np.int64)
    vals = np.array([known[(int(k) // width, int(k) % width)] for k in keys], dtype=np.float64)
    for code in (phase, np.full(len(step), width - 1)):  # the phase, then the step itself
        q = step * width + code
        i = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
        hit = (keys[i] == q) & np.isnan(out)
        out[hit] = vals[i[hit]]
    return out


def _alive_at_address(lt_addr: np.ndarray, alloc_seq: np.ndarray, free_seq: np.ndarray, addrs: np.ndarray,
                      at: np.ndarray) -> np.ndarray:
    """For each (address, at): the first lifetime at that address alive in the state after event
    at-1 (allocated before `at`, not freed by then), -1 when none.

    Lifetimes are numbered in allocation order, so at one address their alloc_seq rise; where
    they also do not overlap (each freed before the next begins, as in every exact replay) only
    the last one allocated before `at` can be alive, found by binary search. Addresses whose
    lifetimes overlap (a replay that lost track) are searched one by one, first to last.
    """
    n = len(lt_addr)
    out = np.full(len(addrs), -1, dtype=np.int64)
    if n == 0 or len(addrs) == 0:
        return out
    order = np.argsort(lt_addr, kind="stable")  # by address, then lifetime (no arange of n to sort by)
    s_addr, s_alloc, s_free = lt_addr[order], alloc_seq[order], free_seq[order]
    same = s_addr[1:] == s_addr[:-1]
    overlap_pair = same & ((s_free[:-1] < 0) | (s_free[:-1] > s_alloc[1:]))
    bad_addrs = np.unique(s_addr[1:][overlap_pair])
    del same, overlap_pair
    uniq, key = _search_key(s_addr, s_alloc)
    for first in range(0, len(addrs), QUERY_CHUNK):  # the queries' temporaries stay a chunk's size
        a, t = addrs[first:first + QUERY_CHUNK], at[first:first + QUERY_CHUNK]
        lo = np.searchsorted(s_addr, a, side="left")
        present = np.searchsorted(s_addr, a, side="right") > lo
        # the last lifetime of the address allocated before `at`: alloc_seq within [lo, hi) rises
        cand = np.full(len(a), -1, dtype=np.int64)
        for_search = np.flatnonzero(present)
        if len(for_search):
            cand[for_search] = _last_before(uniq, key, a[for_search], t[for_search])
        ok = (cand >= lo) & present
        c = np.where(ok, cand, 0)
        alive = ok & (s_alloc[c] < t) & ((s_free[c] < 0) | (s_free[c] >= t))
        out[first + np.flatnonzero(alive)] = order[c[alive]]
    if len(bad_addrs):
        slow = np.flatnonzero(np.isin(addrs, bad_addrs))
        for j in slow.tolist():
            out[j] = -1
            lo_j, hi_j = np.searchsorted(s_addr, addrs[j], side="left"), np.searchsorted(s_addr, addrs[j], side="right")
            for q in range(int(lo_j), int(hi_j)):
                if s_alloc[q] < at[j] and (s_free[q] < 0 or s_free[q] >= at[j]):
                    out[j] = order[q]
                    break
    return out


def _search_key(s_addr: np.ndarray, s_alloc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted addresses' distinct values and the composite key (address rank << 36) +
    alloc_seq + 1 per lifetime, rising. `s_addr` is sorted: an address's rank counts the changes
    before it (np.unique's inverse, without its sort and copies)."""
    change = np.empty(len(s_addr), dtype=bool)
    change[:1] = True
    np.not_equal(s_addr[1:], s_addr[:-1], out=change[1:])
    uniq = s_addr[change]
    change[:1] = False
    key = np.cumsum(change, dtype=np.int64)  # the rank, then in place the key
    del change
    np.left_shift(key, 36, out=key)
    np.add(key, s_alloc, out=key)  # alloc_seq + 1 is in [0, 2**36)
    key += 1
    return uniq, key


def _last_before(uniq: np.ndarray, key: np.ndarray, addrs: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Vectorized: the position of the last (address, alloc_seq < at) entry, by a search over
    _search_key()'s key."""
    q = np.searchsorted(uniq, addrs).astype(np.int64)
    np.left_shift(q, 36, out=q)
    q |= at
    # alloc_seq < at  <=>  alloc_seq + 1 <= at
    return np.searchsorted(key, q, side="right") - 1


QUERY_CHUNK = 1 << 18


def _phase_ends(tree: pd.DataFrame) -> dict[tuple[int, str], int]:
    """(step, phase) -> end time of step_i/phase (phase "" is step_i itself)."""
    out: dict[tuple[int, str], int] = {}
    for path, end in zip(tree["path"].tolist(), tree["end_us"].tolist(), strict=True):
        parts = path.split("/")
        if not parts[0].startswith("step_") or not parts[0][5:].isdigit() or len(parts) > 2:
            continue
        step = int(parts[0][5:])
        out[(step, parts[1] if len(parts) == 2 else "")] = int(end)
    return out


# --- the analysis ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class MemoryAnalysis:
    """Everything the memory report shows, computed once."""

    replay: Replay
    tree: pd.DataFrame
    """range_tree() of the sidecar's log (empty without it)."""
    lifetimes: pd.DataFrame
    """replay's lifetimes with category, path (where allocated; BEFORE when held from before the
    window), frame, alloc_us, free_us."""
    torch_peak_allocated_bytes: int | None
    torch_peak_reserved_bytes: int | None
    clock: str
    peak_path: str = BEFORE
    """The range path open at the peak (BEFORE: the peak is the window's start)."""

    @property
    def paths(self) -> pd.Series:
        """place(): the range path of every event (built when asked; the analysis places only the
        allocations and the peak)."""
        return place(self.replay.source, self.tree)

    @property
    def peak_seq(self) -> int:
        return self.replay.peak_seq

    @property
    def peak_time_us(self) -> int | None:
        """Microseconds after the window's first event (None: the peak is the window's start)."""
        t = self.replay.source["time_us"]
        if self.peak_seq < 0 or len(t) == 0:
            return None
        return int(t.iloc[self.peak_seq] - t.iloc[0])


def analyze_memory(events: pd.DataFrame, start_blocks: pd.DataFrame | None, settings: dict[str, Any],
                   *, log: pd.DataFrame, tensors: pd.DataFrame, end_blocks: pd.DataFrame | None = None,
                   torch_peak_allocated_bytes: int | None = None, torch_peak_reserved_bytes: int | None = None,
                   clock: str = "none", replayed: Replay | None = None) -> MemoryAnalysis:
    """Replay, place and categorize one snapshot's frames (MemoryData's, passed apart).

    replayed: replay()'s result for these events when the caller has it (the events may then lack
    addr and size: only action, time_us and frame are read after the replay)."""
    rp = replayed if replayed is not None else replay(events, start_blocks, settings, end_blocks=end_blocks)
    tree = range_tree(log) if not log.empty else range_tree(log.iloc[0:0].astype({"time_us": "int64"}))
    category = categorize(rp, tensors, tree)  # first: its search's temporaries while little else is held
    lt = rp.lifetimes
    seq = lt["alloc_seq"].to_numpy()
    fseq = lt["free_seq"].to_numpy()
    in_window = seq >= 0
    ev_time = events["time_us"].to_numpy()
    safe = np.clip(seq, 0, None)
    n = len(events)
    # only the allocations' events (and the peak's) are placed: what the tables need
    placed = place_codes(ev_time[seq[in_window]] if n else np.zeros(0, np.int64), tree)
    names = np.array([*tree["path"].tolist(), OUTSIDE, BEFORE], dtype=object)
    name_codes, unique_names = pd.factorize(names)  # paths repeat (a range entered twice)
    path_code = np.full(len(lt), len(tree) + 1, dtype=np.int32)
    path_code[in_window] = placed
    del placed
    path = pd.Categorical.from_codes(name_codes[path_code], categories=pd.Index(unique_names, dtype=object))
    del path_code
    # the replay's own table gains the columns (no copy of it: the replay and the analysis share one)
    lifetimes = lt
    lifetimes["category"] = category
    lifetimes["path"] = path
    del category, path
    lifetimes["frame"] = _frames_of(events, in_window, safe)
    lifetimes["alloc_us"] = np.where(in_window, ev_time[safe] if n else -1, -1)
    lifetimes["free_us"] = np.where(fseq >= 0, ev_time[np.clip(fseq, 0, None)] if n else -1, -1)
    peak = rp.peak_seq
    peak_path = BEFORE if peak < 0 else str(names[place_codes(ev_time[peak:peak + 1], tree)[0]])
    return MemoryAnalysis(replay=rp, tree=tree, lifetimes=lifetimes, peak_path=peak_path,
                          torch_peak_allocated_bytes=torch_peak_allocated_bytes,
                          torch_peak_reserved_bytes=torch_peak_reserved_bytes, clock=clock)


def _frames_of(events: pd.DataFrame, in_window: np.ndarray, safe: np.ndarray) -> pd.Categorical:
    """Each lifetime's top user frame (its alloc event's; "" for blocks held from before the window)."""
    if "frame" not in events or len(events) == 0:
        return pd.Categorical.from_codes(np.zeros(len(in_window), dtype=np.int8),
                                         categories=pd.Index([""], dtype=object))
    fcol = events["frame"]
    if not isinstance(fcol.dtype, pd.CategoricalDtype):
        fcol = fcol.astype("category")
    cats = [str(c) for c in fcol.cat.categories]
    if "" not in cats:
        cats.append("")
    codes = fcol.cat.codes.to_numpy()
    return pd.Categorical.from_codes(np.where(in_window, codes[safe], cats.index("")),
                                     categories=pd.Index(cats, dtype=object))


def alive_at(m: MemoryAnalysis, seq: int) -> pd.DataFrame:
    """The lifetimes holding memory in the state after event `seq` (-1: the window's start); their
    category, path and frame as strings (the full table keeps them as categories)."""
    lt = m.lifetimes
    a, f = lt["alloc_seq"].to_numpy(), lt["free_seq"].to_numpy()
    live = lt[(a <= seq) & ((f < 0) | (f > seq))]
    cats = [c for c in ("category", "path", "frame") if c in live and isinstance(live[c].dtype, pd.CategoricalDtype)]
    return live.astype({c: str for c in cats}) if cats else live


def at_peak(m: MemoryAnalysis, by: str) -> pd.DataFrame:
    """What holds memory at the peak, by `category` or `path`: bytes, share, allocations.

    Sums to the peak exactly (every byte of allocated memory is some live block's)."""
    live = alive_at(m, m.peak_seq)
    peak = max(int(live["size"].sum()), 1)
    g = live.groupby(by, sort=False).agg(bytes=("size", "sum"), allocations=("size", "size")).reset_index()
    if by == "category":
        order = {k: i for i, k in enumerate(CATEGORIES)}
        g = g.assign(_o=g["category"].map(order)).sort_values("_o", kind="stable").drop(columns="_o")
    else:
        g = g.sort_values("bytes", ascending=False, kind="stable")
    return g.assign(pct=g["bytes"] / peak * 100).reset_index(drop=True)


def top_allocations(m: MemoryAnalysis, n: int = 10) -> pd.DataFrame:
    """The largest blocks alive at the peak: bytes, requested, category, path, frame."""
    live = alive_at(m, m.peak_seq).sort_values(["size", "alloc_seq"], ascending=[False, True], kind="stable")
    return live.head(n).rename(columns={"size": "bytes"})[["bytes", "requested", "category", "path", "frame"]] \
        .reset_index(drop=True)


def path_table(m: MemoryAnalysis) -> pd.DataFrame:
    """Per range path: instances, bytes allocated inside (block sizes, children included), memory
    alive at entry (first instance) and at exit (last), the peak inside and its rise over entry.

    Raises:
        TypeError: the tree lacks columns.
    """
    tree = m.tree
    cols = ["path", "instances", "allocated_bytes", "entry_bytes", "exit_bytes", "peak_bytes", "rise_bytes"]
    rp = m.replay
    if tree.empty:
        return pd.DataFrame(columns=cols)
    times = rp.times()
    level = rp.allocated
    lt = rp.lifetimes
    a_seq = lt["alloc_seq"].to_numpy()
    mine = a_seq >= 0  # the window's allocations, one per alloc event, numbered in event order
    a_seq = a_seq[mine]
    if not increasing(a_seq):  # not in event order: per event
        a_seq = np.flatnonzero(rp.alloc_sizes())
        csum = np.cumsum(rp.alloc_sizes()[a_seq])
    else:
        csum = np.cumsum(lt["size"].to_numpy()[mine])
    del mine
    a_seq = a_seq.astype(np.int64)  # searchsorted would cast an int32 array per call
    start_level = rp.start_allocated_bytes

    def allocated_in(i: int, j: int) -> int:
        """Bytes of the blocks allocated by events i..j-1."""
        lo, hi = np.searchsorted(a_seq, (i, j), side="left")
        return int((csum[hi - 1] if hi else 0) - (csum[lo - 1] if lo else 0))

    def level_before(i: int) -> int:
        return int(level[i - 1]) if i > 0 else start_level

    n = len(tree)
    allocated, entry_b, exit_b, peak_b = (np.zeros(n, dtype=np.int64) for _ in range(4))  # no list of row tuples
    for k, (s, e) in enumerate(zip(tree["start_us"].tolist(), tree["end_us"].tolist(), strict=True)):
        i, j = _index_before(times, s), _index_before(times, e)
        entry, exit_ = level_before(i), level_before(j)
        entry_b[k], exit_b[k] = entry, exit_
        peak_b[k] = max(entry, int(level[i:j].max())) if j > i else entry
        allocated[k] = allocated_in(i, j)

    t = pd.DataFrame({"path": tree["path"], "allocated_bytes": allocated, "entry_bytes": entry_b,
                      "exit_bytes": exit_b, "peak_bytes": peak_b})
    g = t.groupby("path", sort=False).agg(instances=("path", "size"), allocated_bytes=("allocated_bytes", "sum"),
                                          entry_bytes=("entry_bytes", "first"), exit_bytes=("exit_bytes", "last"),
                                          peak_bytes=("peak_bytes", "max")).reset_index()
    return g.assign(rise_bytes=g["peak_bytes"] - g["entry_bytes"])[cols]


def timeline(m: MemoryAnalysis, *, points: int = 2000) -> pd.DataFrame:
    """Allocated and reserved memory over time (t_us from the window's first event), at most
    `points` rows: each bucket keeps its highest allocated value, so the peak is always drawn."""
    rp = m.replay
    if len(rp) == 0:
        return pd.DataFrame(columns=["t_us", "allocated_bytes", "reserved_bytes"])
    time_us = rp.source["time_us"].to_numpy()
    t0 = int(time_us[0])
    a = rp.allocated
    if len(a) > points:
        idx = np.union1d(_bucket_maxima(time_us, t0, a, points), [0, len(a) - 1, max(m.peak_seq, 0)])
        return pd.DataFrame({"t_us": time_us[idx] - t0, "allocated_bytes": a[idx], "reserved_bytes": rp.reserved(idx)})
    return pd.DataFrame({"t_us": time_us - t0, "allocated_bytes": a, "reserved_bytes": rp.reserved()})


def _bucket_maxima(time_us: np.ndarray, t0: int, a: np.ndarray, points: int) -> np.ndarray:
    """Per time bucket (`points` equal spans of t = time_us - t0 up to t[-1]), the first event with
    the bucket's highest `a` (as pandas' groupby idxmax); buckets in order.

    Event i is in bucket min(t_i * points // T, points - 1), T = max(t[-1], 1): with times in
    order, bucket b starts at the first t >= ceil(b * T / points), found by binary search (no
    array of the trace's length is made)."""
    n = len(a)
    span = max(int(time_us[-1]) - t0, 1)
    if not increasing(time_us, strict=False):  # times out of order
        t = time_us - t0
        frame = pd.DataFrame({"b": np.minimum((t * points) // span, points - 1), "a": a})
        return frame.groupby("b")["a"].idxmax().to_numpy()
    bounds = -(-np.arange(points, dtype=np.int64) * span // points) + t0  # ceil(b * T / points), as times
    lo = np.searchsorted(time_us, bounds, side="left")
    hi = np.append(lo[1:], n)
    starts = lo[hi > lo]
    best = np.maximum.reduceat(a, starts)
    ends = np.append(starts[1:], n)
    out = np.empty(len(starts), dtype=np.int64)
    for k, (lo_, hi_, v) in enumerate(zip(starts.tolist(), ends.tolist(), best.tolist(), strict=True)):
        out[k] = lo_ + int(np.argmax(a[lo_:hi_] == v))
    return out


def phases(m: MemoryAnalysis) -> pd.DataFrame:
    """The measured steps' phases (forward, backward, optimizer under step_i) with their times
    from the window's first event: step, phase, start_us, end_us."""
    t = m.replay.source["time_us"]
    t0 = int(t.iloc[0]) if len(t) else 0
    rows = []
    for path, s, e in zip(m.tree["path"].tolist(), m.tree["start_us"].tolist(), m.tree["end_us"].tolist(), strict=True):
        parts = path.split("/")
        if len(parts) == 2 and parts[0].startswith("step_") and parts[1] in ("forward", "backward", "optimizer"):
            rows.append((parts[0], parts[1], s - t0, e - t0))
    return pd.DataFrame(rows, columns=["step", "phase", "start_us", "end_us"])


def fold_path(path: str) -> str:
    """A path without its step: `step_3/forward/layer_1` -> `forward/layer_1`.

    >>> fold_path("step_3/forward/layer_1"), fold_path(BEFORE)
    ('forward/layer_1', '(before the window)')
    """
    head, _, rest = path.partition("/")
    return rest if head.startswith("step_") and head[5:].isdigit() and rest else path


# --- seed 002's question --------------------------------------------------------------------


def residual_stream(m: MemoryAnalysis, run: dict[str, Any]) -> pd.DataFrame:
    """Per layer of a built-in model: the residual stream's size from the config (batch x context x
    d_model x 4 bytes: the stream is float32, as the parameters, under autocast too) against what
    the snapshot holds for that layer's forward when the forward ends (every saved activation is
    alive then, wherever the peak falls; the step of the peak, else step_0): activations saved for
    backward (autocast copies apart), and how many of those blocks are exactly one residual stream.

    Empty for a user's model or a run without its config.
    """
    cols = ["layer", "residual_bytes", "saved_bytes", "saved_over_residual", "residual_sized_blocks",
            "autocast_copy_bytes"]
    size = SIZES.get(str(run.get("model", "")))
    if size is None or not run.get("batch_size") or not run.get("context_length"):
        return pd.DataFrame(columns=cols)
    residual = int(run["batch_size"]) * int(run["context_length"]) * size.d_model * 4
    step: str | None = m.peak_path.split("/", 1)[0] if m.peak_path.startswith("step_") else "step_0"
    forward = m.tree[m.tree["path"] == f"{step}/forward"]
    if forward.empty or len(m.replay) == 0:
        step, live = None, m.lifetimes.iloc[0:0]
    else:
        live = alive_at(m, _index_before(m.replay.times(), int(forward["end_us"].iloc[0])) - 1)
    rows = []
    for k in range(size.n_layers):
        if step is None:
            mine = live.iloc[0:0]
        else:
            prefix = f"{step}/forward/layer_{k}"
            mine = live[(live["path"] == prefix) | live["path"].str.startswith(prefix + "/")]
        saved = mine[mine["category"] == "activations"]
        copies = mine[mine["category"] == "autocast_copies"]
        rows.append((k, residual, int(saved["size"].sum()), float(saved["size"].sum()) / residual,
                     int((saved["requested"] == residual).sum()), int(copies["size"].sum())))
    return pd.DataFrame(rows, columns=cols)


def paired(paths: pd.DataFrame, kernels: pd.DataFrame) -> pd.DataFrame:
    """Memory per path beside GPU kernel time per path (report nvtx's summary): path, gpu_ns,
    gpu_pct (of the measured steps'), allocated_bytes, rise_bytes, rise_pct (of the largest rise).

    Raises:
        TypeError: a required column is missing.
    """
    require(paths, ["path", "allocated_bytes", "rise_bytes"], "memory paths")
    require(kernels, ["path", "gpu_total_ns"], "nvtx summary")
    j = paths.merge(kernels[["path", "gpu_total_ns"]], on="path", how="left")
    steps = j["path"].str.fullmatch(r"step_\d+")
    largest = j["gpu_total_ns"].max()  # NaN when no path has GPU time (a capture without ranges)
    total = float(j.loc[steps, "gpu_total_ns"].sum()) or (float(largest) if largest > 0 else 1.0)
    top_rise = float(max(j["rise_bytes"].max(), 1)) if len(j) else 1.0
    return pd.DataFrame({"path": j["path"], "gpu_ns": j["gpu_total_ns"].fillna(0).astype("int64"),
                         "gpu_pct": j["gpu_total_ns"].fillna(0) / total * 100,
                         "allocated_bytes": j["allocated_bytes"], "rise_bytes": j["rise_bytes"],
                         "rise_pct": j["rise_bytes"] / top_rise * 100})


def compare_memory(analyses: Iterable[MemoryAnalysis], labels: list[str], *, by: str) -> pd.DataFrame:
    """Several snapshots' memory at their peaks side by side, by `category` or by path (steps folded),
    with the delta against the first: key, capture, bytes, delta_bytes."""
    frames = []
    for m, label in zip(analyses, labels, strict=True):
        t = at_peak(m, "category" if by == "category" else "path")
        key = t["category"] if by == "category" else t["path"].map(fold_path)
        frames.append(pd.DataFrame({"key": key, "bytes": t["bytes"]}).groupby("key", sort=False)["bytes"].sum()
                      .rename(label))
    wide = pd.concat(frames, axis=1).fillna(0).astype("int64")
    if by == "category":
        wide = wide.reindex([k for k in CATEGORIES if k in wide.index])
    else:
        wide = wide.loc[wide.max(axis=1).sort_values(ascending=False, kind="stable").index]
    long = wide.reset_index(names="key").melt(id_vars="key", var_name="capture", value_name="bytes")
    first = long["key"].map(wide[labels[0]])
    return long.assign(delta_bytes=long["bytes"] - first)
