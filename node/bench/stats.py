"""Small statistics helpers shared by the benchmarks (samples are in seconds)."""

from __future__ import annotations

import statistics


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0..100); NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


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
