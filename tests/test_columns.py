"""The reports' pandas-free path: the launch join against a brute-force one, Table's CSV against
pandas' own, the array path's reports against those made from the DataFrame analysis on every
fixture, and a cold `report kernels` / `report nvtx` that never imports pandas."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profkit import columns, pipeline, report
from profkit.table import Table

DATA = Path(__file__).parent / "data"
FIXTURES = sorted(DATA.glob("*/profile.sqlite"))


def brute_first(keys: np.ndarray, queries: np.ndarray) -> list[int]:
    first: dict[int, int] = {}
    for i, k in enumerate(keys.tolist()):
        first.setdefault(k, i)
    return [first.get(q, -1) for q in queries.tolist()]


@pytest.mark.parametrize("chunk", [columns.CHECK_ROWS, 64])  # 64: the checks' chunks cross the arrays many times
@pytest.mark.parametrize("kind", ["identical", "increasing", "dense", "dense-repeats", "sparse", "sparse-repeats"])
def test_first_positions_equal_a_dictionary(kind: str, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns, "CHECK_ROWS", chunk)
    rng = np.random.default_rng(7)
    n = 2000
    keys = {"identical": np.arange(n) * 3, "increasing": np.cumsum(rng.integers(1, 50, n)),
            "dense": rng.permutation(n) - 5, "dense-repeats": rng.integers(0, n // 2, n),
            "sparse": rng.permutation(n) * 10_007, "sparse-repeats": rng.integers(0, n // 2, n) * 10_007}[kind]
    queries = keys.copy() if kind == "identical" else np.concatenate([rng.permutation(keys)[: n // 2],
                                                                      rng.integers(-10, keys.max() + 10, n // 2)])
    assert columns.first_positions(keys, queries).tolist() == brute_first(keys, queries)


def test_join_launches_pairs_process_and_correlation_id() -> None:
    p1, p2 = 1 << 24, 2 << 24
    corr, pid, start = np.array([5, 5, 6, 5]), np.array([p1, p2, p1, p1]), np.array([50, 51, 60, 99])
    calls = [corr, pid, start, np.array([p1 + 1, p2 + 1, p1 + 2, p1 + 3])]
    start, tid = columns.join_launches(np.array([5, 5, 6, 6, 7]), np.array([p1, p2, p1, p2, p1]), calls)
    assert start.tolist() == [50, 51, 60, -1, -1]  # the first (p1, 5), not the later repeat
    assert tid.tolist() == [p1 + 1, p2 + 1, p1 + 2, -1, -1]


@pytest.mark.parametrize("case", ["one process", "calls of another process", "calls of two", "kernels of two"])
def test_join_launches_with_one_process_broadcast_equals_the_full_arrays(case: str) -> None:
    # the reading keeps one process as a broadcast of its value (no memory per row): the join must
    # give what the full per-row arrays give, pair by pair, against a brute force LEFT JOIN
    rng = np.random.default_rng(7)
    p1, p2 = 3 << 24, 9 << 24
    n_calls, n_kernels = 400, 300
    r_corr = rng.integers(0, 250, n_calls)  # repeats: the first call in table order wins
    r_tid = {"one process": p1 + rng.integers(1, 4, n_calls), "calls of another process": p2 + np.ones(n_calls, int),
             "calls of two": np.where(rng.random(n_calls) < 0.5, p1, p2) + 1,
             "kernels of two": p1 + rng.integers(1, 4, n_calls)}[case]
    r_start = rng.permutation(n_calls) * 10
    corr = rng.integers(-1, 300, n_kernels)
    pid = np.where(rng.random(n_kernels) < 0.5, p1, p2) if case == "kernels of two" else np.full(n_kernels, p1)
    full = columns.join_launches(corr, pid, [r_corr, columns.pid_of(r_tid), r_start, r_tid])
    lean = columns.join_launches(corr, columns.one_process(pid), [r_corr, columns.processes_of(r_tid), r_start, r_tid])
    first = {}
    for c, pp, s, t in zip(r_corr.tolist(), columns.pid_of(r_tid).tolist(), r_start.tolist(), r_tid.tolist(),
                           strict=True):
        first.setdefault((c, pp), (s, t))
    brute = [first.get((c, pp), (-1, -1)) for c, pp in zip(corr.tolist(), pid.tolist(), strict=True)]
    assert [a.tolist() for a in full] == [a.tolist() for a in lean] == [[b[0] for b in brute], [b[1] for b in brute]]
    assert (columns.processes_of(r_tid).strides == (0,)) == (case != "calls of two")


def test_one_process_is_a_broadcast_only_when_every_row_agrees() -> None:
    tids = np.array([(5 << 24) | 1, (5 << 24) | 0xFFFFFF, (5 << 24)])
    assert columns.processes_of(tids).strides == (0,) and columns.processes_of(tids).tolist() == [5 << 24] * 3
    two = np.array([(5 << 24) | 0xFFFFFF, 6 << 24])  # neighbours across a process boundary
    assert columns.processes_of(two).tolist() == [5 << 24, 6 << 24] and columns.processes_of(two).strides == (8,)
    nulls = np.array([-1, -1])  # a NULL globalTid read as -1: the process pid_of() gives it
    assert columns.processes_of(nulls).tolist() == columns.pid_of(nulls).tolist()
    assert columns.one_process(np.array([4, 5])).tolist() == [4, 5] and len(columns.processes_of(np.empty(0, int))) == 0


def test_table_csv_is_pandas_csv() -> None:
    cols = {"name": ["a,b", 'say "hi"', "multi\nline", "", "plain"], "n": np.array([1, -2, 3, 0, 2**62]),
            "x": np.array([0.1 + 0.2, float("nan"), 1e-7, 1e20, 3.0]), "top": ["k", None, "z", None, "é"]}
    frame = pd.DataFrame({k: v if isinstance(v, np.ndarray) else pd.array(v, dtype=object) for k, v in cols.items()})
    assert Table(cols).to_csv() == frame.to_csv(index=False)
    assert Table(cols).to_frame().equals(frame)


OPTIONS = [("kernels", {}), ("kernels", {"top": 0}), ("kernels", {"by": "category"}),
           ("kernels", {"name": "short", "top": 5}), ("kernels", {"range_regex": "backward"}),
           ("kernels", {"range_regex": "forward/", "by": "category", "top": 3}), ("nvtx", {}), ("nvtx", {"by": "name"}),
           ("nvtx", {"steps": "merged"}), ("nvtx", {"steps": "merged", "depth": 2}), ("nvtx", {"depth": 3})]


@pytest.mark.parametrize("export", FIXTURES, ids=lambda p: p.parent.name)
def test_array_path_equals_the_dataframe_analysis(export: Path) -> None:
    """pipeline.attributed() (columns straight to arrays) makes the reports pipeline.load()'s
    DataFrames make, in every format."""
    frames = {nvtx: pipeline.load(export, nvtx=nvtx, activity=False) for nvtx in (False, True)}
    for command, options in OPTIONS:
        nvtx = command == "nvtx" or "range_regex" in options
        arrays = pipeline.attributed(export, nvtx=nvtx, short=options.get("name") == "short")
        for fmt in ("markdown", "csv", "json"):
            make = report.kernels if command == "kernels" else report.nvtx
            assert make(arrays, fmt=fmt, **options) == make(frames[nvtx], fmt=fmt, **options), (command, options, fmt)


def test_cold_reports_import_no_pandas() -> None:
    export = DATA / "h100_small_step_bf16" / "profile.sqlite"
    for argv in (["report", "kernels", str(export), "--no-cache", "--format", "csv"],
                 ["report", "kernels", str(export), "--no-cache", "--range", "forward"],
                 ["report", "nvtx", str(export), "--no-cache", "--steps", "merged"]):
        code = ("import sys; sys.argv = ['profkit', *sys.argv[1:]]; from profkit.__main__ import main; main(); "
                "print('pandas' in sys.modules, file=sys.stderr)")
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
        assert out.stderr.strip().splitlines()[-1] == "False", argv
        assert out.stdout.count("\n") > 3


def brute_repeats(*keys: np.ndarray | None) -> int:
    """Rows whose (correlation id, process[, start]) an earlier row has; correlation id -1 never repeats."""
    seen: set[tuple[int, ...]] = set()
    n = 0
    cols = [k.tolist() for k in keys if k is not None]
    for row in zip(*cols, strict=True):
        if row[0] < 0:
            continue
        n += row in seen
        seen.add(row)
    return n


@pytest.mark.parametrize("chunk", [columns.CHECK_ROWS, 64])
@pytest.mark.parametrize("kind", ["increasing", "dense", "dense-repeats", "sparse", "sparse-repeats", "nulls",
                                  "increasing-nulls"])
def test_repeats_equal_a_set(kind: str, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns, "CHECK_ROWS", chunk)
    rng = np.random.default_rng(11)
    n = 3000
    corr = {"increasing": np.cumsum(rng.integers(1, 9, n)), "dense": rng.permutation(n),
            "dense-repeats": rng.integers(0, n // 3, n), "sparse": rng.permutation(n) * 10_007,
            "sparse-repeats": rng.integers(0, n // 3, n) * 10_007,
            "nulls": np.where(rng.random(n) < 0.5, -1, rng.integers(0, n // 4, n)),
            "increasing-nulls": np.where(rng.random(n) < 0.1, -1, np.cumsum(rng.integers(1, 9, n)))}[kind]
    pid = rng.integers(0, 2, n) << 24
    start = rng.integers(0, 4, n)
    for keys in ((corr, None, None), (corr, pid, None), (corr, pid, start), (corr, None, start)):
        assert columns.repeats(*keys) == brute_repeats(*keys), (kind, [k is None for k in keys])


@pytest.mark.parametrize("chunk", [1, 7, 64, columns.CHECK_ROWS])
def test_increasing_and_equal_against_numpy(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns, "CHECK_ROWS", chunk)
    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 63, 64, 65, 200):
        a = np.cumsum(rng.integers(1, 3, n))
        assert columns.increasing(a) and columns.equal(a, a.copy())
        for i in range(1, n):  # one pair that does not rise, anywhere (across a chunk's edge too)
            b = a.copy()
            b[i] = b[i - 1]
            assert not columns.increasing(b), (n, i)
            assert columns.increasing(b, strict=False), (n, i)
            assert not columns.equal(a, b)
            b[i] = b[i - 1] - 1  # one pair that falls
            assert not columns.increasing(b, strict=False), (n, i)
        assert not columns.equal(a, np.append(a, 0))



@pytest.mark.parametrize("chunk", [2, 5, 64, columns.MERGE_ROWS])
def test_search_sorted_is_numpys_searchsorted(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every path (merged, searched in its window, searched whole: queries that fall somewhere)
    against np.searchsorted, both sides, ties, queries past either end, int32 keys and float ones."""
    monkeypatch.setattr(columns, "MERGE_ROWS", chunk)
    rng = np.random.default_rng(11)
    for n, m, span in ((0, 5, 10), (7, 0, 10), (50, 200, 20), (300, 40, 1000), (1000, 1000, 30), (40, 3000, 10**6)):
        a = np.sort(rng.integers(-span, span, n))
        rising = np.sort(rng.integers(-2 * span, 2 * span, m))
        falling = rising.copy()
        if m > 3:
            falling[m // 2], falling[m // 3] = falling[m // 3] - 1, falling[m // 2] + 1
        for v in (rising, falling, rng.integers(-span, span, m), np.full(m, a[n // 2] if n else 0)):
            for keys in (a, a.astype(np.int32), a.astype(np.float64)):
                for side in ("left", "right"):
                    got = columns.search_sorted(keys, v, side)
                    assert got.tolist() == np.searchsorted(keys, v, side).tolist(), (n, m, side, keys.dtype)
    few = np.arange(0, 10**6, 3)  # a window far longer than its chunk: searched, not merged
    assert columns.search_sorted(few, np.array([5, 6, 900_000])).tolist() == [2, 2, 300_000]

@pytest.mark.parametrize("chunk", [7, columns.CHECK_ROWS])
@pytest.mark.parametrize("open_end", [False, True])
def test_check_times_counts_every_bad_row_across_chunks(chunk: int, open_end: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns, "CHECK_ROWS", chunk)
    rng = np.random.default_rng(3)
    n = 100
    start = rng.integers(0, 1000, n)
    end = start + rng.integers(0, 50, n)
    columns.check_times(Path("p"), "kernel", start, end, open_end=open_end)  # a good table: nothing raised
    for bad, rows, why in (("negative", [6, 7, 13, 99], "4 kernel rows start before the session"),
                           ("backwards", [0, 20, 21], "3 kernel rows end before they start"),
                           ("long", [50], "1 kernel row lasts longer than a week")):
        s, e = start.copy(), end.copy()
        for i in rows:
            if bad == "negative":
                s[i], e[i] = -5 - i, 10
            elif bad == "backwards":
                e[i] = s[i] - 1
            else:
                e[i] = s[i] + columns.MAX_DURATION_NS + 1
        if open_end:  # a still-open NVTX range (end OPEN_END) is no bad row, in any chunk
            e[[1, 8, 14]] = columns.OPEN_END
        with pytest.raises(columns.ProfileError, match=why):
            columns.check_times(Path("p"), "kernel", s, e, open_end=open_end)


def test_kernels_of_two_processes_sharing_ids_and_starts(tmp_path: Path) -> None:
    """`report kernels` reads no globalPid until two kernels share a correlation id and a start:
    then it reads it, and a second process's copy of every kernel is two processes' kernels (each
    counted), while the same copy in the same process is a damaged export."""
    source = DATA / "h100_small_step_bf16" / "profile.sqlite"
    k = columns.KERNEL_TABLE
    results = {}
    for case, pid in (("other-process", "globalPid + (1 << 24)"), ("same-process", "globalPid")):
        path = tmp_path / case / "profile.sqlite"
        path.parent.mkdir()
        path.write_bytes(source.read_bytes())
        db = sqlite3.connect(path)
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({k})")]
        db.execute(f"INSERT INTO {k} ({', '.join(cols)}) SELECT "
                   f"{', '.join(pid if c == 'globalPid' else c for c in cols)} FROM {k}")
        db.commit()
        db.close()
        try:
            a = pipeline.attributed(path, nvtx=False)
            results[case] = len(a.kernels.dur_ns)
        except columns.ProfileError as e:
            results[case] = str(e).split(";")[0]
    n = len(pipeline.attributed(source, nvtx=False).kernels.dur_ns)
    assert results["other-process"] == 2 * n
    assert results["same-process"] == (f"{tmp_path / 'same-process' / 'profile.sqlite'} is damaged: {n:,} kernel "
                                       "rows repeat another's correlation id and start")


def _read(export: Path) -> dict[str, np.ndarray]:
    db, tables = columns.connect(export)
    reader = columns.Reader(export, db)
    try:
        return columns.read_kernels(reader, tables, launches=True, processes=False, compact=True)
    finally:
        reader.close()
        db.close()


@pytest.mark.skipif(columns._adbc_modules() is None, reason="ADBC's SQLite driver is not installed")
@pytest.mark.parametrize("export", FIXTURES, ids=lambda p: p.parent.name)
def test_two_threads_read_what_one_reads(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels, their launches (the runtime table read on a second thread) and a table read in two
    rowid halves: the same values, types and order as on one thread, and as plain SQL's."""
    monkeypatch.setenv(columns.THREADS_ENV, "1")
    one = _read(export)
    monkeypatch.setenv(columns.THREADS_ENV, "2")
    started: list[str] = []
    background = columns._Background

    def spy(path: Path, sql: str, *args: object) -> columns._Background:
        started.append(sql)
        return background(path, sql, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(columns, "_Background", spy)
    two = _read(export)
    assert any(columns.RUNTIME_TABLE in sql for sql in started), started  # the launch calls: a second thread
    assert list(one) == list(two)
    for field in one:
        assert one[field].dtype == two[field].dtype, field
        np.testing.assert_array_equal(one[field], two[field], err_msg=field)
    db, _ = columns.connect(export)
    reader = columns.Reader(export, db)
    try:
        n = db.execute(f"SELECT count(*) FROM {columns.KERNEL_TABLE}").fetchone()[0]
        started.clear()
        halves = reader.select_table(columns.KERNEL_TABLE, "start, correlationId", [None, -1], n)
        assert [sql.endswith("WHERE rowid > " + sql.split()[-1]) for sql in started] == [True]  # the later half
        expected = np.array(db.execute(f"SELECT start, coalesce(correlationId, -1) FROM {columns.KERNEL_TABLE}")
                            .fetchall(), dtype=np.int64).reshape(-1, 2)
    finally:
        reader.close()
        db.close()
    np.testing.assert_array_equal(halves[0], expected[:, 0])
    np.testing.assert_array_equal(halves[1], expected[:, 1])


def _changed_copy(tmp_path: Path, fixture: str, sql: str) -> Path:
    """A copy of a fixture's profile.sqlite with one SQL statement applied."""
    copy = tmp_path / "profile.sqlite"
    copy.write_bytes((DATA / fixture / "profile.sqlite").read_bytes())
    db = sqlite3.connect(copy)
    db.execute(sql)
    db.commit()
    db.close()
    return copy



@pytest.mark.parametrize("damage", [f"UPDATE {columns.RUNTIME_TABLE} SET start = start + 0.5 WHERE rowid % 5 = 0",
                                    f"UPDATE {columns.KERNEL_TABLE} SET start = 'soon' WHERE rowid % 7 = 3",
                                    f"INSERT INTO {columns.RUNTIME_TABLE} SELECT * FROM {columns.RUNTIME_TABLE} "
                                    "WHERE rowid % 17 = 0"])
def test_two_threads_tell_one_threads_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    """What fails on the second thread is read again on the first: the error is a plain read's."""
    copy = _changed_copy(tmp_path, "h100_small_step_bf16", damage)
    said = []
    for threads in ("1", "2"):
        monkeypatch.setenv(columns.THREADS_ENV, threads)
        with pytest.raises(columns.ProfileError) as e:
            _read(copy)
        said.append(str(e.value))
    assert said[0] == said[1], said
    assert " is damaged" in said[0] or "not an integer" in said[0], said


def test_a_second_thread_only_on_a_free_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(columns.THREADS_ENV, raising=False)
    monkeypatch.setattr(columns.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    big = columns.SPLIT_ROWS
    for load, rows, expected in ((0.3, big, True), (1.5, big, True), (1.6, big, False), (3.8, big, False),
                                 (0.3, big - 1, False)):
        monkeypatch.setattr(columns.os, "getloadavg", lambda load=load: (load, load, load))
        assert columns.two_threads(rows) is expected, (load, rows)
    monkeypatch.setattr(columns.os, "sched_getaffinity", lambda _: {0}, raising=False)
    monkeypatch.setattr(columns.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert columns.two_threads(big) is False
    monkeypatch.setenv(columns.THREADS_ENV, "2")
    assert columns.two_threads(1) is True
    monkeypatch.setenv(columns.THREADS_ENV, "1")
    assert columns.two_threads(10 * big) is False


def _profkit(argv: list[str], env: dict[str, str]) -> tuple[int, str, str, list[str]]:
    """`python -m profkit ARGV`: exit status, stdout, stderr, and which of click/pandas it loaded."""
    code = ("import sys; sys.argv = ['profkit', *sys.argv[1:]]\nfrom profkit.__main__ import main\n"
            "try:\n    main()\nfinally:\n    print('LOADED', sorted({'click', 'pandas'} & set(sys.modules)), "
            "file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, check=False)
    *err, loaded = out.stderr.splitlines()
    import ast

    return out.returncode, out.stdout, "\n".join(err), ast.literal_eval(loaded.removeprefix("LOADED "))


def test_plain_cold_reports_skip_click_and_print_what_click_prints(tmp_path: Path) -> None:
    """A plain `report kernels|nvtx` (cache missed or --no-cache) is computed without click, and
    prints what the click command line prints: reports, the multi-rank note, Error: lines and exit
    status; the cache entry it stores is the one click's run would have (a hit serves it)."""
    import os

    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes((DATA / "h100_small_step_bf16" / "profile.sqlite").read_bytes())
    db = sqlite3.connect(damaged)
    db.execute(f"UPDATE {columns.KERNEL_TABLE} SET [end] = start - 1000 WHERE rowid % 13 = 0")
    db.commit()
    db.close()
    ranks = DATA / "h200_small_step_bf16_ddp_1rank"
    cases = [[cmd, str(export), *extra, "--no-cache"] for export in (FIXTURES[0], FIXTURES[-1], ranks, damaged)
             for cmd, extra in (("kernels", []), ("kernels", ["--by", "category", "--top", "3", "--format", "json"]),
                                ("kernels", ["--range", "forward", "--name", "short"]), ("nvtx", []),
                                ("nvtx", ["--steps", "merged", "--depth", "2", "--format", "csv"]))]
    cases += [["nvtx", str(FIXTURES[0]), "--by", "name", "--steps", "merged", "--no-cache"],  # a ReportError
              ["kernels", str(FIXTURES[0]), "--range", "(", "--no-cache"]]
    base = {k: v for k, v in os.environ.items() if k != "PROFKIT_NO_FASTPATH"}
    xdg = tmp_path / "xdg"
    for argv in cases:
        fast = _profkit(["report", *argv], base)
        slow = _profkit(["report", *argv], {**base, "PROFKIT_NO_FASTPATH": "1"})
        assert fast[:3] == slow[:3], argv
        assert fast[3] == [] and "click" in slow[3], (argv, fast[3])
    assert "holds 1 ranks; this is rank 0's" in _profkit(["report", "nvtx", str(ranks), "--no-cache"], base)[2]
    assert _profkit(["report", "kernels", str(damaged), "--no-cache"], base)[:2] == (2, "")
    # the cache: compute() stores what a hit then serves, with neither click nor numpy
    env = {**base, "XDG_CACHE_HOME": str(xdg)}
    first = _profkit(["report", "kernels", str(FIXTURES[0]), "--top", "3"], env)
    hit = subprocess.run([sys.executable, "-c", "import sys; from profkit.fastpath import serve; "
                          f"assert serve(['report', 'kernels', {str(FIXTURES[0])!r}, '--top', '3']); "
                          "assert not {'click', 'numpy'} & set(sys.modules)"], env=env, capture_output=True,
                         text=True, check=True)
    assert first[0] == 0 and hit.stdout == first[1]


def _nvtx(export: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    db, tables = columns.connect(export)
    reader = columns.Reader(export, db)
    try:
        return columns.read_nvtx(reader, tables)
    finally:
        reader.close()
        db.close()


def _nvtx_by_sql(export: Path) -> list[str]:
    """Each NVTX range's cleaned name, by plain SQL and split_op_name(), in table order."""
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT coalesce(e.text, s.value) FROM NVTX_EVENTS e LEFT JOIN StringIds s "
                          "ON s.id = e.textId WHERE e.eventType IN (59, 60) ORDER BY e.rowid").fetchall()
    finally:
        db.close()
    return [columns.split_op_name(t if t else columns.UNNAMED)[0] for t, in rows]


@pytest.mark.parametrize("export", FIXTURES, ids=lambda p: p.parent.name)
def test_nvtx_names_coded_in_sql_are_the_rows_names(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NVTX names coded by SQL's CASE (few distinct names) equal those read row by row, in every
    column and in the names' order (also when the first rows do not hold every name), and each
    range's name is plain SQL's; the SQL path is taken whenever an export has at most PAIR_CASES
    distinct names."""
    coded: list[bool] = []
    real = columns._coded_ranges

    def spy(*args: object) -> object:
        out = real(*args)  # type: ignore[arg-type]
        coded.append(out is not None)
        return out

    monkeypatch.setattr(columns, "_coded_ranges", spy)
    fast, fast_names = _nvtx(export)
    monkeypatch.setattr(columns, "PAIR_PREFIX", 1)  # the first row's pair, then every row's
    second, second_names = _nvtx(export)
    monkeypatch.setattr(columns, "PAIR_CASES", 0)
    slow, slow_names = _nvtx(export)
    assert coded[1] is coded[0] and coded[2] is False
    assert second_names == slow_names
    for field in second:
        np.testing.assert_array_equal(second[field], slow[field], err_msg=field)
    db = sqlite3.connect(f"file:{export}?mode=ro", uri=True)
    distinct = db.execute("SELECT count(*) FROM (SELECT DISTINCT text, textId FROM NVTX_EVENTS "
                          "WHERE eventType IN (59, 60))").fetchone()[0]
    db.close()
    assert coded[0] is (0 < distinct <= 64), (distinct, coded)
    assert fast_names == slow_names
    assert list(fast) == list(slow)
    for field in fast:
        assert fast[field].dtype == slow[field].dtype, field
        np.testing.assert_array_equal(fast[field], slow[field], err_msg=field)
    assert [fast_names[i] for i in fast["name"].tolist()] == _nvtx_by_sql(export)


@pytest.mark.parametrize("change", ["UPDATE NVTX_EVENTS SET text = 'it''s ' || text WHERE rowid % 3 = 0",
                                    "UPDATE NVTX_EVENTS SET text = NULL, textId = (SELECT min(id) FROM StringIds) "
                                    "WHERE rowid % 4 = 1",
                                    "UPDATE NVTX_EVENTS SET text = CAST(text AS BLOB) WHERE rowid % 5 = 2",
                                    "UPDATE NVTX_EVENTS SET text = '' WHERE rowid % 6 = 3"])
def test_nvtx_names_coded_in_sql_on_odd_texts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """Quotes, registered strings, BLOB texts (not coded in SQL: read row by row, and refused as
    damage either way) and empty names: the same ranges and names either way."""
    copy = _changed_copy(tmp_path, "h100_encoder_layer_nsys2023", change)
    results = []
    for cases in (columns.PAIR_CASES, 0):
        monkeypatch.setattr(columns, "PAIR_CASES", cases)
        try:
            ranges, names = _nvtx(copy)
            results.append(({f: v.tolist() for f, v in ranges.items()}, names))
        except columns.ProfileError as e:  # a BLOB text: damage, told the same way by both reads
            results.append(str(e))
    assert results[0] == results[1]
    if "BLOB" in change:
        db = sqlite3.connect(copy)
        blobs = db.execute("SELECT count(*) FROM NVTX_EVENTS WHERE typeof(text) = 'blob' "
                           "AND eventType IN (59, 60)").fetchone()[0]
        db.close()
        assert blobs > 0
        assert results[0] == (f"{copy} is damaged: {blobs} NVTX ranges have a name that is not text; export the "
                              "capture again with nsys export --type sqlite"), results[0]
    else:
        ranges, names = results[0]  # type: ignore[misc]
        assert [names[i] for i in ranges["name"]] == _nvtx_by_sql(copy)
