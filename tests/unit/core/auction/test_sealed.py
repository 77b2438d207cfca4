"""Sealed-bid first-price and Vickrey: the issue's cases and the Vickrey price property."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core import auction as A
from tests.unit.core.auction.helpers import (
    accepted,
    bid,
    closed,
    config,
    rejections,
    run_sealed,
)


def test_first_price_highest_bidder_pays_its_bid() -> None:
    outcome = run_sealed("first_price", [10.0, 15.0, 12.0])
    assert (outcome.winner, outcome.price) == ("bidder2", 15.0)
    assert (outcome.num_bids, outcome.num_participants, outcome.tie_broken) == (3, 3, False)


def test_vickrey_highest_bidder_pays_second_price() -> None:
    outcome = run_sealed("vickrey", [10.0, 15.0, 12.0])
    assert (outcome.winner, outcome.price) == ("bidder2", 12.0)
    assert outcome.awards[0].bid == 15.0


def test_equal_top_bids_go_to_earliest_and_say_tie_broken() -> None:
    for mechanism in ("first_price", "vickrey"):
        outcome = run_sealed(mechanism, [15.0, 15.0, 12.0])
        assert (outcome.winner, outcome.price, outcome.tie_broken) == ("bidder1", 15.0, True)


def test_no_bids_means_no_winner_zero_payment_zero_participants() -> None:
    for mechanism in ("first_price", "vickrey"):
        outcome = run_sealed(mechanism, [])
        assert (outcome.sold, outcome.winner, outcome.price) == (False, None, 0.0)
        assert (outcome.num_participants, outcome.num_bids) == (0, 0)


def test_vickrey_lone_bidder_pays_the_reserve() -> None:
    outcome = run_sealed("vickrey", [40.0], reserve=5.0)
    assert (outcome.winner, outcome.price) == ("bidder1", 5.0)


def test_bids_below_reserve_are_rejected_so_vickrey_never_pays_less() -> None:
    state, _ = A.start(config("vickrey", reserve=10.0), 0)
    state, effects = A.step(state, A.BidReceived(bid("b1", 20.0), 1))
    state, effects = A.step(state, A.BidReceived(bid("b2", 8.0), 1))
    assert rejections(effects) == [A.RejectReason.BELOW_MINIMUM]
    state, effects = A.step(state, A.Close(2))
    assert closed(effects)[0].price == 10.0


def test_late_bid_is_rejected_and_does_not_count() -> None:
    state, _ = A.start(config("first_price", duration_ticks=5), 0)
    state, _ = A.step(state, A.BidReceived(bid("b1", 10.0), 4))
    state, effects = A.step(state, A.BidReceived(bid("b2", 99.0), 5))
    assert rejections(effects) == [A.RejectReason.LATE]
    state, effects = A.step(state, A.Tick(5))
    assert closed(effects)[0].winner == "b1"


def test_bid_after_close_is_rejected_as_closed() -> None:
    state, _ = A.start(config("vickrey"), 0)
    state, _ = A.step(state, A.Close(1))
    state, effects = A.step(state, A.BidReceived(bid("b1", 10.0), 1))
    assert rejections(effects) == [A.RejectReason.CLOSED]
    assert state.outcome is not None and not state.outcome.sold


def test_second_sealed_bid_from_same_bidder_is_rejected() -> None:
    state, _ = A.start(config("first_price"), 0)
    state, _ = A.step(state, A.BidReceived(bid("b1", 10.0, "m1"), 1))
    state, effects = A.step(state, A.BidReceived(bid("b1", 50.0, "m2"), 1))
    assert rejections(effects) == [A.RejectReason.ALREADY_BID]
    state, effects = A.step(state, A.Close(2))
    assert closed(effects)[0].price == 10.0


def test_redelivered_bid_is_a_duplicate_even_after_close() -> None:
    state, _ = A.start(config("first_price"), 0)
    state, first = A.step(state, A.BidReceived(bid("b1", 10.0, "m1"), 1))
    state, again = A.step(state, A.BidReceived(bid("b1", 10.0, "m1"), 1))
    assert accepted(first) and rejections(again) == [A.RejectReason.DUPLICATE]
    state, _ = A.step(state, A.Close(2))
    _, after = A.step(state, A.BidReceived(bid("b1", 10.0, "m1"), 3))
    assert rejections(after) == [A.RejectReason.DUPLICATE]
    assert state.outcome is not None and state.outcome.num_bids == 1


amounts = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=12)


@given(amounts, st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_vickrey_winner_has_highest_bid_and_pays_second_or_reserve(
    bids: list[float], reserve: float
) -> None:
    state, _ = A.start(config("vickrey", reserve=reserve), 0)
    for i, amount in enumerate(bids):
        state, _ = A.step(state, A.BidReceived(bid(f"b{i:02d}", amount, f"m{i}"), 1))
    state, effects = A.step(state, A.Tick(100))
    [outcome] = closed(effects)
    valid = [a for a in bids if a >= reserve]
    if not valid:
        assert not outcome.sold and outcome.price == 0.0
        return
    ranked = sorted(valid, reverse=True)
    assert outcome.awards[0].bid == ranked[0]
    assert outcome.price == max(ranked[1] if len(ranked) > 1 else 0.0, reserve)
    assert outcome.price <= outcome.awards[0].bid
    first_top = next(i for i, a in enumerate(bids) if a == ranked[0])
    assert outcome.winner == f"b{first_top:02d}"
    assert outcome.tie_broken == (valid.count(ranked[0]) > 1)


@given(amounts)
def test_first_price_winner_pays_its_own_highest_bid(bids: list[float]) -> None:
    state, _ = A.start(config("first_price"), 0)
    for i, amount in enumerate(bids):
        state, _ = A.step(state, A.BidReceived(bid(f"b{i:02d}", amount, f"m{i}"), 1))
    state, effects = A.step(state, A.Close(2))
    [outcome] = closed(effects)
    assert outcome.price == (max(bids) if bids else 0.0)
    assert outcome.num_participants == len(bids)
