"""scripts/bench_parser.py's linearity judgement: the cost of each added kernel, size to size."""

from __future__ import annotations

import doctest
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
