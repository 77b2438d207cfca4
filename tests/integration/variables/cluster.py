"""Three node processes hosting a "variables" group, an engine agent on each, helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from node.auth.roles import Role
from node.cluster import LocalCluster

MEMBERS = ["node-1", "node-2", "node-3"]
SERVICES = {"consensus": {"groups": [
    {"name": "variables", "members": MEMBERS, "state_machine": "variables"}]}}
ENGINE = "broker_agents.variables.engine_agent:AdaptationEngineAgent"
SYNTHETIC = "broker_agents.variables.synthetic:SyntheticObjectiveAgent"


def engines(spaces: dict[str, Any], seed: int = 1) -> list[list[dict[str, Any]]]:
    return [[{"class": ENGINE, "id": f"var-engine-{i}",
              "kwargs": {"spaces": spaces, "seed": seed}}] for i in range(1, 4)]


@asynccontextmanager
async def cluster(base: Path, agents: list[list[dict[str, Any]]]) -> AsyncIterator[
        tuple[LocalCluster, Any]]:
    c = LocalCluster(base, nodes=3, agents=agents, services=SERVICES)
    await c.start()
    nc = await c.client(Role.NODE)  # sets values and reads change events: a node's
    try:
        yield c, nc
    finally:
        await nc.close()
        await asyncio.to_thread(c.stop)
