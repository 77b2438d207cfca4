"""What ``/healthz`` and ``/readyz`` answer: one place that asks every part of the node.

- liveness (``/healthz``): is this process worth keeping? No while the agents' root
  supervisor or the embedded nats-server's supervisor has given up (the node is then on
  its way out, exit 1). A server being restarted within its intensity is still alive.
- readiness (``/readyz``): can it serve now? NATS connected, the embedded server up, every
  agent started and none given up, no ``ReadinessSource`` (a service, or an agent that
  has ``unready()``) reporting a problem, the registry's watch live, no coordinator
  saturated, not stopping.

Both answer JSON naming what is wrong in ``problems`` (part -> why). ``ba_node_healthy``
follows liveness, ``ba_node_ready`` readiness (set each time it is computed, and the node's
status publisher computes it every ``status_interval_s``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge

from broker_agents.metrics import NODE_HEALTHY
from node.http import ReadinessSource

NODE_READY = Gauge("ba_node_ready",
                   "1 while the node can serve (what /readyz answers); refreshed whenever "
                   "readiness is computed: /readyz, and the status publisher's every tick")

if TYPE_CHECKING:
    from node.daemon import Node


def liveness(node: Node) -> dict[str, Any]:
    problems: dict[str, str] = {}
    embedded = getattr(node, "embedded_supervisor", None)
    if embedded is not None and embedded.gave_up is not None:
        problems["nats.embedded"] = embedded.gave_up
    task = node._supervisor_task
    if task is not None and task.done() and not node._stopping:
        exc = None if task.cancelled() else task.exception()
        problems["supervisor"] = f"the agents' supervisor ended: {exc!r}"
    if not node.healthy and not problems:
        problems["supervisor"] = "the agents' supervisor gave up"
    healthy = not problems
    if not healthy:
        NODE_HEALTHY.set(0)
    return {"status": "ok" if healthy else "unhealthy", "healthy": healthy,
            "problems": problems}


def _registry_watch(service: Any) -> dict[str, str]:
    """The registry's local view of the agents bucket is live (listed, caught up within
    its bound); a stale view routes and reaps from old data."""
    registry = getattr(service, "registry", None)
    view = getattr(registry, "view", None)
    feed = getattr(view, "feed", None)
    if view is None or feed is None:
        return {}
    if not feed.ready.is_set():
        return {"registry.watch": "the agents bucket has not been listed yet"}
    bound = feed.catch_up_bound()
    if view.staleness > bound:
        return {"registry.watch": f"the agents view is {view.staleness:.1f}s behind "
                                  f"the bucket (bound {bound:.1f}s)"}
    return {}


def _saturated(agent_id: str, agent: Any) -> dict[str, str]:
    """A coordinator answering ``busy`` to everyone (all ``max_inflight`` slots taken)."""
    admission = getattr(agent, "admission", None)
    serving = getattr(agent, "_serving", None)
    limit = getattr(admission, "max_inflight", None)
    if isinstance(serving, int) and isinstance(limit, int) and serving >= limit:
        return {f"coordinator.{agent_id}": f"saturated: {serving} requests in flight "
                                           f"of max_inflight {limit}"}
    return {}


def problems(node: Node) -> dict[str, str]:
    """What keeps the node from serving, by part."""
    found: dict[str, str] = {}
    embedded = getattr(node, "embedded_supervisor", None)
    if embedded is not None and embedded.problem is not None:
        found["nats.embedded"] = embedded.problem
    for service in node.services:
        if isinstance(service, ReadinessSource):
            found.update(service.unready())
        if getattr(service, "name", None) == "registry":
            found.update(_registry_watch(service))
    for agent_id, agent in list(node.agents.items()):
        if isinstance(agent, ReadinessSource):
            found.update(agent.unready())
        found.update(_saturated(agent_id, agent))
    return found


def readiness(node: Node) -> dict[str, Any]:
    connected = bool(node.nc and node.nc.is_connected)
    supervisor = node.supervisor
    expected = len(supervisor.specs) if supervisor else 0
    running = len(node.agents)
    found = problems(node)
    failed = dict(supervisor.failed) if supervisor else {}
    if not connected:
        found.setdefault("nats", "not connected")
    ready = (connected and node._agents_ready.is_set() and running == expected
             and not node._stopping and node.healthy and not found)
    NODE_READY.set(1 if ready else 0)
    return {"ready": ready, "nats_connected": connected, "agents_running": running,
            "agents_expected": expected, "stopping": node._stopping,
            "problems": found, "agents_failed": failed}
