"""The client side of PBFT: sign requests, collect replies, know when a result is certain,
with the one core face of ``core/machine.py``:

    effects = client.step(event)   # Submit, a Reply from a replica, or a Tick

A result is certain once f+1 replicas (at least one honest) sent matching replies: that
reply yields an ``Outcome``. A ``Tick`` (the driver's re-send period) yields a ``Send`` of
each request to every replica that has not replied to it yet, since the network may have
dropped the request or the reply. ``Submit`` only signs and records: the driver hands the
signed request (``request(id)``) to the replicas with the group's set-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from broker_agents.core.machine import Tick
from broker_agents.core.pbft.config import PbftConfig, Send
from broker_agents.core.pbft.messages import Reply, Request
from broker_agents.core.pbft.signing import Signer, Verifier, sign_message
from broker_agents.core.pbft.validate import check_message


@dataclass(frozen=True)
class Submit:
    """Order ``operation``; ``request_id`` is unique per client."""

    request_id: str
    operation: str


@dataclass(frozen=True)
class Outcome:
    """What f+1 replicas agree happened to a request."""

    request_id: str
    seq: int
    operation: str


ClientEvent = Submit | Reply | Tick
ClientEffect = Send | Outcome


class PbftClient:
    def __init__(self, cfg: PbftConfig, signer: Signer, verifier: Verifier) -> None:
        self._cfg = cfg
        self._signer = signer
        self._verifier = verifier
        self._requests: dict[str, Request] = {}
        self._replies: dict[str, dict[str, Reply]] = {}
        self._rejected = 0

    def step(self, event: ClientEvent) -> list[ClientEffect]:
        if isinstance(event, Tick):
            return [Send(r, req) for rid, req in self._requests.items()
                    for r in self._cfg.replicas if r not in self._replies[rid]]
        if isinstance(event, Submit):
            req = Request(client=self._signer.identity, request_id=event.request_id,
                          operation=event.operation)
            self._requests[event.request_id] = sign_message(req, self._signer)
            self._replies.setdefault(event.request_id, {})
            return []
        outcome = self._on_reply(event)
        return [outcome] if outcome is not None else []

    def request(self, request_id: str) -> Request:
        """The signed request submitted as ``request_id``."""
        return self._requests[request_id]

    def replies(self, request_id: str) -> Mapping[str, Reply]:
        """The replies accepted for ``request_id``, by replica (read-only)."""
        return self._replies.get(request_id, {})

    @property
    def rejected(self) -> int:
        """Replies refused: bad signature, not ours, or not what we asked."""
        return self._rejected

    def _on_reply(self, reply: Reply) -> Outcome | None:
        """Record a replica's reply; the outcome once f+1 replies match."""
        ok = (
            check_message(reply, self._cfg, self._verifier) == "ok"
            and reply.client == self._signer.identity
            and reply.request_id in self._requests
            and reply.operation == self._requests[reply.request_id].operation
        )
        if not ok:
            self._rejected += 1
            return None
        self._replies[reply.request_id].setdefault(reply.sender, reply)
        counts: dict[tuple[int, str], int] = {}
        for r in self._replies[reply.request_id].values():
            key = (r.seq, r.operation)
            counts[key] = counts.get(key, 0) + 1
            if counts[key] >= self._cfg.faults + 1:
                return Outcome(reply.request_id, r.seq, r.operation)
        return None
