"""One leader per term and no lost acknowledged writes, on hand-made histories."""

from __future__ import annotations

from chaos.checkers import check_no_lost_writes, check_one_leader_per_term
from tests.chaos.checkers.histories import op


def test_one_leader_per_term_passes_distinct_terms() -> None:
    obs = [("a", 1, "leader"), ("b", 1, "follower"), ("b", 2, "leader"), ("a", 2, "follower"),
           ("a", 1, "leader")]
    assert check_one_leader_per_term(obs).ok


def test_two_leaders_in_one_term_are_caught_and_named() -> None:
    obs = [("a", 3, "leader"), ("b", 3, "candidate"), ("b", 3, "leader")]
    result = check_one_leader_per_term(obs)
    assert result.verdict == "violation"
    assert result.violations == ["term 3: 2 leaders: ['a', 'b']"]


def test_final_value_from_the_last_acknowledged_write_passes() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(1, "write", 2, t=(2, 3))]
    assert check_no_lost_writes(ops, {"k": 2}).ok


def test_concurrent_acknowledged_writes_may_either_win() -> None:
    ops = [op(0, "write", 1, t=(0, 3)), op(1, "write", 2, t=(1, 2))]
    assert check_no_lost_writes(ops, {"k": 1}).ok
    assert check_no_lost_writes(ops, {"k": 2}).ok


def test_overwritten_by_an_unknown_write_is_not_a_loss() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(1, "write", 5, t=(2, 3), status="unknown")]
    assert check_no_lost_writes(ops, {"k": 5}).ok


def test_lost_acknowledged_write_is_caught_and_named() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(4, "write", 2, t=(2, 3))]
    result = check_no_lost_writes(ops, {"k": 1})
    assert result.verdict == "violation"
    assert "op 4" in result.violations[0] and "final value 1" in result.violations[0]


def test_missing_key_after_acknowledged_cas_is_caught() -> None:
    ops = [op(3, "cas", [None, 7], t=(0, 1))]
    result = check_no_lost_writes(ops, {})
    assert "op 3" in result.violations[0] and "missing" in result.violations[0]


def test_failed_write_cannot_explain_the_final_value() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(1, "write", 8, t=(2, 3), status="fail")]
    assert check_no_lost_writes(ops, {"k": 8}).verdict == "violation"
