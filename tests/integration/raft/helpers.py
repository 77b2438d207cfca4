"""Shared helpers for Raft integration tests: in-process groups and waiting on conditions."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from broker_agents.core.raft.kvstore import KVStateMachine
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.storage import FileStorage
from node.auth.roles import Role
from tests.secured import Secured, connect_as


async def wait_for(cond: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll a cheap in-memory condition on the event loop until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.005)  # sleep-ok: polling in-memory state of members


async def start_group(server: Secured, group: str, ids: Sequence[str], data: Path,
                      only: Sequence[str] | None = None,
                      **kw: Any) -> tuple[list[Any], list[RaftMember]]:
    """Start members of a group with members ``ids`` (all of them, or just ``only``), each
    on its own node connection."""
    conns, members = [], []
    for i, mid in enumerate(ids):
        if only is not None and mid not in only:
            continue
        nc = await connect_as(server, Role.NODE)
        member = RaftMember(nc, group, mid, ids, FileStorage(data / mid), KVStateMachine(),
                            rng=random.Random(i), **kw)
        await member.start()
        conns.append(nc)
        members.append(member)
    return conns, members


def leader_of(members: Sequence[RaftMember]) -> RaftMember | None:
    leaders = [m for m in members if m.core is not None and m._running and m.is_leader]
    return max(leaders, key=lambda m: m.term) if leaders else None
