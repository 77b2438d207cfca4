"""The client side of PBFT: sign requests, collect replies, know when a result is certain.

A result is accepted once f+1 replicas (at least one honest) sent matching replies. The
driver broadcasts the signed request to every replica and re-sends it every few ticks to
the replicas that have not replied, until it has the replies it wants or its deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker_agents.core.pbft.config import PbftConfig
from broker_agents.core.pbft.messages import Reply, Request
from broker_agents.core.pbft.signing import Signer, Verifier, sign_message
from broker_agents.core.pbft.validate import check_message


@dataclass(frozen=True)
class Outcome:
    """What f+1 replicas agree happened to a request."""

    request_id: str
    seq: int
    operation: str


class PbftClient:
    def __init__(self, cfg: PbftConfig, signer: Signer, verifier: Verifier) -> None:
        self.cfg = cfg
        self.signer = signer
        self.verifier = verifier
        self.requests: dict[str, Request] = {}
        self.replies: dict[str, dict[str, Reply]] = {}
        self.rejected = 0

    def request(self, request_id: str, operation: str) -> Request:
        req = sign_message(
            Request(client=self.signer.identity, request_id=request_id, operation=operation),
            self.signer,
        )
        self.requests[request_id] = req
        self.replies.setdefault(request_id, {})
        return req

    def on_reply(self, reply: Reply) -> Outcome | None:
        """Record a replica's reply; the outcome once f+1 replies match."""
        ok = (
            check_message(reply, self.cfg, self.verifier) == "ok"
            and reply.client == self.signer.identity
            and reply.request_id in self.requests
            and reply.operation == self.requests[reply.request_id].operation
        )
        if not ok:
            self.rejected += 1
            return None
        self.replies[reply.request_id].setdefault(reply.sender, reply)
        return self.outcome(reply.request_id)

    def outcome(self, request_id: str) -> Outcome | None:
        counts: dict[tuple[int, str], int] = {}
        for r in self.replies.get(request_id, {}).values():
            key = (r.seq, r.operation)
            counts[key] = counts.get(key, 0) + 1
            if counts[key] >= self.cfg.faults + 1:
                return Outcome(request_id, r.seq, r.operation)
        return None

    def missing(self, request_id: str) -> list[str]:
        """Replicas that have not replied to ``request_id`` (to re-send the request to)."""
        got = self.replies.get(request_id, {})
        return [r for r in self.cfg.replicas if r not in got]
