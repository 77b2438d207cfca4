"""English auction: increments, rounds, round limit, reserve, lateness."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core import auction as A
from tests.unit.core.auction.helpers import accepted, bid, closed, config, rejections


def test_lone_bidder_wins_at_the_start_price() -> None:
    state, effects = A.start(config("english", start_price=10.0), 0)
    assert isinstance(effects[0], A.PriceAnnounced) and effects[0].min_bid == 10.0
    state, effects = A.step(state, A.BidReceived(bid("bidder1", 10.0), 0))
    assert accepted(effects)
    state, effects = A.step(state, A.Tick(1))
    assert not closed(effects)
    state, effects = A.step(state, A.Tick(2))
    [outcome] = closed(effects)
    assert (outcome.winner, outcome.price, outcome.rounds) == ("bidder1", 10.0, 2)
    assert outcome.reason == "no_new_bid"


def test_bid_must_beat_standing_by_the_configured_increment() -> None:
    state, _ = A.start(config("english", start_price=10.0, increment=2.5), 0)
    state, _ = A.step(state, A.BidReceived(bid("b1", 10.0), 0))
    state, effects = A.step(state, A.BidReceived(bid("b2", 12.0), 0))
    assert rejections(effects) == [A.RejectReason.BELOW_MINIMUM]
    state, effects = A.step(state, A.BidReceived(bid("b2", 12.5), 0))
    assert accepted(effects)
    state, effects = A.step(state, A.Tick(1))
    assert [e.min_bid for e in effects if isinstance(e, A.PriceAnnounced)] == [15.0]


def test_first_bid_below_start_price_is_rejected() -> None:
    state, _ = A.start(config("english", start_price=10.0), 0)
    _, effects = A.step(state, A.BidReceived(bid("b1", 9.99), 0))
    assert rejections(effects) == [A.RejectReason.BELOW_MINIMUM]


def test_standing_bidder_cannot_raise_against_itself() -> None:
    state, _ = A.start(config("english", start_price=1.0), 0)
    state, _ = A.step(state, A.BidReceived(bid("b1", 1.0, "m1"), 0))
    _, effects = A.step(state, A.BidReceived(bid("b1", 5.0, "m2"), 0))
    assert rejections(effects) == [A.RejectReason.ALREADY_BID]


def test_auction_stops_at_the_round_limit() -> None:
    state, _ = A.start(config("english", start_price=1.0, increment=1.0, max_rounds=3), 0)
    for rnd in range(5):
        state, _ = A.step(state, A.BidReceived(bid(f"b{rnd % 2}", 1.0 + rnd, f"m{rnd}"), rnd))
    outcome = state.outcome
    assert outcome is not None
    assert (outcome.reason, outcome.rounds, outcome.price, outcome.num_bids) == (
        "round_limit", 3, 3.0, 3)


def test_highest_below_reserve_means_no_sale() -> None:
    state, _ = A.start(config("english", start_price=5.0, reserve=50.0), 0)
    state, _ = A.step(state, A.BidReceived(bid("b1", 5.0), 0))
    state, effects = A.step(state, A.Tick(10))
    [outcome] = closed(effects)
    assert (outcome.sold, outcome.reason, outcome.price) == (False, "below_reserve", 0.0)


def test_bid_arriving_after_a_silent_round_is_late() -> None:
    state, _ = A.start(config("english", start_price=1.0, round_ticks=5), 0)
    state, _ = A.step(state, A.BidReceived(bid("b1", 1.0), 1))
    # round 2 ended silently at 10
    state, effects = A.step(state, A.BidReceived(bid("b2", 100.0), 10))
    assert rejections(effects) == [A.RejectReason.LATE]
    [outcome] = closed(effects)
    assert (outcome.winner, outcome.price) == ("b1", 1.0)


def test_round_clock_advances_by_round_ticks() -> None:
    state, _ = A.start(config("english", start_price=1.0, round_ticks=5), 0)
    state, _ = A.step(state, A.BidReceived(bid("b1", 1.0), 4))
    state, effects = A.step(state, A.Tick(4))
    assert effects == [] and state.round == 1
    state, effects = A.step(state, A.Tick(5))
    assert state.round == 2 and isinstance(effects[0], A.PriceAnnounced)


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 100, allow_nan=False)),
                max_size=30),
       st.floats(0.0, 5.0, allow_nan=False))
def test_accepted_bids_strictly_rise_by_the_increment_and_top_one_wins(
    script: list[tuple[int, float]], increment: float
) -> None:
    state, _ = A.start(config("english", start_price=1.0, increment=increment,
                              max_rounds=1000), 0)
    for i, (who, amount) in enumerate(script):
        state, _ = A.step(state, A.BidReceived(bid(f"b{who}", amount, f"m{i}"), 0))
    prices = [b.amount for b in state.bids]
    assert all(b >= a + increment and b > a for a, b in pairwise(prices))
    state, effects = A.step(state, A.Close(1))
    [outcome] = closed(effects)
    assert outcome.price == (prices[-1] if prices else 0.0)
