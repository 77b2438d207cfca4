"""RaftClient: propose to / read from a group over NATS, riding out leader changes.

Proposals keep ONE request id across every retry (timeouts, not_leader, no responders),
so the group's replicated dedup table makes a retried write apply at most once. The
client remembers the leader from replies and talks to it directly; without a hint it
uses the group subject, which any member serves (followers forward to the leader).

Proposals go through the connection's ``Coalescer`` (``coalesce.py``): those issued on
one connection in one loop turn, by this client or others, travel as one batch request;
a lone one is the plain request it always was. ``coalesce=False`` sends each alone.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from broker_agents.codec import decode, encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.raft.coalesce import coalescer_for
from broker_agents.subjects import Subjects

MIN_BACKOFF = 0.002
"""First pause (s) when no member can take the request (an election is running): a
transfer's election takes about a round trip and an fsync, so a short first pause finds
the new leader without adding much to the gap; the pause doubles up to ``MAX_BACKOFF``."""

MAX_AT_ONCE = 2
"""Retries without a pause, each toward a newly named leader (a transfer names its target)."""

SUSPECT_ATTEMPT = 0.025
"""Attempt timeout (s) once the group looks leaderless (a timeout, no responders or
``not_leader``): a follower relays a proposal to the leader it last heard of, and a relay
to a dead leader vanishes without a no-responders answer (that reaches only the relaying
member), so every attempt until the election ends waits its whole timeout. With 0.25 s a
kill -9 failover took ~260 ms or, when the election ended just after a retry, ~520 ms.
With 0.05 s (and 0.05 s pauses) failovers fell on the retries, at 186, 269 or 370 ms;
now a retry leaves every 40 ms or so, at most ~40 ms after the election. A retry keeps
the proposal's request id, so it applies at most once."""

MAX_BACKOFF = 0.015
"""Longest pause between retries (s). A retry is one small request; a longer pause only
adds to a failover: with 0.2 s, a leader elected just after a retry waited up to 0.2 s
for the next one (bench failover_ms: ~300 ms, or ~500-580 ms when the election ended just
after a retry). With ``SUSPECT_ATTEMPT`` it sets the retry cadence while leaderless."""


class RaftClient:
    def __init__(self, nc: Any, group: str, subjects: Subjects = Subjects(),  # noqa: B008
                 *, attempt_timeout: float = 0.25, coalesce: bool = True) -> None:
        self.nc, self.group, self.subjects = nc, group, subjects
        self.attempt_timeout = attempt_timeout
        self._batcher = coalescer_for(nc) if coalesce else None
        self.leader: str | None = None
        self.retries = 0

    def _subject(self, kind: str) -> str:
        if self.leader is not None:
            return self.subjects.raft(self.group, self.leader, kind)
        return self.subjects.raft(self.group, kind)

    async def propose(self, command: Any, request_id: str | None = None,
                      timeout: float = 10.0) -> Any:
        rid = request_id or uuid.uuid4().hex
        body = {"command": command, "request_id": rid}
        return await self._call("propose", body, timeout)

    async def read(self, query: Any, timeout: float = 10.0) -> Any:
        return await self._call("read", {"query": query}, timeout)

    async def _call(self, kind: str, body: dict[str, Any], timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        payload = encode(body)
        backoff = MIN_BACKOFF
        at_once = 0  # retries without a pause (stale hints could bounce between members)
        last: BrokerError | None = None
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise last or BrokerError(ErrorCode.TIMEOUT, f"raft {kind} timed out")
            try:
                attempt = self.attempt_timeout if last is None else min(
                    SUSPECT_ATTEMPT, self.attempt_timeout)
                wait = min(attempt, left)
                if kind == "propose" and self._batcher is not None:
                    reply = await self._batcher.request(self._subject(kind), payload, wait)
                else:
                    msg = await self.nc.request(self._subject(kind), payload, timeout=wait)
                    reply = decode(msg.data, msg.headers)
            except (NatsTimeout, NoRespondersError, TimeoutError) as exc:
                last = BrokerError(ErrorCode.TIMEOUT, f"raft {kind}: {type(exc).__name__}")
                self.leader = None  # the member we used may be gone
            else:
                err = BrokerError.from_payload(reply)
                if err is None:
                    self.leader = reply.get("leader") or self.leader
                    return reply["result"]
                if err.code != ErrorCode.NOT_LEADER:
                    raise err
                last = err
                hint = err.details.get("leader")
                moved = isinstance(hint, str) and hint != self.leader
                self.leader = hint
                if moved and at_once < MAX_AT_ONCE:  # a new leader named: ask it at once
                    at_once += 1
                    self.retries += 1
                    continue
            self.retries += 1
            pause = min(backoff, max(0.0, deadline - loop.time()))
            await asyncio.sleep(pause)  # sleep-ok: retry backoff
            backoff = min(backoff * 2, MAX_BACKOFF)
