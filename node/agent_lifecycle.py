"""What a node does when its supervisor starts, stops or gives up on an agent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker_agents.metrics import AGENTS_RUNNING, RESTARTS
from node.hosting import AgentChild
from node.supervisor import Child, SupervisorHooks

if TYPE_CHECKING:
    from node.daemon import Node


class AgentLifecycle(SupervisorHooks):
    """Tells the node's services and the cluster (lifecycle events) what its supervisor
    did to an agent: started (or restarted), exited, stopping, given up."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def started(self, child_id: str, child: Child, restarts: int) -> None:
        AGENTS_RUNNING.inc()
        if restarts:
            RESTARTS.labels(child_id).inc()
        agent = child.agent if isinstance(child, AgentChild) else None
        if agent is not None:
            self.node.agents[child_id] = agent
            for service in self.node.services:
                await service.agent_started(agent, restarts)
        await self.node.publish_event("started", child_id, restarts=restarts, kind="agent")

    async def exited(self, child_id: str, error: BaseException | None, restarting: bool) -> None:
        AGENTS_RUNNING.dec()
        self.node.agents.pop(child_id, None)
        for service in self.node.services:
            await service.agent_exited(child_id, error, restarting)
        await self.node.publish_event("exited", child_id, kind="agent", restarting=restarting,
                                      error=repr(error) if error else None)

    async def stopping(self, child_id: str) -> None:
        AGENTS_RUNNING.dec()
        self.node.agents.pop(child_id, None)
        for service in self.node.services:
            await service.agent_stopping(child_id)

    async def gave_up(self, child_id: str, error: BaseException | None) -> None:
        for service in self.node.services:  # deregistered (idempotent), like a stop
            await service.agent_exited(child_id, error, False)
        await self.node.publish_event("gave_up", child_id, kind="agent",
                                      error=repr(error) if error else None)
