"""A secured 3-machine deployment, as the README describes it, on one machine: the auth
directory and the three server configs come from ``broker-agents auth`` (route TLS, route
auth, client TLS, operator auth); each node daemon runs with creds of its own (``auth
issue node node-N``); a client, with a context from ``auth context``, commits through a
consensus group the nodes host and runs an auction settled against budgets.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from typer.testing import CliRunner

from broker_agents import codec
from broker_agents.auction.client import run_auction
from broker_agents.auction.ledger import Ledger
from broker_agents.kv import open_bucket
from broker_agents.raft.client import RaftClient
from broker_agents.subjects import Subjects
from broker_agents.transport import connect_client
from node.auth.context import ClientContext
from node.cli import app
from node.cluster import NodeProcess
from node.embedded import NatsServer, free_port
from tests.integration.auth.test_cluster_configs import wait_for_routes

pytestmark = pytest.mark.timeout(120)
S = Subjects()
NODES = ["node-1", "node-2", "node-3"]
SERVICES = {"consensus": {"groups": [{"name": "config", "members": NODES}]}}
AGENTS = {
    "node-1": [{"class": "broker_agents.auction.auctioneer:AuctioneerAgent", "id": "auc-1"}],
    "node-2": [{"class": "broker_agents.auction.bidder:BidderAgent", "id": "b2",
                "kwargs": {"value": 20.0}}],
    "node-3": [{"class": "broker_agents.auction.bidder:BidderAgent", "id": "b3",
                "kwargs": {"value": 15.0}}],
}


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


async def connect(context: Path) -> NATS:
    ctx = ClientContext.read(context)
    return await connect_client(list(ctx.servers), security=ctx.security())


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[dict[str, Path]]:
    """Servers and node daemons up; the contexts of a client, an observer and a node."""
    auth = tmp_path / "ba-auth"
    ports = [[free_port() for _ in NODES] for _ in range(3)]
    cli("auth", "init", "--dir", str(auth))
    written = cli("auth", "server-config", "--dir", str(auth), "--servers", "3",
                  "--host", "127.0.0.1", "--listen", "127.0.0.1",
                  "--store-dir", str(tmp_path / "store" / "{name}"),
                  *(a for p in ports[0] for a in ("--port", str(p))),
                  *(a for p in ports[1] for a in ("--cluster-port", str(p))),
                  *(a for p in ports[2] for a in ("--http-port", str(p))))["wrote"]
    urls = [f"tls://127.0.0.1:{p}" for p in ports[0]]
    servers = [NatsServer(store_dir=tmp_path / "store" / f"ba-{i + 1}", port=ports[0][i],
                          monitor_port=ports[2][i], cluster_port=ports[1][i],
                          config=Path(conf), tls=True, min_version=(2, 10))
               for i, conf in enumerate(written)]
    contexts: dict[str, Path] = {}
    for role, user in (("node", "node-1"), ("node", "node-2"), ("node", "node-3"),
                       ("client", "alice"), ("observer", "grafana")):
        cli("auth", "issue", role, user, "--dir", str(auth))
        contexts[user] = Path(cli("auth", "context", "--dir", str(auth), "--user", user,
                                  *(a for u in urls for a in ("--server", u)))["wrote"][0])
    procs: list[NodeProcess] = []
    try:
        for server in servers:
            await asyncio.to_thread(server.start, 15.0, False)
        for server in servers:
            await asyncio.to_thread(server.wait_healthy, 30.0)
        await asyncio.to_thread(wait_for_routes, servers)
        procs = await start_nodes(tmp_path, auth, urls, contexts["grafana"])
        yield contexts
    finally:
        for proc in procs:
            proc.signal(15)
        for proc in procs:
            if proc.wait(20) is None and proc.process is not None:
                proc.process.kill()
        for server in servers:
            server.stop()


async def start_nodes(base: Path, auth: Path, urls: list[str],
                      observer: Path) -> list[NodeProcess]:
    """One daemon per machine, each with its own node creds: its inbox prefix follows from
    the creds' user (``_INBOX.node-N``), or every reply it waits for would be denied.
    Ready when its ready event arrives (an observer reads events)."""
    watcher = await connect(observer)
    waiting, ready = set(NODES), asyncio.Event()

    async def on_ready(msg: Any) -> None:
        waiting.discard(codec.decode(msg.data).get("node_id"))
        if not waiting:
            ready.set()

    await watcher.subscribe(S.events("node", "ready"), cb=on_ready)
    await watcher.flush()
    procs = []
    for node in NODES:
        env = {**os.environ, "BA_NODE__ID": node, "BA_NODE__DATA_DIR": str(base / node),
               "BA_NODE__LOG_FORMAT": "json", "BA_HTTP__PORT": str(free_port()),
               "BA_NATS__SERVERS": json.dumps(urls),
               "BA_NATS__CREDS": str(auth / "creds" / f"{node}.creds"),
               "BA_NATS__TLS_CA": str(auth / "tls" / "ca.pem"),
               "BA_AGENTS": json.dumps(AGENTS[node]), "BA_SERVICES": json.dumps(SERVICES)}
        proc = NodeProcess(node, env, base / f"{node}.log", int(env["BA_HTTP__PORT"]))
        proc.spawn(None)
        procs.append(proc)
    try:
        await asyncio.wait_for(ready.wait(), 30)
    except TimeoutError:
        logs = {p.node_id: p.log_path.read_text()[-1500:] for p in procs}
        raise AssertionError(f"nodes not ready: {sorted(waiting)}: {logs}") from None
    finally:
        await watcher.close()
    return procs


async def test_a_client_commits_through_raft_and_runs_an_auction_on_the_secured_cluster(
        deployment: dict[str, Path]) -> None:
    client = await connect(deployment["alice"])
    try:
        raft = RaftClient(client, "config")
        assert (await raft.propose({"op": "put", "key": "k", "value": 1}, timeout=15))["ok"]
        assert (await raft.read({"op": "get", "key": "k"}))["value"] == 1
        assert raft.leader in NODES
        treasury = await connect(deployment["node-1"])  # deposits: node creds, for now
        book = Ledger(await open_bucket(treasury.jetstream(), S.bucket("accounts")))
        for who in ("b2", "b3"):
            await book.deposit(who, 100.0, "funding")
        result = await run_auction(client, {"type": "vickrey", "capability": "bidder",
                                            "item": "gpu-hour", "reserve": 5.0})
        assert (result["winner"], result["price"], result["status"]) == ("b2", 15.0,
                                                                         "settled")
        winner = await book.account("b2")
        assert winner is not None and winner.balance == 85.0
        await treasury.close()
    finally:
        await client.close()
