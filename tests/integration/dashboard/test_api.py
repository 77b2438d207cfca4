"""The dashboard's JSON API and live feed against a live, secured playground cluster.

One 3-node ``LocalCluster`` with ``config/playground.toml`` (status every 0.5 s, the
dashboard also enabled inside each node), funded bidders, a finished Vickrey auction and
a vote; one standalone dashboard connected as an observer. The last test kills a node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from node.auth.roles import Role
from node.cluster import LocalCluster
from node.dashboard.server import DashboardSettings, Embedded, connect_observer

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).parents[3]
BIN = Path(sys.executable).parent
WAIT = 30.0


@dataclass
class Live:
    cluster: LocalCluster
    base: str
    embedded: Embedded
    http: aiohttp.ClientSession
    errors: list[str] = field(default_factory=list)

    def cli(self, role: Role, *args: str) -> Any:
        return Live.cli_in(self.cluster, role, *args)

    @staticmethod
    def cli_in(cluster: LocalCluster, role: Role, *args: str) -> Any:
        assert cluster.auth is not None
        done = subprocess.run([str(BIN / "broker-agents"), *args, "--json", "--context",
                               str(cluster.auth.contexts[role])], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    async def get(self, path: str, status: int = 200) -> Any:
        async with self.http.get(self.base + path) as reply:
            body = await reply.json()
            assert reply.status == status, body
            return body

    async def until(self, path: str, ok: Callable[[Any], bool],
                    timeout: float = WAIT) -> Any:
        """GET ``path`` until ``ok`` holds of the document (each change is one apply)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            doc = await self.get(path)
            if ok(doc):
                return doc
            if loop.time() > end:
                pytest.fail(f"{path} never satisfied the condition: {json.dumps(doc)[:2000]}")
            changed = self.embedded.model.changed
            changed.clear()
            with contextlib.suppress(TimeoutError):  # time passing changes a node's state too
                await asyncio.wait_for(changed.wait(), min(1.0, end - loop.time()))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    base_dir = tmp_path_factory.mktemp("dash")
    cluster = LocalCluster(base_dir, nodes=3, config=ROOT / "config" / "playground.toml",
                           extra_env={"BA_NODE__STATUS_INTERVAL_S": "0.5",
                                      "BA_DASHBOARD__ENABLED": "true",
                                      "BA_DASHBOARD__CONTEXT": str(
                                          base_dir / "auth" / "context-observer.json")},
                           ready_timeout=90)
    await cluster.start()
    assert cluster.auth is not None
    for step in (("var", "define", "examples/space.json"),
                 ("var", "set", "serving", "temperature=0.7")):  # before the dashboard
        await asyncio.to_thread(Live.cli_in, cluster, Role.CLIENT, *step)
    errors: list[str] = []
    settings = DashboardSettings(context=cluster.auth.contexts[Role.OBSERVER])
    nc = await connect_observer(settings, errors=lambda exc: errors.append(str(exc)))
    embedded = Embedded(nc, "ba")
    await embedded.start()
    await embedded.collector.opened(WAIT)
    app = web.Application()
    embedded.dashboard.routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    state = Live(cluster, f"http://127.0.0.1:{port}", embedded, http, errors)
    try:
        for bidder in ("bidder-1", "bidder-2", "bidder-3"):
            await asyncio.to_thread(state.cli, Role.ADMIN, "auction", "deposit", bidder,
                                    "100", "--op-id", f"fund-{bidder}")
        await asyncio.to_thread(state.cli, Role.CLIENT, "auction", "run", "--type", "vickrey",
                                "--item", "gpu-hour", "--capability", "bidder", "--reserve", "5")
        await asyncio.to_thread(state.cli, Role.CLIENT, "request", "vote", json.dumps(
            {"capability": "voter", "proposal": "ship?", "options": ["ship", "wait"]}))
        yield state
    finally:
        await http.close()
        await runner.cleanup()
        await embedded.stop()
        await nc.close()
        await asyncio.to_thread(cluster.stop)


async def test_cluster_shows_every_node_up_with_its_agents(live: Live) -> None:
    doc = await live.until("/api/cluster", lambda d: d["totals"]["nodes_up"] == 3
                           and d["totals"]["groups"] == 2)
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert set(nodes) == {"node-1", "node-2", "node-3"}
    assert all(n["healthy"] and n["ready"] and n["version"] for n in nodes.values())
    assert "coordinator" in nodes["node-1"]["agents"]
    assert "relay" in nodes["node-3"]["agents"]
    assert doc["nats"] and doc["nats"][0]["connected"] is True
    assert not [a for a in doc["alerts"] if a["name"] == "NodeDown"]


async def test_agents_filter_and_an_agents_page(live: Live) -> None:
    doc = await live.get("/api/agents?capability=bidder")
    assert sorted(a["id"] for a in doc["agents"]) == ["bidder-1", "bidder-2", "bidder-3"]
    doc = await live.get("/api/agents?node=node-2")
    assert {a["node"] for a in doc["agents"]} == {"node-2"} and len(doc["agents"]) >= 5
    assert (await live.get("/api/agents?health=unhealthy"))["agents"] == []
    page = await live.until("/api/agents/voter-1", lambda d: (
        d["agent"]["messages_in"] or 0) >= 1 and len(d["series"]["messages_in"]) >= 2)
    assert page["agent"]["node"] == "node-1" and "voter" in page["agent"]["capabilities"]
    hist = page["latency_histogram"]
    assert len(hist["le"]) == len(hist["counts"]) and hist["counts"][-1] >= 1
    assert page["agent"]["latency_ms_p50"] is not None


async def test_groups_show_a_leader_members_and_elections(live: Live) -> None:
    doc = await live.until("/api/groups", lambda d: len(d["groups"]) == 2 and all(
        g["leader"] for g in d["groups"]))
    for group in doc["groups"]:
        assert {m["id"] for m in group["members"]} == {"node-1", "node-2", "node-3"}
        roles = [m["role"] for m in group["members"]]
        assert roles.count("leader") == 1
        assert group["term"] >= 1 and group["commit_index"] >= 1
        assert group["elections"] and group["elections"][-1]["leader"] == group["leader"]


async def test_a_finished_sealed_auction_shows_its_bids_winner_and_settlement(
        live: Live) -> None:
    doc = await live.until("/api/auctions?state=settled", lambda d: bool(d["auctions"]))
    auction = doc["auctions"][0]
    assert auction["kind"] == "vickrey" and auction["sealed"] is True
    assert auction["winner"] == "bidder-2" and auction["price"] == 12.0
    assert sorted(b["bidder"] for b in auction["bids"]) == ["bidder-1", "bidder-2",
                                                             "bidder-3"]
    assert auction["closed_at"] >= auction["opened_at"] > 0
    assert (await live.get("/api/auctions?state=open"))["auctions"] == []


async def test_money_balances_conservation_and_the_settlement_transfer(live: Live) -> None:
    doc = await live.until("/api/accounts", lambda d: bool(d["transfers"]))
    balances = {a["id"]: a["balance"] for a in doc["accounts"]}
    assert balances["bidder-2"] == 88.0 and balances["bidder-1"] == 100.0
    assert doc["issued"] == 300.0 and doc["total_balance"] == 300.0
    assert doc["conserved"] is True and doc["total_held"] == 0.0
    transfer = doc["transfers"][0]
    assert (transfer["from"], transfer["amount"]) == ("bidder-2", 12.0)


async def test_a_vote_with_every_participants_answer(live: Live) -> None:
    doc = await live.until("/api/coordination", lambda d: bool(d["votes"]))
    vote = doc["votes"][0]
    assert vote["proposal"] == "ship?" and vote["outcome"] == "decided"
    answers = {a["participant"]: a["answer"] for a in vote["answers"]}
    assert answers == {"voter-1": "ship", "voter-2": "ship", "voter-3": "wait"}
    assert vote["duration_ms"] > 0


async def test_variables_values_before_and_changes_after_the_dashboard_started(
        live: Live) -> None:
    def temperature(doc: Any) -> dict[str, Any] | None:
        for space in doc["spaces"]:
            for var in space["variables"]:
                if space["space"] == "serving" and var["name"] == "temperature":
                    return dict(var)
        return None

    before = await live.until("/api/variables", lambda d: temperature(d) is not None)
    assert temperature(before)["value"] == 0.7  # type: ignore[index]
    await asyncio.to_thread(live.cli, Role.CLIENT, "var", "set", "serving",
                            "temperature=0.8")
    after = await live.until("/api/variables", lambda d: (
        temperature(d) or {}).get("value") == 0.8)
    history = [v for _, v in temperature(after)["history"]]  # type: ignore[index]
    assert history[-2:] == [0.7, 0.8]


async def test_errors_are_structured(live: Live) -> None:
    body = await live.get("/api/agents/nobody", status=404)
    assert body["error"]["code"] == "not_found"
    body = await live.get("/api/nothing-here", status=404)
    assert body["error"]["code"] == "not_found"
    body = await live.get("/api/agents?colour=red", status=400)
    assert body["error"]["code"] == "validation_error"
    async with live.http.post(live.base + "/api/cluster", data=b"{}") as reply:
        assert reply.status == 405
        assert (await reply.json())["error"]["code"] == "method_not_allowed"
    assert (await live.get("/healthz")) == {"ok": True, "nats_connected": True}


async def test_no_credentials_in_any_document(live: Live) -> None:
    for path in ("cluster", "agents", "groups", "auctions", "accounts", "coordination",
                 "variables"):
        async with live.http.get(f"{live.base}/api/{path}") as reply:
            text = await reply.text()
        assert ".creds" not in text and "NKEY" not in text and "-----BEGIN" not in text


async def test_sse_sends_the_state_then_a_change(live: Live) -> None:
    async with live.http.get(live.base + "/api/stream") as reply:
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        first = await _events(reply, lambda kind, _: kind == "variables")
        assert {"cluster", "agents", "groups", "auctions", "accounts", "coordination",
                "variables"} <= set(first)
        await asyncio.to_thread(live.cli, Role.ADMIN, "auction", "deposit", "bidder-3",
                                "5", "--op-id", "sse-deposit")
        changed = await _events(reply, lambda kind, doc: kind == "accounts" and any(
            a["id"] == "bidder-3" and a["balance"] == 105.0 for a in doc["accounts"]))
        assert changed["accounts"]["issued"] == 305.0


async def _events(reply: aiohttp.ClientResponse,
                  until: Callable[[str, Any], bool]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    kind = ""

    async def read() -> None:
        nonlocal kind
        async for raw in reply.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                seen[kind] = json.loads(line[6:])
                if until(kind, seen[kind]):
                    return

    await asyncio.wait_for(read(), WAIT)
    return seen


async def test_the_dashboard_in_a_node_serves_ui_and_api(live: Live) -> None:
    port = live.cluster.procs[0].http_port
    async with live.http.get(f"http://127.0.0.1:{port}/ui/") as reply:
        assert reply.status == 200 and "text/html" in reply.headers["Content-Type"]
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    while True:
        async with live.http.get(f"http://127.0.0.1:{port}/api/cluster") as reply:
            doc = await reply.json()
        if doc["totals"]["nodes_up"] == 3 or loop.time() > end:
            break
        await asyncio.sleep(0.2)  # the node's own collector fills in; bounded by WAIT
    assert doc["totals"]["nodes_up"] == 3


async def test_the_observer_cannot_request_coordination_or_write_a_bucket(
        live: Live) -> None:
    nc = live.embedded.nc
    await nc.publish("ba.coord.vote", b"{}")
    await nc.publish("$KV.ba_accounts.bidder-1", b'{"owner":"bidder-1","balance":1e9}')
    await nc.flush()
    await _until(lambda: len([e for e in live.errors if "permissions violation" in
                              e.lower()]) >= 2)
    text = " ".join(live.errors).lower()
    assert "ba.coord.vote" in text and "$kv.ba_accounts.bidder-1" in text
    accounts = await live.get("/api/accounts")
    assert {a["id"]: a["balance"] for a in accounts["accounts"]}["bidder-1"] == 100.0


async def _until(ok: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not ok():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.05)  # waits for an asynchronous error callback


async def test_malformed_events_are_counted_and_dropped(live: Live) -> None:
    from node.dashboard.collector import EVENTS

    before = EVENTS.labels("malformed")._value.get()
    node = await live.cluster.client(Role.NODE)
    try:
        for data in (b"\xff\x00 not a document", b"[1, 2]", b"{" * 100,
                     b'{"interval_s": "soon", "agents": [1]}'):
            await node.publish("ba.events.node.node-1.status", data)
        await node.flush()
    finally:
        await node.close()
    await _until(lambda: EVENTS.labels("malformed")._value.get() >= before + 4)
    doc = await live.get("/api/cluster")
    assert {n["id"] for n in doc["nodes"]} == {"node-1", "node-2", "node-3"}


async def test_a_killed_node_is_down_within_a_few_seconds(live: Live) -> None:
    await live.until("/api/cluster", lambda d: d["totals"]["nodes_up"] == 3)
    live.cluster.kill(2)  # node-3, SIGKILL: no stopped event
    started = asyncio.get_running_loop().time()
    doc = await live.until("/api/cluster", lambda d: any(
        n["id"] == "node-3" and n["state"] == "down" for n in d["nodes"]), timeout=10)
    assert asyncio.get_running_loop().time() - started < 5.0
    assert any(a["name"] == "NodeDown" for a in doc["alerts"])
