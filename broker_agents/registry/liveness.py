"""Node heartbeats and the reaper that retires agents of silent nodes.

nats-server 2.9 has no per-key TTL, so liveness is a heartbeat record per node plus a
reaper on every node. The reaper's decisions are pure (``ReaperCore``); here they are
carried out with compare-and-set, so two reapers never both act on one record and a node
that came back (and rewrote its agents) is never clobbered. A live node's heartbeater
undoes reaper marks on its own agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from broker_agents.core.registry.reaper import (
    MarkUnhealthy,
    ReaperCore,
    RemoveAgent,
    RemoveNode,
    Scan,
    ViewLost,
    restorations,
)
from broker_agents.core.registry.record import NodeRecord
from broker_agents.registry import metrics
from broker_agents.registry.store import RegistryStore
from broker_agents.registry.view import LocalView, NodeView

log = structlog.get_logger()


class _Loop:
    """A periodic task with an owner: started, stopped, failures logged not lost."""

    interval: float
    _task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=type(self).__name__)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registry.liveness.tick_failed", loop=type(self).__name__,
                            error=repr(exc))
            # sleep-ok: the heartbeat / scan period
            await asyncio.sleep(self.interval)

    async def stop_loop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)


class Heartbeater(_Loop):
    """Writes this node's heartbeat every ``interval`` and restores its reaped agents."""

    def __init__(self, store: RegistryStore, node_id: str, interval: float = 1.0,
                 view: LocalView | None = None, metadata: dict[str, Any] | None = None) -> None:
        self.store = store
        self.node_id = node_id
        self.interval = interval
        self.view = view
        self.metadata = metadata or {}
        self.started_at = time.time()
        self.beats = 0

    async def tick(self) -> None:
        await self.beat()

    async def beat(self) -> int:
        self.beats += 1
        count = len(self.view.index.by_node.get(self.node_id, ())) if self.view else 0
        record = NodeRecord(node_id=self.node_id, last_heartbeat=time.time(),
                            started_at=self.started_at, beat=self.beats, agent_count=count,
                            metadata=self.metadata)
        try:
            revision = await self.store.heartbeat(record)
        except Exception:
            metrics.HEARTBEATS.labels("error").inc()
            raise
        metrics.HEARTBEATS.labels("ok").inc()
        if self.view is not None:
            own = [(r, self.view.index.revisions[r.agent_id])
                   for r in self.view.find_by_node(self.node_id)]
            for action in restorations(self.node_id, own):
                if await self.store.cas_put(action.agent_id, action.record, action.revision):
                    log.info("registry.liveness.restored", agent_id=action.agent_id)
        return revision

    async def stop(self, graceful: bool = True) -> None:
        """Stop beating; a graceful stop also deletes the heartbeat record."""
        await self.stop_loop()
        if graceful:
            with contextlib.suppress(Exception):
                await self.store.remove_node(self.node_id)


async def deregister_node(store: RegistryStore, view: LocalView, node_id: str) -> int:
    """Graceful node stop: delete every agent the view says the node hosts, at once."""
    agents = [r.agent_id for r in view.find_by_node(node_id)]
    await asyncio.gather(*(store.unregister(a) for a in agents))
    return len(agents)


@dataclass
class ReapReport:
    marked: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    nodes_removed: list[str] = field(default_factory=list)
    lost: int = 0


class Reaper(_Loop):
    """Scans the local views every ``interval``; acts with CAS on the revisions it saw."""

    def __init__(self, store: RegistryStore, view: LocalView, nodes: NodeView, reaper_id: str,
                 window: float, grace: float, interval: float = 1.0,
                 own_node: str | None = None) -> None:
        self.store = store
        self.view = view
        self.nodes = nodes
        self.interval = interval
        self.core = ReaperCore(reaper_id, window, grace, own_node)

    async def tick(self) -> None:
        await self.scan_once()

    def forget(self) -> None:
        """This node was cut off: what the reaper saw of others' heartbeats is stale."""
        self.core.step(ViewLost())

    async def scan_once(self) -> ReapReport:
        actions = self.core.step(Scan(self.nodes.revisions(), self.view.with_revisions(),
                                      now=time.monotonic(), wall=time.time()))
        report = ReapReport()
        for action in actions:
            if isinstance(action, MarkUnhealthy):
                won = await self.store.cas_put(action.agent_id, action.record,
                                               action.revision) is not None
                kind, bucket = "mark_unhealthy", report.marked
                subject = action.agent_id
            elif isinstance(action, RemoveAgent):
                won = await self.store.cas_delete(action.agent_id, action.revision)
                kind, bucket, subject = "remove_agent", report.removed, action.agent_id
            else:
                assert isinstance(action, RemoveNode)
                won = await self.store.remove_node(action.node_id, action.revision)
                kind, bucket, subject = "remove_node", report.nodes_removed, action.node_id
            if won:
                bucket.append(subject)
                metrics.REAPED.labels(kind).inc()
                log.info("registry.reaper.acted", action=kind, target=subject,
                         reaper=self.core.reaper_id)
            else:
                report.lost += 1
                metrics.REAP_LOST.labels(kind).inc()
        return report

    async def stop(self) -> None:
        await self.stop_loop()
