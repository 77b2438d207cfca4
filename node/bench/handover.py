"""A planned restart of the leader's node, under a steady writer: what the writer sees.

The leader's node gets SIGTERM, as in a rolling restart; its consensus service hands
leadership to a caught-up member (TimeoutNow) before it stops. One client commits
sequentially all along; the figure is the longest gap between two of its commits around
the stop, beside the commits' own latency in the same series (``gap - commit`` is what the
restart added). Every commit must succeed: the client retries under one request id, and
a failure is counted, never hidden.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from broker_agents.core.errors import BrokerError
from broker_agents.raft.client import RaftClient
from node.cluster import LocalCluster

SETTLE_COMMITS = 30  # commits after the stop that close a sample


@dataclass
class Writer:
    """Commits one after another; keeps each commit's end time and latency."""

    client: RaftClient
    ends: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    failures: list[BrokerError] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    wrote: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            began = time.perf_counter()
            try:
                await self.client.propose({"op": "put", "key": "handover", "value": i},
                                          timeout=10)
            except BrokerError as exc:
                self.failures.append(exc)
            else:
                self.ends.append(time.perf_counter())
                self.latencies.append(self.ends[-1] - began)
                self.wrote.set()
            i += 1

    async def commits(self, n: int, timeout: float = 30.0) -> None:
        """Until ``n`` more commits are done."""
        target = len(self.ends) + n
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.ends) < target:
            if loop.time() > deadline:
                raise TimeoutError(f"only {len(self.ends)} of {target} commits")
            self.wrote.clear()
            await asyncio.wait_for(self.wrote.wait(), max(0.01, deadline - loop.time()))


def longest_gap(ends: list[float], since: float) -> float:
    """The longest time between two commits, from the last one before ``since`` on."""
    before = [t for t in ends if t < since][-1:]
    points = before + [t for t in ends if t >= since]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)


async def planned_restart(cluster: LocalCluster, client: RaftClient, ids: list[str],
                          *, restart: bool, caught_up: Any) -> tuple[float, float, int]:
    """SIGTERM the leader's node under a steady writer: (longest commit gap, median commit
    latency of the series, failed commits). With ``restart``, the node comes back and
    ``caught_up(cluster, node_id)`` is awaited before returning."""
    await client.propose({"op": "put", "key": "handover", "value": -1}, timeout=30)
    leader = client.leader
    if leader not in ids:
        raise RuntimeError(f"no leader named in the commit reply ({leader!r})")
    index = ids.index(leader)
    writer = Writer(client)
    task = asyncio.create_task(writer.run())
    try:
        await writer.commits(SETTLE_COMMITS)
        stopped_at = time.perf_counter()
        proc = cluster.procs[index]
        proc.signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
        await writer.commits(SETTLE_COMMITS)
    finally:
        writer.stop.set()
        await task
    gap = longest_gap(writer.ends, stopped_at)
    if restart:
        await cluster.restart(index)
        await caught_up(cluster, ids[index])
    return gap, statistics.median(writer.latencies), len(writer.failures)
