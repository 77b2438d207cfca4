"""Node-level group fan-out: one publish on ``<p>.fanout`` reaches every hosted participant.

Why: a scatter to N agents used to cost N publishes from the asker and N deliveries from
the server. Now the asker (``broker_agents.gather``) publishes the shared envelope ONCE on
the node fan-out subject; every agent host (a node's connection) subscribes to it once and
hands the envelope to each participant it hosts through the very callback an inbox
delivery takes (``AgentRunner._on_message``: quota, decode, authentication, dedup,
metrics, handler, reply). So an answer is exactly what the agent answers a direct message,
made for the same per-participant reply subject ``<inbox>.<batch>-<index>``.

Wire: the message's data is the envelope, its headers the envelope's own (e.g. its
content type) plus ``Ba-Fanout: <index>=<agent id>,...``; its reply is ``<inbox>.<batch>``.

Answers batched per node: an ask that carries ``Ba-Answers: 1`` (the asker reads batches)
is delivered with a ``ReplySink``: every answer made while the delivery loop runs (a
sequential handler's, a duplicate's resend, a refusal) is kept, and the kept ones leave
as ONE message on ``<inbox>.<batch>`` (``broker_agents.answerframe``: each entry byte for
byte the single answer, signed for its per-participant subject) when the loop ends or
first yields to the event loop (a slow handler), so no answer waits for a slower
participant's handler. An answer made later (a concurrent handler's) is published alone
on its own subject, as is a lone one. The asker's connection pays one delivery per node
instead of one per participant. The asker's own node does not even ask itself through the
server: its gatherer hands the ask to the participants hosted on its connection
(``FanoutHost.local``) and takes their answers straight back, leaving them out of the
published ask.

Only nodes may publish or subscribe here (``node/auth/roles.py``). A malformed fan-out ask
(no or bad ``Ba-Fanout`` header, a bad id or index, too many participants, no reply) is
refused before any agent sees it, counted in ``ba_agent_malformed_messages_total{agent=
"fanout"}``, and answered with a structured error when it has a reply subject.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections import deque
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from broker_agents import answerframe, codec
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.tokens import TOKEN_PATTERN
from broker_agents.logging import get_logger
from broker_agents.metrics import MALFORMED, REPLIES_REFUSED
from broker_agents.ratelog import RateLimitedLog
from broker_agents.reply import Publish, max_payload_of, respond
from broker_agents.subjects import Subjects

HEADER = "Ba-Fanout"
MAX_PARTICIPANTS = 10_000
COMPONENT = "fanout"

_ID = TOKEN_PATTERN.strip("^$")
# The whole header in one match (one regex call, not one per participant).
_TARGETS = re.compile(rf"[0-9]{{1,6}}={_ID}(?:,[0-9]{{1,6}}={_ID})*")
Deliver = Callable[[list[Subscription], Msg, Publish | None], Awaitable[None]]
_log = RateLimitedLog(get_logger(component=COMPONENT))
_BATCH = {answerframe.HEADER: "1"}
_FRAME_ROOM = 256  # what a batch's headers and framing take besides its entries


def encode_targets(targets: list[tuple[int, str]]) -> str:
    """The ``Ba-Fanout`` header: ``<index>=<agent id>`` pairs, comma-separated."""
    return ",".join(f"{i}={a}" for i, a in targets)


def decode_targets(value: str | None) -> list[tuple[int, str]]:
    """The header's pairs; ``BrokerError(malformed)`` for anything else."""
    if not value:
        raise BrokerError(ErrorCode.MALFORMED, f"fan-out ask without a {HEADER} header")
    pairs = value.split(",")
    if len(pairs) > MAX_PARTICIPANTS:
        raise BrokerError(ErrorCode.MALFORMED, f"fan-out to more than {MAX_PARTICIPANTS}")
    if _TARGETS.fullmatch(value) is None:
        raise BrokerError(ErrorCode.MALFORMED, f"bad {HEADER} header {value[:80]!r}")
    out = []
    for pair in pairs:
        index, _, agent_id = pair.partition("=")
        out.append((int(index), agent_id))
    return out


class FanoutHost:
    """One connection's fan-out subscription and the agents it hosts on it."""

    def __init__(self, nc: NATS, subjects: Subjects) -> None:
        self.nc = nc
        self.subjects = subjects
        self.agents: dict[str, Deliver] = {}
        self._sub: Subscription | None = None
        self._local: deque[tuple[list[tuple[int, str]], str, bytes, Publish]] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def add(self, agent_id: str, deliver: Deliver) -> None:
        """Deliver fan-out asks for ``agent_id`` through ``deliver`` (its inbox path)."""
        self.agents[agent_id] = deliver
        if self._sub is None:
            self._sub = await self.nc.subscribe(self.subjects.fanout(), cb=self._on_ask,
                                                pending_msgs_limit=65536)

    def remove(self, agent_id: str) -> None:
        self.agents.pop(agent_id, None)

    async def _on_ask(self, msg: Msg) -> None:
        headers = msg.headers
        try:
            if not msg.reply:
                raise BrokerError(ErrorCode.MALFORMED, "fan-out ask without a reply subject")
            targets = decode_targets(headers.get(HEADER) if headers else None)
        except BrokerError as exc:
            MALFORMED.labels(COMPONENT, exc.code).inc()
            _log.info(("refused", exc.code), "fan-out ask refused", error=exc.message)
            await respond(self.nc, msg.reply, exc.to_payload(),
                          codec.is_json(msg.data, None), component=COMPONENT)
            return
        assert headers is not None
        rest = {k: v for k, v in headers.items()
                if k != HEADER and k != answerframe.HEADER} or None
        sink = (ReplySink(self.nc, msg.reply) if headers.get(answerframe.HEADER) == "1"
                else None)
        try:
            await self._deliver(targets, msg.reply, msg.data, rest,
                                sink.publish if sink is not None else None)
        finally:
            if sink is not None:
                await sink.close()

    async def _deliver(self, targets: list[tuple[int, str]], reply: str, data: bytes,
                       headers: dict[str, str] | None, publish: Publish | None) -> None:
        assert self._sub is not None
        holder = [self._sub]  # its backlog is the backlog behind this ask, for the quota
        agents, agent_subject = self.agents, self.subjects.agent
        for index, agent_id in targets:
            deliver = agents.get(agent_id)
            if deliver is not None:
                await deliver(holder, Msg(self.nc, agent_subject(agent_id),
                                          f"{reply}-{index}", data, headers), publish)

    def local(self, targets: list[tuple[int, str]], reply: str, data: bytes,
              publish: Publish) -> None:
        """Hand an ask to participants hosted on this very connection (the asker's):
        no trip through the server and back, and ``publish`` takes their answers. One
        ask after the other, in order, like the subscription's own deliveries."""
        self._local.append((targets, reply, data, publish))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._local:
                targets, reply, data, publish = self._local.popleft()
                try:
                    await self._deliver(targets, reply, data, None, publish)
                except Exception as exc:  # the runner answers its own failures: a bug
                    _log.error("local", "local fan-out delivery failed", error=repr(exc))
        finally:
            self._drainer = None


class ReplySink:
    """One fan-out ask's answers from this node, kept and sent as batch frames.

    ``publish`` has ``nc.publish``'s shape (the reply path takes it instead): an answer on
    ``<reply>-<index>`` while the sink is open is kept; what is kept leaves at ``close``
    (the delivery loop's end) or at the loop's first yield to the event loop, whichever
    comes first; a frame never exceeds the server's max payload. Anything else, and
    everything after ``close``, is published at once.
    """

    __slots__ = ("_entries", "_max", "_nc", "_open", "_prefix", "_reply", "_scheduled",
                 "_size", "_tasks")

    def __init__(self, nc: NATS, reply: str) -> None:
        self._nc = nc
        self._reply = reply
        self._prefix = f"{reply}-"
        self._entries: list[answerframe.Entry] = []
        self._size = 0
        self._max = max_payload_of(nc) - _FRAME_ROOM
        self._open = True
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "",
                      headers: dict[str, str] | None = None) -> None:
        prefix = self._prefix
        if self._open and not reply and subject.startswith(prefix):
            index = subject[len(prefix):]
            size = answerframe.entry_size(payload, headers)
            if index.isdigit() and size <= self._max:
                if self._size + size > self._max:
                    await self._send()
                self._entries.append((int(index), payload, headers))
                self._size += size
                if not self._scheduled:
                    self._scheduled = True
                    asyncio.get_running_loop().call_soon(self._on_yield)
                return
        await self._nc.publish(subject, payload, reply=reply, headers=headers)

    async def close(self) -> None:
        """The delivery loop ended: send what is kept; later answers go out alone."""
        self._open = False
        await self._send()

    def _on_yield(self) -> None:
        """The event loop ran while answers were kept (a handler awaited): send them."""
        self._scheduled = False
        if self._entries:
            task = asyncio.get_running_loop().create_task(self._send())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self) -> None:
        entries, self._entries, self._size = self._entries, [], 0
        if not entries:
            return
        try:
            if len(entries) == 1:  # alone: exactly the single answer
                index, data, headers = entries[0]
                await self._nc.publish(f"{self._prefix}{index}", data, headers=headers)
            else:
                await self._nc.publish(self._reply, answerframe.encode(entries),
                                       headers=_BATCH)
        except Exception as exc:  # closed or draining connection: the asker times out
            REPLIES_REFUSED.labels(COMPONENT, "publish_failed").inc()
            _log.warning("publish_failed", "batch of answers not sent", error=repr(exc),
                         answers=len(entries))


_hosts: weakref.WeakKeyDictionary[NATS, FanoutHost] = weakref.WeakKeyDictionary()


def host(nc: NATS, subjects: Subjects) -> FanoutHost:
    """The connection's fan-out host (created on first use)."""
    found = _hosts.get(nc)
    if found is None:
        found = _hosts[nc] = FanoutHost(nc, subjects)
    return found


def hosts(nc: NATS) -> bool:
    """Whether ``nc`` hosts agents for fan-out (a node's connection: it may publish there)."""
    found = _hosts.get(nc)
    return found is not None and found._sub is not None
