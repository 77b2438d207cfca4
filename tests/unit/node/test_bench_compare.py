"""``bench compare``: verdicts on synthetic reports, the interval logic, the CLI's exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from node.bench.compare import Direction, Verdict, compare, direction, judge
from node.cli import app

MACHINE = {"cpu_model": "Test CPU", "cores": 2, "memory_gb": 7.7, "arch": "x86_64",
           "kernel": "6.1"}


def report(suites: dict[str, dict[str, Any]], machine: dict[str, Any] | None = None,
           quick: bool = True) -> dict[str, Any]:
    return {"schema": 1, "quick": quick, "machine": machine or MACHINE, "suites": suites}


def fig(name: str, value: float, low: float, high: float) -> dict[str, Any]:
    return {name: value, f"{name}_ci95": [low, high]}


def verdicts(base: dict[str, Any], new: dict[str, Any], tolerance: float = 0.1,
             ) -> dict[str, Verdict]:
    return {r.figure: r.verdict for r in compare(base, new, tolerance).rows}


@pytest.mark.parametrize(("name", "better"), [
    ("commit_us_p50", Direction.LOWER), ("commit_us_p99_c64", Direction.LOWER),
    ("sealed_100_ms_p50", Direction.LOWER), ("failover_ms", Direction.LOWER),
    ("lookup_ns", Direction.LOWER), ("vote_to_raw_ratio", Direction.LOWER),
    ("commit_to_js_r3_p50_ratio", Direction.LOWER), ("rtt_ratio_p50", Direction.LOWER),
    ("leader_changes_c64", Direction.LOWER), ("relists_during_load", Direction.LOWER),
    ("commits_per_s_c64", Direction.HIGHER), ("agent_msgs_per_s", Direction.HIGHER),
    ("throughput_ratio", Direction.HIGHER), ("commits_c64_to_js_r3_ratio", Direction.HIGHER),
    ("commit_p99_c64_to_js_r3_ratio", Direction.LOWER), ("register_vs_raw_put", Direction.LOWER),
    ("sealed_100_bids_ms_p50", Direction.LOWER), ("cpu_us_per_commit_c64", Direction.LOWER),
    ("updates_per_s", Direction.HIGHER), ("query_result_size_p50", Direction.UNKNOWN),
    ("raw_rtt_us_p50", Direction.CONTEXT), ("raw_msgs_per_s", Direction.CONTEXT),
    ("js_r3_put_us_p50", Direction.CONTEXT), ("js_r3_puts_per_s_c64", Direction.CONTEXT),
    ("fsync_us_p50", Direction.CONTEXT), ("commit_floor_us_p50", Direction.CONTEXT),
    ("sealed_floor_ms_p50", Direction.CONTEXT), ("sealed_floor_to_raw_ratio", Direction.CONTEXT),
    ("comprehension_ms_p50", Direction.CONTEXT), ("scan_vs_comprehension", Direction.LOWER),
    ("bidders", Direction.UNKNOWN), ("english_10_rounds", Direction.UNKNOWN),
])
def test_the_bad_direction_comes_from_the_name(name: str, better: Direction) -> None:
    assert direction(name) is better


def test_a_latency_that_rose_beyond_its_interval_and_the_tolerance_regresses() -> None:
    base = report({"consensus": fig("commit_us_p50", 1000, 980, 1020)})
    new = report({"consensus": fig("commit_us_p50", 1300, 1250, 1350)})
    assert verdicts(base, new)["commit_us_p50"] is Verdict.REGRESSION
    assert verdicts(new, base)["commit_us_p50"] is Verdict.IMPROVEMENT


def test_a_throughput_that_fell_regresses_and_one_that_rose_improves() -> None:
    base = report({"consensus": fig("commits_per_s_c64", 10_000, 9_800, 10_200)})
    worse = report({"consensus": fig("commits_per_s_c64", 7_000, 6_800, 7_200)})
    better = report({"consensus": fig("commits_per_s_c64", 13_000, 12_800, 13_200)})
    assert verdicts(base, worse)["commits_per_s_c64"] is Verdict.REGRESSION
    assert verdicts(base, better)["commits_per_s_c64"] is Verdict.IMPROVEMENT


def test_overlapping_intervals_are_noise_even_when_the_point_moved_a_lot() -> None:
    base = report({"auction": fig("sealed_100_ms_p50", 10.0, 6.0, 16.0)})
    new = report({"auction": fig("sealed_100_ms_p50", 14.0, 9.0, 20.0)})
    assert verdicts(base, new)["sealed_100_ms_p50"] is Verdict.NOISE


def test_a_significant_change_within_the_tolerance_is_noise() -> None:
    base = report({"consensus": fig("commit_us_p50", 1000, 990, 1010)})
    new = report({"consensus": fig("commit_us_p50", 1060, 1050, 1070)})  # +5%
    assert verdicts(base, new, tolerance=0.1)["commit_us_p50"] is Verdict.NOISE
    assert verdicts(base, new, tolerance=0.0)["commit_us_p50"] is Verdict.REGRESSION


def test_raw_baselines_and_counts_are_never_judged() -> None:
    base = report({"messaging": {**fig("raw_rtt_us_p50", 100, 99, 101), "requests": 2000}})
    new = report({"messaging": {**fig("raw_rtt_us_p50", 500, 499, 501), "requests": 10}})
    result = compare(base, new)
    assert {r.figure: r.verdict for r in result.rows} == {
        "raw_rtt_us_p50": Verdict.CONTEXT, "requests": Verdict.INFO}
    assert result.regressions == []


def test_a_figure_without_an_interval_is_not_judged() -> None:
    base = report({"coordination": {"vote_to_raw_ratio": 1.5}})
    new = report({"coordination": {"vote_to_raw_ratio": 9.0}})
    assert verdicts(base, new)["vote_to_raw_ratio"] is Verdict.NO_INTERVAL


def test_missing_and_new_figures_and_suites_are_reported() -> None:
    base = report({"registry": fig("query_us_p50", 40, 39, 41),
                   "variables": fig("set_ms_p50", 2, 1.9, 2.1)})
    new = report({"registry": fig("query_us_p50_50k", 80, 79, 81),
                  "auction": fig("sealed_300_ms_p99", 30, 29, 31)})
    rows = {(r.suite, r.figure): r.verdict for r in compare(base, new).rows}
    assert rows == {("registry", "query_us_p50"): Verdict.MISSING,
                    ("registry", "query_us_p50_50k"): Verdict.NEW,
                    ("variables", "(suite)"): Verdict.MISSING,
                    ("auction", "(suite)"): Verdict.NEW}
    assert compare(base, new).regressions == []


def test_a_suite_that_crashed_in_the_new_report_counts_as_a_regression() -> None:
    base = report({"consensus": fig("commit_us_p50", 1000, 990, 1010)})
    new = report({"consensus": {"error": "RuntimeError: boom"}})
    result = compare(base, new)
    assert [r.verdict for r in result.rows] == [Verdict.ERROR]
    assert len(result.regressions) == 1


def test_different_machines_and_quick_modes_are_flagged() -> None:
    suites = {"consensus": fig("commit_us_p50", 1000, 990, 1010)}
    other = {**MACHINE, "cpu_model": "Other CPU", "cores": 8, "kernel": "6.9"}
    result = compare(report(suites), report(suites, other, quick=False))
    assert result.machine_differences == {"cpu_model": ("Test CPU", "Other CPU"),
                                          "cores": (2, 8)}
    assert result.notes  # quick vs full
    same = compare(report(suites), report(suites, {**MACHINE, "kernel": "6.9"}))
    assert same.machine_differences == {} and same.notes == []


def test_a_busy_machine_is_flagged() -> None:
    suites = {"consensus": fig("commit_us_p50", 1000, 990, 1010)}
    quiet = {**report(suites), "load": {"consensus": 0.4}}
    busy = {**report(suites), "load": {"consensus": 5.2}}
    assert compare(quiet, quiet).notes == []
    notes = compare(quiet, busy).notes
    assert len(notes) == 1 and "new run's machine was busy (load 5.2 on 2 cores" in notes[0]


def test_relative_divides_out_how_much_the_suites_own_baselines_moved() -> None:
    base = report({"auction": {**fig("sealed_100_ms_p50", 10, 9.5, 10.5),
                               **fig("raw_fanout_ms_p50", 2, 1.9, 2.1),
                               **fig("sealed_to_raw_ratio", 5, 4.8, 5.2)}})
    busy = report({"auction": {**fig("sealed_100_ms_p50", 20, 19, 21),  # all twice as slow
                               **fig("raw_fanout_ms_p50", 4, 3.8, 4.2),
                               **fig("sealed_to_raw_ratio", 5, 4.8, 5.2)}})
    worse = report({"auction": {**fig("sealed_100_ms_p50", 30, 29, 31),  # ours 3x, raw 2x
                                **fig("raw_fanout_ms_p50", 4, 3.8, 4.2),
                                **fig("sealed_to_raw_ratio", 7.5, 7.2, 7.8)}})
    assert verdicts(base, busy)["sealed_100_ms_p50"] is Verdict.REGRESSION
    rows = {r.figure: r for r in compare(base, busy, relative=True).rows}
    assert rows["sealed_100_ms_p50"].verdict is Verdict.NOISE
    assert rows["sealed_100_ms_p50"].scale == 2.0
    assert rows["sealed_to_raw_ratio"].scale is None  # a ratio is already relative
    assert {r.figure: r.verdict for r in compare(base, worse, relative=True).rows}[
        "sealed_100_ms_p50"] is Verdict.REGRESSION


def test_relative_moves_rates_by_the_raw_rates() -> None:
    base = report({"messaging": {**fig("agent_msgs_per_s", 100, 95, 105),
                                 **fig("raw_msgs_per_s", 200, 190, 210),
                                 **fig("raw_rtt_us_p50", 300, 290, 310)}})
    slow = report({"messaging": {**fig("agent_msgs_per_s", 50, 48, 52),
                                 **fig("raw_msgs_per_s", 100, 95, 105),
                                 **fig("raw_rtt_us_p50", 300, 290, 310)}})
    assert verdicts(base, slow)["agent_msgs_per_s"] is Verdict.REGRESSION
    rows = {r.figure: r for r in compare(base, slow, relative=True).rows}
    assert rows["agent_msgs_per_s"].verdict is Verdict.NOISE
    assert rows["agent_msgs_per_s"].scale == 0.5


def test_booleans_and_non_finite_values_are_not_figures() -> None:
    base = report({"coordination": {"target_vote_le_2x_raw": True, "vote_10_ms_p50": 1.0,
                                    "vote_10_ms_p50_ci95": [float("nan"), float("nan")]}})
    new = report({"coordination": {"target_vote_le_2x_raw": False, "vote_10_ms_p50": 5.0,
                                   "vote_10_ms_p50_ci95": [4.9, 5.1]}})
    assert verdicts(base, new) == {"vote_10_ms_p50": Verdict.NO_INTERVAL}


def test_a_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        compare(report({}), report({}), tolerance=-0.1)


# The interval logic, for any intervals.
bound = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False)
interval = st.tuples(bound, bound).map(lambda t: (min(t), max(t)))
tolerances = st.floats(min_value=0.0, max_value=1.0)
sides = st.sampled_from([Direction.LOWER, Direction.HIGHER])


@given(interval, interval, tolerances, sides)
def test_overlapping_intervals_never_decide(a: tuple[float, float], b: tuple[float, float],
                                            tol: float, better: Direction) -> None:
    if a[0] <= b[1] and b[0] <= a[1]:
        assert judge(a, b, better, tol) is Verdict.NOISE


@given(interval, interval, tolerances, sides)
def test_swapping_the_reports_never_makes_both_directions_regress(
        a: tuple[float, float], b: tuple[float, float], tol: float, better: Direction) -> None:
    forward, backward = judge(a, b, better, tol), judge(b, a, better, tol)
    assert not (forward is Verdict.REGRESSION and backward is Verdict.REGRESSION)
    swap = {Verdict.REGRESSION: Verdict.IMPROVEMENT, Verdict.IMPROVEMENT: Verdict.REGRESSION,
            Verdict.NOISE: Verdict.NOISE}
    # without a tolerance the verdicts mirror exactly (a relative tolerance is asymmetric:
    # +100% of 1 reaches 2, -100% of 3 reaches 0)
    assert judge(b, a, better, 0.0) is swap[judge(a, b, better, 0.0)]


@given(interval, interval, tolerances, tolerances, sides)
def test_a_wider_tolerance_never_adds_a_regression(
        a: tuple[float, float], b: tuple[float, float], t1: float, t2: float,
        better: Direction) -> None:
    small, large = sorted((t1, t2))
    if judge(a, b, better, large) is Verdict.REGRESSION:
        assert judge(a, b, better, small) is Verdict.REGRESSION


@given(interval, st.floats(min_value=1.5, max_value=100), tolerances.filter(lambda t: t < 0.3))
def test_a_clear_move_the_bad_way_regresses(a: tuple[float, float], factor: float,
                                            tol: float) -> None:
    worse_lower = (a[1] * factor, a[1] * factor * 1.01)  # latency up by >= 1.5x
    assert judge(a, worse_lower, Direction.LOWER, tol) is Verdict.REGRESSION
    worse_higher = (a[0] / factor / 1.01, a[0] / factor)  # throughput down by >= 33%
    assert judge(a, worse_higher, Direction.HIGHER, tol) is Verdict.REGRESSION


# The CLI: exit codes and output.
runner = CliRunner()


def write(tmp_path: Path, name: str, data: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def reports(tmp_path: Path) -> dict[str, str]:
    base = report({"consensus": {**fig("commit_us_p50", 1000, 980, 1020),
                                 **fig("raw_rtt_us_p50", 300, 290, 310)}})
    noisy = report({"consensus": {**fig("commit_us_p50", 1040, 990, 1090),
                                  **fig("raw_rtt_us_p50", 900, 890, 910)}})
    slower = report({"consensus": {**fig("commit_us_p50", 1600, 1550, 1650),
                                   **fig("raw_rtt_us_p50", 300, 290, 310)}})
    elsewhere = {**noisy, "machine": {**MACHINE, "cpu_model": "Elsewhere CPU"}}
    return {"base": write(tmp_path, "base.json", base),
            "noisy": write(tmp_path, "noisy.json", noisy),
            "slower": write(tmp_path, "slower.json", slower),
            "elsewhere": write(tmp_path, "elsewhere.json", elsewhere),
            "junk": write(tmp_path, "junk.json", {"hello": 1})}


def test_cli_exits_0_on_noise_and_1_on_a_regression(reports: dict[str, str]) -> None:
    ok = runner.invoke(app, ["bench", "compare", reports["base"], reports["noisy"]])
    assert ok.exit_code == 0, ok.output
    assert "commit_us_p50" in ok.output and "noise" in ok.output
    bad = runner.invoke(app, ["bench", "compare", reports["base"], reports["slower"]])
    assert bad.exit_code == 1, bad.output
    assert "regression" in bad.output
    lenient = runner.invoke(app, ["bench", "compare", reports["base"], reports["slower"],
                                  "--tolerance", "1.0"])
    assert lenient.exit_code == 0, lenient.output


def test_cli_json_and_the_machine_warning(reports: dict[str, str]) -> None:
    out = runner.invoke(app, ["bench", "compare", reports["base"], reports["slower"], "--json"])
    assert out.exit_code == 1
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["regressions"] == 1
    assert {r["figure"]: r["verdict"] for r in data["rows"]} == {
        "commit_us_p50": "regression", "raw_rtt_us_p50": "context"}
    moved = runner.invoke(app, ["bench", "compare", reports["base"], reports["elsewhere"]])
    assert moved.exit_code == 0
    assert "different machines" in moved.stderr


def test_cli_refuses_what_is_not_a_report(reports: dict[str, str], tmp_path: Path) -> None:
    junk = runner.invoke(app, ["bench", "compare", reports["base"], reports["junk"]])
    assert junk.exit_code == 2
    absent = runner.invoke(app, ["bench", "compare", reports["base"],
                                 str(tmp_path / "absent.json")])
    assert absent.exit_code == 2
