"""The registry liveness checkers catch the violations they name, on hand-made data."""

from __future__ import annotations

from chaos.checkers.registry import (
    Outage,
    check_back_after_pause,
    check_live_agents_registered,
    check_reaped_within,
)

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


def test_reaped_within_holds_paused_nodes_to_the_same_bound() -> None:
    paused = Outage("node-2", ("p",), down=10.0, up=15.0, kind="pause_node")
    result = check_reaped_within([paused], {"p": [13.5]}, bound=3.0)
    assert not result.ok and "paused node 'node-2' removed 3.50s after the pause" in \
        result.violations[0]


def test_reaped_within_skips_an_agent_already_gone_when_its_node_went_down() -> None:
    """Reaped while its node was cut off just before the kill (issue 19, seed 202), or
    not yet re-registered by a daemon still restarting when it was paused (seed 1)."""
    result = check_reaped_within([OUT], {"a": [8.0, 11.0], "b": [9.0]}, bound=3.0,
                                 adds={"a": [8.5]})
    assert result.ok and result.details["already_gone"] == 1
    assert result.details["recovery_s"] == 1.0


def test_reaped_within_times_an_agent_that_appears_during_the_outage_from_then() -> None:
    result = check_reaped_within([OUT], {"a": [9.0, 12.5], "b": [11.0]}, bound=2.0,
                                 adds={"a": [10.5]})
    assert result.ok and result.details["recovery_s"] == 2.0
    late = check_reaped_within([OUT], {"a": [9.0, 13.0], "b": [11.0]}, bound=2.0,
                               adds={"a": [10.5]})
    assert not late.ok and "'a'" in late.violations[0] and "2.50s" in late.violations[0]


PAUSE = Outage("node-3", ("x", "y"), down=20.0, up=24.0, kind="pause_node")


def test_paused_agents_must_return_within_the_bound_after_the_resume() -> None:
    result = check_back_after_pause([PAUSE], {"x": [21.6], "y": [21.7]},
                                    {"x": [24.4], "y": [24.9]}, within=5.0)
    assert result.ok and result.details == {"agents_checked": 2, "bound_s": 5.0,
                                            "recovery_s": 0.9}


def test_a_paused_agent_never_registered_again_is_a_violation() -> None:
    result = check_back_after_pause([PAUSE], {"x": [21.6]}, {}, within=5.0)
    assert not result.ok and "'x'" in result.violations[0] and "never" in \
        result.violations[0]


def test_a_paused_agent_back_too_late_is_a_violation_and_kills_are_not_its_business() -> None:
    late = check_back_after_pause([PAUSE], {"x": [21.6]}, {"x": [30.0]}, within=5.0)
    assert not late.ok and "6.00s after the resume" in late.violations[0]
    killed = Outage("node-3", ("x",), down=20.0, up=24.0)
    assert check_back_after_pause([killed], {"x": [21.6]}, {}, within=5.0).ok
