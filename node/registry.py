"""The registry as a node service: every hosted agent is registered once it is live.

Health follows the supervisor (a restart marks the agent ``degraded`` until it runs
again), nodes heartbeat and reap each other's silent agents, and a graceful stop
deregisters this node's agents at once. Agents reach it as ``ctx.services["registry"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from broker_agents.agent import Agent
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.record import AgentRecord
from broker_agents.logging import get_logger
from broker_agents.registry.client import Registry
from broker_agents.registry.liveness import Heartbeater, Reaper, deregister_node
from broker_agents.registry.service import RegistryService
from broker_agents.registry.view import NodeView
from node.service_settings import RegistrySettings
from node.services import BaseService

if TYPE_CHECKING:
    from node.daemon import Node


class _NodeHeartbeater(Heartbeater):
    """A heartbeat that also keeps this node's own agents in the bucket.

    While a node is cut off, other nodes may reap its agents; its heartbeat alone only
    undoes reaper *marks*, so after every beat we re-register hosted agents the bucket
    lost. A beat that fails means we may be the one cut off: once beats succeed again the
    reaper forgets what it saw meanwhile instead of judging others from a stale view.
    """

    def __init__(self, service: RegistryNodeService, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = service
        self.failing = False

    async def beat(self) -> int:
        try:
            revision = await super().beat()
        except Exception:
            self.failing = True
            raise
        if self.failing:
            self.failing = False
            self.service.reaper.forget()
        await self.service.restore_missing()
        return revision


class RegistryNodeService(BaseService):
    name = "registry"
    Settings = RegistrySettings

    def __init__(self, **options: Any) -> None:
        """``options``: the ``[services.registry]`` fields (a ``ValueError`` names a bad one)."""
        self.settings = RegistrySettings.model_validate(options)
        self.registry: Registry | None = None
        self._parts: list[Any] = []

    async def start(self, node: Node) -> None:
        assert node.nc is not None
        self.node_id = node.id
        self.log = get_logger(node_id=node.id, service="registry")
        self.registry = registry = await Registry.connect(
            node.nc, node.subjects, self.settings.replicas,
            js_timeout=max(0.5, 2 * self.settings.heartbeat_interval))
        self.nodes = await NodeView.open(node.nc, node.subjects)
        node.on_reconnect(registry.view.on_reconnected)
        node.on_reconnect(self._nodes_reconnected)
        self.service = RegistryService(node.nc, registry.view, node.subjects)
        await self.service.start()
        self.hosted = node.agents
        self.reaper = Reaper(registry.store, registry.view, self.nodes, reaper_id=node.id,
                             window=self.settings.window, grace=self.settings.grace,
                             interval=self.settings.reap_interval, own_node=node.id)
        self.heartbeater = _NodeHeartbeater(self, registry.store, node.id,
                                            self.settings.heartbeat_interval,
                                            view=registry.view)
        await self.heartbeater.beat()
        self.heartbeater.start()
        self.reaper.start()

    async def _nodes_reconnected(self) -> None:
        self.nodes.notify_reconnected()
        self.reaper.forget()

    async def restore_missing(self) -> None:
        """Re-register hosted agents that the bucket no longer has (reaped while away)."""
        registry = self.registry
        assert registry is not None
        missing = [agent for agent_id, agent in list(self.hosted.items())
                   if registry.lookup(agent_id) is None]
        for agent in missing:
            self.log.info("registry: re-registering an agent the bucket lost",
                          agent_id=agent.agent_id)
        # together and with few attempts: beats must not stall, and the next one retries
        await asyncio.gather(*(self._restore(a) for a in missing))

    async def _restore(self, agent: Agent) -> None:
        await self.agent_started(agent, restarts=0, attempts=2)
        if agent.agent_id not in self.hosted and self.registry is not None:
            # it stopped while we wrote: take back what we advertised
            with contextlib.suppress(Exception):
                await self.registry.unregister(agent.agent_id)

    # -- what agents use --------------------------------------------------------------

    @property
    def view(self) -> Any:
        assert self.registry is not None
        return self.registry.view

    def find_by_capability(self, capability: str) -> list[AgentRecord]:
        assert self.registry is not None
        return self.registry.find_by_capability(capability)

    def __getattr__(self, name: str) -> Any:
        """Everything else of the Registry facade (lookup, query, watch, ...)."""
        registry = self.__dict__.get("registry")
        if registry is None:
            raise AttributeError(name)
        return getattr(registry, name)

    # -- agent lifecycle --------------------------------------------------------------

    async def agent_started(self, agent: Agent, restarts: int, attempts: int = 8) -> None:
        """Advertise a live agent (create, or overwrite a stale or reaper-marked record).

        A registry write that still fails after its retries is logged, not raised: the
        agent runs, and the heartbeat re-registers hosted agents the bucket lacks. Raising
        here failed the whole node start whenever a node came up next to a server that had
        just rejoined the cluster (no responders / a create and a read that disagree).
        """
        assert self.registry is not None
        record = {
            "agent_id": agent.agent_id, "name": type(agent).__name__, "node_id": self.node_id,
            "capabilities": agent.all_capabilities(), "health": "healthy", "state": "running",
            "resources": dict(agent.config.get("resources", {})),
            "metadata": dict(agent.config.get("metadata", {})),
            "public_key": getattr(agent, "public_key", None),
        }
        try:
            await self.registry.advertise(record, attempts)
        except BrokerError as exc:
            if exc.code != ErrorCode.UNAVAILABLE:
                raise
            self.log.warning("registry: agent not advertised yet; the heartbeat retries",
                             agent_id=agent.agent_id, error=exc.details.get("last_error"))

    async def agent_exited(self, agent_id: str, error: BaseException | None,
                           restarting: bool) -> None:
        assert self.registry is not None
        try:
            if restarting:
                await self.registry.update(agent_id, {"health": "degraded", "state": "failed"})
            else:
                await self.registry.unregister(agent_id)
        except BrokerError as exc:
            self.log.warning("registry write failed", agent_id=agent_id, error=exc.message)

    async def agent_stopping(self, agent_id: str) -> None:
        assert self.registry is not None
        with contextlib.suppress(BrokerError):
            await self.registry.unregister(agent_id)

    async def stop(self) -> None:
        """Also undoes a partial start: each part stops only if it was started."""
        registry, self.registry = self.registry, None
        if registry is None:
            return
        parts = self.__dict__
        if "reaper" in parts:
            await self.reaper.stop()
        with contextlib.suppress(Exception):
            await deregister_node(registry.store, registry.view, self.node_id)
        if "heartbeater" in parts:
            await self.heartbeater.stop(graceful=True)
        if "service" in parts:
            await self.service.stop()
        if "nodes" in parts:
            await self.nodes.stop()
        await registry.close()
        for name in ("reaper", "heartbeater", "service", "nodes"):
            parts.pop(name, None)
