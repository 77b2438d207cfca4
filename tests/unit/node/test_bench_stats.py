"""The benchmarks' confidence intervals: seeded, covering the statistic, narrowing with n."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from node.bench.stats import ci95, figure, percentile, quantile_stat, rate_figure


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=200))
def test_the_interval_holds_the_statistic_of_the_samples(samples: list[float]) -> None:
    low, high = ci95(samples, resamples=200)
    assert min(samples) <= low <= high <= max(samples)
    assert ci95(samples, resamples=200) == (low, high)  # seeded: replayable


def test_more_samples_give_a_narrower_interval() -> None:
    rng = random.Random(7)
    few = [rng.gauss(10, 2) for _ in range(20)]
    many = [rng.gauss(10, 2) for _ in range(2000)]
    width = [high - low for low, high in (ci95(few), ci95(many))]
    assert width[1] < width[0] / 3
    low, high = ci95(many)
    assert low < 10 < high


def test_a_figure_reports_its_percentile_and_interval_in_its_unit() -> None:
    samples = [i / 1000 for i in range(1, 1001)]  # 1..1000 ms
    out = figure("x_us_p99", samples, 99, scale=1e6)
    assert out["x_us_p99"] == round(percentile([s * 1e6 for s in samples], 99), 1)
    low, high = out["x_us_p99_ci95"]  # type: ignore[misc]
    assert low <= out["x_us_p99"] <= high  # type: ignore[operator]


def test_a_rate_figure_is_the_median_round() -> None:
    out = rate_figure("ops_per_s", [100, 200, 300], [1.0, 1.0, 1.0])
    assert out["ops_per_s"] == 200.0
    assert out["ops_per_s_ci95"][0] <= 200.0 <= out["ops_per_s_ci95"][1]  # type: ignore[index]


def test_the_percentile_shortcut_matches_resampling_for_real() -> None:
    """The Beta shortcut for a percentile gives the interval that drawing and sorting
    every resample gives (up to resampling noise)."""
    rng = random.Random(3)
    samples = [rng.expovariate(1.0) for _ in range(300)]
    for q in (50, 90, 99):
        fast = ci95(samples, quantile_stat(q), resamples=3000)
        slow = ci95(samples, lambda xs, q=q: percentile(xs, q), resamples=3000)
        spread = max(samples) - min(samples)
        assert abs(fast[0] - slow[0]) < 0.05 * spread
        assert abs(fast[1] - slow[1]) < 0.05 * spread
