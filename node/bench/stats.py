"""Small statistics helpers shared by the benchmarks (samples are in seconds).

Every reported figure carries a bootstrap 95% confidence interval (``<name>_ci95``: the
2.5th and 97.5th percentiles of the statistic over resamples of the samples), so a
reader and ``bench compare`` can tell a change from noise. Resampling is seeded: the same
samples give the same interval.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence

BOOTSTRAP_RESAMPLES = 1000


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0..100); NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[_rank(len(ordered), q)]


def ms(samples_s: list[float], q: float = 50, digits: int = 2) -> float:
    """A percentile of second samples, in milliseconds."""
    return round(percentile(samples_s, q) * 1000, digits)


def summary_us(samples_s: list[float], prefix: str) -> dict[str, float]:
    us = [s * 1e6 for s in samples_s]
    return {f"{prefix}_us_p50": round(percentile(us, 50), 1),
            f"{prefix}_us_p99": round(percentile(us, 99), 1),
            f"{prefix}_us_mean": round(statistics.fmean(us), 1) if us else float("nan")}


def beside_rtt(raw_s: list[float], samples_s: list[float], name: str) -> dict[str, float]:
    """``raw_rtt_us_p50``, ``<name>_us_p50``/``_p99`` and ``<name>_to_rtt_ratio``: one
    committed operation set against one plain request/reply measured in the same run."""
    rtt_p50 = statistics.median(raw_s) * 1e6
    p50 = percentile(samples_s, 50) * 1e6
    return {
        "raw_rtt_us_p50": round(rtt_p50, 1),
        f"{name}_us_p50": round(p50, 1),
        f"{name}_us_p99": round(percentile(samples_s, 99) * 1e6, 1),
        f"{name}_to_rtt_ratio": round(p50 / rtt_p50, 2),
    }


def ci95(samples: Sequence[float], stat: Callable[[list[float]], float] | None = None,
         resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% interval of ``stat`` (default: the median) over ``samples``;
    (NaN, NaN) for no samples. A percentile (``quantile_stat``) takes a shortcut: the k-th
    smallest of n resampled ranks is distributed as n * Beta(k+1, n-k), so each resample
    costs O(1) instead of drawing and sorting n values (64 clients give ~30k samples)."""
    if not samples:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    data = list(samples)
    n = len(data)
    q = getattr(stat, "quantile", None)
    if q is not None:
        ordered = sorted(data)
        k = _rank(n, q)
        values = sorted(ordered[min(n - 1, int(n * rng.betavariate(k + 1, n - k)))]
                        for _ in range(resamples))
    else:
        stat = stat or statistics.median
        values = sorted(stat(rng.choices(data, k=n)) for _ in range(resamples))
    return values[int(0.025 * (resamples - 1))], values[int(0.975 * (resamples - 1))]


def _rank(n: int, q: float) -> int:
    """The nearest rank (0-based) of the ``q``-th percentile among ``n`` values."""
    return min(n - 1, max(0, round(q / 100 * (n - 1))))


def quantile_stat(q: float) -> Callable[[list[float]], float]:
    """The nearest-rank ``q``-th percentile as a statistic for ``ci95``."""
    def stat(xs: list[float]) -> float:
        return percentile(xs, q)

    stat.quantile = q  # type: ignore[attr-defined]
    return stat


def figure(name: str, samples: Sequence[float], q: float = 50, scale: float = 1.0,
           digits: int = 1) -> dict[str, float | list[float]]:
    """``{name: the q-th percentile of samples * scale, name_ci95: [low, high]}``: one
    reported figure with its bootstrap interval (``scale`` 1e6 for seconds -> µs)."""
    data = [x * scale for x in samples]
    low, high = ci95(data, quantile_stat(q))
    return {name: round(percentile(data, q), digits),
            f"{name}_ci95": [round(low, digits), round(high, digits)]}


def rate_figure(name: str, counts: Sequence[float], seconds: Sequence[float],
                digits: int = 1) -> dict[str, float | list[float]]:
    """A throughput figure from repeated rounds (``counts[i]`` done in ``seconds[i]``):
    the median round's rate, with the bootstrap interval of the median over rounds."""
    rates = [c / s for c, s in zip(counts, seconds, strict=True) if s > 0]
    low, high = ci95(rates)
    return {name: round(statistics.median(rates), digits) if rates else float("nan"),
            f"{name}_ci95": [round(low, digits), round(high, digits)]}
