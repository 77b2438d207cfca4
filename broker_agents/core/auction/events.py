"""What can happen to an open auction: the events ``step(state, event)`` takes.

``now`` is the driver's logical tick (milliseconds since the epoch in the auctioneer); the
core never reads a clock. Admissions are what the driver read from the buckets about a
bidder (funds, per-task cap, reputation) at bid time; None means "not checked".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from broker_agents.core.auction.rounds import RoundPlan
from broker_agents.core.auction.types import Admission, Bid
from broker_agents.core.machine import Tick


@dataclass(frozen=True, slots=True)
class BidReceived:
    """One bid message, e.g. pushed to the auction's bid subject; exactly one
    ``BidAccepted``/``BidRejected`` among the effects. Bids from anyone not invited are
    refused before anything else, and leave the state as it was."""

    bid: Bid
    now: int
    admission: Admission | None = None


@dataclass(frozen=True, slots=True)
class BidsReceived:
    """Bids to judge in this order against one state: the same state and effects as one
    ``BidReceived`` each, computed in one pass where the mechanism allows (sealed bids)."""

    bids: Sequence[Bid]
    now: int
    admissions: Mapping[str, Admission] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """Answers to the call for bids ``call`` (from ``plan``) that arrived since the last
    report: ``answered`` names every target that replied, in arrival order (an unusable
    reply or an absent agent is an answer without bids); ``bids`` are their bids in arrival
    order. When every target has answered, a sealed auction closes (``all_answered``) and a
    round ends at its end tick, in the same transition."""

    call: RoundPlan
    answered: Sequence[str]
    bids: Sequence[Bid]
    now: int
    admissions: Mapping[str, Admission] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Close:
    """Decide now by the mechanism's rule (no effect on a closed auction)."""

    now: int
    reason: str = "forced"


@dataclass(frozen=True, slots=True)
class Abort:
    """End an open auction without an award (the driver then releases any escrow)."""

    now: int
    reason: str


AuctionEvent = BidReceived | BidsReceived | CallAnswered | Tick | Close | Abort
"""Everything ``step`` accepts; ``Tick(now)`` lets logical time pass (rounds end, clocks
step, deadlines close the auction)."""
