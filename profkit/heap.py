"""glibc's heap, told when to give freed blocks back and when to keep them (Linux/glibc only; elsewhere nothing).

numpy and pandas allocate their arrays with malloc. glibc gives each allocation of at least its
mmap threshold a mapping of its own, returned to the system when freed, but the threshold starts
at 128 kB and rises to the largest block freed so far (up to 32 MB): after the first large free,
arrays of up to 32 MB come from the brk heap, whose freed space glibc keeps resident. A large
analysis frees and allocates hundreds of such arrays, so the heap grows past what is live.
fixed_mmap_threshold() pins the threshold (as a long-running process with a known pattern of big
arrays would), and with it, optionally, the trim threshold; release_freed() trims what the heap
holds free.

Pinning the mmap threshold also pins glibc's trim threshold at its 128 kB start: the heap's free
top is given back to the system at every free past that, so a loop of temporaries below the mmap
threshold (timeline()'s 2 MB chunks) maps and faults its memory in again at every turn. A page
fault is dear on a virtual machine (a process's first writes to memory new to it measured 11-32 ns
per 8 bytes on the 2-core machine of reports/bench_linearity.md), so the analysis keeps up to
ANALYSIS_TRIM_THRESHOLD of free top, and takes even its largest arrays from the heap
(ANALYSIS_MMAP_THRESHOLD): a snapshot's read gives its arrays back (MMAP_THRESHOLD), a kernels'
analysis reuses them.
"""

from __future__ import annotations

from typing import Any

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 10
"""Allocations of this many bytes or more get their own mapping, given back when freed (a memory
snapshot's read: many arrays and chunk lists of a few MB)."""
ANALYSIS_MMAP_THRESHOLD = 1 << 30
"""load_compact()'s: in effect every array from the heap, its freed space kept (ANALYSIS_TRIM_THRESHOLD)
and reused by the next: no page faults for memory the process has had before. With 4 MB (the per-kernel
arrays, 80 MB at 10 M kernels, in mappings of their own, given back when freed and faulted in afresh by
the next) a 10 M export paid a fresh page for every large temporary, a 1 M one far fewer (its arrays are
ten times smaller and more of them fit what was freed): the cost per kernel rose with the size. `report
timeline` on 10 M kernels, 4 MB against this (2026-12-04, the 2-core machine, interleaved): 17.4-17.6 s
against 11.9-16.4 s, minor faults 172-174 k against 24 k, peak 876,076 against 948,544 KiB; `report
compare` 30.5 s against 23.2-24.2 s, 884,656 against 955,704-956,660 KiB; on 1 M kernels timeline 1.79-2.20
against 1.56-1.76 s. The peak grows by the holes freed arrays leave in the heap (about 72 MB, 8%, at
10 M): README, "Large captures", says where that leaves the 1 GB bound. (Earlier, at 10 M kernels before
the analysis was made compact: `report timeline` 1,142 MB with 4 MB, 1,140 MB with 256 kB, 1,249 MB with
glibc's own sliding threshold.)"""
ANALYSIS_TRIM_THRESHOLD = 1 << 31
"""load_compact()'s: free heap top kept for the next temporaries instead of given back and faulted in
again (all of it: below ANALYSIS_MMAP_THRESHOLD every array is a heap block). `report timeline` on 10 M
kernels with the 4 MB mmap threshold, no trim threshold against 32 MB: 810-837 k minor page faults ->
173-180 k, 16.5-19.1 s -> 13.3-15.4 s, peak 874-875 MB either way; with the 1 GB mmap threshold, 32 MB
against this: 14.0 s against 11.9 s, 24.07 against 23.19 s for compare, the peak the same to 1 MB
(what is free at the top at the peak is what the next allocation takes)."""

_LIBC: Any = None


def _libc() -> Any:
    """glibc through ctypes, or None (another C library, or no ctypes)."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        try:
            import ctypes
            import ctypes.util

            name = ctypes.util.find_library("c")
            lib = ctypes.CDLL(name) if name else None
            if lib is not None and hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt"):
                _LIBC = lib
        except (OSError, AttributeError):
            pass
    return _LIBC or None


def release_freed() -> None:
    """Hand the memory freed so far back to the system (glibc's malloc_trim; elsewhere nothing)."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def fixed_mmap_threshold(threshold: int = MMAP_THRESHOLD, *, trim: int | None = None) -> None:
    """glibc's mmap threshold fixed at `threshold` bytes for the process and, when `trim` is given,
    its trim threshold at `trim` bytes (glibc only)."""
    lib = _libc()
    if lib is not None:
        lib.mallopt(M_MMAP_THRESHOLD, threshold)
        if trim is not None:
            lib.mallopt(M_TRIM_THRESHOLD, trim)
