"""Cluster-wide values on three node processes: errors, propagation, freezes, failover."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from broker_agents.core.errors import BrokerError
from broker_agents.raft.client import RaftClient
from broker_agents.variables.client import Variables
from broker_agents.variables.models import VariableChange
from broker_agents.variables.readmodel import ReadModel
from tests.integration.variables.cluster import MEMBERS, cluster, engines

LLM = {"name": "llm", "variables": [
    {"kind": "float", "name": "temperature", "min": 0.0, "max": 2.0, "default": 0.7},
    {"kind": "integer", "name": "batch", "min": 1, "max": 64, "default": 8},
]}
Q = {"name": "q", "variables": [
    {"kind": "float", "name": "x", "min": -2, "max": 2, "default": -1.5},
    {"kind": "float", "name": "y", "min": -2, "max": 2, "default": 1.5},
]}


def objective(values: dict[str, Any]) -> float:
    return -(values["x"] - 0.7) ** 2 - (values["y"] + 0.3) ** 2


async def feed(v: Variables, rm: ReadModel, space: str, versions: int) -> int:
    """Report the objective for each new version until ``versions`` more were committed."""
    target = rm.version(space) + versions
    while rm.version(space) < target:
        held = rm.snapshot(space)
        with contextlib.suppress(BrokerError):  # no active engine yet: the next version
            await v.feedback(space, version=held.version, reward=objective(held.values),
                             timeout=1.0)
        await rm.wait_for(space, min_version=held.version + 1, timeout=5)
    return rm.version(space)


async def test_errors_name_the_constraint_and_agents_learn_values_within_ms(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, engines({})) as (_c, nc):
        v = Variables(nc)
        await v.define_space(LLM)
        with pytest.raises(BrokerError) as err:
            await v.set("llm", {"temperature": 3.0})
        assert err.value.code == "validation_error"
        assert err.value.details["variable"] == "temperature"
        assert err.value.details["constraint"] == "range"
        assert "3.0 is outside the range 0.0..2.0" in err.value.message
        async with v.read_model(spaces=["llm"]) as rm:
            lags = []
            for i in range(30):
                t0 = time.perf_counter()
                res = await v.set("llm", {"batch": 1 + (i % 64)})
                await rm.wait_for("llm", min_version=res.space_version, timeout=2)
                lags.append(time.perf_counter() - t0)
                assert rm.get("llm", "batch") == res.values["batch"]
        lags.sort()
        assert lags[len(lags) // 2] < 0.05, f"set -> local read model p50 {lags[15]:.4f}s"


async def test_a_frozen_variable_never_changes_while_feedback_flows(tmp_path: Path) -> None:
    async with cluster(tmp_path, engines({"q": {"learning_rate": 0.01}})) as (_c, nc):
        v = Variables(nc)
        await v.define_space(Q)
        async with v.read_model(spaces=["q"]) as rm:
            await feed(v, rm, "q", 6)
            frozen = await v.freeze("q", "x", actor="operator")
            x = frozen.values["x"]
            after: list[VariableChange] = []
            rm.listen(after.append)
            await feed(v, rm, "q", 20)
            assert after and all(c.values["x"] == x for c in after)
            assert len({c.values["y"] for c in after}) > 5  # y still adapts
            history = await v.history("q", "x")
            assert all(h.version <= frozen.space_version for h in history)
            with pytest.raises(BrokerError) as err:
                await v.set("q", {"x": 0.0})
            assert err.value.details["constraint"] == "frozen"
            assert (await v.get("q", "x")).value == x


async def test_values_agreed_after_the_leaders_node_is_killed(tmp_path: Path) -> None:
    async with cluster(tmp_path, engines({"q": {}})) as (c, nc):
        v = Variables(nc)
        await v.define_space(Q)
        async with v.read_model(spaces=["q"]) as rm:
            await feed(v, rm, "q", 10)
            before = await v.set("q", {"y": 0.25}, actor="operator")
            history_before = await v.history("q", "y")
            leader = v.raft.leader
            assert leader in MEMBERS
            c.kill(MEMBERS.index(leader))
            after = await v.set("q", {"y": 0.5}, actor="operator")
            assert after.space_version > before.space_version
            assert v.raft.leader not in (None, leader)
            last = await feed(v, rm, "q", 6)  # a standby engine took over
            assert rm.snapshot("q").version == last
        survivors = [m for m in MEMBERS if m != leader]
        states = []
        for member in survivors:
            direct = RaftClient(nc, "variables")
            direct.leader = member  # a read-index read served by that member
            states.append(await direct.read({"op": "state"}, timeout=5))
        assert states[0] == states[1]
        assert states[0]["spaces"]["q"]["version"] >= last
        history = await v.history("q", "y")
        assert [h.version for h in history] == sorted(h.version for h in history)
        assert history[: len(history_before)] == history_before
        assert any(h.actor and h.actor.startswith("var-engine-") and h.version > after.space_version
                   for h in await v.history("q", "x"))


