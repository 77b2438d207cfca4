"""Auction mechanisms as pure state machines.

Drive any mechanism through four functions; each returns a ``Step(state, effects)``. The
driver stores ``state`` with a KV compare-and-set *before* performing the effects (reply to
a bidder, announce a price, publish and settle the outcome), so a crashed auctioneer's
successor loads the stored state and continues with the same calls::

    state, effects = start(config, now)
    state, effects = submit(state, bid, now, admission)   # for every bid message
    state, effects = submit_many(state, bids, now, admissions)  # or a batch of them
    state, effects = tick(state, now)                     # on a timer
    state, effects = close(state, now) / abort(state, now, why)

``now`` is a logical tick shared by all auctioneers (e.g. milliseconds since the epoch).
All functions are idempotent on closed auctions: they return the state unchanged and no
effects, so at most one ``AuctionClosed`` is ever produced per auction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from broker_agents.core.auction import combinatorial, dutch, english, sealed
from broker_agents.core.auction.common import Step, fold
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
from broker_agents.core.errors import ErrorCode, RemoteProtocolError

__all__ = [
    "Admission", "AuctionClosed", "AuctionConfig", "AuctionState", "Award", "Bid",
    "BidAccepted", "BidRecord", "BidRejected", "Effect", "Mechanism", "Outcome",
    "PaymentRule", "Phase", "PriceAnnounced", "RejectReason", "Step", "abort", "close",
    "parse_bid", "parse_config", "parse_state", "start", "submit", "submit_many", "tick",
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


def start(config: AuctionConfig, now: int) -> Step:
    """Open an auction at tick ``now`` (English/Dutch announce their first price)."""
    step: Step = _module(config).start(config, now)
    return step


def submit(
    state: AuctionState, bid: Bid, now: int, admission: Admission | None = None
) -> Step:
    """Judge one bid message: exactly one ``BidAccepted``/``BidRejected`` among the effects."""
    step: Step = _module(state).submit(state, bid, now, admission)
    return step


def submit_many(
    state: AuctionState, bids: Iterable[Bid], now: int,
    admissions: Mapping[str, Admission] | None = None,
) -> Step:
    """``submit`` every bid in order (``admissions`` per bidder): the same state and effects
    as the one-by-one fold, computed in one pass where the mechanism allows (sealed bids)."""
    module = _module(state)
    admissions = admissions or {}
    if hasattr(module, "submit_many"):
        step: Step = module.submit_many(state, bids, now, admissions)
        return step
    return fold(module.submit, state, bids, now, admissions)


def tick(state: AuctionState, now: int) -> Step:
    """Let logical time pass: end rounds, step clocks, close at deadlines."""
    step: Step = _module(state).tick(state, now)
    return step


def close(state: AuctionState, now: int, reason: str = "forced") -> Step:
    """Decide now by the mechanism's rule (no-op when already closed)."""
    step: Step = _module(state).close(state, now, reason)
    return step


def abort(state: AuctionState, now: int, reason: str) -> Step:
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
