"""Shared helpers for registry integration tests."""

from __future__ import annotations

from typing import Any

from broker_agents.core.registry.record import AgentRecord


def agent(agent_id: str, node_id: str = "n1", **kw: Any) -> AgentRecord:
    return AgentRecord(agent_id=agent_id, name=f"agent {agent_id}", node_id=node_id,
                       registered_at=1.0, last_heartbeat=1.0, **kw)
