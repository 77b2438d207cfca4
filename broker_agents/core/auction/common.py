"""Rules every mechanism shares: admission checks, acceptance order, ranking, outcomes.

A mechanism module only decides what is specific to it (minimum bid, when it closes, who
wins); the checks that guarantee "a rejected bid never changes the outcome" live here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from broker_agents.core.auction.types import (
    Admission,
    AuctionClosed,
    AuctionConfig,
    AuctionState,
    Award,
    Bid,
    BidAccepted,
    BidRecord,
    BidRejected,
    Effect,
    Outcome,
    Phase,
    RejectReason,
)

EPSILON = 1e-9
"""Tolerance for comparing money sums (combinatorial revenues)."""


class Step(NamedTuple):
    """A transition: the state to persist (with CAS) and the effects to perform after."""

    state: AuctionState
    effects: list[Effect]


def fresh_state(config: AuctionConfig, now: int) -> AuctionState:
    return AuctionState(config=config, opened_at=now, round_started=now)


def reject(state: AuctionState, bid: Bid, reason: RejectReason, message: str) -> Step:
    """Record the message id (so a redelivery is a no-op) and reply with the reason.

    Ids of bids for other auctions are not recorded: they are not this auction's to keep.
    """
    skip = _full(state) or bid.msg_id in state.seen or reason is RejectReason.WRONG_AUCTION
    seen = state.seen if skip else (*state.seen, bid.msg_id)
    effect = BidRejected(
        auction_id=state.config.auction_id, msg_id=bid.msg_id, bidder=bid.bidder,
        reason=reason, message=message,
    )
    return Step(state.model_copy(update={"seen": seen}), [effect])


def _full(state: AuctionState) -> bool:
    return len(state.seen) >= state.config.max_bids


def precheck(
    state: AuctionState, bid: Bid, admission: Admission | None
) -> tuple[RejectReason, str] | None:
    """Checks independent of the mechanism, in a fixed order; None when the bid may proceed."""
    cfg = state.config
    if bid.auction_id != cfg.auction_id:
        return RejectReason.WRONG_AUCTION, (
            f"bid is for auction {bid.auction_id!r}, not {cfg.auction_id!r}"
        )
    if bid.msg_id in state.seen:
        return RejectReason.DUPLICATE, f"message {bid.msg_id!r} was already processed"
    if state.phase is not Phase.OPEN:
        return RejectReason.CLOSED, f"auction {cfg.auction_id} is {state.phase}"
    if _full(state):
        return RejectReason.TOO_MANY_BIDS, (
            f"auction {cfg.auction_id} takes at most {cfg.max_bids} bid messages"
        )
    if cfg.seller is not None and bid.bidder == cfg.seller:
        return RejectReason.SELF_BID, "the seller may not bid in its own auction"
    return _admission_check(cfg, bid, admission)


def _admission_check(
    cfg: AuctionConfig, bid: Bid, admission: Admission | None
) -> tuple[RejectReason, str] | None:
    if admission is None:
        return None
    if cfg.min_reputation is not None:
        score = 0.5 if admission.reputation is None else admission.reputation
        if score < cfg.min_reputation:
            return RejectReason.NOT_ELIGIBLE, (
                f"reputation {score:.3f} is below the minimum {cfg.min_reputation:.3f}"
            )
    if admission.max_per_task is not None and bid.amount > admission.max_per_task:
        return RejectReason.BUDGET_EXCEEDED, (
            f"cost {bid.amount} exceeds the maximum per-task budget {admission.max_per_task}"
        )
    if admission.available is not None and bid.amount > admission.available:
        return RejectReason.INSUFFICIENT_FUNDS, (
            f"bid {bid.amount} exceeds available funds {admission.available}"
        )
    return None


def accept(state: AuctionState, bid: Bid, now: int, **update: object) -> Step:
    """Append the bid with the next acceptance number; extra fields update the state."""
    record = BidRecord(
        msg_id=bid.msg_id, bidder=bid.bidder, amount=bid.amount, items=bid.items,
        seq=state.next_seq, tick=now,
    )
    new = state.model_copy(update={
        "bids": (*state.bids, record),
        "seen": (*state.seen, bid.msg_id),
        "next_seq": state.next_seq + 1,
        **update,
    })
    effect = BidAccepted(
        auction_id=state.config.auction_id, msg_id=bid.msg_id, bidder=bid.bidder,
        amount=bid.amount, seq=record.seq,
    )
    return Step(new, [effect])


def rank_key(record: BidRecord) -> tuple[float, int, str]:
    """Highest amount first, then the earliest accepted, then bidder id."""
    return (-record.amount, record.seq, record.bidder)


def participants(bids: Iterable[BidRecord]) -> int:
    return len({b.bidder for b in bids})


def finish(
    state: AuctionState,
    now: int,
    awards: tuple[Award, ...],
    *,
    reason: str,
    tie_broken: bool = False,
    exact: bool = True,
    rounds: int = 1,
) -> Step:
    """Close the auction with these awards and emit the one ``AuctionClosed`` effect."""
    winners = tuple(dict.fromkeys(a.bidder for a in awards))
    outcome = Outcome(
        auction_id=state.config.auction_id,
        mechanism=state.config.mechanism,
        sold=bool(awards),
        winner=winners[0] if len(winners) == 1 else None,
        winners=winners,
        awards=awards,
        price=sum(a.price for a in awards),
        num_bids=len(state.bids),
        num_participants=participants(state.bids),
        rounds=rounds,
        tie_broken=tie_broken and bool(awards),
        exact=exact,
        reason=reason,
        closed_at=now,
    )
    new = state.model_copy(update={"phase": Phase.CLOSED, "outcome": outcome})
    return Step(new, [AuctionClosed(outcome=outcome)])


def single_award(record: BidRecord, price: float, item: str) -> tuple[Award, ...]:
    return (Award(bidder=record.bidder, items=(item,), bid=record.amount, price=price,
                  msg_id=record.msg_id),)
