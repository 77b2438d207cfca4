"""A stand-in node process for liveness tests: registers agents, heartbeats, waits to die.

    python -m tests.integration.registry.node_proc <nats_url> <node_id> <agent_count>
"""

from __future__ import annotations

import asyncio
import sys
import time

import nats

from broker_agents.core.registry.record import AgentRecord, Lifecycle
from broker_agents.registry.liveness import Heartbeater
from broker_agents.registry.store import RegistryStore


async def main(url: str, node_id: str, count: int) -> None:
    nc = await nats.connect(url)
    store = await RegistryStore.open(nc)
    beater = Heartbeater(store, node_id, interval=0.05)
    await beater.beat()
    now = time.time()
    for i in range(count):
        await store.register(AgentRecord(
            agent_id=f"{node_id}-a{i}", name=f"agent {i}", node_id=node_id,
            capabilities=["work"], state=Lifecycle.RUNNING, registered_at=now,
            last_heartbeat=now))
    beater.start()
    print("ready", flush=True)
    await asyncio.Event().wait()  # run until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
