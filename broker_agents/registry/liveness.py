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
    ReapAction,
    ReaperCore,
    RemoveAgent,
    Scan,
    ViewLost,
    restorations,
)
from broker_agents.core.registry.record import NodeRecord
from broker_agents.registry import metrics
from broker_agents.registry.store import RegistryStore
from broker_agents.registry.view import LocalView, NodeView
from broker_agents.versions import announcement

log = structlog.get_logger()


class _Loop:
    """A periodic task with an owner: started, stopped, failures logged not lost.

    Fixed rate: a tick starts every ``interval`` whatever the tick took (at once when it
    took longer), so a heartbeat or a scan is never late by its own round trips. The
    liveness bounds (the reap bound, the reaper's stale-view threshold) presume exactly
    this period; sleeping a full interval after each tick stretched it on a loaded
    machine.
    """

    interval: float
    _task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=type(self).__name__)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registry.liveness.tick_failed", loop=type(self).__name__,
                            error=repr(exc))
            next_at = max(next_at + self.interval, loop.time())
            # sleep-ok: the heartbeat / scan period
            await asyncio.sleep(next_at - loop.time())

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
                            metadata=self.metadata, **announcement())
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
        """One scan; its actions run concurrently (each is a CAS on its own key), so a
        scan takes one round trip however many agents a dead node had."""
        was_stale = self.core.stale
        actions = self.core.step(Scan(self.nodes.revisions(), self.view.with_revisions(),
                                      now=time.monotonic(), wall=time.time()))
        if self.core.stale != was_stale:
            state = "stale" if self.core.stale else "live"
            metrics.REAPER_VIEW.labels(state).inc()
            log.info(f"registry.reaper.view_{state}", reaper=self.core.reaper_id)
        report = ReapReport()
        outcomes = await asyncio.gather(*(self._act(a) for a in actions),
                                        return_exceptions=True)
        for action, outcome in zip(actions, outcomes, strict=True):
            kind, subject = _describe(action)
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                metrics.REAP_LOST.labels(kind).inc()
                log.warning("registry.reaper.failed", action=kind, target=subject,
                            error=repr(outcome))
                report.lost += 1
            elif outcome:
                {"mark_unhealthy": report.marked, "remove_agent": report.removed,
                 "remove_node": report.nodes_removed}[kind].append(subject)
                metrics.REAPED.labels(kind).inc()
                log.info("registry.reaper.acted", action=kind, target=subject,
                         reaper=self.core.reaper_id)
            else:
                report.lost += 1
                metrics.REAP_LOST.labels(kind).inc()
        return report

    async def _act(self, action: ReapAction) -> bool:
        """Carry out one action with CAS; False when another writer got there first."""
        if isinstance(action, MarkUnhealthy):
            return await self.store.cas_put(action.agent_id, action.record,
                                            action.revision) is not None
        if isinstance(action, RemoveAgent):
            return await self.store.cas_delete(action.agent_id, action.revision)
        return await self.store.remove_node(action.node_id, action.revision)

    async def stop(self) -> None:
        await self.stop_loop()


def _describe(action: ReapAction) -> tuple[str, str]:
    if isinstance(action, MarkUnhealthy):
        return "mark_unhealthy", action.agent_id
    if isinstance(action, RemoveAgent):
        return "remove_agent", action.agent_id
    return "remove_node", action.node_id
