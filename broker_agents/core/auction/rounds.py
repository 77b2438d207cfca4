"""Calls for bids: who is asked in the current round, with what, until when.

The driver sends one call per round to the plan's ``targets`` and reports what came back
(``CallAnswered``); the core decides what the answers mean. Who already answered this
round is part of the stored state, so an auctioneer that takes over mid-round asks only
those still silent.

- English: everyone but the standing bidder (it cannot raise against itself), at the
  standing price, with the next minimum bid; the round ends ``round_ticks`` after it began.
- Dutch: everyone, at the clock price; the clock steps ``round_ticks`` after the last step.
- Sealed and combinatorial: everyone who has neither bid nor answered; bidding ends
  ``duration_ticks`` after the opening.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker_agents.core.auction import dutch, english
from broker_agents.core.auction.types import AuctionState, Mechanism, Phase

ROUNDED = frozenset({Mechanism.ENGLISH, Mechanism.DUTCH})
"""Mechanisms that go in rounds (a call per round); the others have one bidding period."""


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """One call for bids: the round it belongs to, who gets it, what it says, its end tick.

    ``price``, ``min_bid`` and ``standing_bidder`` are None where the mechanism has none
    (sealed bids); ``end`` is the call's deadline, the tick at which the round (or the
    bidding) ends.
    """

    round: int
    targets: tuple[str, ...]
    end: int
    price: float | None = None
    min_bid: float | None = None
    standing_bidder: str | None = None


def plan(state: AuctionState) -> RoundPlan:
    """The call for bids of the current round (no targets once the auction is over)."""
    cfg = state.config
    invited = state.participants or ()
    answered = set(state.answered)
    if cfg.mechanism is Mechanism.ENGLISH:
        end = state.round_started + cfg.round_ticks
        standing = state.standing
        bidder = standing.bidder if standing is not None else None
        price = cfg.opening_price if standing is None else standing.amount
        targets = tuple(p for p in invited if p != bidder and p not in answered)
        result = RoundPlan(round=state.round, targets=targets, end=end, price=price,
                           min_bid=english.min_bid(state), standing_bidder=bidder)
    elif cfg.mechanism is Mechanism.DUTCH:
        end = state.round_started + cfg.round_ticks
        price = dutch.clock_price(state)
        targets = tuple(p for p in invited if p not in answered)
        result = RoundPlan(round=state.round, targets=targets, end=end, price=price,
                           min_bid=price)
    else:
        have = answered | {b.bidder for b in state.bids}
        result = RoundPlan(round=state.round, targets=tuple(p for p in invited if p not in have),
                           end=state.opened_at + cfg.duration_ticks)
    if state.phase is not Phase.OPEN:
        return RoundPlan(round=result.round, targets=(), end=result.end)
    return result


def record_answers(state: AuctionState, call: RoundPlan, answered: tuple[str, ...]
                   ) -> AuctionState:
    """Add the call's targets among ``answered`` to the round's answered set (open auction,
    same round only: answers to an older round's call say nothing about this one)."""
    if state.phase is not Phase.OPEN or state.round != call.round:
        return state
    have = set(state.answered)
    targets = set(call.targets)
    new = tuple(dict.fromkeys(a for a in answered if a in targets and a not in have))
    if not new:
        return state
    return state.model_copy(update={"answered": (*state.answered, *new)})


def everyone_answered(state: AuctionState, call: RoundPlan) -> bool:
    """Every target of the call has answered, and the call's round is still running."""
    if state.phase is not Phase.OPEN or state.round != call.round:
        return False
    have = set(state.answered)
    return all(t in have for t in call.targets)
