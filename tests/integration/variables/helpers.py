"""In-process variables groups for integration tests: three members on one nats-server."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from broker_agents.raft.driver import RaftMember
from broker_agents.raft.memstore import MemoryStorage
from broker_agents.variables.publisher import ChangePublisher
from broker_agents.variables.raft_adapter import VariablesRaftAdapter
from node.auth.roles import Role
from tests.secured import Secured, connect_as

IDS = ("m1", "m2", "m3")
TEMPERATURE_SPACE = {"name": "llm", "variables": [
    {"kind": "float", "name": "temperature", "min": 0.0, "max": 2.0, "default": 0.7},
    {"kind": "integer", "name": "batch", "min": 1, "max": 64, "default": 8},
    {"kind": "choice", "name": "model", "options": ["small", "large"]},
]}


@dataclass
class Group:
    members: list[RaftMember]
    publishers: list[ChangePublisher]
    conns: list[Any] = field(default_factory=list)


@asynccontextmanager
async def variables_group(server: Secured, group: str = "variables") -> AsyncIterator[Group]:
    """Three in-memory members with change publishers (like the engine agents attach), each
    on a node connection."""
    g = Group([], [])
    try:
        for i, mid in enumerate(IDS):
            nc = await connect_as(server, Role.NODE)
            sm = VariablesRaftAdapter()
            sm.bind_connection(nc, group)  # as the node does: verify as this member trusts
            member = RaftMember(nc, group, mid, IDS, MemoryStorage(), sm,
                                rng=random.Random(i), tick_ms=10)
            publisher = ChangePublisher(nc, sm, member_id=mid)
            await publisher.start()
            await member.start()
            g.conns.append(nc)
            g.members.append(member)
            g.publishers.append(publisher)
        yield g
    finally:
        for p in g.publishers:
            await p.stop()
        for m in g.members:
            await m.stop()
        for nc in g.conns:
            await nc.close()
