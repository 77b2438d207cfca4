"""A stand-in node process for liveness tests: registers agents, heartbeats, waits to die.

    python -m tests.integration.registry.node_proc <context> <node_id> <agent_count>

``context`` is a node's context file (servers, creds, CA), as a daemon would be given.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from broker_agents.core.registry.record import AgentRecord, Lifecycle
from broker_agents.registry.liveness import Heartbeater
from broker_agents.registry.store import RegistryStore
from broker_agents.transport import connect_client
from node.auth.context import ClientContext


async def main(context: Path, node_id: str, count: int) -> None:
    ctx = ClientContext.read(context)
    nc = await connect_client(list(ctx.servers), security=ctx.security())
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
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
