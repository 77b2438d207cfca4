"""Who is invited: an explicit list, the registry by capability, or a discovery broadcast.

The registry facade (``ctx.services["registry"]``) is duck-typed: anything with
``find_by_capability(cap)`` returning records (or coroutine of records) that have an
``agent_id`` and optionally a ``health``. Without a registry on the node, bidders are found
by a broadcast on ``<p>.auction.discover.<capability>`` collected for a short window.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Protocol

from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.subjects import Subjects


class CapabilityFinder(Protocol):
    def find_by_capability(self, capability: str) -> Any: ...


def discover_subject(subjects: Subjects, capability: str) -> str:
    return subjects.auction("discover", capability)


async def from_registry(registry: CapabilityFinder, capability: str) -> list[str]:
    found = registry.find_by_capability(capability)
    if inspect.isawaitable(found):
        found = await found
    ids: list[str] = []
    for record in found:
        agent_id = getattr(record, "agent_id", None)
        if agent_id is None and isinstance(record, dict):
            agent_id = record.get("agent_id")
        health = getattr(record, "health", None)
        if health is not None and str(health) not in ("healthy", "Health.HEALTHY"):
            continue
        if isinstance(agent_id, str):
            ids.append(agent_id)
    return sorted(set(ids))


async def by_broadcast(nc: NATS, subjects: Subjects, capability: str,
                       window: float = 0.25) -> list[str]:
    """Collect every bidder answering the discovery call within ``window`` seconds."""
    inbox = nc.new_inbox()
    found: set[str] = set()

    async def on_answer(msg: Any) -> None:
        try:
            payload = codec.decode(msg.data, msg.headers)
        except Exception:
            return
        if isinstance(payload, dict) and isinstance(payload.get("agent_id"), str):
            found.add(payload["agent_id"])

    sub = await nc.subscribe(inbox, cb=on_answer)
    try:
        await nc.publish(discover_subject(subjects, capability),
                         codec.encode({"capability": capability}), reply=inbox)
        await asyncio.sleep(window)  # sleep-ok: a discovery broadcast has no end marker
    finally:
        await sub.unsubscribe()
    return sorted(found)
