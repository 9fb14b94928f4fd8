"""profkit.heap: glibc's mmap threshold and trim through ctypes, nothing where there is no glibc."""

from __future__ import annotations

import ctypes.util
import sqlite3
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
    assert lib.calls[0] == ("mallopt", -3, 4 << 20)
    with sqlite3.connect(export) as db:
        (n,), = db.execute("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL")
    assert len(a.kernels) == n
