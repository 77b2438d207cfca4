"""The engine agent on node processes: adapts from feedback over NATS, honours freezes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from broker_agents.codec import decode
from broker_agents.subjects import Subjects
from broker_agents.variables.client import Variables
from tests.integration.variables.cluster import SYNTHETIC, cluster, engines

QUAD = {"name": "q", "variables": [
    {"kind": "float", "name": "x", "min": -2, "max": 2, "default": -1.5},
    {"kind": "float", "name": "y", "min": -2, "max": 2, "default": 1.5},
]}
OPT_X, OPT_Y = 0.7, -0.3
ITERATIONS = 80  # two feedback records (SPSA plus/minus trials) per iteration
TOLERANCE = 0.1  # on a range 4 wide (the pure engine meets 0.05 on 199 of 200 seeds)


async def test_adaptation_converges_on_a_noisy_quadratic_end_to_end(tmp_path: Path) -> None:
    agents = engines({"q": {"learning_rate": 0.01, "momentum": 0.5, "perturbation": 0.1}})
    agents[2].append({"class": SYNTHETIC, "id": "objective", "kwargs": {
        "space": "q", "optimum": {"x": OPT_X, "y": OPT_Y}, "noise": 0.02, "seed": 3,
        "max_reports": 2 * ITERATIONS + 10}})
    async with cluster(tmp_path, agents) as (_c, nc):
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def on_step(msg: Any) -> None:
            ex = decode(msg.data)
            if ex["action"] == "update" and ex["iteration"] == ITERATIONS and not done.done():
                done.set_result(ex)

        await nc.subscribe(Subjects().adaptation_steps("q"), cb=on_step)
        await Variables(nc).define_space(QUAD)
        final = await asyncio.wait_for(done, 60)
        centre = final["centre_after"]
        assert abs(centre["x"] - OPT_X) < TOLERANCE, centre
        assert abs(centre["y"] - OPT_Y) < TOLERANCE, centre
