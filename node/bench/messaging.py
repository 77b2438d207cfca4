"""``broker-agents bench messaging``: agent messaging across two node processes vs raw NATS.

``agent_msgs_per_s`` beside ``raw_msgs_per_s``: one-way floods of ``messages`` from one
node's driver agent to the other node's target (``ctx.send`` into its inbox, through
quota, decoding, validation, the handler and its metrics) against plain nats-py publish
-> subscribe between the same two processes; ``rounds`` floods each, alternated; the
median round's rate with its bootstrap ``_ci95``. Ours travels as the runtime sends it: a
burst of sends to one agent is coalesced into batch frames (``broker_agents.batching``),
each entry still handled singly; raw publishes one NATS message per payload."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from broker_agents import codec
from broker_agents.messages import envelope
from broker_agents.subjects import Subjects
from node.bench.agents import RunRtt, RunThroughput
from node.bench.harness import ask, running_cluster
from node.bench.stats import rate_figure

BENCH_AGENTS: list[list[dict[str, Any]]] = [
    [{"class": "node.bench.agents:BenchDriverAgent", "id": "bench-driver"}],
    # a benchmark floods on purpose: the target's quota is off (0), as an operator would
    [{"class": "node.bench.agents:BenchTargetAgent", "id": "bench-target",
      "limits": {"rate": 0, "max_pending_msgs": 0, "max_pending_bytes": 0}}],
]


# The one-way flood outruns a Python subscriber for a while (raw publishing is about twice
# as fast as an agent handles): its backlog must fit the subscription's buffer, or
# nats-py drops the excess as a slow consumer and the count never completes.
FLOOD_BUFFER = {"BA_NATS__PENDING_MSGS_LIMIT": "1000000"}


async def run_messaging_bench(requests: int = 2000, messages: int = 100_000,
                              rounds: int = 5) -> dict[str, Any]:
    async with running_cluster("messaging", BENCH_AGENTS, env=FLOOD_BUFFER) as (cluster, nc):
        driver = Subjects(cluster.prefix).agent("bench-driver")

        async def run(msg: BaseModel) -> dict[str, Any]:
            return await ask(nc, driver, codec.encode(envelope(msg)), timeout=300)

        rtt = await run(RunRtt(target="bench-target", requests=requests))
        flood = await run(RunThroughput(target="bench-target", messages=messages,
                                        rounds=rounds))
    counts = [messages] * len(flood["raw_seconds"])
    result: dict[str, Any] = {"suite": "messaging", "requests": requests, "messages": messages,
                              "rounds": len(counts), **rtt,
                              **rate_figure("agent_msgs_per_s", counts, flood["agent_seconds"], 0),
                              **rate_figure("raw_msgs_per_s", counts, flood["raw_seconds"], 0)}
    result["rtt_ratio_p50"] = round(result["agent_rtt_us_p50"] / result["raw_rtt_us_p50"], 2)
    result["throughput_ratio"] = round(result["agent_msgs_per_s"] / result["raw_msgs_per_s"], 2)
    return result
