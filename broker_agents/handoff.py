"""Moving a running agent to another node with no message lost and none handled twice.

NATS has no hand-off. Removing a plain subscription while another server still routes to
it drops what is in flight (the publisher's server has no "no responders" to give: it
saw interest), and two plain subscriptions on one subject both get every message. So:

- **The old host parks** (``Parking``): the agent stops (in-flight work finishes) but its
  subscriptions stay, so every server keeps routing to it; what arrives is held, not
  handled.
- **The new host starts** with a dedup window (``ArrivalDedup``), subscribes, and says so.
- **The old host releases**: it forwards what it holds, and for ``FORWARD_GRACE_S`` more
  whatever still arrives, to the same subject with the same reply subject and headers,
  marked ``Ba-Handover-From: <node>``; then it unsubscribes. Queue-grouped subscriptions
  (capabilities) go first, so that its own server hands the copies to another member.

A publisher whose server already knew the new host reached both: the new host drops the
second copy of a message, direct or forwarded, whichever comes second. One copy of each
is handled, by the new host. Held messages wait for the start (tens of ms), nothing else.

Residual gap: a queue-grouped message routed to the old host while its queue
unsubscription crosses the route is dropped by its server, as for any queue member that
leaves; a client's retry covers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import Any

from nats.aio.msg import Msg
from prometheus_client import Counter

from broker_agents.codec import is_json
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.reply import respond

HEADER = "Ba-Handover-From"
FORWARD_GRACE_S = 0.5  # every server has heard of the new host's subscription long before
DEDUP_WINDOW_S = 30.0  # the new host's: covers a start answer lost (15 s) and the grace
DEDUP_MAX = 200_000  # arrivals remembered at most, oldest forgotten first
COMPONENT = "handoff"

FORWARDED = Counter("ba_handoff_forwarded_total", "Messages a parked agent's old host "
                    "forwarded to its new host", ["agent"])
OVERFLOW = Counter("ba_handoff_refused_total", "Messages a parked agent's old host refused "
                   "(``unavailable``): more arrived than it may hold", ["agent"])
DROPPED = Counter("ba_handoff_duplicates_dropped_total", "Second copies a new host dropped: "
                  "a message both delivered and forwarded during a handover", ["agent"])


class Parking:
    """The old host's side: the stopped agent's subscriptions, holding what arrives."""

    def __init__(self, nc: Any, agent_id: str, node_id: str, subs: list[Any],
                 limit: int) -> None:
        self.nc, self.agent_id, self.node_id = nc, agent_id, node_id
        self.limit = limit
        self.forwarded = 0
        self._subs = subs
        self._held: list[Msg] = []
        self._forwarding = False
        self._released = False

    @property
    def held(self) -> int:
        return len(self._held)

    async def take(self, msg: Msg) -> None:
        """Every message the parked subscriptions receive."""
        if msg.headers and HEADER in msg.headers:
            return  # our own forwarded copy, back on our plain subscription
        if self._forwarding:
            await self._forward(msg)
        elif len(self._held) < self.limit:
            self._held.append(msg)
        else:
            OVERFLOW.labels(self.agent_id).inc()
            err = BrokerError(ErrorCode.UNAVAILABLE, f"agent {self.agent_id!r} is moving to "
                              "another node and holds no more messages: ask again",
                              {"agent": self.agent_id, "retry_after_ms": 50})
            await respond(self.nc, msg.reply, err.to_payload(),
                          is_json(msg.data, msg.headers), component=COMPONENT)

    async def release(self, grace: float = FORWARD_GRACE_S) -> int:
        """Forward what is held and, for ``grace`` seconds, what still arrives; then
        unsubscribe. Call once the new host is live (or the agent restarted here). The
        number forwarded."""
        if self._released:
            return self.forwarded
        self._released = True
        queued = [sub for sub in self._subs if sub.queue]
        plain = [sub for sub in self._subs if not sub.queue]
        await _drain(queued)  # their pending messages are held first
        self._forwarding = True
        held, self._held = self._held, []
        for msg in held:
            await self._forward(msg)
        if grace > 0:
            await asyncio.sleep(grace)  # sleep-ok: a protocol timer, the forwarding window
        await _drain(plain)
        return self.forwarded

    async def _forward(self, msg: Msg) -> None:
        headers = {**(msg.headers or {}), HEADER: self.node_id}
        await self.nc.publish(msg.subject, msg.data, reply=msg.reply or "", headers=headers)
        self.forwarded += 1
        FORWARDED.labels(self.agent_id).inc()


class ArrivalDedup:
    """The new host's side: for a window after its start, a message that comes twice (once
    straight from its publisher's server, once forwarded by the old host) is handled once.

    Pairs are matched across the two paths only: two direct copies are a client's own
    resend, which the runtime's reply cache answers (``runtime.AgentRunner``)."""

    def __init__(self, window: float = DEDUP_WINDOW_S, max_entries: int = DEDUP_MAX) -> None:
        self.until = time.monotonic() + window
        self.max_entries = max_entries
        self._direct: OrderedDict[int, None] = OrderedDict()
        self._forwarded: OrderedDict[int, None] = OrderedDict()

    def expired(self) -> bool:
        return time.monotonic() > self.until

    def second_copy(self, msg: Msg) -> bool:
        """True for the second copy of a message (drop it); remembers the first."""
        key = hash((msg.subject, msg.reply, msg.data))
        forwarded = msg.headers is not None and HEADER in msg.headers
        mine, other = ((self._forwarded, self._direct) if forwarded
                       else (self._direct, self._forwarded))
        if key in other:
            del other[key]
            return True
        mine[key] = None
        if len(mine) > self.max_entries:
            mine.popitem(last=False)
        return False


async def _drain(subs: list[Any]) -> None:
    """Unsubscribe, letting messages already delivered to the client run their callback."""
    for sub in subs:
        with contextlib.suppress(Exception):  # the connection is gone: nothing to deliver
            await sub.drain()
