"""Dutch auction: falling clock, first accept wins at the clock price, reserve floor."""

from __future__ import annotations

from broker_agents.core import auction as A
from broker_agents.core.auction import dutch
from tests.unit.core.auction.helpers import bid, closed, config, rejections


def test_nobody_accepting_above_the_reserve_means_no_winner() -> None:
    cfg = config("dutch", start_price=200.0, decrement=5.0, reserve=150.0)
    state, effects = A.start(cfg, 0)
    prices = [e.price for e in effects if isinstance(e, A.PriceAnnounced)]
    valuations = {"b1": 140.0, "b2": 120.0}
    for now in range(1, 100):
        for who, worth in valuations.items():
            if dutch.clock_price(state) <= worth:
                accept = bid(who, dutch.clock_price(state), f"{who}{now}")
                state, _ = A.step(state, A.BidReceived(accept, now))
        state, effects = A.step(state, A.Tick(now))
        prices += [e.price for e in effects if isinstance(e, A.PriceAnnounced)]
        if closed(effects):
            break
    outcome = state.outcome
    assert outcome is not None and not outcome.sold and outcome.winner is None
    assert prices == [200.0 - 5 * k for k in range(11)]  # 200 .. 150, never below
    assert outcome.reason == "reserve_reached" and outcome.num_bids == 0


def test_first_accept_wins_at_the_clock_price_and_later_ones_find_it_closed() -> None:
    state, _ = A.start(config("dutch", start_price=100.0, decrement=10.0), 0)
    state, _ = A.step(state, A.Tick(3))
    state, effects = A.step(state, A.BidReceived(bid("b1", 70.0), 3))
    [outcome] = closed(effects)
    assert (outcome.winner, outcome.price, outcome.rounds) == ("b1", 70.0, 4)
    _, effects = A.step(state, A.BidReceived(bid("b2", 70.0), 3))
    assert rejections(effects) == [A.RejectReason.CLOSED]


def test_delayed_accept_pays_the_current_lower_price() -> None:
    state, _ = A.start(config("dutch", start_price=100.0, decrement=10.0), 0)
    # saw 100, clock is at 80 now
    state, effects = A.step(state, A.BidReceived(bid("b1", 100.0), 2))
    assert closed(effects)[0].price == 80.0


def test_accept_below_the_clock_price_is_rejected() -> None:
    state, _ = A.start(config("dutch", start_price=100.0, decrement=10.0), 0)
    state, effects = A.step(state, A.BidReceived(bid("b1", 50.0), 1))
    assert rejections(effects) == [A.RejectReason.BELOW_MINIMUM]
    assert state.phase is A.Phase.OPEN


def test_accept_after_the_clock_passed_the_reserve_is_late() -> None:
    state, _ = A.start(config("dutch", start_price=20.0, decrement=5.0, reserve=10.0), 0)
    state, effects = A.step(state, A.BidReceived(bid("b1", 10.0), 50))
    assert rejections(effects) == [A.RejectReason.LATE]
    assert closed(effects)[0].sold is False


def test_dutch_config_requires_a_start_price_at_or_above_reserve() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="start_price"):
        config("dutch", reserve=10.0)
    with pytest.raises(ValidationError, match="start_price"):
        config("dutch", start_price=5.0, reserve=10.0)
