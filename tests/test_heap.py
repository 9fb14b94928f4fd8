"""profkit.heap: glibc's mmap threshold and trim through ctypes, nothing where there is no glibc."""

from __future__ import annotations

import ctypes.util
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from profkit import heap, pipeline

DATA = Path(__file__).parent / "data"


class Recorder:
    """A stand-in for glibc: the calls it got."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


def test_threshold_and_trim_reach_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = Recorder()
    monkeypatch.setattr(heap, "_LIBC", lib)
    heap.fixed_mmap_threshold()
    heap.release_freed()
    assert lib.calls == [("mallopt", -3, 262144), ("malloc_trim", 0)]  # M_MMAP_THRESHOLD is -3 in malloc.h


def test_no_c_library_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_LIBC", None)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    heap.fixed_mmap_threshold()
    heap.release_freed()
    assert heap._libc() is None


def test_load_compact_fixes_the_threshold_first(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = Recorder()
    monkeypatch.setattr(heap, "_LIBC", lib)
    export = DATA / "h100_encoder_layer_nsys2023" / "profile.sqlite"
    a = pipeline.load_compact(export)
    assert lib.calls[:2] == [("mallopt", -3, 1 << 30), ("mallopt", -1, 1 << 31)]  # M_TRIM_THRESHOLD is -1
    with sqlite3.connect(export) as db:
        (n,), = db.execute("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL")
    assert len(a.kernels) == n


FAULTS = """
import resource, sys
import numpy as np
from profkit import heap
heap.fixed_mmap_threshold(4 << 20, trim=None if sys.argv[1] == "none" else int(sys.argv[1]))
np.ones(1 << 18).sum()  # the first chunk's pages, mapped once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    np.ones(1 << 18).sum()  # a 2 MB temporary below the mmap threshold, freed at once
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap._libc() is None, reason="glibc's heap only")
def test_kept_trim_threshold_stops_temporaries_faulting_again() -> None:
    def faults(trim: str) -> int:
        return int(subprocess.run([sys.executable, "-c", FAULTS, trim], capture_output=True, text=True,
                                  check=True).stdout)

    pages = (2 << 20) // 4096  # one 2 MB temporary in 4 kB pages
    assert faults("none") >= 25 * pages  # the pinned 128 kB trim threshold: the top given back, faulted again
    assert faults(str(heap.ANALYSIS_TRIM_THRESHOLD)) < pages  # kept: every turn reuses the same pages


BIG_FAULTS = """
import resource, sys
import numpy as np
from profkit import heap
heap.fixed_mmap_threshold(int(sys.argv[1]), trim=int(sys.argv[2]))
n = 10 << 20  # an 80 MB array: a per-kernel column at 10 M kernels
np.ones(n).sum()  # its pages, had once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(n).sum()  # a temporary of that size, freed at once
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or heap._libc() is None, reason="glibc's heap only")
def test_analysis_thresholds_reuse_the_largest_arrays() -> None:
    """An analysis's 80 MB temporaries come back from the heap, not as fresh pages each time (the cost
    that rose with the export's size, heap.ANALYSIS_MMAP_THRESHOLD)."""
    def faults(mmap: int, trim: int) -> int:
        return int(subprocess.run([sys.executable, "-c", BIG_FAULTS, str(mmap), str(trim)], capture_output=True,
                                  text=True, check=True).stdout)

    huge_pages = (80 << 20) // (2 << 20)  # the fewest faults one fresh 80 MB array can cost (2 MB pages)
    assert faults(4 << 20, 32 << 20) >= 5 * huge_pages  # own mappings: every turn's pages fresh
    assert faults(heap.ANALYSIS_MMAP_THRESHOLD, heap.ANALYSIS_TRIM_THRESHOLD) < huge_pages  # reused
