from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
collect_ignore = ["fake_nsys.py"]  # an executable stand-in for nsys, not a module to import
ENCODER = TESTS / "data" / "h100_encoder_layer_nsys2023" / "profile.sqlite"


class Recorder:
    """Stands in for nvtx.annotate: logs (event, name, thread id) for every push and pop."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def make(self, name: str, domain: str | None = None) -> object:
        assert domain == "profkit", domain  # every profkit range is in profkit's own NVTX domain
        log = self.events

        class Range:
            def __enter__(self) -> Range:
                log.append(("push", name, threading.get_ident()))
                return self

            def __exit__(self, *exc: object) -> bool:
                log.append(("pop", name, threading.get_ident()))
                return False

        return Range()

    def paths(self) -> list[tuple[int, str]]:
        """(thread, path) for every range, in push order; asserts pops match pushes."""
        stacks: dict[int, list[str]] = {}
        out = []
        for kind, name, tid in self.events:
            stack = stacks.setdefault(tid, [])
            if kind == "push":
                stack.append(name)
                out.append((tid, "/".join(stack)))
            else:
                assert stack and stack[-1] == name, f"pop {name!r} does not match open {stack}"
                stack.pop()
        assert all(not s for s in stacks.values()), f"ranges left open: {stacks}"
        return out


@pytest.fixture
def nvtx_recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    from profkit import ranges

    rec = Recorder()
    ranges.set_enabled(True)  # a `profkit run` earlier in the session may have switched ranges off
    monkeypatch.setattr(ranges, "_CACHE", {})
    monkeypatch.setattr(ranges.nvtx, "annotate", rec.make)
    yield rec
    ranges.set_enabled(True)


@pytest.fixture
def bench_parser(monkeypatch: pytest.MonkeyPatch):  # -> the module scripts/bench_parser.py
    """scripts/bench_parser.py loaded as a module (it is a script, not part of the package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("bench_parser", Path(__file__).parents[1] / "scripts" /
                                                  "bench_parser.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_parser", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def read_run(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def export_variant(tmp_path: Path, *sql: str, source: Path = ENCODER) -> Path:
    """A copy of a real export with `sql` statements applied (a table dropped, a row changed)."""
    copy = tmp_path / "variant.sqlite"
    shutil.copyfile(source, copy)
    db = sqlite3.connect(copy)
    for statement in sql:
        db.execute(statement)
    db.commit()
    db.close()
    return copy


def real_nsys():  # -> profkit.nsys.Nsys
    """The nsys profkit finds, else skip (a failure where PROFKIT_REQUIRE_NSYS is set, as in CI)."""
    from profkit.nsys import NsysNotFound, find_nsys

    try:
        return find_nsys()
    except NsysNotFound:
        if os.environ.get("PROFKIT_REQUIRE_NSYS"):
            raise
        pytest.skip("no nsys here (scripts/install_nsys.sh installs one)")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """The report cache of every test goes to a temporary folder, never the user's ~/.cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old
