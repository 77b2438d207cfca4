"""Request/response models the IO layer adds to the core's: barrier arrivals, locks,
leader election, the ``auto`` reply and the error envelope (all exported as JSON Schema).

Names that become subject tokens or KV keys (barrier ids, lock names, roles, holders) are
restricted to letters, digits, ``_`` and ``-`` so a request can never address a wildcard.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from broker_agents.core.coord.models import BarrierRequest, Selection
from broker_agents.core.tokens import TOKEN_PATTERN


def _token(description: str) -> Any:
    return Field(min_length=1, max_length=128, pattern=TOKEN_PATTERN, description=description)


class BarrierArrival(BarrierRequest):
    """``ba.coord.barrier``: ``participant`` arrives at ``barrier_id``; the reply comes when
    everyone arrived (a ``BarrierResult``) or at the deadline (a ``timeout`` error naming
    who never arrived). The first arrival fixes participants and deadline."""

    barrier_id: str = _token("barrier name")
    participant: str = _token("who is arriving (one of participants)")


class LockAction(StrEnum):
    ACQUIRE = "acquire"
    RENEW = "renew"
    RELEASE = "release"
    QUERY = "query"


class LockRequest(BaseModel):
    """``ba.coord.lock``: a lease on ``name`` held by ``holder`` for ``ttl_ms``.

    ``acquire`` grants a new fencing token (strictly greater than every earlier one for
    the name) when the lock is free or expired; the current holder acquiring again keeps
    its token. ``renew`` extends the holder's lease (``token`` must match), ``release``
    frees it; ``query`` reads it. ``wait_ms`` > 0 makes ``acquire`` wait for the lock.
    """

    action: LockAction = Field(default=LockAction.ACQUIRE, description="what to do")
    name: str = _token("lock name")
    holder: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=TOKEN_PATTERN,
        description="who holds / wants the lock: the signer's identity (the default); any "
                    "other name is refused as unauthorized")
    ttl_ms: int = Field(default=10_000, ge=10, le=3_600_000, description="lease length")
    token: int | None = Field(default=None, ge=1, description="renew/release: fencing token")
    wait_ms: int = Field(default=0, ge=0, le=600_000, description="acquire: wait this long")


class LockResult(BaseModel):
    name: str
    granted: bool = Field(description="the caller holds the lock after this request")
    holder: str | None = Field(description="current holder (null when free)")
    token: int = Field(ge=0, description="fencing token of the current (or last) grant")
    expires_at_ms: int | None = Field(description="epoch ms when the lease lapses")
    reason: str | None = Field(default=None, description="why it was not granted")


class LeaderAction(StrEnum):
    CAMPAIGN = "campaign"
    RESIGN = "resign"
    QUERY = "query"


class LeaderRequest(BaseModel):
    """``ba.coord.leader``: leadership of ``role`` is a KV lease with a fencing token.

    ``campaign`` makes ``candidate`` leader if the role is vacant or its lease lapsed (or
    renews it if it already leads); ``resign`` steps down; ``query`` says who leads.
    A leader must campaign again (renew) within ``ttl_ms``; failover is bounded by it.
    """

    action: LeaderAction = Field(default=LeaderAction.QUERY, description="what to do")
    role: str = _token("role name, e.g. auctioneer")
    candidate: str | None = Field(default=None, min_length=1, max_length=128, pattern=TOKEN_PATTERN,
                                  description="campaign/resign: the candidate, the signer's "
                                  "identity (the default); any other name is refused")
    ttl_ms: int = Field(default=3000, ge=10, le=3_600_000, description="lease length")


class LeaderResult(BaseModel):
    role: str
    leader: str | None = Field(description="current leader (null when vacant)")
    token: int = Field(ge=0, description="fencing token (term) of the current leadership")
    is_leader: bool = Field(description="the candidate leads after this request")
    expires_at_ms: int | None = None


class AutoResult(BaseModel):
    selection: Selection = Field(description="the protocol picked and why")
    result: dict[str, Any] = Field(description="the picked protocol's result")


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. validation_error")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorReply(BaseModel):
    """What any coordination request gets instead of a result when it fails."""

    error: ErrorBody
