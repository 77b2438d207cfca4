"""English (ascending) auction in rounds.

The standing price starts at ``start_price`` (default: the reserve). A bid must beat the
standing bid by at least ``increment`` (and strictly); the first bid must reach the start
price. A round lasts ``round_ticks``; the auction ends after a round with no new bid or
after ``max_rounds``. The standing bidder wins and pays its bid if that reaches the reserve.
Bids cannot tie (each must beat the last), so ``tie_broken`` is always False; two bids at
the same price race and the later one is rejected as below the minimum.
"""

from __future__ import annotations

from broker_agents.core.auction.common import (
    Step,
    accept,
    finish,
    fresh_state,
    precheck,
    reject,
    single_award,
    submit_on_clock,
)
from broker_agents.core.auction.types import (
    Admission,
    AuctionConfig,
    AuctionState,
    Bid,
    Effect,
    Phase,
    PriceAnnounced,
    RejectReason,
)


def min_bid(state: AuctionState) -> float:
    """The lowest amount the next bid may name."""
    if state.standing is None:
        return state.config.opening_price
    return state.standing.amount + state.config.increment


def _announce(state: AuctionState) -> PriceAnnounced:
    standing = state.standing
    return PriceAnnounced(
        auction_id=state.config.auction_id, round=state.round,
        price=state.config.opening_price if standing is None else standing.amount,
        min_bid=min_bid(state), standing_bidder=None if standing is None else standing.bidder,
    )


def start(config: AuctionConfig, now: int) -> Step:
    state = fresh_state(config, now)
    return Step(state, [_announce(state)])


def submit(
    state: AuctionState, bid: Bid, now: int, admission: Admission | None = None
) -> Step:
    """Advance the round clock to ``now`` first, then judge the bid against the standing."""
    return submit_on_clock(state, bid, now, admission, tick, _judge,
                           "the auction ended before this bid")


def _judge(state: AuctionState, bid: Bid, now: int, admission: Admission | None) -> Step:
    problem = precheck(state, bid, admission)
    if problem is not None:
        return reject(state, bid, *problem)
    if bid.items and bid.items != (state.config.item,):
        return reject(state, bid, RejectReason.UNKNOWN_ITEM,
                      f"this auction sells only {state.config.item!r}")
    standing = state.standing
    if standing is not None and standing.bidder == bid.bidder:
        return reject(state, bid, RejectReason.ALREADY_BID,
                      f"{bid.bidder} already holds the standing bid")
    floor = min_bid(state)
    if bid.amount < floor or (standing is not None and bid.amount <= standing.amount):
        return reject(state, bid, RejectReason.BELOW_MINIMUM,
                      f"bid {bid.amount} is below the minimum {floor}")
    step = accept(state, bid, now, bid_in_round=True)
    return Step(step.state.model_copy(update={"standing": step.state.bids[-1]}), step.effects)


def tick(state: AuctionState, now: int) -> Step:
    """End every round whose time is up; close or announce the next round."""
    effects: list[Effect] = []
    cfg = state.config
    while state.phase is Phase.OPEN and now >= state.round_started + cfg.round_ticks:
        round_end = state.round_started + cfg.round_ticks
        if not state.bid_in_round:
            closed = close(state, round_end, reason="no_new_bid")
            return Step(closed.state, effects + closed.effects)
        if state.round >= cfg.max_rounds:
            closed = close(state, round_end, reason="round_limit")
            return Step(closed.state, effects + closed.effects)
        state = state.model_copy(update={
            "round": state.round + 1, "round_started": round_end, "bid_in_round": False,
            "answered": (),
        })
        effects.append(_announce(state))
    return Step(state, effects)


def close(state: AuctionState, now: int, reason: str = "forced") -> Step:
    if state.phase is not Phase.OPEN:
        return Step(state, [])
    top = state.standing
    if top is None:
        return finish(state, now, (), reason="no_bids", rounds=state.round)
    if top.amount < state.config.reserve:
        return finish(state, now, (), reason="below_reserve", rounds=state.round)
    awards = single_award(top, top.amount, state.config.item)
    return finish(state, now, awards, reason=reason, rounds=state.round)
