"""Registry benchmark: local reads, durable writes and propagation, against raw KV puts.

Absolute numbers on shared machines are noise, so the raw operation the registry builds
on (a plain nats-py KV put) is measured in the same run, interleaved with registrations,
and the unindexed scan beside a plain list comprehension over the same records,
alternated. Runs on a server of its own (its node creds may write the prefix's buckets
only) and deletes its buckets afterwards; the view that measures propagation reads as an
observer, and is the one the bulk load of ``agents`` records streams into:
``relists_during_load`` counts its re-lists then (``ba_registry_view_resyncs_total``).
``query_us_p50_50k`` is the indexed query at the run's size (``agents``: 50k by default).
Every figure carries its bootstrap ``_ci95``.
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
from broker_agents.registry import metrics
from broker_agents.registry.store import RegistryStore
from broker_agents.registry.view import LocalView
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.bench.harness import connect
from node.bench.stats import figure
from node.embedded import NatsServer

TARGETS = {"lookup_ns_p50": 1000.0, "query_us_p50_50k": 100.0, "register_vs_raw_put": 1.3,
           "propagation_us_p99": 2000.0, "scan_vs_comprehension": 1.0,
           "relists_during_load": 0}
SCAN = [{"field": "metadata.zone", "op": "eq", "value": "eu"}]


def _resyncs(view: LocalView) -> dict[str, int]:
    """The view's re-lists so far by reason (its counter, not a guess)."""
    return {sample.labels["reason"]: int(sample.value)
            for family in metrics.VIEW_RESYNCS.collect() for sample in family.samples
            if sample.name.endswith("_total") and sample.labels["view"] == view.name}


def _comprehension(records: list[AgentRecord]) -> list[AgentRecord]:
    return [r for r in records if r.metadata.get("zone") == "eu"]


def _record(rng: random.Random, i: int, caps: list[str]) -> AgentRecord:
    return AgentRecord(
        agent_id=f"b{i:06d}", name=f"bench agent {i}", node_id=f"node{i % 16}",
        capabilities=rng.sample(caps, 2),
        health=rng.choices(list(Health), weights=[8, 1, 1])[0], state=Lifecycle.RUNNING,
        resources={"memory_available": rng.random(), "cpu_usage": rng.random()},
        metadata={"zone": rng.choice(["eu", "us", "ap"])},
        registered_at=time.time(), last_heartbeat=time.time(),
    )


async def run_registry_bench(server: NatsServer, agents: int = 50_000, samples: int = 300,
                             seed: int = 1, scans: int = 30) -> dict[str, Any]:
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
        records = [_record(rng, i, caps) for i in range(agents + 2 * samples + scans)]

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

        # Bulk load, streamed into the open view: does its watch keep up?
        sem = asyncio.Semaphore(256)

        async def put(record: AgentRecord) -> None:
            async with sem:
                await store.register(record)

        relists_before = _resyncs(view)
        t0 = time.perf_counter()
        await asyncio.gather(*(put(r) for r in records[:agents]))
        written_s = time.perf_counter() - t0
        await view.wait_for(lambda: len(view) >= agents + 2 * samples, timeout=120)
        load_s = time.perf_counter() - t0
        reasons = {reason: n - relists_before.get(reason, 0)
                   for reason, n in _resyncs(view).items()
                   if n > relists_before.get(reason, 0)}

        ids = [r.agent_id for r in records[:agents + 2 * samples]]
        batch = [rng.choice(ids) for _ in range(1000)]
        get = view.get
        lookup_ns: list[float] = []
        for _ in range(50):
            t0 = time.perf_counter()
            for agent_id in batch:
                get(agent_id)
            lookup_ns.append((time.perf_counter() - t0) * 1e9 / len(batch))

        query_s: list[float] = []
        sizes: list[int] = []
        for _ in range(samples):
            crit = [{"field": "capability", "op": "eq", "value": rng.choice(caps)},
                    {"field": "health", "op": "eq", "value": "healthy"}]
            t0 = time.perf_counter()
            found = view.query(crit)
            query_s.append(time.perf_counter() - t0)
            sizes.append(len(found))

        scan = await _scans(view, store, records[agents + 2 * samples:], scans)
        result: dict[str, Any] = {
            "agents": len(view),
            **figure("lookup_ns_p50", lookup_ns),
            **figure("query_us_p50_50k", query_s, scale=1e6),
            **figure("query_us_p50", query_s, scale=1e6),
            "query_result_size_p50": statistics.median(sizes),
            **scan,
            "relists_during_load": sum(reasons.values()),
            "relist_reasons_during_load": reasons,
            "load_s": round(load_s, 2),
            "load_written_s": round(written_s, 2),
            **figure("register_us_p50", register_us),
            **figure("register_us_p99", register_us, q=99),
            **figure("raw_kv_put_us_p50", raw_us),
            **figure("raw_kv_put_us_p99", raw_us, q=99),
            **figure("register_vs_raw_put", [r / w for r, w in zip(register_us, raw_us,
                                                                 strict=True)], digits=2),
            **figure("propagation_us_p50", propagation_us),
            **figure("propagation_us_p99", propagation_us, q=99),
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


async def _scans(view: LocalView, store: RegistryStore, fresh: list[AgentRecord],
                 rounds: int) -> dict[str, Any]:
    """An unindexed field (``metadata.zone``) through ``view.query``, beside a plain list
    comprehension over the same records in the same order, alternated. Warm: the scan
    repeated on an unchanged registry. Cold: the first scan after a write reached the
    view (the index's cached columns are gone), ``rounds`` writes of ``fresh``."""
    warm_s: list[float] = []
    cold_s: list[float] = []
    plain_s: list[float] = []
    warm_ratio: list[float] = []
    cold_ratio: list[float] = []
    view.query(SCAN)  # puts the index in key order once, as any first scan does
    for i in range(rounds):
        record = fresh[i] if i < len(fresh) else None
        if record is not None:
            await store.register(record)
            await view.wait_for(lambda a=record.agent_id: view.get(a) is not None)  # type: ignore[misc]
            t0 = time.perf_counter()
            view.query(SCAN)
            cold_s.append(time.perf_counter() - t0)
        listed = list(view.index.records.values())
        t0 = time.perf_counter()
        found = view.query(SCAN)
        warm_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain = _comprehension(listed)
        plain_s.append(time.perf_counter() - t0)
        assert len(found) == len(plain), "the scan and the comprehension disagree"
        warm_ratio.append(warm_s[-1] / plain_s[-1])
        if record is not None:
            cold_ratio.append(cold_s[-1] / plain_s[-1])
    return {
        **figure("scan_ms_p50", warm_s, scale=1e3, digits=2),
        **figure("scan_cold_ms_p50", cold_s, scale=1e3, digits=2),
        **figure("comprehension_ms_p50", plain_s, scale=1e3, digits=2),
        **figure("scan_vs_comprehension", warm_ratio, digits=2),
        **figure("scan_cold_vs_comprehension", cold_ratio, digits=2),
    }
