"""How a member answers the clients waiting on it: in-process futures or NATS requesters."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft import Answer, NotLeader, ProposalResult, ReadResult


class Remote:
    """A NATS client waiting for a reply; ``request`` is its message, kept so that the
    request can be relayed whole to the leader when the core says so (``Redirect``)."""

    __slots__ = ("as_json", "created", "request", "subject")

    def __init__(self, subject: str, as_json: bool, request: Any = None) -> None:
        self.subject = subject
        self.as_json = as_json
        self.request = request
        self.created = time.monotonic()


Waiter = asyncio.Future[Answer] | Remote


def reply_payload(reply: Answer, leader: str | None) -> dict[str, Any]:
    if isinstance(reply, ProposalResult | ReadResult):
        err = BrokerError.from_payload(reply.result)
        if err is not None:
            return err.to_payload()
        return {"result": reply.result, "index": reply.index, "leader": leader}
    if isinstance(reply, NotLeader):
        return BrokerError(ErrorCode.NOT_LEADER, "not the leader",
                           {"leader": reply.leader}).to_payload()
    return BrokerError(reply.code, reply.message).to_payload()


def result_or_raise(reply: Answer) -> Any:
    """The committed result, or the error the reply carries raised as BrokerError."""
    payload = reply_payload(reply, None)
    err = BrokerError.from_payload(payload)
    if err is not None:
        raise err
    return payload["result"]
