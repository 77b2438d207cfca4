"""Calls for bids are planned and judged by the core: who is asked, when everyone has
answered, strangers refused, and who answered survives a takeover (the stored state)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core import auction as A
from tests.unit.core.auction.helpers import accepted, bid, closed, config, rejections, through_kv

PEOPLE = ("p1", "p2", "p3")


def _open(mechanism: str, **kw: Any) -> A.AuctionState:
    return A.start(config(mechanism, **kw), 0, PEOPLE).state


def test_sealed_call_goes_to_everyone_who_has_neither_bid_nor_answered() -> None:
    state = _open("vickrey", duration_ticks=100)
    call = A.plan(state)
    assert (call.targets, call.end, call.price, call.min_bid) == (PEOPLE, 100, None, None)
    state, _ = A.step(state, A.BidReceived(bid("p2", 5.0), 1))
    state, effects = A.step(state, A.CallAnswered(call, ["p1"], [], 2))
    assert not closed(effects)
    assert A.plan(state).targets == ("p3",)


def test_english_call_skips_the_standing_bidder_and_names_the_minimum() -> None:
    state = _open("english", start_price=10.0, increment=2.0, round_ticks=50)
    call = A.plan(state)
    assert (call.targets, call.price, call.min_bid, call.end) == (PEOPLE, 10.0, 10.0, 50)
    state, effects = A.step(state, A.CallAnswered(call, ["p1"], [bid("p1", 10.0)], 5))
    assert accepted(effects)
    state, _ = A.step(state, A.Tick(50))
    call = A.plan(state)
    assert (call.round, call.targets, call.standing_bidder) == (2, ("p2", "p3"), "p1")
    assert (call.price, call.min_bid, call.end) == (10.0, 12.0, 100)


def test_dutch_call_names_the_clock_price() -> None:
    state = _open("dutch", start_price=50.0, decrement=5.0, round_ticks=10)
    state, _ = A.step(state, A.Tick(10))
    call = A.plan(state)
    assert (call.round, call.targets, call.price, call.min_bid, call.end) == (
        2, PEOPLE, 45.0, 45.0, 20)


def test_everyone_answered_closes_a_sealed_auction_in_the_same_step() -> None:
    state = _open("first_price", duration_ticks=100)
    call = A.plan(state)
    state, effects = A.step(state, A.CallAnswered(call, ["p1", "p2"], [bid("p1", 7.0)], 3))
    assert not closed(effects)
    state, effects = A.step(state, A.CallAnswered(call, ["p3"], [bid("p3", 9.0)], 4))
    [outcome] = closed(effects)
    assert (outcome.winner, outcome.reason, outcome.closed_at) == ("p3", "all_answered", 4)


def test_everyone_answered_ends_the_round_at_its_end_tick() -> None:
    state = _open("english", start_price=1.0, round_ticks=50)
    call = A.plan(state)
    state, effects = A.step(state, A.CallAnswered(call, PEOPLE, [bid("p1", 1.0)], 5))
    assert state.round == 2 and state.round_started == 50 and state.answered == ()
    assert [e.round for e in effects if isinstance(e, A.PriceAnnounced)] == [2]
    call = A.plan(state)
    state, effects = A.step(state, A.CallAnswered(call, ("p2", "p3"), [], 60))
    [outcome] = closed(effects)
    assert (outcome.winner, outcome.reason, outcome.closed_at) == ("p1", "no_new_bid", 100)


def test_nobody_left_to_ask_counts_as_everyone_answered() -> None:
    state, _ = A.start(config("vickrey"), 0, ())
    state, effects = A.step(state, A.CallAnswered(A.plan(state), [], [], 1))
    assert closed(effects) and state.phase is A.Phase.CLOSED


def test_answers_to_an_older_round_do_not_count_for_the_current_one() -> None:
    state = _open("dutch", start_price=50.0, decrement=5.0, round_ticks=10)
    old = A.plan(state)
    state, _ = A.step(state, A.Tick(10))
    state, effects = A.step(state, A.CallAnswered(old, PEOPLE, [], 12))
    assert state.answered == () and state.round == 2 and effects == []


def test_a_stranger_is_refused_without_touching_the_state() -> None:
    state = _open("first_price")
    after, effects = A.step(state, A.BidReceived(bid("stranger", 50.0), 1))
    assert after is state
    assert rejections(effects) == [A.RejectReason.NOT_ELIGIBLE]
    assert A.invited(state, "p1") and not A.invited(state, "stranger")
    batch = [bid("p1", 5.0), bid("stranger", 9.0), bid("p2", 6.0)]
    state, effects = A.step(state, A.BidsReceived(batch, 1))
    assert rejections(effects) == [A.RejectReason.NOT_ELIGIBLE]
    assert [b.bidder for b in state.bids] == ["p1", "p2"]


@settings(max_examples=60, deadline=None)
@given(mechanism=st.sampled_from(["first_price", "vickrey", "english", "dutch"]),
       order=st.permutations(PEOPLE), split=st.integers(0, 3))
def test_a_takeover_mid_round_keeps_who_has_answered(
    mechanism: str, order: list[str], split: int
) -> None:
    """The first auctioneer reports some answers, then dies; its successor loads the stored
    state, asks only those still silent, and their answers complete the round."""
    kw: dict[str, Any] = {"english": {"start_price": 100.0, "round_ticks": 50},
                             "dutch": {"start_price": 50.0, "round_ticks": 50}}.get(
        mechanism, {"duration_ticks": 50})
    state = _open(mechanism, **kw)
    first = A.plan(state)
    state, _ = A.step(state, A.CallAnswered(first, order[:split], [], 5))
    if split == len(PEOPLE):
        assert state.phase is not A.Phase.OPEN or state.round == 2
        return
    stored = through_kv(state)
    assert set(stored.answered) == set(order[:split])
    second = A.plan(stored)
    assert second.round == first.round and second.targets == tuple(
        p for p in PEOPLE if p not in order[:split])
    stored, _ = A.step(stored, A.CallAnswered(second, second.targets, [], 6))
    assert stored.phase is not A.Phase.OPEN or stored.round == first.round + 1
