"""Rules shared by every mechanism: admission, junk bids, takeover from stored state."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core import auction as A
from broker_agents.core.errors import RemoteProtocolError
from tests.unit.core.auction.helpers import (
    accepted,
    bid,
    closed,
    config,
    rejections,
    through_kv,
)

MECHANISMS: dict[str, dict[str, object]] = {
    "english": {"start_price": 1.0, "increment": 1.0, "round_ticks": 3, "max_rounds": 20},
    "dutch": {"start_price": 60.0, "decrement": 2.0, "reserve": 5.0},
    "first_price": {"reserve": 2.0, "duration_ticks": 30},
    "vickrey": {"reserve": 2.0, "duration_ticks": 30},
    "combinatorial": {"items": ("x", "y", "z"), "duration_ticks": 30},
}


def test_admission_rejects_low_reputation_and_unaffordable_bids() -> None:
    state, _ = A.start(config("vickrey", min_reputation=0.6), 0)
    cases = [
        (A.Admission(reputation=0.3), A.RejectReason.NOT_ELIGIBLE),
        (A.Admission(reputation=0.9, available=5.0), A.RejectReason.INSUFFICIENT_FUNDS),
        (A.Admission(reputation=0.9, max_per_task=8.0), A.RejectReason.BUDGET_EXCEEDED),
        (A.Admission(), A.RejectReason.NOT_ELIGIBLE),  # unknown agents are neutral (0.5)
    ]
    for i, (admission, reason) in enumerate(cases):
        state, effects = A.step(state, A.BidReceived(bid("b1", 10.0, f"m{i}"), 1, admission))
        assert rejections(effects) == [reason]
    state, effects = A.step(state, A.BidReceived(bid("b1", 10.0, "ok"), 1,
                                                 A.Admission(reputation=0.6)))
    assert accepted(effects)


def test_budget_exceeded_message_names_cost_and_cap() -> None:
    state, _ = A.start(config("first_price"), 0)
    _, effects = A.step(state, A.BidReceived(bid("b1", 12.0), 1, A.Admission(max_per_task=10.0)))
    [rejection] = effects
    assert isinstance(rejection, A.BidRejected)
    assert rejection.message == "cost 12.0 exceeds the maximum per-task budget 10.0"
    assert rejection.to_error_payload()["error"]["code"] == "budget_exceeded"  # type: ignore[index]


def test_seller_cannot_bid_in_its_own_auction() -> None:
    state, _ = A.start(config("first_price", seller="s1"), 0)
    _, effects = A.step(state, A.BidReceived(bid("s1", 10.0), 1))
    assert rejections(effects) == [A.RejectReason.SELF_BID]


def test_bid_for_another_auction_is_rejected() -> None:
    state, _ = A.start(config("first_price"), 0)
    _, effects = A.step(state, A.BidReceived(bid("b1", 10.0, auction_id="other"), 1))
    assert rejections(effects) == [A.RejectReason.WRONG_AUCTION]


def test_message_cap_bounds_the_state() -> None:
    state, _ = A.start(config("first_price", max_bids=3), 0)
    for i in range(6):
        state, effects = A.step(state, A.BidReceived(bid(f"b{i}", 10.0), 1))
    assert rejections(effects) == [A.RejectReason.TOO_MANY_BIDS]
    assert len(state.seen) == 3


def test_parse_bid_names_the_bad_field() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        A.parse_bid({"auction_id": "a1", "msg_id": "m", "bidder": "b", "amount": -1})
    assert info.value.code == "validation_error" and info.value.details["field"] == "amount"
    with pytest.raises(RemoteProtocolError):
        A.parse_bid({"auction_id": "a1", "msg_id": "m", "bidder": "b", "amount": float("nan")})


def test_abort_ends_open_auction_once_without_award() -> None:
    state, _ = A.start(config("vickrey"), 0)
    state, _ = A.step(state, A.BidReceived(bid("b1", 10.0), 1))
    state, effects = A.step(state, A.Abort(2, "auctioneer lost"))
    [outcome] = closed(effects)
    assert (state.phase, outcome.sold, outcome.num_bids) == (A.Phase.ABORTED, False, 1)
    assert A.step(state, A.Abort(3, "again")).effects == []
    assert A.step(state, A.Close(3)).effects == []


def _script(mechanism: str, rng: random.Random) -> list[tuple[str, int, A.Bid]]:
    """A random schedule of ticks and bids (some junk) for one auction."""
    items = ("x", "y", "z")
    events: list[tuple[str, int, A.Bid]] = []
    now = 0
    for i in range(rng.randint(0, 25)):
        now += rng.randint(0, 3)
        bundle = tuple(rng.sample(items, rng.randint(1, 3))) if mechanism == "combinatorial" \
            else ()
        b = A.Bid(auction_id=rng.choice(["a1", "a1", "a1", "zz"]), msg_id=f"m{i}",
                  bidder=f"b{rng.randint(0, 4)}", amount=float(rng.randint(0, 80)),
                  items=bundle)
        events.append(("bid", now, b))
        if rng.random() < 0.3:
            events.append(("tick", now, b))
    events.append(("tick", now + 200, b if events else bid("x", 1.0)))
    return events


def _run(mechanism: str, events: list[tuple[str, int, A.Bid]], rng: random.Random | None,
         junk: bool) -> tuple[A.AuctionState, int]:
    state, _ = A.start(config(mechanism, **MECHANISMS[mechanism]), 0)  # type: ignore[arg-type]
    closes = 0
    processed: list[A.Bid] = []
    for kind, now, b in events:
        if kind == "bid":
            state, effects = A.step(state, A.BidReceived(b, now))
            processed.append(b)
            if junk and processed and rng is not None:
                old = rng.choice(processed)  # redelivery, possibly with a forged amount
                forged = old.model_copy(update={"amount": 999.0})
                state, dup = A.step(state, A.BidReceived(forged, now))
                assert rejections(dup) in (
                    [A.RejectReason.DUPLICATE], [A.RejectReason.WRONG_AUCTION])
                effects += dup
        else:
            state, effects = A.step(state, A.Tick(now))
        closes += len(closed(effects))
        if rng is not None and rng.random() < 0.3:
            state = through_kv(state, as_json=rng.random() < 0.5)  # successor takes over
    return state, closes


@pytest.mark.parametrize("mechanism", sorted(MECHANISMS))
def test_takeover_and_junk_bids_never_change_the_outcome(
    mechanism: str, sim_seeds: list[int]
) -> None:
    for seed in sim_seeds[:200]:
        events = _script(mechanism, random.Random(seed))
        plain, plain_closes = _run(mechanism, events, None, junk=False)
        noisy, noisy_closes = _run(mechanism, events, random.Random(seed + 1), junk=True)
        assert plain.outcome == noisy.outcome, (
            f"seed {seed}: replay with pytest {__file__} --seed {seed}")
        assert plain_closes == noisy_closes == 1, f"seed {seed}: closes must be exactly one"


@settings(max_examples=50)
@given(st.sampled_from(sorted(MECHANISMS)), st.integers(0, 10_000))
def test_state_round_trips_through_msgpack_and_json(mechanism: str, seed: int) -> None:
    state, _ = _run(mechanism, _script(mechanism, random.Random(seed))[:5], None, junk=False)
    assert through_kv(state) == state and through_kv(state, as_json=True) == state
