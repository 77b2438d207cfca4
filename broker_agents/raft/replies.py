"""How a member answers the clients waiting on it: in-process futures, NATS requesters,
or one item of a batch request (``batch.Slot``: the batch is answered once, when its
last item is decided)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft import Answer, NotLeader, ProposalResult, ReadResult
from broker_agents.raft.batch import Slot


class Remote:
    """A NATS client waiting for a reply; ``request`` is its message, kept so that the
    request can be relayed whole to the leader when the core says so (``Redirect``)."""

    __slots__ = ("as_json", "created", "request", "subject")

    def __init__(self, subject: str, as_json: bool, request: Any = None) -> None:
        self.subject = subject
        self.as_json = as_json
        self.request = request
        self.created = time.monotonic()


Waiter = asyncio.Future[Answer] | Remote | Slot


def reply_payload(reply: Answer, leader: str | None) -> dict[str, Any]:
    payload = item_payload(reply)
    if "error" not in payload:
        payload["leader"] = leader
    return payload


def item_payload(reply: Answer) -> dict[str, Any]:
    """``reply_payload`` without the leader hint: one item of a batch reply."""
    if isinstance(reply, ProposalResult | ReadResult):
        err = BrokerError.from_payload(reply.result)
        if err is not None:
            return err.to_payload()
        return {"result": reply.result, "index": reply.index}
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


class Waiters:
    """Who waits for which request id, and how each is answered.

    ``respond(subject, payload, as_json)`` answers a NATS requester (the one reply path:
    ``broker_agents/reply.py``); ``forget`` tells the core that nobody waits for a
    request id any more.
    """

    __slots__ = ("_by_rid", "_empty", "_forget", "_respond")

    def __init__(self, respond: Callable[[str, Any, bool], Awaitable[object]],
                 forget: Callable[[str], object]) -> None:
        self._by_rid: dict[str, list[Waiter]] = {}
        self._respond = respond
        self._forget = forget
        self._empty: asyncio.Event | None = None  # set while someone waits for "no waiters"

    async def wait_empty(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until nobody waits for an answer; True if so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._by_rid:  # re-checked: a relay pops and puts back in-process waiters
            self._empty = asyncio.Event()
            try:
                await asyncio.wait_for(self._empty.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return False
            finally:
                self._empty = None
        return True

    def _check_empty(self) -> None:
        if self._empty is not None and not self._by_rid:
            self._empty.set()

    def add(self, rid: str, waiter: Waiter) -> None:
        self._by_rid.setdefault(rid, []).append(waiter)

    def put_back(self, rid: str, waiters: list[Waiter]) -> None:
        self._by_rid[rid] = waiters

    def pop(self, rid: str) -> list[Waiter] | None:
        waiters = self._by_rid.pop(rid, None)
        if self._empty is not None:
            self._check_empty()
        return waiters

    def drop(self, rid: str, waiter: Waiter) -> None:
        """``waiter`` gave up; the core forgets ``rid`` once nobody waits for it."""
        waiters = self._by_rid.get(rid)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._by_rid[rid]
                self._forget(rid)
                self._check_empty()

    def expire(self, ttl: float) -> None:
        """Drop NATS requesters older than ``ttl`` seconds (they have given up)."""
        cutoff = time.monotonic() - ttl
        for rid, waiters in list(self._by_rid.items()):
            for w in list(waiters):
                if isinstance(w, Remote | Slot) and w.created < cutoff:
                    self.drop(rid, w)

    async def answer(self, waiters: list[Waiter], reply: Answer, leader: str | None) -> None:
        for w in waiters:
            if isinstance(w, asyncio.Future):
                if not w.done():
                    w.set_result(reply)
            elif isinstance(w, Slot):
                batch = w.batch
                if batch.fill(w.k, item_payload(reply)):
                    await self._respond(batch.subject, batch.reply(leader), batch.as_json)
            else:
                await self._respond(w.subject, reply_payload(reply, leader), w.as_json)

    async def fail_all(self, error: BrokerError) -> None:
        """Answer everyone still waiting with ``error`` (NATS requesters too)."""
        by_rid, self._by_rid = self._by_rid, {}
        self._check_empty()
        for waiters in by_rid.values():
            for w in waiters:
                if isinstance(w, asyncio.Future):
                    if not w.done():
                        w.set_exception(error)
                elif isinstance(w, Slot):
                    if not w.batch.done:  # one answer for the whole batch
                        w.batch.done = True
                        await self._respond(w.batch.subject, error.to_payload(),
                                            w.batch.as_json)
                else:
                    await self._respond(w.subject, error.to_payload(), w.as_json)
