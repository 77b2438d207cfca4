"""Auction acts and their principals: who may sell, what a winner agrees to, what a
participant may learn of a sealed auction before it closes.

The signatures themselves are checked by ``broker_agents.identity``; these are the rules
that then bind an act to the principal who signed it (``core.identity.bind``):

- **seller**: the authenticated requester of an auction. A client or an observer sells
  only as itself; a node (for an agent it hosts) or an admin (for any account) may name
  the seller, and with no seller named sells as the house (``HOUSE``, "market").
- **award acknowledgement**: a bidder agrees to pay only for awards of auctions it bid
  in, each award naming one of its own bids, at no more than that bid, and in total no
  more than the sum of those bids (``ack_refusal``).
- **sealed bids**: the reply to a bid pushed to a sealed auction (first-price, Vickrey,
  combinatorial) says only that this bid counts, not how many came before it
  (``bid_receipt``); message ids are deduplicated per bidder (``common.seen_key``), so
  nobody can probe, or pre-empt, another bidder's message id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from broker_agents.core.auction.types import Award, BidAccepted, Mechanism
from broker_agents.core.identity import Principal, bind

REQUESTER = ""
"""An auction request's ``seller`` when none is named: the authenticated requester."""

HOUSE = "market"
"""The seller of a node's or an admin's auction that names none (and of every auction of
an unsecured deployment that names none)."""

SEALED = frozenset({Mechanism.FIRST_PRICE, Mechanism.VICKREY, Mechanism.COMBINATORIAL})
"""Mechanisms whose bids nobody but the auctioneer sees before the close."""

EPSILON = 1e-9


def seller_of(principal: Principal | None, claimed: str, *, required: bool) -> str:
    """The seller an auction request may name (``claimed``; ``REQUESTER``: none).

    Raises ``Unauthorized`` for a client naming someone else, and for an unsigned
    request when signatures are ``required``."""
    named = None if claimed == REQUESTER else claimed
    if principal is not None and principal.privileged and principal.acting_for is None:
        return named or HOUSE  # trusted infrastructure or the treasury: any seller
    bound = bind(principal, named, "seller", required=required)
    return bound or HOUSE


@dataclass(frozen=True, slots=True)
class OwnBid:
    """A bid a bidder sent: what it offered for which items."""

    amount: float
    items: tuple[str, ...] = ()


def ack_refusal(own: Mapping[str, OwnBid] | None, auction_id: str,
                awards: Sequence[Award], total: float, me: str) -> str | None:
    """Why a bidder must decline an award (None: it may accept). ``own``: its bids in
    this auction by message id (None: it did not bid there, or forgot it)."""
    if not own:
        return f"{me} did not bid in auction {auction_id}"
    if not awards:
        return "the award names no items"
    offered = 0.0
    for award in awards:
        bid = own.get(award.msg_id)
        if award.bidder != me or bid is None:
            return f"award {award.msg_id!r} is not one of {me}'s bids"
        if award.price > bid.amount + EPSILON:
            return f"price {award.price} exceeds the bid {bid.amount} of {award.msg_id!r}"
        offered += bid.amount
    if not total >= 0.0 or total > offered + EPSILON:  # NaN included
        return f"total {total} exceeds the bids {offered} it awards"
    return None


def bid_receipt(mechanism: Mechanism, accepted: BidAccepted) -> dict[str, Any]:
    """The reply to an accepted pushed bid: all of it for open-cry auctions (English,
    Dutch: the standing bid is public anyway), without the acceptance order for sealed
    ones (it would count the bids before this one)."""
    receipt = accepted.model_dump(mode="json")
    if mechanism in SEALED:
        receipt.pop("seq", None)
    return receipt
