"""The escrow checker catches holds left behind by finished or unknown auctions."""

from __future__ import annotations

from chaos.checkers.escrow import check_no_dangling_holds


def test_no_holds_and_finished_auctions_pass() -> None:
    result = check_no_dangling_holds({"x": {}, "y": {}}, {"a1": "settled", "a2": "failed"})
    assert result.ok


def test_a_hold_for_a_settled_auction_is_dangling() -> None:
    result = check_no_dangling_holds({"x": {"a1": 5.0}}, {"a1": "settled"})
    assert not result.ok and "'x' still holds 5.0 for auction 'a1'" in result.violations[0]


def test_a_hold_for_an_auction_without_record_is_dangling() -> None:
    result = check_no_dangling_holds({"x": {"ghost": 1.0}}, {})
    assert not result.ok and "no auction record" in result.violations[0]


def test_an_unfinished_auction_is_reported() -> None:
    result = check_no_dangling_holds({"x": {"a1": 2.0}}, {"a1": "reserved"})
    assert result.violations == ["auction 'a1' never finished (stage 'reserved')"]
