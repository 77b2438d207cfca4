"""Rules every mechanism shares: admission checks, acceptance order, ranking, outcomes.

A mechanism module only decides what is specific to it (minimum bid, when it closes, who
wins); the checks that guarantee "a rejected bid never changes the outcome" live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

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
from broker_agents.core.machine import Transition

EPSILON = 1e-9
"""Tolerance for comparing money sums (combinatorial revenues)."""


@dataclass(frozen=True, slots=True)
class Step(Transition[AuctionState, Effect]):
    """A transition: the state to persist (with CAS) and the effects to perform after.

    It unpacks like a pair: ``state, effects = step(state, event)``.
    """

    effects: list[Effect]

    def __iter__(self) -> Iterator[Any]:
        yield self.state
        yield self.effects


def fresh_state(config: AuctionConfig, now: int) -> AuctionState:
    return AuctionState(config=config, opened_at=now, round_started=now)


def seen_key(bid: Bid) -> str:
    """How ``seen`` remembers a bid message: per bidder (a bidder id is a token, so it
    holds no ':'), so that one bidder cannot probe or pre-empt another's message ids."""
    return f"{bid.bidder}:{bid.msg_id}"


def reject(state: AuctionState, bid: Bid, reason: RejectReason, message: str) -> Step:
    """Record the message id (so a redelivery is a no-op) and reply with the reason.

    Ids of bids for other auctions are not recorded: they are not this auction's to keep.
    """
    key = seen_key(bid)
    skip = _full(state) or key in state.seen or reason is RejectReason.WRONG_AUCTION
    seen = state.seen if skip else (*state.seen, key)
    effect = _rejected(state, bid, reason, message)
    return Step(state.model_copy(update={"seen": seen}), [effect])


def _rejected(state: AuctionState, bid: Bid, reason: RejectReason, message: str) -> BidRejected:
    return BidRejected(
        auction_id=state.config.auction_id, msg_id=bid.msg_id, bidder=bid.bidder,
        reason=reason, message=message,
    )


def _full(state: AuctionState) -> bool:
    return len(state.seen) >= state.config.max_bids


def precheck(
    state: AuctionState, bid: Bid, admission: Admission | None
) -> tuple[RejectReason, str] | None:
    """Checks independent of the mechanism, in a fixed order; None when the bid may proceed."""
    return _precheck(state, state.seen, len(state.seen), bid, admission)


def _precheck(
    state: AuctionState, seen: Container[str], n_seen: int, bid: Bid,
    admission: Admission | None,
) -> tuple[RejectReason, str] | None:
    """``precheck`` against ids ``seen`` so far (``n_seen`` of them): a batch passes a set."""
    cfg = state.config
    if bid.auction_id != cfg.auction_id:
        return RejectReason.WRONG_AUCTION, (
            f"bid is for auction {bid.auction_id!r}, not {cfg.auction_id!r}"
        )
    if seen_key(bid) in seen:
        return RejectReason.DUPLICATE, f"message {bid.msg_id!r} was already processed"
    if state.phase is not Phase.OPEN:
        return RejectReason.CLOSED, f"auction {cfg.auction_id} is {state.phase}"
    if n_seen >= cfg.max_bids:
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
    record, effect = _accepted(state, bid, state.next_seq, now)
    new = state.model_copy(update={
        "bids": (*state.bids, record),
        "seen": (*state.seen, seen_key(bid)),
        "next_seq": state.next_seq + 1,
        **update,
    })
    return Step(new, [effect])


def _accepted(
    state: AuctionState, bid: Bid, seq: int, now: int
) -> tuple[BidRecord, BidAccepted]:
    """The stored record and the reply of an accepted bid.

    Built by the models' validators from a dict: the same validated models as calling the
    classes with keywords, at about half the cost (this runs once per bid)."""
    record: BidRecord = _validate_record({
        "msg_id": bid.msg_id, "bidder": bid.bidder, "amount": bid.amount, "items": bid.items,
        "seq": seq, "tick": now,
    })
    effect: BidAccepted = _validate_accepted({
        "auction_id": state.config.auction_id, "msg_id": bid.msg_id, "bidder": bid.bidder,
        "amount": bid.amount, "seq": seq,
    })
    return record, effect


_validate_record = BidRecord.__pydantic_validator__.validate_python
_validate_accepted = BidAccepted.__pydantic_validator__.validate_python


class Batch:
    """Judges a run of bids against one state and copies the state once, at the end.

    Submitting bids one by one copies the growing ``bids``/``seen`` tuples per bid and scans
    them for duplicates: O(n^2) for n bids. A batch keeps them as lists plus a set (scratch
    local to one call) and gives the same state and effects as the one-by-one fold.
    """

    def __init__(self, state: AuctionState) -> None:
        self.state = state
        self.bids = list(state.bids)
        self.seen = list(state.seen)
        self.seen_set = set(state.seen)
        self.effects: list[Effect] = []
        self.touched = False

    def precheck(self, bid: Bid, admission: Admission | None) -> tuple[RejectReason, str] | None:
        return _precheck(self.state, self.seen_set, len(self.seen), bid, admission)

    def reject(self, bid: Bid, reason: RejectReason, message: str) -> None:
        self.touched = True
        key = seen_key(bid)
        skip = (len(self.seen) >= self.state.config.max_bids or key in self.seen_set
                or reason is RejectReason.WRONG_AUCTION)
        if not skip:
            self._see(key)
        self.effects.append(_rejected(self.state, bid, reason, message))

    def accept(self, bid: Bid, now: int) -> None:
        self.touched = True
        record, effect = _accepted(self.state, bid, self.state.next_seq + self.accepted, now)
        self.bids.append(record)
        self._see(seen_key(bid))
        self.effects.append(effect)

    @property
    def accepted(self) -> int:
        return len(self.bids) - len(self.state.bids)

    def _see(self, msg_id: str) -> None:
        self.seen.append(msg_id)
        self.seen_set.add(msg_id)

    def step(self) -> Step:
        if not self.touched:
            return Step(self.state, [])
        new = self.state.model_copy(update={
            "bids": tuple(self.bids), "seen": tuple(self.seen),
            "next_seq": self.state.next_seq + self.accepted,
        })
        return Step(new, self.effects)


def fold(
    submit: Callable[[AuctionState, Bid, int, Admission | None], Step],
    state: AuctionState, bids: Iterable[Bid], now: int,
    admissions: Mapping[str, Admission],
) -> Step:
    """Submit bids one by one (mechanisms whose bids interact, e.g. English rounds)."""
    effects: list[Effect] = []
    for bid in bids:
        state, more = submit(state, bid, now, admissions.get(bid.bidder))
        effects.extend(more)
    return Step(state, effects)


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


Judge = Callable[[AuctionState, Bid, int, Admission | None], Step]


def submit_on_clock(state: AuctionState, bid: Bid, now: int, admission: Admission | None,
                    tick: Callable[[AuctionState, int], Step], judge: Judge,
                    late_message: str) -> Step:
    """For clocked mechanisms (English rounds, the Dutch clock): advance the clock to
    ``now`` first; a bid that arrives after that closed the auction is late, otherwise the
    mechanism judges it. The clock's own effects come first."""
    was_open = state.phase is Phase.OPEN
    state, effects = tick(state, now)
    if was_open and state.phase is not Phase.OPEN and seen_key(bid) not in state.seen:
        late = reject(state, bid, RejectReason.LATE, late_message)
        return Step(late.state, effects + late.effects)
    step = judge(state, bid, now, admission)
    return Step(step.state, effects + step.effects)

