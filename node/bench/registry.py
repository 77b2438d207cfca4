"""Registry benchmark: local reads, durable writes and propagation, against raw KV puts.

Absolute numbers on shared machines are noise, so the raw operation the registry builds
on (a plain nats-py KV put) is measured in the same run, interleaved with registrations.
Runs on a server of its own (its node creds may write the prefix's buckets only) and
deletes its buckets afterwards; the view that measures propagation reads as an observer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from typing import Any

from broker_agents.codec import encode
from broker_agents.core.registry.record import AgentRecord, Health, Lifecycle
from broker_agents.registry.store import RegistryStore
from broker_agents.registry.view import LocalView
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.bench.harness import connect
from node.bench.stats import percentile
from node.embedded import NatsServer

TARGETS = {"lookup_ns_p50": 1000.0, "query_us_p50": 100.0, "register_vs_raw_put": 1.3,
           "propagation_us_p99": 2000.0}


def _record(rng: random.Random, i: int, caps: list[str]) -> AgentRecord:
    return AgentRecord(
        agent_id=f"b{i:06d}", name=f"bench agent {i}", node_id=f"node{i % 16}",
        capabilities=rng.sample(caps, 2),
        health=rng.choices(list(Health), weights=[8, 1, 1])[0], state=Lifecycle.RUNNING,
        resources={"memory_available": rng.random(), "cpu_usage": rng.random()},
        metadata={"zone": rng.choice(["eu", "us", "ap"])},
        registered_at=time.time(), last_heartbeat=time.time(),
    )


async def run_registry_bench(server: NatsServer, agents: int = 10_000, samples: int = 300,
                             seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    caps = [f"cap{i}" for i in range(100)]
    subjects = Subjects()
    writer = await connect(server)
    reader = await connect(server, Role.OBSERVER)
    js = writer.jetstream()
    view: LocalView | None = None
    try:
        store = await RegistryStore.open(writer, subjects)
        raw = await js.create_key_value(bucket=subjects.bucket("raw"), history=1)
        records = [_record(rng, i, caps) for i in range(agents + 2 * samples)]

        # Durable writes: no view in this process yet, so neither side pays for a watch.
        register_us: list[float] = []
        raw_us: list[float] = []
        for i in range(samples):  # interleaved, so both see the same conditions
            payload = encode(records[i])
            t0 = time.perf_counter()
            await raw.put(f"k{i}", payload)
            raw_us.append((time.perf_counter() - t0) * 1e6)
            t0 = time.perf_counter()
            await store.register(records[agents + i])
            register_us.append((time.perf_counter() - t0) * 1e6)

        # Propagation: write on one connection until the other connection's view has it.
        view = await LocalView.open(reader, subjects)
        propagation_us: list[float] = []
        for i in range(samples):
            record = records[agents + samples + i]
            t0 = time.perf_counter()
            await store.register(record)
            agent_id = record.agent_id
            if view.get(agent_id) is None:
                await view.wait_for(lambda a=agent_id: view.get(a) is not None)  # type: ignore[misc]
            propagation_us.append((time.perf_counter() - t0) * 1e6)

        sem = asyncio.Semaphore(256)

        async def put(record: AgentRecord) -> None:
            async with sem:
                await store.register(record)

        await asyncio.gather(*(put(r) for r in records[:agents]))
        await view.wait_for(lambda: len(view) >= agents + 2 * samples, timeout=60)

        ids = [r.agent_id for r in records]
        batch = [rng.choice(ids) for _ in range(1000)]
        get = view.get
        lookup_ns: list[float] = []
        for _ in range(50):
            t0 = time.perf_counter_ns()
            for agent_id in batch:
                get(agent_id)
            lookup_ns.append((time.perf_counter_ns() - t0) / len(batch))

        query_us: list[float] = []
        sizes: list[int] = []
        for _ in range(samples):
            crit = [{"field": "capability", "op": "eq", "value": rng.choice(caps)},
                    {"field": "health", "op": "eq", "value": "healthy"}]
            t0 = time.perf_counter()
            found = view.query(crit)
            query_us.append((time.perf_counter() - t0) * 1e6)
            sizes.append(len(found))

        raw_p50 = statistics.median(raw_us)
        register_p50 = statistics.median(register_us)
        result: dict[str, Any] = {
            "agents": len(view),
            "lookup_ns_p50": round(statistics.median(lookup_ns), 1),
            "query_us_p50": round(statistics.median(query_us), 1),
            "query_result_size_p50": statistics.median(sizes),
            "register_us_p50": round(register_p50, 1),
            "register_us_p99": round(percentile(register_us, 99), 1),
            "raw_kv_put_us_p50": round(raw_p50, 1),
            "raw_kv_put_us_p99": round(percentile(raw_us, 99), 1),
            "register_vs_raw_put": round(register_p50 / raw_p50, 2),
            "propagation_us_p50": round(statistics.median(propagation_us), 1),
            "propagation_us_p99": round(percentile(propagation_us, 99), 1),
        }
        result["targets"] = TARGETS
        result["meets_targets"] = {
            key: result[key] <= limit for key, limit in TARGETS.items()
        }
        return result
    finally:
        if view is not None:
            await view.stop()
        for concern in ("agents", "nodes", "raw"):
            with contextlib.suppress(Exception):
                await js.delete_key_value(subjects.bucket(concern))
        await reader.close()
        await writer.close()
