"""``bench compare``: which figures changed beyond noise between two ``bench all`` reports.

A figure regresses only when its change is both statistically significant and larger than
the tolerance: the new 95% interval (``<name>_ci95``) lies entirely beyond the base
interval's bound widened by ``tolerance`` (a fraction), in the figure's bad direction.
Improvements are judged the same way the other way round; overlapping intervals are
``noise``. Point values alone never decide (a figure without an interval in both reports
is ``no interval``): a single run on a shared machine moves too much for that.

Which direction is bad comes from the name: times (``_us``, ``_ms``, ``_ns``) are better
lower; rates (``per_s``, ``throughput``, and ratios of counts: ``commits_..._ratio``) better
higher; other ratios of ours to raw (times), ``leader_changes`` and ``relists`` lower.
Raw baselines (``raw_*``, and ``comprehension_*``: the registry's plain list
comprehension), the peer and the floors we measure against (``js_*``, ``fsync_*``, any name
with a ``floor`` word: ``commit_floor_us_p50``) are context: shown, never a regression.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Any

CI_SUFFIX = "_ci95"
CONTEXT_PREFIXES = ("raw_", "js_", "fsync_", "comprehension_")
MACHINE_KEYS = ("cpu_model", "cores", "memory_gb", "arch")


class Direction(StrEnum):
    LOWER = "lower"  # lower is better
    HIGHER = "higher"
    CONTEXT = "context"  # a baseline: reported, not judged
    UNKNOWN = "unknown"  # a count or setting: reported, not judged


class Verdict(StrEnum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    NOISE = "noise"  # intervals overlap, or the change is within the tolerance
    NO_INTERVAL = "no interval"
    CONTEXT = "context"
    INFO = "info"
    MISSING = "missing"  # in the base report only
    NEW = "new"  # in the new report only
    ERROR = "error"  # the suite crashed in the new report


RATE_WORDS = {"throughput", "commits", "puts", "msgs", "updates", "writes"}
UNIT_WORDS = {"us", "ms", "ns"}
LOWER_WORDS = {"ratio", "vs", "relists"}


def direction(name: str) -> Direction:
    """Which way is better for figure ``name`` (see the module docstring): a time unit
    decides first (``sealed_100_bids_ms_p50``), then a rate (``per_s``, or a ratio of
    counts such as ``commits_c64_to_js_r3_ratio``), then a ratio of times."""
    tokens = name.split("_")
    if name.startswith(CONTEXT_PREFIXES) or "floor" in tokens:
        return Direction.CONTEXT
    if UNIT_WORDS & set(tokens):
        return Direction.LOWER
    if RATE_WORDS & set(tokens) or _is_rate(tokens):
        return Direction.HIGHER
    if LOWER_WORDS & set(tokens) or name.startswith("leader_changes"):
        return Direction.LOWER
    return Direction.UNKNOWN


Interval = tuple[float, float]


def widen(bound: float, tolerance: float, up: bool) -> float:
    """``bound`` moved by ``tolerance`` of its magnitude, up or down."""
    step = abs(bound) * tolerance
    return bound + step if up else bound - step


def judge(base: Interval, new: Interval, better: Direction, tolerance: float) -> Verdict:
    """The verdict for one figure from its two intervals (``better`` LOWER or HIGHER)."""
    (b_low, b_high), (n_low, n_high) = base, new
    if better is Direction.LOWER:
        if n_low > widen(b_high, tolerance, up=True):
            return Verdict.REGRESSION
        if n_high < widen(b_low, tolerance, up=False):
            return Verdict.IMPROVEMENT
    else:
        if n_high < widen(b_low, tolerance, up=False):
            return Verdict.REGRESSION
        if n_low > widen(b_high, tolerance, up=True):
            return Verdict.IMPROVEMENT
    return Verdict.NOISE


@dataclass(frozen=True)
class Row:
    suite: str
    figure: str
    verdict: Verdict
    base: float | None = None
    new: float | None = None
    base_ci: Interval | None = None
    new_ci: Interval | None = None
    scale: float | None = None  # --relative: how much the suite's baselines moved

    @property
    def change(self) -> float | None:
        """Relative change of the point value (new / base - 1), where defined."""
        if self.base is None or self.new is None or self.base == 0:
            return None
        return self.new / self.base - 1


@dataclass(frozen=True)
class Comparison:
    rows: list[Row]
    machine_differences: dict[str, tuple[Any, Any]]
    notes: list[str]

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict in (Verdict.REGRESSION, Verdict.ERROR)]

    def to_json(self) -> dict[str, Any]:
        return {"regressions": len(self.regressions),
                "machine_differences": {k: list(v) for k, v in self.machine_differences.items()},
                "notes": self.notes,
                "rows": [{**asdict(r), "change": r.change} for r in self.rows]}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _interval(result: dict[str, Any], name: str) -> Interval | None:
    ci = result.get(name + CI_SUFFIX)
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return None
    low, high = (_number(x) for x in ci)
    if low is None or high is None:
        return None
    return (min(low, high), max(low, high))


def _figures(result: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, raw in result.items()
            if not k.endswith(CI_SUFFIX) and (v := _number(raw)) is not None}


def _is_rate(tokens: list[str]) -> bool:
    return any(a == "per" and b == "s" for a, b in pairwise(tokens))


def absolute(name: str) -> bool:
    """A time (with its unit) or a rate per second, not a ratio: what machine load moves."""
    tokens = name.split("_")
    return not LOWER_WORDS & set(tokens) and (bool(UNIT_WORDS & set(tokens))
                                              or _is_rate(tokens))


def raw_move(base: dict[str, Any], new: dict[str, Any], better: Direction) -> float | None:
    """How much a suite's own baselines (``raw_*``, ``js_*``, ``fsync_*``, measured in the
    same runs) moved from base to new: the median new/base over their p50 times (for a
    time) or their rates per second (for a rate); None when the suite has none."""
    moves = []
    for name, b in _figures(base).items():
        n = _number(new.get(name))
        if direction(name) is not Direction.CONTEXT or n is None or b <= 0 or n <= 0:
            continue
        tokens = name.split("_")
        time_p50 = bool(UNIT_WORDS & set(tokens)) and "p50" in tokens
        if (better is Direction.LOWER and time_p50) or (
                better is Direction.HIGHER and _is_rate(tokens)):
            moves.append(n / b)
    return statistics.median(moves) if moves else None


def compare_suite(suite: str, base: dict[str, Any], new: dict[str, Any],
                  tolerance: float, relative: bool = False) -> list[Row]:
    """``relative``: an absolute figure's new interval is first divided by how much the
    suite's baselines moved (``raw_move``), so a machine twice as busy is not a regression
    of ours; the row records that factor (``scale``)."""
    if "error" in new:
        return [Row(suite, "(suite)", Verdict.ERROR)]
    if "error" in base:
        return [Row(suite, "(suite)", Verdict.NEW)]
    b_figs, n_figs = _figures(base), _figures(new)
    rows: list[Row] = []
    for name in sorted(b_figs.keys() | n_figs.keys()):
        b, n = b_figs.get(name), n_figs.get(name)
        b_ci, n_ci = _interval(base, name), _interval(new, name)
        better = direction(name)
        if n is None:
            verdict = Verdict.MISSING
        elif b is None:
            verdict = Verdict.NEW
        elif better is Direction.CONTEXT:
            verdict = Verdict.CONTEXT
        elif better is Direction.UNKNOWN:
            verdict = Verdict.INFO
        elif b_ci is None or n_ci is None:
            verdict = Verdict.NO_INTERVAL
        else:
            scale = raw_move(base, new, better) if relative and absolute(name) else None
            judged = n_ci if scale is None else (n_ci[0] / scale, n_ci[1] / scale)
            verdict = judge(b_ci, judged, better, tolerance)
            rows.append(Row(suite, name, verdict, b, n, b_ci, n_ci, scale))
            continue
        rows.append(Row(suite, name, verdict, b, n, b_ci, n_ci))
    return rows


def machine_differences(base: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    b, n = base.get("machine") or {}, new.get("machine") or {}
    return {k: (b.get(k), n.get(k)) for k in MACHINE_KEYS if b.get(k) != n.get(k)}


def busy_notes(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """A warning per report whose machine was busier than its cores while it ran (the
    1-minute load average after a suite above the core count): other work competed."""
    notes = []
    for label, rep in (("base", base), ("new", new)):
        cores = (rep.get("machine") or {}).get("cores")
        loads = {k: v for k, v in (rep.get("load") or {}).items() if _number(v) is not None}
        busy = {k: v for k, v in loads.items() if isinstance(cores, int) and v > cores}
        if busy:
            worst = max(busy, key=lambda k: busy[k])
            notes.append(f"the {label} run's machine was busy (load {busy[worst]} on {cores} "
                         f"cores after {worst}; {len(busy)} suite(s) above the core count): "
                         "its absolute figures are suspect")
    return notes


def compare(base: dict[str, Any], new: dict[str, Any], tolerance: float = 0.1,
            relative: bool = False) -> Comparison:
    """Every figure of every suite in either report, judged (see the module docstring;
    ``relative``: see ``compare_suite``)."""
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    b_suites, n_suites = base.get("suites") or {}, new.get("suites") or {}
    rows: list[Row] = []
    notes: list[str] = []
    for suite in [*b_suites, *(s for s in n_suites if s not in b_suites)]:
        if suite not in n_suites:
            rows.append(Row(suite, "(suite)", Verdict.MISSING))
        elif suite not in b_suites:
            rows.append(Row(suite, "(suite)", Verdict.NEW))
        else:
            rows.extend(compare_suite(suite, b_suites[suite], n_suites[suite], tolerance,
                                      relative))
    if bool(base.get("quick")) != bool(new.get("quick")):
        notes.append("one report is --quick and the other is not: sample counts differ")
    notes.extend(busy_notes(base, new))
    return Comparison(rows, machine_differences(base, new), notes)
