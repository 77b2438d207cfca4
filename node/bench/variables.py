"""Variables benchmark: committed sets, sustained updates, feedback -> new value visible.

Setup: a ``LocalCluster`` of three node *processes* on one embedded nats-server, hosting the
``variables`` consensus group (FileStorage, fsync on) and an ``AdaptationEngineAgent`` on
each node. The benchmark process is the client and holds the local read model -- so "visible
on another node" means visible in a process other than the leader's.

- ``raw_rtt_us_p50``: plain nats-py request/reply in the same run (the yardstick);
- ``set_us_p50``: one ``Variables.set`` committed (sequential, the leader known);
- ``updates_per_s``: sets pipelined to the leader (``window`` in flight, shared reply inbox),
  each a distinct value signed by the client (as ``Variables`` signs), every one committed;
- ``adapt_ms_p50``: feedback published -> the engine steps, commits a new trial -> the
  change event reaches the read model in the benchmark process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from broker_agents.codec import encode
from broker_agents.core.variables.commands import SetValues
from broker_agents.variables import acts
from broker_agents.variables.client import Variables
from node.auth.roles import Role
from node.bench.harness import running_cluster
from node.bench.proposals import pipelined as bench_pipelined
from node.bench.proposals import raw_rtt
from node.bench.stats import beside_rtt, ms

SET_SPACE = {"name": "bench", "variables": [
    {"kind": "float", "name": "x", "min": 0.0, "max": 1.0, "default": 0.5}]}
ADAPT_SPACE = {"name": "bench_adapt", "variables": [
    {"kind": "float", "name": "x", "min": -2.0, "max": 2.0, "default": -1.0},
    {"kind": "float", "name": "y", "min": -2.0, "max": 2.0, "default": 1.0}]}
ENGINE = "broker_agents.variables.engine_agent:AdaptationEngineAgent"


async def _adapt(v: Variables, watching: Variables, rounds: int) -> list[float]:
    """Feedback as a client (``v``), new values seen by an observer's read model."""
    samples = []
    async with watching.read_model(spaces=["bench_adapt"]) as rm:
        # warm-up: feedback for whatever trial runs now; the ack names the version committed
        ack = await v.feedback("bench_adapt", reward=0.0, timeout=10)
        assert ack is not None and ack.version is not None, ack
        await rm.wait_for("bench_adapt", min_version=ack.version, timeout=10)
        for _ in range(rounds):
            held = rm.snapshot("bench_adapt")
            x, y = float(held.values["x"]), float(held.values["y"])
            reward = -(x - 0.5) ** 2 - (y + 0.5) ** 2
            t = time.perf_counter()
            await v.feedback("bench_adapt", version=held.version, reward=reward, wait=False)
            await rm.wait_for("bench_adapt", min_version=held.version + 1, timeout=5)
            samples.append(time.perf_counter() - t)
    return samples


async def run_variables_bench(*, sets: int = 1000, pipelined: int = 10_000, window: int = 128,
                              adapt_rounds: int = 200, raw: int = 1000,
                              tmp_dir: str | Path | None = None) -> dict[str, Any]:
    members = ["node-1", "node-2", "node-3"]
    services = {"consensus": {"groups": [
        {"name": "variables", "members": members, "state_machine": "variables"}]}}
    agents = [[{"class": ENGINE, "id": f"var-engine-{i}",
                "kwargs": {"seed": 1, "spaces": {"bench_adapt": {"learning_rate": 0.01}}}}]
              for i in range(1, 4)]
    async with running_cluster("variables", agents, services=services,
                               tmp_dir=tmp_dir) as (cluster, nc):
        node_nc = await cluster.client(Role.NODE)  # the raw baseline's subject is our own
        rtt = await raw_rtt(node_nc, node_nc, raw, encode(
            {"command": {"op": "set", "space": "bench", "values": {"x": 0.5}}}))
        await node_nc.close()
        observer = await cluster.client(Role.OBSERVER)  # the read model reads events
        v = Variables(nc)
        await v.define_space(SET_SPACE)
        await v.define_space(ADAPT_SPACE)
        set_samples = []
        for i in range(sets):
            t = time.perf_counter()
            await v.set("bench", {"x": (i + 1) / (sets + 2)})
            set_samples.append(time.perf_counter() - t)
        assert v.raft.leader is not None
        leader_subject = v.subjects.raft("variables", v.raft.leader, "propose")
        run = uuid.uuid4().hex[:6]

        def signed_set(i: int) -> dict[str, Any]:  # signed as the client does, in the run
            rid = f"vb-{run}-{i}"
            command = SetValues(space="bench", values={"x": (i + 1) / (pipelined + 2)},
                                command_id=rid)
            return {"command": acts.proposal(nc, "variables", command), "request_id": rid}

        rate = await bench_pipelined(nc, leader_subject, pipelined, window, signed_set)
        adapt = await _adapt(v, Variables(observer), adapt_rounds)
        final = await v.values("bench")
        await observer.close()
    return {
        **beside_rtt(rtt, set_samples, "set"),
        "updates_per_s": round(rate),
        "adapt_ms_p50": ms(adapt),
        "adapt_ms_p99": ms(adapt, 99),
        "final_version": final.version,
        "sets": sets, "pipelined": pipelined, "window": window, "adapt_rounds": adapt_rounds,
        "setup": "LocalCluster: 3 node processes, 1 nats-server, fsync on",
    }


if __name__ == "__main__":  # pragma: no cover - manual runs
    import json

    print(json.dumps(asyncio.run(run_variables_bench()), indent=2))
