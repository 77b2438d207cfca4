"""``broker-agents bench messaging``: agent messaging across two node processes vs raw NATS."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from broker_agents import codec
from broker_agents.bench.agents import RunRtt, RunThroughput
from broker_agents.core.errors import BrokerError
from broker_agents.messages import envelope
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.cluster import LocalCluster

BENCH_AGENTS: list[list[dict[str, Any]]] = [
    [{"class": "broker_agents.bench.agents:BenchDriverAgent", "id": "bench-driver"}],
    [{"class": "broker_agents.bench.agents:BenchTargetAgent", "id": "bench-target"}],
]


async def run_messaging_bench(requests: int = 2000, messages: int = 100_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ba-bench-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=2, agents=BENCH_AGENTS,
                               extra_env={"BA_NODE__LOG_LEVEL": "warning"})
        await cluster.start()
        try:
            nc = await cluster.client()
            subjects = Subjects(cluster.prefix)

            async def ask(msg: Any, timeout: float) -> dict[str, Any]:
                reply = await nats_request(nc, subjects.agent("bench-driver"),
                                         codec.encode(envelope(msg)), timeout=timeout)
                payload = codec.decode(reply.data)
                err = BrokerError.from_payload(payload)
                if err is not None:
                    raise err
                assert isinstance(payload, dict)
                return payload

            rtt = await ask(RunRtt(target="bench-target", requests=requests), 300)
            flood = await ask(RunThroughput(target="bench-target", messages=messages), 300)
            await nc.close()
        finally:
            await asyncio.to_thread(cluster.stop)
    result: dict[str, Any] = {"suite": "messaging", "requests": requests, "messages": messages,
                              **rtt, **flood}
    result["rtt_ratio_p50"] = round(result["agent_rtt_us_p50"] / result["raw_rtt_us_p50"], 2)
    result["throughput_ratio"] = round(result["agent_msgs_per_s"] / result["raw_msgs_per_s"], 2)
    return result
