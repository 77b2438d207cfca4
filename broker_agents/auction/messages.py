"""Wire models of the auction choreography and of its external request/reply API.

External: ``AuctionRequest`` on ``<p>.coord.auction`` (JSON or msgpack) is answered with an
``AuctionResult`` (also published on ``<p>.auction.<id>.result``) or a structured error.
Between agents: ``Announce`` (auctioneer -> bidder, answered with ``BidAnswer``),
``BidNotice`` (one-way: a bid of yours did not count), ``AwardNotice`` (-> ``AwardAck``).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from broker_agents.core.auction import AuctionConfig, Award, Bid, Mechanism, Outcome, PaymentRule
from broker_agents.core.auction.acts import REQUESTER
from broker_agents.core.errors import ErrorCode, RemoteProtocolError
from broker_agents.core.reputation import Violation
from broker_agents.core.tokens import TOKEN
from broker_agents.core.versioning import (
    StrictVersionedModel,
    VersionedModel,
    refusal,
    refuse_unknown,
)

Money = float


def _token(value: str, field: str) -> str:
    if not TOKEN.match(value):
        raise ValueError(f"{field}: {value!r} must use only letters, digits, '_' and '-'")
    return value


class AuctionRequest(VersionedModel):
    """Run one whole auction. Participants: ``participants`` or else ``capability``."""

    model_config = ConfigDict(frozen=True)

    op: Literal["run"] = "run"
    type: Mechanism
    item: str = Field(default="item", min_length=1, max_length=200)
    items: tuple[str, ...] = ()
    capability: str | None = None
    participants: tuple[str, ...] | None = None
    reserve: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    start_price: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    increment: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    decrement: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    round_ms: int = Field(default=1000, ge=1, le=600_000)
    max_rounds: int = Field(default=100, ge=1, le=100_000)
    duration_ms: int = Field(default=2000, ge=1, le=600_000)
    award_timeout_ms: int = Field(default=2000, ge=1, le=600_000)
    payment: PaymentRule = PaymentRule.PAY_AS_BID
    min_reputation: float | None = Field(default=None, ge=0.0, le=1.0)
    seller: str = Field(default=REQUESTER, max_length=200)
    """Who sells, and is paid: the authenticated requester (the default, ``REQUESTER``);
    a node or an admin may name another seller (``auctioneer`` binds it,
    ``core.auction.acts.seller_of``)."""
    budgets: bool = True
    auction_id: str | None = Field(default=None, min_length=1, max_length=120)
    max_participants: int = Field(default=1000, ge=1, le=10_000)

    @field_validator("capability")
    @classmethod
    def _cap(cls, value: str | None) -> str | None:
        return None if value is None else _token(value, "capability")

    @field_validator("seller")
    @classmethod
    def _seller(cls, value: str) -> str:
        return value if value == REQUESTER else _token(value, "seller")

    @field_validator("auction_id")
    @classmethod
    def _aid(cls, value: str | None) -> str | None:
        return None if value is None else _token(value, "auction_id")

    @field_validator("participants")
    @classmethod
    def _parts(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        for p in value:
            _token(p, "participants")
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _who(self) -> Self:
        if self.participants is None and self.capability is None:
            raise ValueError("capability: give a capability or an explicit participants list")
        return self

    def to_config(self, auction_id: str) -> AuctionConfig:
        """The core's config; ``ms`` durations become ticks (the driver's tick is 1 ms)."""
        return AuctionConfig(
            auction_id=auction_id, mechanism=self.type, item=self.item, items=self.items,
            seller=self.seller or None, reserve=self.reserve, start_price=self.start_price,
            increment=self.increment, decrement=self.decrement, round_ticks=self.round_ms,
            max_rounds=self.max_rounds, duration_ticks=self.duration_ms,
            payment=self.payment, min_reputation=self.min_reputation,
        )


_FIELD_IN_MSG = re.compile(r"^(?:Value error, )?([A-Za-z_][A-Za-z0-9_.]*):")


def validation_error(exc: ValidationError, what: str) -> RemoteProtocolError:
    """A ``validation_error`` naming the first offending field (``unsupported_version``
    when the message is of a newer schema)."""
    newer = refusal(exc)
    if newer is not None:
        return RemoteProtocolError(newer.code, newer.message, newer.details)
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"] if not isinstance(p, int))
    if not field:
        found = _FIELD_IN_MSG.match(str(first["msg"]))
        field = found.group(1) if found else what
    return RemoteProtocolError(
        ErrorCode.VALIDATION, f"invalid {what}: {field}: {first['msg']}",
        {"field": field, "errors": len(exc.errors())},
    )


def parse_request(payload: Any) -> AuctionRequest:
    if not isinstance(payload, dict):
        raise RemoteProtocolError(ErrorCode.MALFORMED, "an auction request must be an object",
                                  {"field": "<root>", "got": type(payload).__name__})
    try:
        refuse_unknown(AuctionRequest, payload, "auction request")
        return AuctionRequest.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc, "auction request") from exc


def build_config(request: AuctionRequest, auction_id: str) -> AuctionConfig:
    try:
        return request.to_config(auction_id)
    except ValidationError as exc:
        raise validation_error(exc, "auction request") from exc


class ReportRequest(StrictVersionedModel):
    """Reputation report by one party of a settled auction about the other: an outcome
    (``quality`` and ``satisfaction``) or a ``violation``. The reporter is the signer
    (``reporter`` may be left out; when given it must be the signer)."""

    model_config = ConfigDict(frozen=True)

    op: Literal["report"]
    reporter: str | None = Field(default=None, min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=200)
    auction_id: str = Field(min_length=1, max_length=120)
    quality: float | None = None
    satisfaction: float | None = None
    violation: Violation | None = None

    @model_validator(mode="after")
    def _what(self) -> Self:
        outcome = self.quality is not None and self.satisfaction is not None
        if outcome == (self.violation is not None):
            raise ValueError("violation: give quality and satisfaction, or a violation")
        return self


class AuctionResult(VersionedModel):
    """The reply to a run request: the outcome plus how settlement went."""

    auction_id: str
    mechanism: Mechanism
    status: str
    sold: bool
    winner: str | None
    winners: list[str]
    allocation: dict[str, list[str]]
    prices: dict[str, float]
    price: float
    num_bids: int
    num_participants: int
    invited: int
    rounds: int
    tie_broken: bool
    exact: bool
    reason: str
    settled: bool
    seller: str
    duration_ms: float
    auctioneer: str
    takeovers: int = 0
    failure: str | None = None
    bids_ms: float | None = None
    """Time the calls for bids took, from sending them until every target answered (or the
    round ended), summed over rounds, as the auctioneer that finished the auction saw it
    (only the rounds it ran itself). The fan-out part of ``duration_ms``."""


def allocation_of(outcome: Outcome) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Items and total payment per winner."""
    alloc: dict[str, list[str]] = {}
    prices: dict[str, float] = {}
    for award in outcome.awards:
        alloc.setdefault(award.bidder, []).extend(award.items)
        prices[award.bidder] = prices.get(award.bidder, 0.0) + award.price
    return alloc, prices


# ---- between agents ----------------------------------------------------------------------


class Announce(VersionedModel):
    """A call for bids: the auction, and for English/Dutch the current round and price."""

    message_type: ClassVar[str] = "auction.announce"

    config: AuctionConfig
    round: int = 1
    price: float | None = None
    min_bid: float | None = None
    standing_bidder: str | None = None
    deadline_ms: int


class BidAnswer(VersionedModel):
    """A bidder's answer to an ``Announce``: zero or more bids (empty: stays out)."""

    message_type: ClassVar[str] = "auction.bid_answer"

    bids: list[Bid] = Field(default_factory=list, max_length=1000)


class BidNotice(VersionedModel):
    """One-way to a bidder: a bid it sent did not count, and why."""

    message_type: ClassVar[str] = "auction.bid_notice"

    auction_id: str
    msg_id: str
    reason: str
    message: str


class AwardNotice(VersionedModel):
    """To a winner: what it won and what it pays; answered with ``AwardAck``."""

    message_type: ClassVar[str] = "auction.award"

    auction_id: str
    awards: list[Award]
    total: float
    seller: str


class AwardAck(VersionedModel):
    """A winner's signed answer to its ``AwardNotice``: it agrees to pay ``total`` to
    ``seller`` for this auction (``accepted``), or declines and says why. Stored as
    settlement's evidence."""

    message_type: ClassVar[str] = "auction.award_ack"

    auction_id: str
    bidder: str
    accepted: bool = True
    total: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    seller: str | None = Field(default=None, max_length=200)
    """Whom it agrees to pay (the notice's seller): settlement pays no one else."""
    reason: str | None = Field(default=None, max_length=500)


class DiscoverCall(VersionedModel):
    """Fallback discovery (no registry on the node): bidders with the capability answer."""

    capability: str


class DiscoverAnswer(VersionedModel):
    agent_id: str
    node_id: str
