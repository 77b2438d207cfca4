"""Auction mechanisms as pure state machines, with one entry point.

The state is a value the driver keeps in a KV record. ``start`` opens an auction; every
later thing that happens goes through ``step(state, event)``, which returns a ``Step``
(a ``core.machine.Transition``: the next state and the effects). The driver stores the
state with a KV compare-and-set *before* performing the effects (reply to a bidder,
announce a price, publish and settle the outcome), so a crashed auctioneer's successor
loads the stored state and continues with the same calls::

    state, effects = start(config, now, participants)
    call = plan(state)                          # who to ask this round, with what, until when
    state, effects = step(state, CallAnswered(call, answered, bids, now, admissions))
    state, effects = step(state, BidReceived(bid, now, admission))   # a bid pushed to us
    state, effects = step(state, BidsReceived(bids, now, admissions))
    state, effects = step(state, Tick(now))     # on a timer
    state, effects = step(state, Close(now)) / step(state, Abort(now, why))

``now`` is a logical tick shared by all auctioneers (e.g. milliseconds since the epoch).
Every event is idempotent on closed auctions: the state comes back unchanged (apart from
remembering a refused bid's message id) and without ``AuctionClosed``, so at most one
``AuctionClosed`` is ever produced per auction. After the close, the post-close stages
(escrow, award, settlement) follow the transition table in ``settlement``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from broker_agents.core.auction import combinatorial, dutch, english, sealed
from broker_agents.core.auction.common import Step, fold
from broker_agents.core.auction.events import (
    Abort,
    AuctionEvent,
    BidReceived,
    BidsReceived,
    CallAnswered,
    Close,
)
from broker_agents.core.auction.rounds import (
    ROUNDED,
    RoundPlan,
    everyone_answered,
    plan,
    record_answers,
)
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
    Mechanism,
    Outcome,
    PaymentRule,
    Phase,
    PriceAnnounced,
    RejectReason,
)
from broker_agents.core.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from broker_agents.core.machine import Tick

__all__ = [
    "ROUNDED", "Abort", "Admission", "AuctionClosed", "AuctionConfig", "AuctionEvent",
    "AuctionState", "Award", "Bid", "BidAccepted", "BidReceived", "BidRecord", "BidRejected",
    "BidsReceived", "CallAnswered", "Close", "Effect", "Mechanism", "Outcome", "PaymentRule",
    "Phase", "PriceAnnounced", "RejectReason", "RoundPlan", "Step", "Tick", "invited",
    "parse_bid", "parse_config", "parse_state", "plan", "start", "step",
]

_MODULES: dict[Mechanism, ModuleType] = {
    Mechanism.ENGLISH: english,
    Mechanism.DUTCH: dutch,
    Mechanism.FIRST_PRICE: sealed,
    Mechanism.VICKREY: sealed,
    Mechanism.COMBINATORIAL: combinatorial,
}


def _module(state_or_config: AuctionState | AuctionConfig) -> ModuleType:
    config = state_or_config if isinstance(state_or_config, AuctionConfig) \
        else state_or_config.config
    return _MODULES[config.mechanism]


def start(config: AuctionConfig, now: int, participants: Sequence[str] | None = None) -> Step:
    """Open an auction at tick ``now`` for ``participants`` (None: anyone may bid);
    English/Dutch announce their first price."""
    step_: Step = _module(config).start(config, now)
    if participants is None:
        return step_
    opened = step_.state.model_copy(update={"participants": tuple(participants)})
    return Step(opened, step_.effects)


def step(state: AuctionState, event: AuctionEvent) -> Step:
    """The one entry point: what ``event`` does to ``state``."""
    if isinstance(event, BidReceived):
        return _submit(state, event.bid, event.now, event.admission)
    if isinstance(event, BidsReceived):
        return _submit_many(state, event.bids, event.now, event.admissions)
    if isinstance(event, CallAnswered):
        return _call_answered(state, event)
    if isinstance(event, Tick):
        return _tick(state, int(event.now))
    if isinstance(event, Close):
        return _close(state, event.now, event.reason)
    if isinstance(event, Abort):
        return _abort(state, event.now, event.reason)
    raise LocalProtocolError(ErrorCode.INTERNAL,
                             f"an auction takes no {type(event).__name__} event")


def invited(state: AuctionState, bidder: str) -> bool:
    """Whether ``bidder`` may bid at all (drivers skip admission reads for strangers)."""
    return state.participants is None or bidder in state.participants


def _not_invited(state: AuctionState, bid: Bid) -> BidRejected:
    return BidRejected(auction_id=state.config.auction_id, msg_id=bid.msg_id,
                       bidder=bid.bidder, reason=RejectReason.NOT_ELIGIBLE,
                       message=f"{bid.bidder} is not a participant of this auction")


def _submit(
    state: AuctionState, bid: Bid, now: int, admission: Admission | None = None
) -> Step:
    if not invited(state, bid.bidder):
        return Step(state, [_not_invited(state, bid)])
    result: Step = _module(state).submit(state, bid, now, admission)
    return result


def _submit_many(
    state: AuctionState, bids: Iterable[Bid], now: int,
    admissions: Mapping[str, Admission] | None = None,
) -> Step:
    module = _module(state)
    admissions = admissions or {}
    bids = list(bids)
    invitees = None if state.participants is None else frozenset(state.participants)
    if hasattr(module, "submit_many") and (
            invitees is None or all(b.bidder in invitees for b in bids)):
        result: Step = module.submit_many(state, bids, now, admissions)
        return result
    return fold(_submit, state, bids, now, admissions)


def _call_answered(state: AuctionState, event: CallAnswered) -> Step:
    """Judge the answers' bids in arrival order, note who answered, and end the round (or
    close a sealed auction) when every target of the call has answered."""
    state, effects = _submit_many(state, event.bids, event.now, event.admissions)
    state = record_answers(state, event.call, tuple(event.answered))
    if not everyone_answered(state, event.call):
        return Step(state, effects)
    if state.config.mechanism in ROUNDED:
        ended = _tick(state, max(event.call.end, event.now))
    else:
        ended = _close(state, event.now, "all_answered")
    return Step(ended.state, effects + ended.effects)


def _tick(state: AuctionState, now: int) -> Step:
    """Let logical time pass: end rounds, step clocks, close at deadlines."""
    result: Step = _module(state).tick(state, now)
    return result


def _close(state: AuctionState, now: int, reason: str = "forced") -> Step:
    """Decide now by the mechanism's rule (no-op when already closed)."""
    result: Step = _module(state).close(state, now, reason)
    return result


def _abort(state: AuctionState, now: int, reason: str) -> Step:
    """End an open auction without an award (the driver releases any escrow)."""
    if state.phase is not Phase.OPEN:
        return Step(state, [])
    outcome = Outcome(
        auction_id=state.config.auction_id, mechanism=state.config.mechanism, sold=False,
        winner=None, winners=(), awards=(), price=0.0, num_bids=len(state.bids),
        num_participants=len({b.bidder for b in state.bids}), rounds=state.round,
        tie_broken=False, reason=f"aborted: {reason}", closed_at=now,
    )
    new = state.model_copy(update={"phase": Phase.ABORTED, "outcome": outcome})
    return Step(new, [AuctionClosed(outcome=outcome)])


def _parse(model: type[Any], payload: Any, what: str) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or what
        raise RemoteProtocolError(
            ErrorCode.VALIDATION, f"invalid {what}: {field}: {first['msg']}",
            {"field": field, "errors": len(exc.errors())},
        ) from exc


def parse_bid(payload: Any) -> Bid:
    """A bid from decoded wire data, or ``RemoteProtocolError`` naming the bad field."""
    bid: Bid = _parse(Bid, payload, "bid")
    return bid


def parse_config(payload: Any) -> AuctionConfig:
    config: AuctionConfig = _parse(AuctionConfig, payload, "auction config")
    return config


def parse_state(payload: Any) -> AuctionState:
    """Auction state read back from the KV bucket (JSON or msgpack-decoded)."""
    state: AuctionState = _parse(AuctionState, payload, "auction state")
    return state
