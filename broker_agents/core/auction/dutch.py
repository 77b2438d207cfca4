"""Dutch (descending clock) auction.

The clock shows ``start_price`` and falls by ``decrement`` every ``round_ticks``. The first
accepted bid whose amount reaches the clock price wins at the clock price (a delayed accept
naming an older, higher price pays the current, lower one). When the next price would fall
below the reserve the auction closes with no sale. Concurrent accepts race: the first one
processed wins and later ones find the auction closed, so ``tie_broken`` is always False.
"""

from __future__ import annotations

from broker_agents.core.auction.common import (
    EPSILON,
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


def price_at(config: AuctionConfig, steps: int) -> float:
    """Clock price after ``steps`` decrements (computed, not accumulated, to avoid drift)."""
    return config.opening_price - steps * config.decrement


def clock_price(state: AuctionState) -> float:
    return price_at(state.config, state.clock_steps)


def _announce(state: AuctionState) -> PriceAnnounced:
    price = clock_price(state)
    return PriceAnnounced(
        auction_id=state.config.auction_id, round=state.round, price=price, min_bid=price,
    )


def start(config: AuctionConfig, now: int) -> Step:
    state = fresh_state(config, now)
    return Step(state, [_announce(state)])


def tick(state: AuctionState, now: int) -> Step:
    """Step the clock for every elapsed period; close once the price would pass the reserve."""
    effects: list[Effect] = []
    cfg = state.config
    while state.phase is Phase.OPEN and now >= state.round_started + cfg.round_ticks:
        step_at = state.round_started + cfg.round_ticks
        if price_at(cfg, state.clock_steps + 1) < cfg.reserve - EPSILON:
            closed = finish(state, step_at, (), reason="reserve_reached", rounds=state.round)
            return Step(closed.state, effects + closed.effects)
        state = state.model_copy(update={
            "clock_steps": state.clock_steps + 1, "round": state.round + 1,
            "round_started": step_at, "answered": (),
        })
        effects.append(_announce(state))
    return Step(state, effects)


def submit(
    state: AuctionState, bid: Bid, now: int, admission: Admission | None = None
) -> Step:
    """Advance the clock to ``now``, then take the accept if it reaches the clock price."""
    return submit_on_clock(state, bid, now, admission, tick, _judge,
                           "the clock passed the reserve")


def _judge(state: AuctionState, bid: Bid, now: int, admission: Admission | None) -> Step:
    problem = precheck(state, bid, admission)
    if problem is not None:
        return reject(state, bid, *problem)
    if bid.items and bid.items != (state.config.item,):
        return reject(state, bid, RejectReason.UNKNOWN_ITEM,
                      f"this auction sells only {state.config.item!r}")
    price = clock_price(state)
    if bid.amount < price - EPSILON:
        return reject(state, bid, RejectReason.BELOW_MINIMUM,
                      f"accept at {bid.amount} is below the clock price {price}")
    accepted = accept(state, bid, now)
    record = accepted.state.bids[-1]
    won = finish(accepted.state, now, single_award(record, price, state.config.item),
                 reason="accepted", rounds=state.round)
    return Step(won.state, accepted.effects + won.effects)


def close(state: AuctionState, now: int, reason: str = "forced") -> Step:
    """Stop the clock without a sale (nobody accepted)."""
    if state.phase is not Phase.OPEN:
        return Step(state, [])
    return finish(state, now, (), reason=reason, rounds=state.round)
