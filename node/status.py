"""The node's live status on NATS: one compact document every ``status_interval_s``.

    <p>.events.node.<node_id>.status

What a dashboard needs and the buckets do not hold: health, readiness and its problems,
version, uptime, per hosted agent its message counters, errors, restarts and handler
latency histogram, and each consensus member's role, term, commit and applied indexes.
It is built from the node's own state and its Prometheus registry (read, never written),
so it reports what ``/metrics`` would. It is an event: the observer role may read it, and a
node that stops publishing is ``down`` to a reader after ``3 x interval`` (``DOWN_AFTER``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import Histogram
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from broker_agents import codec, versions
from broker_agents import metrics as agent_metric
from broker_agents.core.features import supported_features
from broker_agents.core.versioning import SCHEMA_VERSION
from broker_agents.logging import get_logger
from node import health

if TYPE_CHECKING:
    from node.daemon import Node

DOWN_AFTER = 3  # intervals of silence after which a reader calls a node down

# Counters with a few samples each (only the label sets that occurred): read by collect().
_SPARSE_FAMILIES = {"ba_agent_handler_errors": "errors", "ba_agent_restarts": "restarts"}

log = get_logger()

# The per-message families are read from their cells (no exposition samples: building
# those for 150 agents took ~15-30 ms of the event loop every interval); the sparse ones
# through collect(). The whole registry (~90 collectors) is never read.
_FAST_COUNTERS = ((agent_metric.MESSAGES_IN, "in"), (agent_metric.MESSAGES_OUT, "out"))
_SPARSE_COLLECTORS: tuple[Collector, ...] = (agent_metric.HANDLER_ERRORS,
                                             agent_metric.RESTARTS)

PUBLISH_SECONDS = Histogram("ba_node_status_seconds",
                            "Building and publishing one node status event",
                            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1))


class NodeStatus(BaseModel):
    """What a reader checks of a status event before using it (the fields it computes
    with); other fields pass through. A document that fails is refused and counted."""

    model_config = ConfigDict(extra="allow", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    node_id: str | None = None
    at: float | None = None
    interval_s: float = Field(2.0, gt=0, allow_inf_nan=False)
    started_at: float | None = Field(None, allow_inf_nan=False)
    healthy: bool | None = None
    ready: bool | None = None
    stopping: bool = False
    problems: dict[str, str] = Field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = Field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = Field(default_factory=dict)
    version: str | None = None
    schema_version: int = Field(1, alias="schema", ge=1)  # absent: a build before versions
    features: list[str] = Field(default_factory=list)


version = versions.package_version  # one home: broker_agents.versions


def agent_metrics(agents: Iterable[str]) -> dict[str, Any]:
    """Per agent: cumulative ``in``, ``out``, ``errors``, ``restarts`` and the handler
    latency histogram (``le`` bounds, cumulative ``counts``), summed over other labels."""
    wanted = set(agents)
    out: dict[str, dict[str, Any]] = {a: {"in": 0.0, "out": 0.0, "errors": 0.0,
                                           "restarts": 0.0, "le": [], "counts": []}
                                       for a in wanted}
    for family_cells, field in _FAST_COUNTERS:
        for labels, cell in family_cells.cells():
            if labels[0] in wanted:
                out[labels[0]][field] += cell.value
    for family in (f for c in _SPARSE_COLLECTORS for f in c.collect()):
        sparse = _SPARSE_FAMILIES.get(family.name)
        if sparse is None:
            continue
        for sample in family.samples:
            agent = sample.labels.get("agent")
            if agent in wanted and sample.name.endswith("_total"):
                out[agent][sparse] += sample.value
    latency = agent_metric.HANDLER_SECONDS
    summed: dict[str, list[int]] = {}
    for labels, hist in latency.cells():
        if labels[0] in wanted:
            into = summed.setdefault(labels[0], [0] * len(hist.counts))
            for k, count in enumerate(hist.counts):
                into[k] += count
    bounds: list[float | None] = [*latency.bounds, None]  # None: +Inf
    for agent, counts in summed.items():
        out[agent]["le"] = bounds
        out[agent]["counts"] = [float(c) for c in itertools.accumulate(counts)]
    return out


def groups_status(node: Node) -> dict[str, Any]:
    """Each consensus member this node hosts: role, term, commit, applied, leader."""
    service = node.service_map.get("consensus")
    members = getattr(service, "members", {}) if service is not None else {}
    machines = {g.name: g.state_machine for g in getattr(service, "groups", ())}
    out: dict[str, Any] = {}
    for name, member in members.items():
        try:
            leader = member.leader
            role = ("leader" if member.is_leader else "follower" if leader is not None
                    else "candidate")
            out[name] = {"role": role, "term": member.term, "commit_index": member.commit_index,
                         "applied_index": member.applied_index, "leader": leader,
                         "failed": member.failed, "state_machine": machines.get(name)}
        except Exception as exc:  # a fail-stopped member: say so, keep publishing
            out[name] = {"role": "unknown", "term": None, "commit_index": None,
                         "applied_index": None, "leader": None, "failed": repr(exc)}
    return out


def build_status(node: Node, interval: float, started_at: float) -> dict[str, Any]:
    live = health.liveness(node)
    ready = health.readiness(node)
    agents = sorted(node.agents)
    now = time.time()
    return {
        "v": SCHEMA_VERSION, "node_id": node.id, "at": now, "interval_s": interval,
        "version": version(), "schema": SCHEMA_VERSION, "features": supported_features(),
        "started_at": started_at, "uptime_s": round(now - started_at, 3),
        "healthy": bool(live.get("healthy")), "ready": bool(ready.get("ready")),
        "problems": {**live.get("problems", {}), **ready.get("problems", {})},
        "stopping": node.stopping.is_set(), "nats_url": node.nats_url,
        "nats_connected": bool(node.nc is not None and node.nc.is_connected),
        "nats_version": _server_version(node),
        "agents": agent_metrics(agents), "groups": groups_status(node),
    }


def _server_version(node: Node) -> str | None:
    info = getattr(node.nc, "_server_info", None) if node.nc is not None else None
    return info.get("version") if isinstance(info, dict) else None


class StatusPublisher:
    """Publishes ``build_status`` every ``interval`` seconds until stopped."""

    def __init__(self, node: Node, interval: float) -> None:
        self.node = node
        self.interval = interval
        self.started_at = time.time()
        self.subject = node.subjects.events("node", node.id, "status")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"node-{self.node.id}-status")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish_once(self) -> None:
        nc = self.node.nc
        if nc is None or not nc.is_connected:
            return
        with PUBLISH_SECONDS.time():
            doc = build_status(self.node, self.interval, self.started_at)
            await nc.publish(self.subject, codec.encode(doc))

    async def _run(self) -> None:
        while True:
            try:
                await self.publish_once()
            except Exception as exc:  # never let status reporting take the node down
                log.warning("status.publish_failed", error=repr(exc))
            await asyncio.sleep(self.interval)  # the publishing period, not a sync
