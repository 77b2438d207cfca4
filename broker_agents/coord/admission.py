"""Who asks the coordinator, and whether they may: authentication, quotas, bounds.

A signed ``<p>.coord.<protocol>`` request (``broker_agents.identity``) is its signer's: an
admin or a node may speak for someone with ``Ba-For``, and a mis-signed one is refused.
An unsigned request (``nats req`` from any language) is ``anonymous``'s, and may carry no
identity: a lock's holder, a role's candidate or a barrier's participant must be the
signer (``bind``), so those are refused unsigned on a secured deployment. Before it
runs, a request takes a slot of its requester's quota for that protocol
(``core.coord.quota``), so one client flooding barriers or votes exhausts only its own
quota (all unsigned requests share ``anonymous``'s: signing is how a client gets a quota
of its own); the global ``max_inflight`` stays as a last resort. Its numbers are checked
against the deployment's bounds (``core.coord.bounds``).

Every refusal is a structured error (``unauthorized``, ``rate_limited`` with ``reason``
and ``retry_after_ms``, ``validation_error`` naming the fields, ``unavailable`` when
busy), counted in ``ba_coord_refused_total{protocol,reason}`` (unauthorized ones in
``ba_unauthorized_total{component="coord",reason}``) and logged once per window.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from broker_agents import identity
from broker_agents.coord.metrics import COORD_REFUSED
from broker_agents.core.coord import bounds as coord_bounds
from broker_agents.core.coord.bounds import Bounds
from broker_agents.core.coord.quota import Quota, Quotas
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Principal
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog

ANONYMOUS = "anonymous"
"""The requester of every unsigned request (they share one quota)."""
COMPONENT = "coord"

_log = RateLimitedLog(get_logger(component=COMPONENT))


class RequesterQuota(BaseModel):
    """What one requester may do with one coordination protocol."""

    model_config = {"extra": "forbid"}

    inflight: int = Field(32, ge=1, description="requests of one requester running at once "
                          "per protocol; beyond it: rate_limited (requester_inflight)")
    rate_per_s: float = Field(100.0, gt=0, description="sustained requests per second of "
                              "one requester per protocol (a token bucket); beyond it: "
                              "rate_limited (requester_rate) with retry_after_ms")
    burst: int = Field(200, ge=1, description="requests one requester may send at once "
                       "after a quiet spell (the token bucket's size)")

    def core(self) -> Quota:
        return Quota(self.inflight, self.rate_per_s, self.burst)


def refuse(protocol: str, reason: str, err: BrokerError, **fields: Any) -> BrokerError:
    """Count and log (once per window) a refusal; returns it to raise."""
    COORD_REFUSED.labels(protocol, reason).inc()
    _log.info((protocol, reason), "coordination request refused", protocol=protocol,
              reason=reason, code=err.code, **fields)
    return err


class Admission:
    def __init__(self, nc: Any, quotas: Quotas, bounds: Bounds, max_inflight: int) -> None:
        self.nc = nc
        self.quotas = quotas
        self.bounds = bounds
        self.max_inflight = max_inflight

    def enter(self, protocol: str, subject: str, data: bytes,
              headers: dict[str, str] | None, inflight: int) -> tuple[Principal | None, str]:
        """The request's principal and requester, holding one slot of the requester's
        quota (give it back with ``leave``); raises the refusal."""
        if inflight >= self.max_inflight:
            raise refuse(protocol, "busy", BrokerError(
                ErrorCode.UNAVAILABLE, "coordinator is busy, retry", {"inflight": inflight}))
        principal = identity.authenticate(self.nc, subject, data, headers,
                                          component=COMPONENT)
        requester = principal.identity if principal is not None else ANONYMOUS
        refusal = self.quotas.admit(requester, protocol, time.monotonic())
        if refusal is not None:
            raise refuse(protocol, refusal.reason, BrokerError(
                ErrorCode.RATE_LIMITED, f"{requester} is over its {protocol} quota "
                f"({refusal.reason}), retry later",
                {"reason": refusal.reason, "limit": refusal.limit,
                 "retry_after_ms": refusal.retry_after_ms}), requester=requester)
        return principal, requester

    def leave(self, protocol: str, requester: str) -> None:
        self.quotas.release(requester, protocol)

    def check_bounds(self, protocol: str, request: Any) -> None:
        try:
            coord_bounds.check(self.bounds, protocol, request)
        except BrokerError as exc:
            raise refuse(protocol, "bound", exc) from None

    def bind(self, principal: Principal | None, claimed: str | None, what: str) -> str | None:
        """The name an act of ``principal`` carries as ``what`` (a lock's holder, a
        role's candidate): the signer's identity; a different claim is refused."""
        return identity.bind_act(self.nc, principal, claimed, what, component=COMPONENT)
