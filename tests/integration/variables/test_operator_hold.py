"""An operator's ``set`` wins against a running adaptation engine on node processes: the
engine holds the variable (``operator_hold_s``) instead of probing over it at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from broker_agents.codec import decode
from broker_agents.subjects import Subjects
from broker_agents.variables.client import Variables
from tests.integration.variables.cluster import cluster, engines

QUAD = {"name": "q", "variables": [
    {"kind": "float", "name": "x", "min": -2, "max": 2, "default": -1.5},
    {"kind": "float", "name": "y", "min": -2, "max": 2, "default": 1.5},
]}


async def _step(steps: asyncio.Queue[dict[str, Any]], action: str) -> dict[str, Any]:
    while (ex := await asyncio.wait_for(steps.get(), 20))["action"] != action:
        pass
    return ex


async def test_the_engine_leaves_a_variable_an_operator_set_alone(tmp_path: Path) -> None:
    async with cluster(tmp_path, engines({"q": {"learning_rate": 0.2}})) as (_c, nc):
        steps: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_step(msg: Any) -> None:
            steps.put_nowait(decode(msg.data))

        await nc.subscribe(Subjects().adaptation_steps("q"), cb=on_step)
        await nc.flush()
        v = Variables(nc)
        await v.define_space(QUAD)
        await _step(steps, "start")  # the engine adapts: its first trial is proposed
        await v.set("q", {"x": 0.25}, reason="operator pins x")
        restart = await _step(steps, "restart")  # it took the operator's change in
        assert "x" in restart["held"], restart
        for _ in range(4):  # feedback keeps the engine stepping: x stays the operator's
            ack = await v.feedback("q", reward=1.0)
            assert ack is not None and "x" not in ack.proposed, ack
            assert (await v.values("q")).values["x"] == 0.25
        assert [h.value for h in await v.history("q", "x")][-1] == 0.25
