"""The registry CLI against a real server: tables, JSON, errors."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from broker_agents.registry.store import RegistryStore
from node.auth.roles import Role
from node.cli.registry import app
from node.embedded import NatsServer
from tests.integration.registry.helpers import agent
from tests.secured import connect_as, context, discovery_env

runner = CliRunner()


def _seed(server: NatsServer) -> None:
    async def go() -> None:
        nc = await connect_as(server, Role.NODE)
        store = await RegistryStore.open(nc)
        for i, (health, mem) in enumerate([("healthy", 0.7), ("degraded", 0.2),
                                           ("healthy", 0.9)]):
            await store.register(agent(f"a{i + 1}", capabilities=["inference", "training"],
                                       health=health, resources={"memory_available": mem}))
        await nc.close()
    asyncio.run(go())


def test_cli_ls_get_find_query(nats_server: NatsServer) -> None:
    """Run where the server's data dir is: each command finds the observer's context (it
    reads the bucket) by itself."""
    _seed(nats_server)
    env = discovery_env(nats_server)
    out = runner.invoke(app, ["ls"], env=env)
    assert out.exit_code == 0 and "a1" in out.stdout and "agents (3)" in out.stdout
    got = runner.invoke(app, ["get", "a2", "--json"], env=env)
    assert json.loads(got.stdout)["health"] == "degraded"
    found = runner.invoke(app, ["find", "--health", "healthy", "--json"], env=env)
    assert [a["agent_id"] for a in json.loads(found.stdout)] == ["a1", "a3"]
    queried = runner.invoke(app, ["query", "capability eq inference",
                                  "resources.memory_available gte 0.5", "--json"], env=env)
    assert [a["agent_id"] for a in json.loads(queried.stdout)] == ["a1", "a3"]
    crit = json.dumps([{"field": "health", "op": "in", "value": ["degraded"]}])
    queried = runner.invoke(app, ["query", "--criteria", crit, "--json"], env=env)
    assert [a["agent_id"] for a in json.loads(queried.stdout)] == ["a2"]


def test_cli_reports_errors_with_exit_codes(nats_server: NatsServer) -> None:
    env = discovery_env(nats_server)
    missing = runner.invoke(app, ["ls", "--prefix", "ba", "--json"], env=env)
    assert missing.exit_code == 1 and json.loads(missing.stdout)["error"]["code"] == "not_found"
    _seed(nats_server)
    assert runner.invoke(app, ["get", "zzz"], env=env).exit_code == 1
    bad = runner.invoke(app, ["query", "health like x"], env=env)
    assert bad.exit_code == 1


def test_a_client_may_not_read_the_bucket_and_is_told_so(nats_server: NatsServer) -> None:
    _seed(nats_server)
    denied = runner.invoke(app, ["ls", "--json", "--context",
                                 str(context(nats_server, Role.CLIENT))])
    assert denied.exit_code == 1
    error = json.loads(denied.stdout)["error"]
    assert error["code"] == "forbidden" and "$js.api" in error["message"].lower()
