"""The report cache (profkit.cache) and the fast reader (ADBC) against the plain-sqlite one."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from profkit import cache, parse
from profkit.cli import cli

DATA = Path(__file__).parent / "data"
ENCODER = DATA / "h100_encoder_layer_nsys2023" / "profile.sqlite"
FIXTURES = sorted(DATA.glob("*/profile.sqlite"))


@pytest.fixture()
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv(cache.NO_CACHE_ENV, raising=False)
    return home / "profkit"


def entries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_key_changes_when_the_file_does(tmp_path: Path) -> None:
    p = tmp_path / "a.sqlite"
    shutil.copyfile(ENCODER, p)
    k0 = cache.file_key(p)
    assert cache.file_key(p) == k0
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    k1 = cache.file_key(p)
    raw = bytearray(p.read_bytes())
    raw[100] ^= 1  # in the first 4 KiB (SQLite's header), same size
    p.write_bytes(bytes(raw))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert len({k0, k1, cache.file_key(p)}) == 3


def test_put_get_atomic_and_corrupt_entries_are_rebuilt(xdg: Path) -> None:
    c = cache.for_export(ENCODER)
    assert c is not None and c.folder.parent == xdg
    calls = []

    def make() -> str:
        calls.append(1)
        return "report\n"

    assert cache.memo_text(c, "kernels-x", make) == "report\n"
    assert cache.memo_text(c, "kernels-x", make) == "report\n"
    assert len(calls) == 1
    assert [p.name for p in entries(xdg)] == ["kernels-x"]  # no temporary file left
    entry = c.folder / "kernels-x"
    entry.write_bytes(entry.read_bytes()[:-2] + b"?\n")  # altered payload, same length
    assert cache.memo_text(c, "kernels-x", make) == "report\n" and len(calls) == 2
    entry.write_bytes(b"PKCACHE1")  # truncated
    assert c.get("kernels-x") is None and not entry.exists()


def test_eviction_keeps_the_cache_bounded(xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.MAX_MB_ENV, str(1.5 / 1024))  # 1.5 KiB
    old, new = cache.Cache(xdg / "old"), cache.Cache(xdg / "new")
    assert old.put("e", b"x" * 1000)
    os.utime(old.folder, ns=(1, 1))  # least recently used
    assert new.put("e", b"y" * 1000)
    assert not old.folder.exists() and new.get("e") == b"y" * 1000


def test_disabled_and_never_beside_the_export(xdg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache.for_export(ENCODER, enabled=False) is None
    monkeypatch.setenv(cache.NO_CACHE_ENV, "1")
    assert cache.for_export(ENCODER) is None
    monkeypatch.delenv(cache.NO_CACHE_ENV)
    folder = tmp_path / "capture"
    folder.mkdir()
    shutil.copyfile(ENCODER, folder / "profile.sqlite")
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    assert cache.for_export(folder / "profile.sqlite") is None


def run(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", [["kernels", "--top", "0", "--format", "csv"], ["nvtx", "--format", "json"],
                                     ["kernels", "--range", "backward", "--by", "category"]])
def test_cached_reports_equal_fresh_ones(xdg: Path, command: list[str]) -> None:
    fresh = run("report", command[0], ENCODER, *command[1:], "--no-cache")
    assert entries(xdg) == []  # --no-cache writes nothing
    assert run("report", command[0], ENCODER, *command[1:]) == fresh  # computed, stored
    assert len([e for e in entries(xdg) if not e.name.startswith("analysis-")]) == 1
    assert run("report", command[0], ENCODER, *command[1:]) == fresh  # from the cache


def test_read_only_capture_folder(xdg: Path, tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    shutil.copytree(ENCODER.parent, folder)
    for p in folder.iterdir():
        p.chmod(stat.S_IRUSR | stat.S_IRGRP)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        before = sorted(p.name for p in folder.iterdir())
        first = run("report", "nvtx", folder, "--format", "csv")
        assert run("report", "nvtx", folder, "--format", "csv") == first
        assert sorted(p.name for p in folder.iterdir()) == before
        assert len(entries(xdg)) == 1  # the report (report nvtx stores no analysis: it computes from arrays)
    finally:
        folder.chmod(stat.S_IRWXU)


def test_a_changed_rules_file_misses(xdg: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\ncategory = "mine"\npattern = "gemm"\n')
    a = run("report", "kernels", ENCODER, "--by", "category", "--rules", rules)
    rules.write_text('[[rule]]\ncategory = "yours"\npattern = "gemm"\n')
    b = run("report", "kernels", ENCODER, "--by", "category", "--rules", rules)
    assert "mine" in a and "yours" in b and "mine" not in b


@pytest.mark.skipif(parse._adbc_modules() is None, reason="ADBC's SQLite driver is not installed")
@pytest.mark.parametrize("export", FIXTURES, ids=lambda p: p.parent.name)
def test_adbc_reader_equals_plain_sqlite(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = parse.load(export, allow_incomplete=True)
    monkeypatch.setenv(parse.READER_ENV, "sqlite3")
    plain = parse.load(export, allow_incomplete=True)
    for name in ("kernels", "nvtx", "memcpy", "memset", "gpus"):
        pd.testing.assert_frame_equal(getattr(fast, name), getattr(plain, name), check_exact=True)


@pytest.mark.parametrize("export", FIXTURES, ids=lambda p: p.parent.name)
def test_launch_join_equals_sqlites(export: Path) -> None:
    """The numpy join (launch calls first, all calls as the fallback) pairs as SQLite's LEFT JOIN."""
    k = parse.load(export, allow_incomplete=True).kernels
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    rows = db.execute("SELECT coalesce(r.start, -1), coalesce(r.globalTid, -1) FROM CUPTI_ACTIVITY_KIND_KERNEL k "
                      "LEFT JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON r.correlationId = k.correlationId AND "
                      f"(r.globalTid & {parse.PID_MASK}) = k.globalPid").fetchall()
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'CUPTI_ACTIVITY_KIND_GRAPH_TRACE'").fetchone():
        # whole CUDA-graph replays follow the kernel rows, each joined to its cudaGraphLaunch
        rows += db.execute("SELECT coalesce(r.start, -1), coalesce(r.globalTid, -1) FROM "
                           "CUPTI_ACTIVITY_KIND_GRAPH_TRACE g LEFT JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON "
                           f"r.correlationId = g.correlationId AND (r.globalTid & {parse.PID_MASK}) = g.globalPid "
                           "ORDER BY g.rowid").fetchall()
    db.close()
    expected = np.array(rows, dtype=np.int64).reshape(-1, 2)
    assert len(k) == len(expected)
    np.testing.assert_array_equal(k["launch_ns"].to_numpy(), expected[:, 0])
    np.testing.assert_array_equal(k["launch_tid"].to_numpy(), expected[:, 1])


# --- profkit.fastpath: a cache hit before the command line loads ---------------------------------------------------

FAST_COMMANDS = [["kernels"], ["kernels", "--top", "0", "--format", "csv"], ["kernels", "--by=category", "--top", "3"],
                 ["kernels", "--range", "backward", "--name", "short"], ["nvtx", "--format", "json"],
                 ["nvtx", "--steps", "merged", "--depth", "2"], ["nvtx", "--by", "name"], ["timeline"],
                 ["timeline", "--by", "name", "--format", "csv"]]


def test_fastpath_defaults_and_choices_are_clis() -> None:
    import click

    from profkit import fastpath, layout
    from profkit.cli import report

    assert (fastpath.EXPORT, fastpath.RUN_FILE) == (layout.EXPORT, layout.RUN_FILE)
    for name, spec in fastpath.SPECS.items():
        command = report.commands[name]
        options = {o: p for p in command.params for o in p.opts if o.startswith("--")}
        # --rank (a multi-rank capture) is not plain: the fast path leaves it to the CLI, which says which rank
        assert set(spec) == set(options) - {"--allow-incomplete", "--rules", "--no-cache", "--output", "--rank"}
        for flag, (_, _, default, choices) in spec.items():  # the keys: the next test (a wrong one misses)
            param = options[flag]
            given = param.default if isinstance(param.default, (int, str)) else None  # click 8.3: UNSET for none
            assert given == default, flag
            assert (tuple(param.type.choices) if isinstance(param.type, click.Choice) else None) == choices, flag


@pytest.mark.parametrize("export", FIXTURES, ids=lambda p: p.parent.name)
def test_fastpath_serves_what_the_cli_computed(xdg: Path, export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from profkit import fastpath

    for command in FAST_COMMANDS:
        argv = ["report", command[0], str(export), *command[1:]]
        assert not fastpath.serve(argv)  # nothing cached yet
        fresh = run(*argv)
        assert fastpath.serve(argv), command
        assert capsys.readouterr().out == fresh, command


def test_fastpath_misses_stale_and_damaged_entries(xdg: Path, tmp_path: Path) -> None:
    from profkit import fastpath

    p = tmp_path / "a.sqlite"
    shutil.copyfile(ENCODER, p)
    argv = ["report", "nvtx", str(p), "--format", "csv"]
    fresh = run(*argv)
    assert fastpath.serve(argv)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # the file changed: its key too
    assert not fastpath.serve(argv)
    assert run(*argv) == fresh
    (entry,) = [e for e in entries(xdg) if cache.file_key(p) in str(e) and not e.name.startswith("analysis-")]
    entry.write_bytes(entry.read_bytes()[:-1])  # truncated
    assert not fastpath.serve(argv) and not entry.exists()
    assert run(*argv) == fresh and fastpath.serve(argv)


@pytest.mark.parametrize("argv", [["report", "kernels", "x.sqlite", "-o", "f"], ["report", "kernels", "x.sqlite",
                                  "--rules", "r.toml"], ["report", "kernels", "x.sqlite", "--by", "bogus"],
                                  ["report", "nvtx", "x.sqlite", "--depth", "0"], ["report", "kernels", "--top", "3"],
                                  ["report", "x.sqlite"], ["report", "kernels", "x.sqlite", "--no-cache"]])
def test_fastpath_leaves_the_rest_to_click(argv: list[str]) -> None:
    from profkit import fastpath

    assert fastpath.parse_args(argv) is None


def test_a_cache_hit_imports_no_click_pandas_numpy_or_torch(xdg: Path, tmp_path: Path) -> None:
    p = tmp_path / "a.sqlite"
    shutil.copyfile(ENCODER, p)
    run("report", "kernels", p)
    code = ("import sys; from profkit.fastpath import serve; "
            f"assert serve(['report', 'kernels', {str(p)!r}]); "
            "heavy = {'click', 'pandas', 'numpy', 'torch'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, XDG_CACHE_HOME=str(xdg.parent)),
                   stdout=subprocess.DEVNULL)


def test_the_console_script_takes_the_fast_path(xdg: Path, tmp_path: Path) -> None:
    """`profkit` (the console script) and `python -m profkit` both serve a hit before click loads, and
    both run the CLI on a miss, printing what the CLI prints."""
    from importlib.metadata import entry_points

    import profkit.__main__ as entry

    (script,) = entry_points(group="console_scripts", name="profkit")
    assert script.value == "profkit.__main__:main" and script.load() is entry.main
    p = tmp_path / "a.sqlite"
    shutil.copyfile(ENCODER, p)
    expected = run("report", "kernels", p, "--top", "3", "--no-cache")
    env = dict(os.environ, XDG_CACHE_HOME=str(xdg.parent))
    probe = (f"import sys; sys.argv = ['profkit', 'report', 'kernels', {str(p)!r}, '--top', '3']; "
             "from profkit.__main__ import main; main(); "
             "print('HEAVY', sorted({'click', 'pandas', 'numpy'} & set(sys.modules)))")
    miss = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
    assert miss.stdout.startswith(expected)  # a miss: the click CLI computed it (and exited before the probe)
    hit = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert hit.stdout == expected + "HEAVY []\n"  # a hit: served with no click, pandas or numpy
    installed = Path(sys.executable).with_name("profkit")
    if installed.exists():  # the script pip wrote: the same text
        out = subprocess.run([str(installed), "report", "kernels", str(p), "--top", "3"], env=env,
                             capture_output=True, text=True, check=True)
        assert out.stdout == expected


# --- the analysis stage: kernel columns, owners, ranges and transfers cached for any report's options -------------

def _assert_same_analysis(a: object, b: object) -> None:
    from pandas.testing import assert_frame_equal, assert_series_equal

    for name in ("kernels", "ranges", "transfers"):
        assert_frame_equal(getattr(a, name), getattr(b, name))
    for name in ("kernels", "nvtx", "memcpy", "memset", "gpus"):
        assert_frame_equal(getattr(a.data, name), getattr(b.data, name))  # type: ignore[attr-defined]
    assert_series_equal(a.data.names, b.data.names)  # type: ignore[attr-defined]
    assert (a.data.tables, a.data.nvtx_end_ns) == (b.data.tables, b.data.nvtx_end_ns)  # type: ignore[attr-defined]


def analysis_entries(root: Path) -> list[Path]:
    return [p for p in entries(root) if p.name.startswith("analysis-")]


@pytest.mark.parametrize("export", FIXTURES, ids=lambda p: p.parent.name)
def test_cached_analysis_equals_a_fresh_one(xdg: Path, export: Path) -> None:
    from profkit import pipeline

    for nvtx, activity in ((False, False), (True, False), (True, True)):
        fresh = pipeline.load(export, nvtx=nvtx, activity=activity)
        stored = pipeline.load(export, nvtx=nvtx, activity=activity, use_cache=True)
        again = pipeline.load(export, nvtx=nvtx, activity=activity, use_cache=True)
        _assert_same_analysis(fresh, stored)
        _assert_same_analysis(fresh, again)
    assert len(analysis_entries(xdg)) == 3


OTHER_OPTIONS = [["kernels", "--top", "0", "--format", "csv"], ["kernels", "--top", "3", "--by", "category"],
                 ["kernels", "--range", "forward", "--format", "json"], ["nvtx", "--format", "csv"],
                 ["nvtx", "--by", "name"],
                 ["nvtx", "--steps", "merged", "--depth", "2"], ["timeline", "--format", "json"],
                 ["timeline", "--by", "name"]]


@pytest.mark.parametrize("export", FIXTURES, ids=lambda p: p.parent.name)
def test_reports_from_a_cached_analysis_equal_uncached_ones(xdg: Path, export: Path) -> None:
    """A second report with other options reads the analysis back (timeline; kernels and nvtx
    compute from arrays, without pandas, and store their texts only); its text is the uncached one's."""
    fresh = {tuple(c): run("report", c[0], export, *c[1:], "--no-cache") for c in OTHER_OPTIONS}
    assert entries(xdg) == []
    for c in OTHER_OPTIONS:  # each but the first of a kind finds the analysis another option set stored
        assert run("report", c[0], export, *c[1:]) == fresh[tuple(c)], c
    assert len(analysis_entries(xdg)) == 1  # timeline's


def test_stale_and_damaged_analysis_entries_are_rebuilt(xdg: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from profkit import pipeline

    p = tmp_path / "a.sqlite"
    shutil.copyfile(ENCODER, p)
    calls = []
    real = pipeline.analyze_data
    monkeypatch.setattr(pipeline, "analyze_data", lambda *a, **k: calls.append(1) or real(*a, **k))
    fresh = pipeline.load(p, use_cache=True)
    pipeline.load(p, use_cache=True)
    assert len(calls) == 1  # the second from the cache
    (entry,) = analysis_entries(xdg)
    raw = entry.read_bytes()
    entry.write_bytes(raw[: len(raw) // 2])  # truncated: fails its check, is removed and rebuilt
    _assert_same_analysis(fresh, pipeline.load(p, use_cache=True))
    assert len(calls) == 2 and analysis_entries(xdg)[0].read_bytes() == raw
    damaged = bytearray(raw)
    damaged[-100] ^= 0xFF  # altered: the SHA-256 differs
    analysis_entries(xdg)[0].write_bytes(bytes(damaged))
    _assert_same_analysis(fresh, pipeline.load(p, use_cache=True))
    assert len(calls) == 3
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # the export changed: a new key misses
    _assert_same_analysis(fresh, pipeline.load(p, use_cache=True))
    assert len(calls) == 4 and len(analysis_entries(xdg)) == 2
    pipeline.load(p, use_cache=False)  # --no-cache: neither read nor written
    assert len(calls) == 5 and len(analysis_entries(xdg)) == 2


def test_a_missing_rules_file_is_an_error_even_with_a_cached_analysis(xdg: Path, tmp_path: Path) -> None:
    p = tmp_path / "a.sqlite"
    shutil.copyfile(ENCODER, p)
    run("report", "kernels", p, "--top", "3")
    result = CliRunner().invoke(cli, ["report", "kernels", str(p), "--top", "4", "--rules", str(tmp_path / "no.toml")])
    assert result.exit_code != 0
