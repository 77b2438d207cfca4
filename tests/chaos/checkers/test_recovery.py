"""Leader within 2 s and registry convergence within 5 s after the final heal."""

from __future__ import annotations

from chaos.checkers import check_convergence, check_leader_recovery


def test_leader_soon_after_heal_passes_and_reports_the_time() -> None:
    obs = [(9.0, "a", 1, "leader"), (10.5, "b", 1, "follower"), (11.2, "b", 2, "leader")]
    result = check_leader_recovery(10.0, obs)
    assert result.ok and abs(result.details["recovery_s"] - 1.2) < 1e-9


def test_late_leader_is_caught() -> None:
    result = check_leader_recovery(10.0, [(12.5, "a", 4, "leader")])
    assert result.verdict == "violation" and "2.500s" in result.violations[0]


def test_no_leader_after_heal_is_caught() -> None:
    result = check_leader_recovery(10.0, [(9.0, "a", 1, "leader"), (11, "a", 1, "follower")])
    assert "no leader" in result.violations[0]


def test_views_converging_in_time_pass() -> None:
    views = [(10.5, "n1", {"x"}), (11.0, "n1", {"x", "y"}), (10.2, "n2", {"x", "y"})]
    result = check_convergence(10.0, views, {"x", "y"})
    assert result.ok
    assert result.details["nodes"] == {"n1": 1.0, "n2": 0.2}


def test_view_that_converges_late_is_caught() -> None:
    views = [(11.0, "n1", {"x"}), (16.5, "n1", {"x", "y"})]
    result = check_convergence(10.0, views, {"x", "y"})
    assert "n1" in result.violations[0] and "6.500s" in result.violations[0]


def test_view_that_diverges_again_counts_from_the_last_divergence() -> None:
    views = [(10.1, "n1", ["y"]), (12.0, "n1", []), (16.0, "n1", ["y"])]
    result = check_convergence(10.0, views, ["y"])
    assert result.verdict == "violation"


def test_view_that_never_converges_is_caught() -> None:
    result = check_convergence(10.0, [(11.0, "n1", {"x"})], {"y"})
    assert "never converged" in result.violations[0]
