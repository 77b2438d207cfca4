"""Who takes part: an explicit list, or every agent with a capability.

By capability, the node's registry service is asked first (``ctx.services["registry"]``,
anything with ``find_by_capability(cap)`` returning records with ``agent_id``, ``node_id``,
``capabilities`` and ``health``). Without one, participants are discovered by a broadcast
on ``<p>.vote.discover.<capability>`` that every coordination participant agent answers
with its ``ParticipantInfo``; answers are collected for a short window. Reputation scores
for weighted rules come from the reputation bucket the auctions maintain.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.coord.wire import InfoAsk, ParticipantInfo
from broker_agents.core.coord.models import Member, ParticipantSelection
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.gather import ask_all, parse_answer
from broker_agents.subjects import TOKEN, Subjects


class CapabilityFinder(Protocol):
    def find_by_capability(self, capability: str) -> Any: ...


def discover_subject(subjects: Subjects, capability: str) -> str:
    return subjects.vote("discover", capability)


def check_ids(ids: Sequence[str], field_name: str) -> None:
    """Ids become subject tokens: reject anything else with an error naming the field."""
    for i, value in enumerate(ids):
        if not TOKEN.match(value):
            raise BrokerError(
                ErrorCode.VALIDATION, f"invalid request: {field_name}.{i}",
                {"fields": [{"field": f"{field_name}.{i}",
                             "message": "must be letters, digits, '_' or '-'"}]})


def _healthy(record: Any) -> bool:
    health = getattr(record, "health", None)
    if health is None and isinstance(record, dict):
        health = record.get("health")
    return health is None or str(getattr(health, "value", health)) == "healthy"


def _info(record: Any) -> ParticipantInfo | None:
    data = record if isinstance(record, dict) else getattr(record, "__dict__", {})
    if hasattr(record, "model_dump"):
        data = record.model_dump()
    try:
        return ParticipantInfo.model_validate(
            {k: data.get(k) for k in ("agent_id", "node_id", "capabilities", "public_key")
             if data.get(k) is not None})
    except Exception:
        return None


@dataclass
class Directory:
    nc: NATS
    subjects: Subjects
    registry: CapabilityFinder | None = None
    discovery_window: float = 0.15
    known: dict[str, ParticipantInfo] = field(default_factory=dict)

    async def resolve(self, sel: ParticipantSelection) -> list[str]:
        """The participant ids of a request (``no_agents`` when a capability has none)."""
        if sel.participants is not None:
            check_ids(sel.participants, "participants")
            return list(sel.participants)
        assert sel.capability is not None
        check_ids([sel.capability], "capability")
        found = await self.by_capability(sel.capability)
        if not found:
            raise BrokerError(ErrorCode.NO_AGENTS,
                              f"no agent with capability {sel.capability!r}",
                              {"capability": sel.capability})
        return found

    async def by_capability(self, capability: str) -> list[str]:
        infos: list[ParticipantInfo] = []
        if self.registry is not None:
            found = self.registry.find_by_capability(capability)
            if inspect.isawaitable(found):
                found = await found
            infos = [i for r in found if _healthy(r) and (i := _info(r)) is not None]
        if not infos:
            infos = await self.broadcast(capability)
        for info in infos:
            self.known[info.agent_id] = info
        return sorted({i.agent_id for i in infos})

    async def broadcast(self, capability: str) -> list[ParticipantInfo]:
        inbox = self.nc.new_inbox()
        found: dict[str, ParticipantInfo] = {}

        async def on_answer(msg: Any) -> None:
            try:
                info = ParticipantInfo.model_validate(codec.decode(msg.data, msg.headers))
            except Exception:
                return
            found[info.agent_id] = info

        sub = await self.nc.subscribe(inbox, cb=on_answer)
        try:
            await self.nc.publish(discover_subject(self.subjects, capability),
                                  codec.encode({"capability": capability}), reply=inbox)
            await asyncio.sleep(self.discovery_window)  # sleep-ok: a broadcast has no end
        finally:
            await sub.unsubscribe()
        return list(found.values())

    async def members(self, ids: Sequence[str], timeout: float) -> list[Member]:
        """Members with node and capabilities (asked with ``coord_info`` when unknown)."""
        unknown = [i for i in ids if i not in self.known]
        if unknown:
            answers = await ask_all(self.nc, self.subjects, unknown, InfoAsk(), timeout)
            for agent_id, outcome in answers.items():
                info = parse_answer(outcome, ParticipantInfo)
                if isinstance(info, ParticipantInfo):
                    self.known[agent_id] = info
        out = []
        for i in ids:
            info = self.known.get(i)
            out.append(Member(id=i, node=info.node_id if info else None,
                              capabilities=tuple(info.capabilities) if info else ()))
        return out


async def reputation_scores(nc: NATS, subjects: Subjects, ids: Sequence[str]) -> dict[str, float]:
    """Reputation scores of ``ids`` (missing agents are left out: they get default weight)."""
    from broker_agents.auction.ledger import ReputationBook
    from broker_agents.kv import open_bucket

    book = ReputationBook(await open_bucket(nc.jetstream(), subjects.bucket("reputation")))
    scores = await asyncio.gather(*(book.score(i) for i in ids), return_exceptions=True)
    return {i: float(s) for i, s in zip(ids, scores, strict=True)
            if isinstance(s, int | float)}
