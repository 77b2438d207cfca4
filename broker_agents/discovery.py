"""Who takes part: an explicit id list, or every healthy agent with a capability.

One participant discovery for every protocol that asks agents (votes, ensembles, PBFT,
auctions). By capability, the node's registry service is asked first (anything with
``find_by_capability(cap)`` returning records, or a coroutine of records, that carry an
``agent_id`` and optionally ``node_id``, ``capabilities``, ``public_key`` and
``health``); only healthy records count. When the registry finds nobody (or the node
has none), participants are discovered by a broadcast on
``<p>.<protocol>.discover.<capability>``, collected for a short window: the subject stays
protocol-specific, so each protocol's participant agents answer only their own calls
(``answer_discovery``). Ids become subject tokens, so requested ids that are not tokens are
refused with an error naming the field, and discovered ones are skipped.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, Field

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.tokens import is_token

Namespace = Callable[..., str]
"""A protocol's subject builder, e.g. ``Subjects.vote``: ``namespace("discover", cap)``."""

_INFO_FIELDS = ("agent_id", "node_id", "capabilities", "public_key")


class ParticipantInfo(BaseModel):
    """What partitioning, signing and discovery need to know about a participant."""

    agent_id: str
    node_id: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    public_key: str | None = None


class CapabilityFinder(Protocol):
    def find_by_capability(self, capability: str) -> Any: ...


class Selection(Protocol):
    """A request that names its participants, or a capability to find them by."""

    @property
    def participants(self) -> Sequence[str] | None: ...

    @property
    def capability(self) -> str | None: ...


def broadcast_subject(namespace: Namespace, capability: str) -> str:
    """Where a protocol's participants with ``capability`` answer discovery calls."""
    return namespace("discover", capability)


def registry_finder(services: Mapping[str, Any]) -> CapabilityFinder | None:
    """The node's registry service as a finder (a service may wrap its local view)."""
    registry = services.get("registry")
    if registry is not None and not hasattr(registry, "find_by_capability"):
        registry = getattr(registry, "view", None)
    return registry if hasattr(registry, "find_by_capability") else None


def check_ids(ids: Sequence[str], field_name: str) -> None:
    """Ids become subject tokens: reject anything else with an error naming the field."""
    for i, value in enumerate(ids):
        if not is_token(value):
            raise BrokerError(
                ErrorCode.VALIDATION, f"invalid request: {field_name}.{i}",
                {"fields": [{"field": f"{field_name}.{i}",
                             "message": "must be letters, digits, '_' or '-'"}]})


def _field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)


def _healthy(record: Any) -> bool:
    health = _field(record, "health")
    return health is None or str(getattr(health, "value", health)) == "healthy"


def _info(record: Any) -> ParticipantInfo | None:
    """The record as a ``ParticipantInfo``; None when it is malformed or not a token."""
    data = {k: v for k in _INFO_FIELDS if (v := _field(record, k)) is not None}
    try:
        info = ParticipantInfo.model_validate(data)
    except ValueError:
        return None
    return info if is_token(info.agent_id) else None


async def _registry_members(registry: CapabilityFinder, capability: str) -> list[ParticipantInfo]:
    found = registry.find_by_capability(capability)
    if inspect.isawaitable(found):
        found = await found
    return [i for r in found if _healthy(r) and (i := _info(r)) is not None]


async def from_registry(registry: CapabilityFinder, capability: str) -> list[str]:
    """The ids of the healthy agents the registry knows with ``capability``, sorted."""
    return sorted({i.agent_id for i in await _registry_members(registry, capability)})


async def answer_discovery(nc: NATS, namespace: Namespace, capabilities: Sequence[str],
                           info: Callable[[], BaseModel]) -> list[Subscription]:
    """The participant's side: answer ``namespace``'s discovery calls for each capability."""

    async def on_call(msg: Msg) -> None:
        if msg.reply:
            await nc.publish(msg.reply, codec.encode(info()))

    return [await nc.subscribe(broadcast_subject(namespace, cap), cb=on_call)
            for cap in capabilities]


class Discovery:
    """Resolves a request's participants; remembers what it learnt about each one."""

    def __init__(self, nc: NATS, namespace: Namespace, registry: CapabilityFinder | None = None,
                 window: float = 0.15) -> None:
        self._nc = nc
        self._namespace = namespace
        self._registry = registry
        self._window = window
        self.known: dict[str, ParticipantInfo] = {}
        """Participant id -> what discovery (or a later info request) said about it."""

    async def resolve(self, selection: Selection, *, required: bool = True) -> list[str]:
        """The participant ids of a request; when a capability finds nobody, ``no_agents``
        if ``required`` (a vote needs voters), else none (an auction may go unsold)."""
        if selection.participants is not None:
            check_ids(selection.participants, "participants")
            return list(selection.participants)
        capability = selection.capability
        assert capability is not None
        check_ids([capability], "capability")
        found = await self._find(capability)
        if required and not found:
            raise BrokerError(ErrorCode.NO_AGENTS, f"no agent with capability {capability!r}",
                              {"capability": capability})
        return found

    async def _find(self, capability: str) -> list[str]:
        """Every healthy agent with ``capability``: the registry's, else who answers a call."""
        infos = [] if self._registry is None else await _registry_members(self._registry,
                                                                            capability)
        if not infos:
            infos = await self._broadcast(capability)
        for info in infos:
            self.known[info.agent_id] = info
        return sorted({i.agent_id for i in infos})

    async def _broadcast(self, capability: str) -> list[ParticipantInfo]:
        inbox = self._nc.new_inbox()
        found: dict[str, ParticipantInfo] = {}

        async def on_answer(msg: Msg) -> None:
            try:
                info = _info(codec.decode(msg.data, msg.headers))
            except Exception:
                return
            if info is not None:
                found[info.agent_id] = info

        sub = await self._nc.subscribe(inbox, cb=on_answer)
        try:
            await self._nc.publish(broadcast_subject(self._namespace, capability),
                                   codec.encode({"capability": capability}), reply=inbox)
            await asyncio.sleep(self._window)  # sleep-ok: a broadcast has no end marker
        finally:
            await sub.unsubscribe()
        return list(found.values())
