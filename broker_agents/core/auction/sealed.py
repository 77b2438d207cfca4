"""Sealed-bid auctions: first-price and Vickrey (second-price).

Each bidder gets one bid, accepted until ``opened_at + duration_ticks`` (exclusive); a bid
below the reserve is rejected. At the deadline the highest bid wins (ties: earliest
accepted, then bidder id). First-price: the winner pays its bid. Vickrey: the winner pays
the larger of the second-highest bid and the reserve, so a lone bidder pays the reserve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from broker_agents.core.auction.common import (
    Batch,
    Step,
    accept,
    finish,
    fresh_state,
    precheck,
    rank_key,
    reject,
    single_award,
)
from broker_agents.core.auction.types import (
    Admission,
    AuctionConfig,
    AuctionState,
    Bid,
    Mechanism,
    Phase,
    RejectReason,
)


def deadline(state: AuctionState) -> int:
    return state.opened_at + state.config.duration_ticks


def start(config: AuctionConfig, now: int) -> Step:
    return Step(fresh_state(config, now), [])


def submit(
    state: AuctionState, bid: Bid, now: int, admission: Admission | None = None
) -> Step:
    problem = precheck(state, bid, admission) or _problem(
        state, bid, now, any(b.bidder == bid.bidder for b in state.bids))
    if problem is not None:
        return reject(state, bid, *problem)
    return accept(state, bid, now)


def submit_many(
    state: AuctionState, bids: Iterable[Bid], now: int, admissions: Mapping[str, Admission]
) -> Step:
    """``submit`` each bid in order, in one pass (same state and effects as the fold)."""
    batch = Batch(state)
    bidders = {b.bidder for b in state.bids}
    for bid in bids:
        problem = batch.precheck(bid, admissions.get(bid.bidder)) or _problem(
            state, bid, now, bid.bidder in bidders)
        if problem is not None:
            batch.reject(bid, *problem)
        else:
            batch.accept(bid, now)
            bidders.add(bid.bidder)
    return batch.step()


def _problem(
    state: AuctionState, bid: Bid, now: int, has_bid: bool
) -> tuple[RejectReason, str] | None:
    """The sealed-bid rules after the common checks; ``has_bid``: the bidder already bid."""
    if now >= deadline(state):
        return RejectReason.LATE, f"bids closed at tick {deadline(state)}"
    if bid.items and bid.items != (state.config.item,):
        return RejectReason.UNKNOWN_ITEM, f"this auction sells only {state.config.item!r}"
    if has_bid:
        return RejectReason.ALREADY_BID, f"{bid.bidder} already has a sealed bid in this auction"
    if bid.amount < state.config.reserve:
        return RejectReason.BELOW_MINIMUM, (
            f"bid {bid.amount} is below the reserve {state.config.reserve}"
        )
    return None


def tick(state: AuctionState, now: int) -> Step:
    if state.phase is Phase.OPEN and now >= deadline(state):
        return close(state, now, reason="deadline")
    return Step(state, [])


def close(state: AuctionState, now: int, reason: str = "forced") -> Step:
    """Decide now: the highest bid wins; the price follows the mechanism."""
    if state.phase is not Phase.OPEN:
        return Step(state, [])
    ranked = sorted(state.bids, key=rank_key)
    if not ranked:
        return finish(state, now, (), reason="no_bids")
    top = ranked[0]
    tie = len(ranked) > 1 and ranked[1].amount == top.amount
    if state.config.mechanism is Mechanism.VICKREY:
        second = ranked[1].amount if len(ranked) > 1 else 0.0
        price = max(second, state.config.reserve)
    else:
        price = top.amount
    awards = single_award(top, price, state.config.item)
    return finish(state, now, awards, reason=reason, tie_broken=tie)
