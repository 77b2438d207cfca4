"""The registry CLI against a real server: tables, JSON, errors."""

from __future__ import annotations

import asyncio
import json

import nats
from typer.testing import CliRunner

from broker_agents.registry.store import RegistryStore
from node.cli.registry import app
from tests.integration.registry.helpers import agent

runner = CliRunner()


def _seed(url: str) -> None:
    async def go() -> None:
        nc = await nats.connect(url)
        store = await RegistryStore.open(nc)
        for i, (health, mem) in enumerate([("healthy", 0.7), ("degraded", 0.2),
                                           ("healthy", 0.9)]):
            await store.register(agent(f"a{i + 1}", capabilities=["inference", "training"],
                                       health=health, resources={"memory_available": mem}))
        await nc.close()
    asyncio.run(go())


def test_cli_ls_get_find_query(nats_url: str) -> None:
    _seed(nats_url)
    out = runner.invoke(app, ["ls", "--nats", nats_url])
    assert out.exit_code == 0 and "a1" in out.stdout and "agents (3)" in out.stdout
    got = runner.invoke(app, ["get", "a2", "--nats", nats_url, "--json"])
    assert json.loads(got.stdout)["health"] == "degraded"
    found = runner.invoke(app, ["find", "--health", "healthy", "--nats", nats_url, "--json"])
    assert [a["agent_id"] for a in json.loads(found.stdout)] == ["a1", "a3"]
    queried = runner.invoke(app, ["query", "capability eq inference",
                                  "resources.memory_available gte 0.5", "--nats", nats_url,
                                  "--json"])
    assert [a["agent_id"] for a in json.loads(queried.stdout)] == ["a1", "a3"]
    crit = json.dumps([{"field": "health", "op": "in", "value": ["degraded"]}])
    queried = runner.invoke(app, ["query", "--criteria", crit, "--nats", nats_url, "--json"])
    assert [a["agent_id"] for a in json.loads(queried.stdout)] == ["a2"]


def test_cli_reports_errors_with_exit_codes(nats_url: str) -> None:
    missing = runner.invoke(app, ["ls", "--nats", nats_url, "--prefix", "nobody"])
    assert missing.exit_code == 1
    _seed(nats_url)
    assert runner.invoke(app, ["get", "zzz", "--nats", nats_url]).exit_code == 1
    bad = runner.invoke(app, ["query", "health like x", "--nats", nats_url])
    assert bad.exit_code == 1
