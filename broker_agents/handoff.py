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

Only a new host that drops second copies may be forwarded to (its ``start`` answer says
``accepts_forwarded``): one of an older version would handle both. Then the old host
answers what it held ``unavailable`` with ``retry_after_ms`` (never handled: a retry is
safe), drops what was one-way (counted), and unsubscribes at once, as before parking.

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
REFUSED = Counter("ba_handoff_refused_total", "Messages a parked agent's old host did not "
                  "pass on (a request answered ``unavailable``, a one-way message dropped), "
                  "by reason: full (more than it may hold), no_forwarding (a new host of "
                  "an older version)", ["agent", "reason"])
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
        self._mode = "hold"  # then "forward", or "refuse" (no forwarding: ``release``)
        self._released = False

    @property
    def held(self) -> int:
        return len(self._held)

    async def take(self, msg: Msg) -> None:
        """Every message the parked subscriptions receive."""
        if msg.headers and HEADER in msg.headers:
            return  # our own forwarded copy, back on our plain subscription
        if self._mode == "forward":
            await self._forward(msg)
        elif self._mode == "hold" and len(self._held) < self.limit:
            self._held.append(msg)
        else:
            await self._refuse(msg, "full" if self._mode == "hold" else "no_forwarding")

    async def release(self, grace: float = FORWARD_GRACE_S, forward: bool = True) -> int:
        """Forward what is held and, for ``grace`` seconds, what still arrives; then
        unsubscribe. Call once the new host is live (or the agent restarted here). The
        number forwarded. ``forward=False`` (a new host that does not drop second
        copies): refuse what is held or still arrives, and unsubscribe at once."""
        if self._released:
            return self.forwarded
        self._released = True
        if not forward:
            self._mode = "refuse"
            held, self._held = self._held, []
            for msg in held:
                await self._refuse(msg, "no_forwarding")
            await _drain(self._subs)
            return 0
        queued = [sub for sub in self._subs if sub.queue]
        plain = [sub for sub in self._subs if not sub.queue]
        await _drain(queued)  # their pending messages are held first
        self._mode = "forward"
        held, self._held = self._held, []
        for msg in held:
            await self._forward(msg)
        if grace > 0:
            await asyncio.sleep(grace)  # sleep-ok: a protocol timer, the forwarding window
        await _drain(plain)
        return self.forwarded

    async def _refuse(self, msg: Msg, reason: str) -> None:
        """A request is answered ``unavailable`` (it was not handled: asking again is
        safe); a one-way message is dropped. Counted either way."""
        REFUSED.labels(self.agent_id, reason).inc()
        err = BrokerError(ErrorCode.UNAVAILABLE, f"agent {self.agent_id!r} is moving to "
                          "another node: ask again", {"agent": self.agent_id,
                                                     "retry_after_ms": 50, "reason": reason})
        await respond(self.nc, msg.reply, err.to_payload(), is_json(msg.data, msg.headers),
                      component=COMPONENT)

    async def _forward(self, msg: Msg) -> None:
        headers = {**(msg.headers or {}), HEADER: self.node_id}
        await self.nc.publish(msg.subject, msg.data, reply=msg.reply or "", headers=headers)
        self.forwarded += 1
        FORWARDED.labels(self.agent_id).inc()


class ArrivalDedup:
    """The new host's side: for a window after its start, a message that comes twice (once
    straight from its publisher's server, once forwarded by the old host) is handled once.

    Pairs are matched across the two paths only: two direct copies are a client's own
    resend, which the runtime's reply cache answers (``broker_agents.replycache``)."""

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
