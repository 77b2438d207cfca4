"""``broker-agents bench coordination``: coordination latency beside raw NATS, one run.

Starts its own two-node ``LocalCluster`` (a coordinator on node 1; voters and replicas
split over both nodes) and measures, as a client sees them (request on ``<p>.coord.*``
until the reply):

- ``vote_10_ms_p50``: majority vote among 10 voter agents on two nodes;
- ``raw_fanout10_ms_p50``: one message published to 10 plain nats-py responders (split
  over two processes like the voters) until all 10 replies arrived (same run);
- ``pbft_4_ms_p50``: PBFT among 4 replica agents (set-up, 3 phases, f+1 replies);
- ``hierarchical_100_ms_p50``: hierarchical majority over 100 voters (clusters of 5).

Targets: vote <= 2x raw fan-out; PBFT 4 <= 10 ms; hierarchical 100 <= 50 ms.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.bench.fanout import raw_fanout
from broker_agents.bench.stats import percentile
from broker_agents.core.errors import BrokerError
from broker_agents.subjects import Subjects
from node.cluster import LocalCluster

COORDINATOR = "broker_agents.coord.coordinator:CoordinatorAgent"
VOTER = "broker_agents.coord.voter:VoterAgent"
REPLICA = "broker_agents.coord.pbft_replica:PbftReplicaAgent"
FANOUT = 10
HIERARCHY = 100


def _agents() -> list[list[dict[str, Any]]]:
    nodes: list[list[dict[str, Any]]] = [
        [{"class": COORDINATOR, "id": "bench-coord"}], []]
    for i in range(HIERARCHY):
        nodes[i % 2].append({"class": VOTER, "id": f"bv-{i}",
                             "kwargs": {"choice": "yes" if i % 3 else "no"}})
    for i in range(4):
        nodes[i % 2].append({"class": REPLICA, "id": f"br-{i}"})
    return nodes


async def _raw_fanout(nc: NATS, url: str, runs: int) -> list[float]:
    return await raw_fanout(nc, url, "bench.coord.raw.fanout", FANOUT, runs, b"\x81\xa4vote\x01")


async def _timed(nc: NATS, protocol: str, request: dict[str, Any], runs: int,
                 check: str) -> list[float]:
    subject = Subjects().coord(protocol)
    data = codec.encode(request)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        reply = await nc.request(subject, data, timeout=30)
        samples.append(time.perf_counter() - started)
        payload = codec.decode(reply.data)
        err = BrokerError.from_payload(payload)
        if err is not None:
            raise err
        if not payload.get(check):
            raise RuntimeError(f"{protocol} bench request failed: {str(payload)[:300]}")
    return samples


def _ms(samples: list[float], q: float = 50) -> float:
    return round(percentile(samples, q) * 1000, 3)


async def run_coordination_bench(runs: int = 100, raw_runs: int = 300) -> dict[str, Any]:
    voters10 = [f"bv-{i}" for i in range(FANOUT)]
    vote = {"proposal": "bench?", "options": ["yes", "no"], "participants": voters10}
    hier = {"proposal": "bench?", "participants": [f"bv-{i}" for i in range(HIERARCHY)],
            "cluster_size": 5, "max_depth": 3}
    pbft = {"operation": "bench-op", "participants": [f"br-{i}" for i in range(4)]}
    with tempfile.TemporaryDirectory(prefix="ba-bench-coord-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=2, agents=_agents(),
                               extra_env={"BA_NODE__LOG_LEVEL": "warning"})
        await cluster.start()
        try:
            nc = await cluster.client()
            for protocol, req, check in (("vote", vote, "rule_met"),
                                         ("hierarchical", hier, "depth"),
                                         ("pbft", pbft, "decided")):
                await _timed(nc, protocol, req, 5, check)  # warm-up: caches, keys, inboxes
            raw = await _raw_fanout(nc, cluster.urls[0], raw_runs)
            votes = await _timed(nc, "vote", vote, runs, "rule_met")
            pbfts = await _timed(nc, "pbft", pbft, runs, "decided")
            hiers = await _timed(nc, "hierarchical", hier, max(10, runs // 2), "depth")
            await nc.close()
        finally:
            await asyncio.to_thread(cluster.stop)
    result: dict[str, Any] = {
        "suite": "coordination", "runs": runs,
        "vote_10_ms_p50": _ms(votes), "vote_10_ms_p99": _ms(votes, 99),
        "raw_fanout10_ms_p50": _ms(raw), "raw_fanout10_ms_p99": _ms(raw, 99),
        "pbft_4_ms_p50": _ms(pbfts), "pbft_4_ms_p99": _ms(pbfts, 99),
        "hierarchical_100_ms_p50": _ms(hiers), "hierarchical_100_ms_p99": _ms(hiers, 99),
    }
    result["vote_to_raw_ratio"] = round(result["vote_10_ms_p50"]
                                        / result["raw_fanout10_ms_p50"], 2)
    result["target_vote_le_2x_raw"] = result["vote_to_raw_ratio"] <= 2.0
    result["target_pbft_4_le_10ms"] = result["pbft_4_ms_p50"] <= 10.0
    result["target_hierarchical_100_le_50ms"] = result["hierarchical_100_ms_p50"] <= 50.0
    return result
