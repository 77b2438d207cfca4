"""``submit_many`` (one pass over a batch of bids) is exactly the one-by-one fold of ``submit``."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core import auction as A
from tests.unit.core.auction.helpers import config

SETTINGS: dict[str, dict[str, Any]] = {
    "english": {"start_price": 1.0, "increment": 1.0, "round_ticks": 3, "max_rounds": 20},
    "dutch": {"start_price": 60.0, "decrement": 2.0, "reserve": 5.0},
    "first_price": {"reserve": 2.0, "duration_ticks": 30},
    "vickrey": {"reserve": 2.0, "duration_ticks": 30, "seller": "b0"},
    "combinatorial": {"items": ("x", "y"), "duration_ticks": 30},
}

bids = st.builds(
    lambda bidder, amount, msg, items, other: A.Bid(
        auction_id="other" if other else "a1", msg_id=f"m{msg}", bidder=f"b{bidder}",
        amount=amount, items=items),
    st.integers(0, 5), st.sampled_from([0.0, 1.0, 3.0, 7.5, 7.5, 12.0, 60.0]),
    st.integers(0, 12), st.sampled_from([(), ("item",), ("x",), ("x", "y"), ("z",)]),
    st.sampled_from([False] * 9 + [True]),
)
admissions = st.dictionaries(
    st.sampled_from([f"b{i}" for i in range(6)]),
    st.builds(A.Admission, available=st.sampled_from([None, 5.0, 100.0]),
              max_per_task=st.sampled_from([None, 10.0])),
)


def fold(state: A.AuctionState, batch: list[A.Bid], now: int,
         adm: dict[str, A.Admission]) -> A.Step:
    effects: list[A.Effect] = []
    for bid in batch:
        state, more = A.step(state, A.BidReceived(bid, now, adm.get(bid.bidder)))
        effects.extend(more)
    return A.Step(state, effects)


@settings(max_examples=300, deadline=None)
@given(
    mechanism=st.sampled_from(sorted(SETTINGS)),
    earlier=st.lists(bids, max_size=6),
    batch=st.lists(bids, max_size=25),
    now=st.sampled_from([1, 2, 29, 30, 200]),
    max_bids=st.sampled_from([3, 8, 10_000]),
    adm=admissions,
    close_first=st.booleans(),
)
def test_submit_many_equals_submitting_one_by_one(
    mechanism: str, earlier: list[A.Bid], batch: list[A.Bid], now: int, max_bids: int,
    adm: dict[str, A.Admission], close_first: bool,
) -> None:
    state, _ = A.start(config(mechanism, max_bids=max_bids, **SETTINGS[mechanism]), 0)
    state = fold(state, earlier, 1, {}).state
    if close_first:
        state = A.step(state, A.Close(1)).state
    expected = fold(state, batch, now, adm)
    got = A.step(state, A.BidsReceived(batch, now, adm))
    assert got.state == expected.state
    assert got.effects == expected.effects
    assert A.parse_state(got.state.model_dump(mode="json")) == expected.state


def test_submit_many_of_nothing_returns_the_same_state() -> None:
    state, _ = A.start(config("vickrey"), 0)
    assert A.step(state, A.BidsReceived([], 1)).state is state
