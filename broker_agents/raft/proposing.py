"""How a member takes proposals from NATS: one proposal or a batch (``batch.py``), each
stepped into the core as its own ``Propose``, and how it relays a request whole to the
leader when the core answers ``Redirect``.

A mixin of ``RaftMember`` (driver.py), which provides the attributes declared here.
"""

from __future__ import annotations

from typing import Any

from broker_agents.codec import is_json
from broker_agents.core.errors import BrokerError
from broker_agents.core.raft import Propose, RaftEvent, Redirect
from broker_agents.raft.batch import PendingBatch, Slot
from broker_agents.raft.commands import CommandCheck
from broker_agents.raft.inbound import HOPS, parse_proposals
from broker_agents.raft.metrics import MemberMetrics
from broker_agents.raft.replies import Remote, Waiter, Waiters
from broker_agents.subjects import Subjects


class MemberProposing:
    """The proposal intake of ``RaftMember``."""

    group: str
    subjects: Subjects
    metrics: MemberMetrics
    _running: bool
    _check: CommandCheck
    _waiters: Waiters

    def _step(self, event: RaftEvent) -> bool:
        raise NotImplementedError  # the driver's: it wakes the pump

    async def _publish(self, subject: str, data: bytes, **kw: Any) -> None:
        raise NotImplementedError  # the driver's: a failed publish is a lost message

    async def _refuse_request(self, msg: Any, exc: BrokerError, as_json: bool) -> None:
        raise NotImplementedError  # the driver's: counted, logged, answered

    async def _on_propose(self, msg: Any) -> None:
        if not self._running:
            return
        as_json = is_json(msg.data, msg.headers)
        try:
            items, hops, batched = parse_proposals(msg.data, msg.headers, as_json,
                                                   self._check)
        except BrokerError as exc:
            await self._refuse_request(msg, exc, as_json)
            return
        self.metrics.proposals.inc(len(items))
        self.metrics.proposal_requests.inc()
        if not batched:
            command, rid = items[0]
            if msg.reply:
                self._waiters.add(rid, Remote(msg.reply, as_json, msg))
            self._step(Propose(command, rid, True, hops))
            return
        batch = PendingBatch(msg.reply, as_json, msg, len(items)) if msg.reply else None
        for k, (command, rid) in enumerate(items):
            if batch is not None:
                self._waiters.add(rid, Slot(batch, k))
            if not self._step(Propose(command, rid, True, hops)):
                return  # no longer running: fail_all answers the batch

    async def _relay(self, redirect: Redirect, waiters: list[Waiter]) -> None:
        """Carry out a Redirect: each NATS requester's message (a batch's once) goes to
        the leader as is, with its reply subject and the relay count; in-process callers
        keep waiting."""
        kept: list[Waiter] = [w for w in waiters if not isinstance(w, Remote | Slot)]
        if kept:
            self._waiters.put_back(redirect.request_id, kept)
        subject = self.subjects.raft(self.group, redirect.leader, "propose")
        for w in waiters:
            if isinstance(w, Slot):
                if w.batch.done:
                    continue
                w.batch.done = True  # the leader answers the whole batch
                msg = w.batch.request
            elif isinstance(w, Remote) and w.request is not None:
                msg = w.request
            else:
                continue
            headers = {**(msg.headers or {}), HOPS: str(redirect.hops)}
            await self._publish(subject, msg.data, reply=msg.reply, headers=headers)
