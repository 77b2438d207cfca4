"""``broker-agents bench coordination``: coordination latency beside raw NATS, one run.

Starts its own two-node ``LocalCluster`` (a coordinator on node 1; voters and replicas
split over both nodes) and measures, as a client sees them (request on ``<p>.coord.*``
until the reply):

- ``vote_10_ms_p50``: majority vote among 10 voter agents on two nodes;
- ``raw_fanout10_ms_p50``: one message published to 10 plain nats-py responders (split
  over two processes like the voters) until all 10 replies arrived (same run);
- ``raw_relay_fanout10_ms_p50``: the same fan-out behind a raw relay (a request to one
  plain nats-py process that publishes the fan-out and answers when all 10 replied): the
  two round trips any coordinator adds, without decoding, checks or events; and
  ``vote_to_raw_relay_ratio``, the vote beside that floor (``_100`` for the 100 case);
- ``vote_100_ms_p50`` beside ``raw_fanout100_ms_p50``: the same among 100;
- ``pbft_4_ms_p50``: PBFT among 4 replica agents (set-up, 3 phases, f+1 replies);
- ``hierarchical_100_ms_p50``: hierarchical majority over 100 voters (clusters of 5).

Targets: vote <= 2x raw fan-out (10 and 100); PBFT 4 <= 10 ms; hierarchical 100 <= 50 ms.
Every figure carries its bootstrap ``<name>_ci95``; the raw fan-outs run between the vote
blocks, alternated, so both see the same machine state.

Every request is a signed act of the client (as the CLI sends them), every vote answer
is signed by its voter and checked by the coordinator: the figures include that cost.
The coordinator's per-requester quota is raised so that the one benchmarking client is
never throttled.
"""

from __future__ import annotations

import time
from typing import Any

from nats.aio.client import Client as NATS

from broker_agents import codec, transport
from broker_agents.core.errors import BrokerError
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.bench.fanout import raw_fanouts
from node.bench.harness import running_cluster
from node.bench.stats import figure
from node.cluster import LocalCluster

COORDINATOR = "broker_agents.coord.coordinator:CoordinatorAgent"
VOTER = "broker_agents.coord.voter:VoterAgent"
REPLICA = "broker_agents.coord.pbft_replica:PbftReplicaAgent"
FANOUT = 10
HIERARCHY = 100
BENCH_QUOTA = {"inflight": 1024, "rate_per_s": 1e6, "burst": 1_000_000}


def _agents() -> list[list[dict[str, Any]]]:
    nodes: list[list[dict[str, Any]]] = [
        [{"class": COORDINATOR, "id": "bench-coord", "kwargs": {"quota": BENCH_QUOTA}}], []]
    for i in range(HIERARCHY):
        nodes[i % 2].append({"class": VOTER, "id": f"bv-{i}",
                             "kwargs": {"choice": "yes" if i % 3 else "no"}})
    for i in range(4):
        nodes[i % 2].append({"class": REPLICA, "id": f"br-{i}"})
    return nodes


async def _raw_fanout(cluster: LocalCluster, runs: int,
                      responders: int) -> tuple[list[float], list[float]]:
    """The raw fan-out's samples, and as many through a raw relay (the two-hop floor)."""
    assert cluster.auth is not None
    nc = await cluster.client(Role.NODE)  # a subject of our own, beside the protocol's
    try:
        return await raw_fanouts(nc, cluster.auth.contexts[Role.NODE],
                                 f"ba.bench.coord.raw.fanout{responders}", responders, runs,
                                 b"\x81\xa4vote\x01", relayed=runs)
    finally:
        await nc.close()


async def _timed(nc: NATS, protocol: str, request: dict[str, Any], runs: int,
                 check: str) -> list[float]:
    subject = Subjects().coord(protocol)
    data = codec.encode(request)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        reply = await transport.request(nc, subject, data, 30, signed=True)
        payload = codec.decode(reply.data, reply.headers)
        samples.append(time.perf_counter() - started)
        if (err := BrokerError.from_payload(payload)) is not None:
            raise err
        if not payload.get(check):
            raise RuntimeError(f"{protocol} bench request failed: {str(payload)[:300]}")
    return samples


async def run_coordination_bench(runs: int = 100, raw_runs: int = 300,
                                 blocks: int = 2) -> dict[str, Any]:
    """``blocks``: the votes and their raw fan-outs alternate in that many blocks each."""
    def vote_among(n: int) -> dict[str, Any]:
        return {"proposal": "bench?", "options": ["yes", "no"],
                "participants": [f"bv-{i}" for i in range(n)]}
    hier = {"proposal": "bench?", "participants": [f"bv-{i}" for i in range(HIERARCHY)],
            "cluster_size": 5, "max_depth": 3}
    pbft = {"operation": "bench-op", "participants": [f"br-{i}" for i in range(4)]}
    samples: dict[str, list[float]] = {
        name: [] for name in ("vote_10", "raw_fanout10", "raw_relay_fanout10", "vote_100",
                              "raw_fanout100", "raw_relay_fanout100")}
    async with running_cluster("coord", _agents()) as (cluster, nc):
        for protocol, req, check in (("vote", vote_among(FANOUT), "rule_met"),
                                     ("vote", vote_among(HIERARCHY), "rule_met"),
                                     ("hierarchical", hier, "depth"),
                                     ("pbft", pbft, "decided")):
            await _timed(nc, protocol, req, 5, check)  # warm-up: caches, keys, inboxes
        blocks = max(1, blocks)
        for _ in range(blocks):
            for n in (FANOUT, HIERARCHY):
                direct, relayed = await _raw_fanout(cluster, max(1, raw_runs // blocks), n)
                samples[f"raw_fanout{n}"] += direct
                samples[f"raw_relay_fanout{n}"] += relayed
                samples[f"vote_{n}"] += await _timed(
                    nc, "vote", vote_among(n), max(1, runs // blocks), "rule_met")
        pbfts = await _timed(nc, "pbft", pbft, runs, "decided")
        hiers = await _timed(nc, "hierarchical", hier, max(10, runs // 2), "depth")
    samples |= {"pbft_4": pbfts, "hierarchical_100": hiers}
    result: dict[str, Any] = {"suite": "coordination", "runs": runs}
    for name, values in samples.items():
        for q in (50, 99):
            result |= figure(f"{name}_ms_p{q}", values, q, scale=1000, digits=3)
    for n in (FANOUT, HIERARCHY):
        suffix = "" if n == FANOUT else f"_{n}"
        ratio = round(result[f"vote_{n}_ms_p50"] / result[f"raw_fanout{n}_ms_p50"], 2)
        result[f"vote_to_raw_ratio{suffix}"] = ratio
        result[f"target_vote{suffix}_le_2x_raw"] = ratio <= 2.0
        result[f"vote_to_raw_relay_ratio{suffix}"] = round(
            result[f"vote_{n}_ms_p50"] / result[f"raw_relay_fanout{n}_ms_p50"], 2)
    result["target_pbft_4_le_10ms"] = result["pbft_4_ms_p50"] <= 10.0
    result["target_hierarchical_100_le_50ms"] = result["hierarchical_100_ms_p50"] <= 50.0
    return result
