"""glibc's heap, told to give large freed blocks back (Linux/glibc only; elsewhere nothing).

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
ANALYSIS_TRIM_THRESHOLD of free top.
"""

from __future__ import annotations

from typing import Any

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 10
"""Allocations of this many bytes or more get their own mapping, given back when freed (a memory
snapshot's read: many arrays and chunk lists of a few MB)."""
ANALYSIS_MMAP_THRESHOLD = 4 << 20
"""load_compact()'s: above the 2 MB temporaries of its 2^18-row chunks (reused from the heap, no page
faults each time), below the per-kernel arrays (80 MB at 10 M kernels), which get their own mappings.
At 10 M kernels `report timeline` peaked at 1,142 MB with it and 1,140 MB with 256 kB, 25.7 s
against 29.7 s at load 1.8-1.9 (without either: 1,249 MB, 22.1 s at load 1.7)."""
ANALYSIS_TRIM_THRESHOLD = 32 << 20
"""load_compact()'s: free heap top kept for the next temporaries instead of given back and faulted in
again. `report timeline` on 10 M kernels: 810-837 k minor page faults -> 173-180 k, 16.5-19.1 s ->
13.3-15.4 s, peak 874-875 MB either way (two runs each, interleaved); on 1 M kernels 103-107 k -> 44 k
faults. The peak can grow by at most this much (free memory kept at a moment the next allocation does
not reuse), measured no more than 2.4 MB."""

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
