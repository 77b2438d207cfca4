"""Wire and state records shared by every auction mechanism.

Everything here is a frozen pydantic model so that auction state can be stored in a KV
bucket (msgpack or JSON), read back by another auctioneer and continued from exactly where
the first one stopped. Time is a logical tick chosen by the driver (for instance
milliseconds since the epoch), so a successor resumes on the same clock.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from broker_agents.core.errors import ErrorCode
from broker_agents.core.versioning import OpenModel

Money = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
"""A finite, non-negative amount of money."""


class Mechanism(StrEnum):
    ENGLISH = "english"
    DUTCH = "dutch"
    FIRST_PRICE = "first_price"
    VICKREY = "vickrey"
    COMBINATORIAL = "combinatorial"


class PaymentRule(StrEnum):
    """How combinatorial winners pay: their bid, or VCG (externality) payments."""

    PAY_AS_BID = "pay_as_bid"
    VCG = "vcg"


class Phase(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    ABORTED = "aborted"


class RejectReason(StrEnum):
    """Why a bid did not count. None of these ever changes an outcome."""

    WRONG_AUCTION = "wrong_auction"
    CLOSED = "closed"
    LATE = "late"
    DUPLICATE = "duplicate"
    ALREADY_BID = "already_bid"
    BELOW_MINIMUM = "below_minimum"
    UNKNOWN_ITEM = "unknown_item"
    INVALID_BUNDLE = "invalid_bundle"
    NOT_ELIGIBLE = "not_eligible"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    BUDGET_EXCEEDED = "budget_exceeded"
    TOO_MANY_BIDS = "too_many_bids"
    SELF_BID = "self_bid"


REASON_CODES: dict[RejectReason, ErrorCode] = {
    RejectReason.WRONG_AUCTION: ErrorCode.NOT_FOUND,
    RejectReason.CLOSED: ErrorCode.CLOSED,
    RejectReason.LATE: ErrorCode.CLOSED,
    RejectReason.DUPLICATE: ErrorCode.DUPLICATE,
    RejectReason.ALREADY_BID: ErrorCode.DUPLICATE,
    RejectReason.BELOW_MINIMUM: ErrorCode.REJECTED,
    RejectReason.UNKNOWN_ITEM: ErrorCode.VALIDATION,
    RejectReason.INVALID_BUNDLE: ErrorCode.VALIDATION,
    RejectReason.NOT_ELIGIBLE: ErrorCode.REJECTED,
    RejectReason.INSUFFICIENT_FUNDS: ErrorCode.INSUFFICIENT_FUNDS,
    RejectReason.BUDGET_EXCEEDED: ErrorCode.BUDGET_EXCEEDED,
    RejectReason.TOO_MANY_BIDS: ErrorCode.TOO_LARGE,
    RejectReason.SELF_BID: ErrorCode.REJECTED,
}
"""The wire error code a rejection maps to (see ``BidRejected.to_error``)."""


class _Frozen(OpenModel):
    """Parts of auction records and messages: frozen, a newer node's fields kept."""

    model_config = ConfigDict(frozen=True)


class Bid(_Frozen):
    """One bid as it arrives from a bidder agent.

    ``msg_id`` makes redelivery harmless: a second message from the same bidder with the
    same id is ignored (ids are per bidder: nobody can take another bidder's).
    ``items`` is the bundle for combinatorial auctions and empty for single-item ones. In a
    Dutch auction a bid is an *accept*: ``amount`` is the price the bidder agrees to pay at
    most (normally the clock price it saw); the winner pays the auctioneer's clock price.
    """

    auction_id: str = Field(min_length=1)
    msg_id: str = Field(min_length=1, max_length=200)
    bidder: str = Field(min_length=1, max_length=200)
    amount: Money
    items: tuple[str, ...] = ()

    @field_validator("items")
    @classmethod
    def _sorted_items(cls, items: tuple[str, ...]) -> tuple[str, ...]:
        # one bid per answer, mostly single-item: nothing to sort (and no new tuple)
        return items if len(items) < 2 else tuple(sorted(items))


class BidRecord(_Frozen):
    """An accepted bid, stamped with its acceptance order (``seq``) and tick."""

    msg_id: str
    bidder: str
    amount: float
    items: tuple[str, ...] = ()
    seq: int
    tick: int


class Admission(_Frozen):
    """What the driver knows about a bidder at bid time (from the KV buckets).

    ``None`` means "not checked". ``available`` is balance minus reserved funds.
    """

    reputation: float | None = None
    available: float | None = None
    max_per_task: float | None = None


class AuctionConfig(_Frozen):
    """Static parameters of one auction; validated per mechanism.

    Ticks: sealed and combinatorial auctions accept bids for ``duration_ticks`` after
    opening; an English round lasts ``round_ticks``; a Dutch clock steps every
    ``round_ticks``.
    """

    auction_id: str = Field(min_length=1, max_length=200)
    mechanism: Mechanism
    item: str = Field(default="item", min_length=1)
    items: tuple[str, ...] = ()
    seller: str | None = None
    reserve: Money = 0.0
    start_price: Money | None = None
    increment: Money = 1.0
    decrement: Money = 1.0
    round_ticks: int = Field(default=1, ge=1)
    max_rounds: int = Field(default=100, ge=1)
    duration_ticks: int = Field(default=10, ge=1)
    payment: PaymentRule = PaymentRule.PAY_AS_BID
    min_reputation: float | None = Field(default=None, ge=0.0, le=1.0)
    max_bids: int = Field(default=10_000, ge=1)
    exact_work_limit: int = Field(default=2_000_000, ge=0)

    @model_validator(mode="after")
    def _per_mechanism(self) -> Self:
        if self.mechanism is Mechanism.COMBINATORIAL:
            if not self.items:
                raise ValueError("items: a combinatorial auction needs at least one item")
            if len(set(self.items)) != len(self.items):
                raise ValueError("items: item names must be unique")
        if self.mechanism is Mechanism.DUTCH:
            if self.start_price is None:
                raise ValueError("start_price: a Dutch auction needs a start price")
            if self.decrement <= 0:
                raise ValueError("decrement: a Dutch clock must fall (decrement > 0)")
            if self.start_price < self.reserve:
                raise ValueError("start_price: must not be below the reserve")
        return self

    @property
    def opening_price(self) -> float:
        """English/Dutch starting price; defaults to the reserve."""
        return self.reserve if self.start_price is None else self.start_price


class Award(_Frozen):
    """One winning bid: who gets which items for what price."""

    bidder: str
    items: tuple[str, ...]
    bid: float
    price: float
    msg_id: str


class Outcome(_Frozen):
    """The result of an auction, as stored, replied and settled.

    ``price`` is the single winner's payment, or total revenue for combinatorial auctions;
    0.0 when nothing sold. ``exact`` is False only when combinatorial winner determination
    fell back to the greedy approximation. ``reason`` says why the auction ended.
    """

    auction_id: str
    mechanism: Mechanism
    sold: bool
    winner: str | None
    winners: tuple[str, ...]
    awards: tuple[Award, ...]
    price: float
    num_bids: int
    num_participants: int
    rounds: int
    tie_broken: bool
    exact: bool = True
    reason: str
    closed_at: int


class AuctionState(_Frozen):
    """Everything an auctioneer needs to continue an auction; stored under CAS.

    ``standing`` is the English standing bid; ``clock_steps`` the Dutch clock position;
    ``seen`` every message processed (accepted or rejected) as ``bidder:msg_id``
    (``common.seen_key``), so redelivery is a no-op.
    ``participants`` are the invited bidders (None: anyone may bid); ``answered`` who
    answered the current round's call for bids, with or without bids (a new round clears
    it), so an auctioneer that takes the auction over does not call them again. Both
    default for states stored before they existed.
    """

    config: AuctionConfig
    phase: Phase = Phase.OPEN
    opened_at: int
    round: int = 1
    round_started: int
    bid_in_round: bool = False
    clock_steps: int = 0
    standing: BidRecord | None = None
    bids: tuple[BidRecord, ...] = ()
    seen: tuple[str, ...] = ()
    next_seq: int = 0
    outcome: Outcome | None = None
    participants: tuple[str, ...] | None = None
    answered: tuple[str, ...] = ()


# ---- effects: what the driver must do after persisting the new state ----


class BidAccepted(_Frozen):
    """Reply to the bidder: the bid counts."""

    kind: Literal["bid_accepted"] = "bid_accepted"
    auction_id: str
    msg_id: str
    bidder: str
    amount: float
    seq: int


class BidRejected(_Frozen):
    """Reply to the bidder: the bid does not count, and why."""

    kind: Literal["bid_rejected"] = "bid_rejected"
    auction_id: str
    msg_id: str
    bidder: str
    reason: RejectReason
    message: str

    def to_error_payload(self) -> dict[str, object]:
        """The ``{"error": ...}`` reply for the bidder."""
        return {
            "error": {
                "code": str(REASON_CODES[self.reason]),
                "message": self.message,
                "details": {"reason": str(self.reason), "msg_id": self.msg_id},
            }
        }


class PriceAnnounced(_Frozen):
    """Broadcast to bidders: a new English round or a new Dutch clock price."""

    kind: Literal["price_announced"] = "price_announced"
    auction_id: str
    round: int
    price: float
    min_bid: float
    standing_bidder: str | None = None


class AuctionClosed(_Frozen):
    """Broadcast and persist: the auction is over; settle ``outcome`` exactly once."""

    kind: Literal["auction_closed"] = "auction_closed"
    outcome: Outcome


Effect = BidAccepted | BidRejected | PriceAnnounced | AuctionClosed
