"""Awards exactly once; balances never negative and conserved."""

from __future__ import annotations

from broker_agents.core import budget as B
from broker_agents.core.auction.audit import AuctionView, audit
from broker_agents.core.auction.settlement import Stage
from chaos.checkers import check_awards, check_balances
from chaos.checkers.money import check_books
from chaos.history import Operation
from tests.chaos.checkers.histories import op

WIN = {"winner": "a1", "price": 10}


def award(op_id: int, auction: str, result: object, status: str = "ok") -> Operation:
    return op(op_id, "award", None, result, t=(op_id, op_id + 0.5), key=auction, status=status)


def test_acknowledged_awards_present_once_pass() -> None:
    ops = [award(0, "x", WIN), award(1, "x", WIN), award(2, "y", {"winner": "b", "price": 3})]
    result = check_awards(ops, {"x": WIN, "y": {"winner": "b", "price": 3}}, ["x", "y"])
    assert result.ok


def test_lost_award_is_caught_and_named() -> None:
    result = check_awards([award(5, "x", WIN)], {})
    assert result.verdict == "violation" and "op 5" in result.violations[0]


def test_award_made_twice_with_different_outcomes_is_caught() -> None:
    ops = [award(1, "x", WIN), award(2, "x", {"winner": "a2", "price": 12})]
    result = check_awards(ops, {"x": WIN})
    assert any("awarded twice" in v and "1, 2" in v for v in result.violations)


def test_award_replaced_in_final_state_is_caught() -> None:
    result = check_awards([award(1, "x", WIN)], {"x": {"winner": "zz", "price": 1}})
    assert "replaced" in result.violations[0]


def test_double_settlement_is_caught() -> None:
    result = check_awards([award(1, "x", WIN)], {"x": WIN}, settlements=["x", "x"])
    assert result.violations == ["auction 'x': settled 2 times (must be once)"]


def test_unacknowledged_awards_are_not_required() -> None:
    assert check_awards([award(1, "x", WIN, status="unknown")], {}).ok


def test_conserved_non_negative_balances_pass() -> None:
    result = check_balances({"a": 10, "b": 5}, {"a": 3, "b": 12}, [(0.5, "a", 7)])
    assert result.ok and result.details["total_in"] == 15


def test_negative_balance_in_a_snapshot_is_caught() -> None:
    result = check_balances({"a": 10}, {"a": 10}, [(1.25, "a", -2)])
    assert result.violations == ["account 'a' negative (-2) at t=1.250"]


def test_money_created_from_nothing_is_caught() -> None:
    result = check_balances({"a": 10, "b": 0}, {"a": 10, "b": 4})
    assert any("not conserved" in v and "+4" in v for v in result.violations)


def test_minted_and_burned_money_is_accounted() -> None:
    assert check_balances({"a": 10}, {"a": 12}, minted=5, burned=3).ok
    assert not check_balances({"a": 10}, {"a": 12}, minted=5).ok


def _settled_books() -> tuple[B.Account, B.Account]:
    buyer = B.deposit(B.open_account("buyer"), "d", 10.0)
    return B.settle(B.reserve(buyer, "a1", 4.0), B.open_account("seller"), "a1", 4.0)


def test_books_balance_when_deposits_equal_the_money_minted() -> None:
    report = audit(_settled_books(), {"a1": AuctionView(Stage.SETTLED)}, 0, 0)
    result = check_books(report, minted=10.0)
    assert result.ok, result.violations
    assert (result.details["paid"], result.details["received"]) == (4.0, 4.0)


def test_money_paid_but_never_received_or_minted_out_of_thin_air_is_caught() -> None:
    buyer, _ = _settled_books()
    result = check_books(audit([buyer], {"a1": AuctionView(Stage.SETTLED)}, 0, 0))
    assert not result.ok and "total paid 4.0 != total received 0.0" in result.violations[0]
    result = check_books(audit(_settled_books(), {}, 0, 0), minted=5.0)
    assert result.violations == ["deposits recorded on accounts (10.0) differ from the "
                                 "money minted (5.0)"]


def test_a_settlement_still_in_flight_cannot_be_judged() -> None:
    buyer, _ = _settled_books()
    result = check_books(audit([buyer], {"a1": AuctionView(Stage.ACKED)}, 0, 0))
    assert not result.ok and "still settling" in result.violations[0]
