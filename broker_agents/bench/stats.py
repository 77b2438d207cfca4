"""Small statistics helpers shared by the benchmarks."""

from __future__ import annotations

import statistics


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_us(samples_s: list[float], prefix: str) -> dict[str, float]:
    us = [s * 1e6 for s in samples_s]
    return {f"{prefix}_us_p50": round(percentile(us, 50), 1),
            f"{prefix}_us_p99": round(percentile(us, 99), 1),
            f"{prefix}_us_mean": round(statistics.fmean(us), 1) if us else float("nan")}
