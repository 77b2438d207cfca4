"""The registry liveness checkers catch the violations they name, on hand-made data."""

from __future__ import annotations

from chaos.checkers.registry import Outage, check_live_agents_registered, check_reaped_within

OUT = Outage("node-1", ("a", "b"), down=10.0, up=15.0)


def test_reaped_within_accepts_agents_removed_in_time_and_reports_the_worst() -> None:
    result = check_reaped_within([OUT], {"a": [11.5], "b": [12.0, 16.0]}, bound=3.0)
    assert result.ok and result.details["recovery_s"] == 2.0


def test_reaped_within_flags_an_agent_never_removed_during_the_outage() -> None:
    result = check_reaped_within([OUT], {"a": [11.5], "b": [16.0]}, bound=3.0)
    assert not result.ok and "'b'" in result.violations[0]


def test_reaped_within_flags_a_removal_later_than_the_bound() -> None:
    result = check_reaped_within([OUT], {"a": [14.5], "b": [11.0]}, bound=3.0)
    assert not result.ok and "4.50s after the kill" in result.violations[0]


def test_reaped_within_skips_outages_shorter_than_the_bound() -> None:
    short = Outage("node-1", ("a",), down=10.0, up=11.0)
    result = check_reaped_within([short], {}, bound=3.0)
    assert result.ok and result.details["outages_too_short"] == 1


def test_live_agents_registered_measures_time_from_heal() -> None:
    samples = [(1.0, frozenset({"a"})), (2.5, frozenset({"a", "b"})), (3.0, frozenset("ab"))]
    result = check_live_agents_registered(0.5, samples, ["a", "b"])
    assert result.ok and result.details["recovery_s"] == 2.0


def test_live_agents_registered_flags_an_agent_missing_at_the_end() -> None:
    samples = [(1.0, frozenset({"a", "b"})), (2.0, frozenset({"a"}))]
    result = check_live_agents_registered(0.5, samples, ["a", "b"])
    assert not result.ok and "['b']" in result.violations[0]


def test_live_agents_registered_flags_a_slow_recovery() -> None:
    samples = [(1.0, frozenset({"a"})), (7.0, frozenset({"a", "b"}))]
    result = check_live_agents_registered(0.5, samples, ["a", "b"], within=5.0)
    assert not result.ok and "6.50s" in result.violations[0]
