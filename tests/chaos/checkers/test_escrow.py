"""The escrow checker catches holds left behind by finished or unknown auctions (judged by
the same audit code as the reconcile and ``broker-agents auction audit``)."""

from __future__ import annotations

from broker_agents.core import budget as B
from broker_agents.core.auction.audit import AuctionView, audit
from broker_agents.core.auction.settlement import Stage
from chaos.checkers.escrow import check_no_dangling_holds
from chaos.checkers.result import CheckResult

NOW = 10_000


def _check(holds: dict[str, dict[str, float]], stages: dict[str, Stage]) -> CheckResult:
    accounts = []
    for owner, held in holds.items():
        account = B.open_account(owner, 100.0)
        for aid, amount in held.items():
            account = B.reserve(account, aid, amount, taken_ms=NOW)
        accounts.append(account)
    views = {aid: AuctionView(stage) for aid, stage in stages.items()}
    return check_no_dangling_holds(audit(accounts, views, NOW, 0), views)


def test_no_holds_and_finished_auctions_pass() -> None:
    assert _check({"x": {}, "y": {}}, {"a1": Stage.SETTLED, "a2": Stage.FAILED}).ok


def test_a_hold_for_a_settled_auction_is_dangling() -> None:
    result = _check({"x": {"a1": 5.0}}, {"a1": Stage.SETTLED})
    assert not result.ok and "'x' still holds 5.0 for auction 'a1'" in result.violations[0]


def test_a_hold_for_a_failed_auction_is_dangling_like_the_issue_found() -> None:
    result = _check({"b2b": {"c0-338-cf7ddad": 7.0}}, {"c0-338-cf7ddad": Stage.FAILED})
    assert result.violations == ["account 'b2b' still holds 7.0 for auction 'c0-338-cf7ddad' "
                                 "(failed): orphaned (terminal)"]


def test_a_hold_for_an_auction_without_record_is_dangling() -> None:
    result = _check({"x": {"ghost": 1.0}}, {})
    assert not result.ok and "no auction record" in result.violations[0]


def test_an_unfinished_auction_is_reported() -> None:
    result = _check({"x": {"a1": 2.0}}, {"a1": Stage.CLOSED})
    assert result.violations == ["auction 'a1' never finished (stage 'closed')"]


def test_an_unreadable_auction_record_is_reported() -> None:
    report = audit([], {"a1": None}, NOW, 0)
    assert check_no_dangling_holds(report, {"a1": None}).violations == [
        "auction 'a1' has an unreadable record"]
