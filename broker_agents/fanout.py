"""Node-level group fan-out: one publish on ``<p>.fanout`` reaches every hosted participant.

Why: a scatter to N agents used to cost N publishes from the asker and N deliveries from
the server. Now the asker (``broker_agents.gather``) publishes the shared envelope ONCE on
the node fan-out subject; every agent host (a node's connection) subscribes to it once and
hands the envelope to each participant it hosts through the very callback an inbox
delivery takes (``AgentRunner._on_message``: quota, decode, authentication, dedup,
metrics, handler, reply). So an answer is exactly what the agent answers a direct message,
published on the same per-participant reply subject ``<inbox>.<batch>-<index>``.

Wire: the message's data is the envelope, its headers the envelope's own (e.g. its
content type) plus ``Ba-Fanout: <index>=<agent id>,...``; its reply is ``<inbox>.<batch>``.
Answers are not batched per node: each answer stays a separate message on its own reply
subject, so a signed answer still covers the subject it is read on and the gatherer's
per-participant checks (``Call.refused``, evidence) are unchanged.

Only nodes may publish or subscribe here (``node/auth/roles.py``). A malformed fan-out ask
(no or bad ``Ba-Fanout`` header, a bad id or index, too many participants, no reply) is
refused before any agent sees it, counted in ``ba_agent_malformed_messages_total{agent=
"fanout"}``, and answered with a structured error when it has a reply subject.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.tokens import TOKEN_PATTERN
from broker_agents.logging import get_logger
from broker_agents.metrics import MALFORMED
from broker_agents.ratelog import RateLimitedLog
from broker_agents.reply import respond
from broker_agents.subjects import Subjects

HEADER = "Ba-Fanout"
MAX_PARTICIPANTS = 10_000
COMPONENT = "fanout"

_ID = TOKEN_PATTERN.strip("^$")
# The whole header in one match (one regex call, not one per participant).
_TARGETS = re.compile(rf"[0-9]{{1,6}}={_ID}(?:,[0-9]{{1,6}}={_ID})*")
Deliver = Callable[[list[Subscription], Msg], Awaitable[None]]
_log = RateLimitedLog(get_logger(component=COMPONENT))


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
        assert headers is not None and self._sub is not None
        rest = {k: v for k, v in headers.items() if k != HEADER} or None
        holder = [self._sub]  # its backlog is the backlog behind this ask, for the quota
        agents, agent_subject, reply = self.agents, self.subjects.agent, msg.reply
        for index, agent_id in targets:
            deliver = agents.get(agent_id)
            if deliver is not None:
                await deliver(holder, Msg(self.nc, agent_subject(agent_id),
                                          f"{reply}-{index}", msg.data, rest))


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
