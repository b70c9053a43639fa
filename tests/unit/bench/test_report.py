"""The one percentile every benchmark and the chaos run report."""

from __future__ import annotations

import math

from bench.report import nearest_rank


def test_the_median_and_extremes_of_an_odd_list() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert nearest_rank(values, 50) == 3.0
    assert nearest_rank(values, 0) == 1.0
    assert nearest_rank(values, 100) == 5.0


def test_p99_of_a_hundred_values_is_the_one_before_the_top() -> None:
    values = [float(v) for v in range(1, 101)]
    assert nearest_rank(values, 99) == 99.0


def test_no_values_give_nan_rather_than_an_error() -> None:
    assert math.isnan(nearest_rank([], 99))
