"""How a member answers the clients waiting on it: in-process futures or NATS requesters."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft import NotLeader, ProposalResult, ReadResult, Reply


class Remote:
    """A NATS client waiting for a reply."""

    __slots__ = ("as_json", "created", "subject")

    def __init__(self, subject: str, as_json: bool) -> None:
        self.subject = subject
        self.as_json = as_json
        self.created = time.monotonic()


Waiter = asyncio.Future[Reply] | Remote


def reply_payload(reply: Reply, leader: str | None) -> dict[str, Any]:
    if isinstance(reply, ProposalResult | ReadResult):
        err = BrokerError.from_payload(reply.result)
        if err is not None:
            return err.to_payload()
        return {"result": reply.result, "index": reply.index, "leader": leader}
    if isinstance(reply, NotLeader):
        return BrokerError(ErrorCode.NOT_LEADER, "not the leader",
                           {"leader": reply.leader}).to_payload()
    return BrokerError(reply.code, reply.message).to_payload()


def result_or_raise(reply: Reply) -> Any:
    """The committed result, or the error the reply carries raised as BrokerError."""
    payload = reply_payload(reply, None)
    err = BrokerError.from_payload(payload)
    if err is not None:
        raise err
    return payload["result"]
