"""Variables client, read model and change events against an in-process 3-member group."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from broker_agents.codec import decode
from broker_agents.core.errors import BrokerError
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.memstore import MemoryStorage
from broker_agents.subjects import Subjects
from broker_agents.transport import connect_client
from broker_agents.variables.client import Variables
from broker_agents.variables.raft_adapter import VariablesRaftAdapter
from node.embedded import NatsServer, start_server
from tests.integration.variables.helpers import TEMPERATURE_SPACE, variables_group


async def test_validation_error_names_variable_value_and_constraint(
        nats_server: NatsServer, nc: Any) -> None:
    async with variables_group(nats_server):
        v = Variables(nc)
        await v.define_space(TEMPERATURE_SPACE)
        with pytest.raises(BrokerError) as err:
            await v.set("llm", {"temperature": 3.0})
        assert err.value.code == "validation_error"
        assert err.value.details["variable"] == "temperature"
        assert err.value.details["value"] == 3.0
        assert err.value.details["constraint"] == "range"
        assert "outside the range 0.0..2.0" in err.value.message
        assert (await v.get("llm", "temperature")).value == 0.7


async def test_sets_commit_with_increasing_versions_cas_and_history(
        nats_server: NatsServer, nc: Any) -> None:
    async with variables_group(nats_server):
        v = Variables(nc)
        defined = await v.define_space(TEMPERATURE_SPACE)
        versions = [defined.space_version]
        for t in (0.1, 0.2, 0.3):
            versions.append((await v.set("llm", {"temperature": t}, actor="op")).space_version)
        assert versions == sorted(set(versions))
        with pytest.raises(BrokerError) as err:
            await v.set("llm", {"batch": 16}, expected_version=versions[1])
        assert err.value.code == "conflict"
        ok = await v.set("llm", {"batch": 16}, expected_version=versions[-1])
        assert ok.values["batch"] == 16
        history = await v.history("llm", "temperature")
        assert [h.value for h in history] == [0.7, 0.1, 0.2, 0.3]
        assert history[-1].actor == "op"
        assert (await v.values("llm")).version == ok.space_version


async def test_read_model_learns_a_committed_value_within_milliseconds(
    nats_server: NatsServer, nc: Any
) -> None:
    async with variables_group(nats_server):
        v = Variables(nc)
        await v.define_space(TEMPERATURE_SPACE)
        async with v.read_model() as rm:
            assert rm.get("llm", "temperature") == 0.7
            lags = []
            for i in range(20):
                t0 = time.perf_counter()
                result = await v.set("llm", {"temperature": round(0.05 * (i + 1), 2)})
                await rm.wait_for("llm", min_version=result.space_version, timeout=2)
                lags.append(time.perf_counter() - t0)
                assert rm.get("llm", "temperature") == result.values["temperature"]
            lags.sort()
            assert lags[len(lags) // 2] < 0.05, lags


async def test_frozen_variable_rejects_sets_until_unfrozen(
        nats_server: NatsServer, nc: Any) -> None:
    async with variables_group(nats_server):
        v = Variables(nc)
        await v.define_space(TEMPERATURE_SPACE)
        await v.freeze("llm", "temperature")
        with pytest.raises(BrokerError) as err:
            await v.set("llm", {"temperature": 1.0})
        assert err.value.details["constraint"] == "frozen"
        assert (await v.get("llm", "temperature")).frozen
        await v.unfreeze("llm", "temperature")
        assert (await v.set("llm", {"temperature": 1.0})).values["temperature"] == 1.0


async def test_read_model_ignores_stale_and_duplicate_events(
        nats_server: NatsServer, nc: Any) -> None:
    async with variables_group(nats_server):
        v = Variables(nc)
        await v.define_space(TEMPERATURE_SPACE)
        raw: list[int] = []
        all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def count(msg: Any) -> None:
            raw.append(decode(msg.data)["version"])
            if len(raw) == 12 and not all_in.done():  # 4 sets x 3 publishing members
                all_in.set_result(None)

        async with v.read_model(spaces=["llm"]) as rm:
            await nc.subscribe(Subjects().variable_changes("llm"), cb=count)
            seen: list[int] = []
            rm.listen(lambda c: seen.append(c.version))
            for t in (0.5, 0.6, 0.7, 0.8):
                await v.set("llm", {"temperature": t})
            await asyncio.wait_for(all_in, 5)
            await nc.flush()
            assert len(seen) == 4 and seen == sorted(seen)
            assert rm.events_ignored >= 8
            assert rm.get("llm", "temperature") == 0.8


async def test_insecure_groups_keep_claimed_actors_and_let_anyone_freeze(
        tmp_path: Path) -> None:
    """``--insecure``: nobody signs, nothing is required; commands keep their claimed
    actor and any connection may freeze, as before trust part 2."""
    server = start_server(tmp_path / "nats", secure=False)
    nc = await connect_client(server.url)
    sm = VariablesRaftAdapter()
    sm.bind_connection(nc, "variables")
    member = RaftMember(nc, "variables", "m1", ["m1"], MemoryStorage(), sm, tick_ms=10)
    await member.start()
    try:
        v = Variables(nc)
        await v.define_space(TEMPERATURE_SPACE)
        assert (await v.freeze("llm", "batch", actor="op")).frozen == ["batch"]
        await v.set("llm", {"temperature": 1.0}, actor="op")
        assert (await v.history("llm", "temperature"))[-1].actor == "op"
    finally:
        await member.stop()
        await nc.close()
        server.stop()
