"""scripts/bench_parser.py's linearity judgement: the cost of each added kernel, size to size."""

from __future__ import annotations

import doctest
from pathlib import Path
from types import ModuleType

import numpy as np


def test_a_fixed_cost_leaves_the_steps_flat(bench_parser: ModuleType) -> None:
    # t = 0.5 s + 0.03 s set-up past 10 k kernels + 1 us a kernel: above the 0.5 s start-up the cost per
    # kernel falls with size (the set-up spread thinner), each added kernel costs the same
    points = [(n, 0.5 + 0.03 * (n > 10_000) + n * 1e-6) for n in (10_000, 100_000, 1_000_000, 10_000_000)]
    steps = bench_parser.marginal(points, 0.2)
    assert [round(s, 6) for _, _, s, ok in steps if ok] == [0.001, 0.001]  # 10 k -> 100 k is within the jitter
    assert [ok for *_, ok in steps] == [False, True, True]
    above = [1000 * (t - 0.5) / n for n, t in points[1:]]
    assert max(above) / min(above) > bench_parser.MAX_SLOPE_GROWTH  # what the start-up view would have called not flat


def test_a_cost_that_grows_with_size_shows_in_the_steps(bench_parser: ModuleType) -> None:
    points = [(n, 0.5 + n * 1e-6 * (1 + n / 2e7)) for n in (100_000, 1_000_000, 10_000_000)]  # n log-ish growth
    slopes = [s for *_, s, ok in bench_parser.marginal(points, 0.05) if ok]
    assert slopes[-1] / slopes[0] > bench_parser.MAX_SLOPE_GROWTH


def test_its_doctests(bench_parser: ModuleType) -> None:
    assert doctest.testmod(bench_parser).failed == 0


def test_array_costs_table_has_every_operation_at_every_size(bench_parser: ModuleType) -> None:
    lines = bench_parser.array_costs([1_000, 4_000], 1)
    header, _, *body = lines[0].splitlines()
    assert header.split("|")[2:4] == [" ns per element at 1,000 ", " ns per element at 4,000 "]
    assert [row.split("|")[1].strip() for row in body] == list(bench_parser._array_ops(10, np.random.default_rng(0)))
    for row in body:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0
        ratio = float(cells[2]) / float(cells[1])  # from the rounded cells; the table's from unrounded figures
        assert cells[3].endswith("x") and abs(float(cells[3][:-1]) - ratio) <= 0.01 + 0.01 * ratio / min(
            float(cells[1]), float(cells[2]))
    assert lines[-1].startswith("`python scripts/bench_parser.py --array-costs 1000,4000`")


def _fake_linearity(bench_parser: ModuleType, monkeypatch, tmp_path, cost_per_kernel):  # -> (lines, ok, runs)
    """linearity() end to end with its processes replaced: each command's time is 0.5 s of start-up plus
    cost_per_kernel(label, n) x n, a little dearer on its first run at a size (so a best of more runs is lower)."""
    sizes = {"fixture.sqlite": 2_720, "a.sqlite": 10_880, "b.sqlite": 100_640, "c.sqlite": 1_000_960,
             "d.sqlite": 10_001_440}
    runs: dict[tuple[str, int], int] = {}

    def folders(export, fixture, out):
        out.mkdir(parents=True, exist_ok=True)
        return {label: [label, str(export)] for label in ("kernels", "nvtx")}

    def timed(cmd, stdout, env=None, cwd=None, *, fail_ok=False):
        label, n = cmd[-2], sizes[Path(cmd[-1]).name]
        stdout.write_text("")
        stdout.with_suffix(stdout.suffix + ".err").write_text("")
        if stdout.name.endswith(".fill.txt"):
            return 9.0, 1.0
        runs[(label, n)] = runs.get((label, n), 0) + 1
        return 0.5 + cost_per_kernel(label, n) * n + (0.3 if runs[(label, n)] == 1 else 0.0), n / 1e4

    for name, fn in (("report_folders", folders), ("timed", timed), ("touch_memory", lambda mb: None),
                     ("warm_file", lambda path: None), ("_kernel_count", lambda path: sizes[path.name])):
        monkeypatch.setattr(bench_parser, name, fn)
    exports = [bench_parser.Export(1, tmp_path / name, kernels=n) for name, n in sizes.items()
               if name != "fixture.sqlite"]
    lines, ok = bench_parser.linearity(tmp_path / "fixture.sqlite", exports, 3, tmp_path, "1", 0)
    return lines, ok, runs


def test_linearity_runs_smaller_sizes_more_and_judges_steps(bench_parser: ModuleType, monkeypatch, tmp_path) -> None:
    lines, ok, runs = _fake_linearity(bench_parser, monkeypatch, tmp_path, lambda label, n: 1e-6)
    assert ok
    # 3 rounds x runs_per_round(): 4, 4, 3, 2, 1 runs a round from the fixture to 10 M kernels
    assert {n: c for (label, n), c in runs.items() if label == "kernels"} == {
        2_720: 12, 10_880: 12, 100_640: 9, 1_000_960: 6, 10_001_440: 3}
    table = "\n".join(lines)
    assert "best of 12 at 10,880, 9 at 100,640, 6 at 1,000,960, 3 at 10,001,440" in table
    assert "start-up: on the fixture itself, 2,720 kernels, best of 12" in table
    assert table.count(" flat |") == 2 and "not flat" not in table  # both commands, 1 us a kernel at every size


def test_linearity_calls_a_dearer_largest_step_not_flat(bench_parser: ModuleType, monkeypatch, tmp_path) -> None:
    # nvtx 1 us a kernel up to 1 M, 1.5 us a kernel at 10 M: its last step adds 1.56 us a kernel, 1.56x the others
    lines, ok, _ = _fake_linearity(bench_parser, monkeypatch, tmp_path,
                                   lambda label, n: 1.5e-6 if label == "nvtx" and n > 2_000_000 else 1e-6)
    assert not ok
    rows = "\n".join(lines).splitlines()
    nvtx = next(x for x in rows if x.startswith("| `nvtx`"))
    assert "1,000,960 -> 10,001,440: 0.00156 | 1.56x **not flat**" in nvtx
    assert "**not flat**" not in next(x for x in rows if x.startswith("| `kernels`"))
