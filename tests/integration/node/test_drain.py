"""``node drain`` on a real secured 3-node cluster (one OS process per node), under load.

The node that leads the consensus group is drained while clients keep asking its agents:
every request succeeds, none needs the client's retry of a "no responders" answer (a
moving agent is parked, never unsubscribed, until its new host is live:
``broker_agents.handoff``), the agents answer from other nodes and their registry records
name them, the group's leadership moves, the drained node is not ready (``draining``),
then it stops on SIGTERM and nothing fails. The report's per-agent handover gaps are
printed (``-s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nats.errors import NoRespondersError

from broker_agents import codec
from broker_agents.messages import envelope
from broker_agents.raft.client import RaftClient
from broker_agents.raft.driver import RaftMember
from broker_agents.registry.client import Registry
from broker_agents.samples import Calculate, Echo, EchoAgent
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.cluster import LocalCluster
from node.drain import request_drain
from tests.integration.raft.helpers import wait_for

S = Subjects()
RETRY_WINDOW_S = 1.0  # a client's retry of "no responders"; a handover needs none
GROUP = {"name": "cfg", "members": ["node-1", "node-2", "node-3"]}
SERVICES = {"registry": {"heartbeat_interval": 0.2, "window": 1.0, "grace": 0.5,
                         "reap_interval": 0.2},
            "consensus": {"groups": [GROUP]}}
AGENTS = [[{"class": "broker_agents.samples:EchoAgent", "id": f"echo-{i}"},
           {"class": "broker_agents.samples:CalculatorAgent", "id": f"calc-{i}"}]
          for i in (1, 2, 3)]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=3, agents=AGENTS, services=SERVICES,
                     extra_env={"BA_NODE__SHUTDOWN_TIMEOUT": "5"})
    await c.start()
    yield c
    await asyncio.to_thread(c.stop)


RETRIES: list[str] = []


async def ask(nc: Any, subject: str, msg: Any) -> dict[str, Any]:
    """One request, retrying "no responders" for up to ``RETRY_WINDOW_S``."""
    deadline = time.monotonic() + RETRY_WINDOW_S
    while True:
        try:
            reply = await nc.request(subject, codec.encode(envelope(msg)), timeout=5)
            return dict(codec.decode(reply.data))
        except NoRespondersError:
            if time.monotonic() > deadline:
                raise
            RETRIES.append(subject)
            await asyncio.sleep(0.005)  # sleep-ok: the documented retry's backoff


class Load:
    """Clients asking the drained node's agents all along; failures are kept."""

    def __init__(self, nc: Any, node_index: int) -> None:
        self.nc, self.i = nc, node_index
        self.ok = 0
        self.failures: list[str] = []
        self.answered_by: list[tuple[float, str]] = []
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                echo = await ask(self.nc, S.agent(f"echo-{self.i}"), Echo(text=str(n)))
                assert echo["text"] == str(n), echo
                calc = await ask(self.nc, S.agent(f"calc-{self.i}"),
                                 Calculate(op="add", a=n, b=1))
                assert calc["value"] == n + 1, calc
                self.ok += 1
                self.answered_by.append((time.monotonic(), echo["node_id"]))
            except Exception as exc:
                self.failures.append(repr(exc))

    async def stop(self) -> None:
        self._stop.set()
        await self.task


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/readyz") as resp:
        return resp.status, json.loads(await resp.text())


async def test_draining_the_leaders_node_moves_its_agents_and_leadership_nothing_fails(
        cluster: LocalCluster) -> None:
    RETRIES.clear()
    client = await cluster.client()
    admin = await cluster.client(Role.ADMIN)
    observer = await cluster.client(Role.OBSERVER)
    registry = await Registry.connect(observer)
    load: Load | None = None
    try:
        raft = RaftClient(client, "cfg")
        assert (await raft.propose({"op": "put", "key": "before", "value": 1}))["ok"]
        leader = raft.leader
        assert leader in GROUP["members"]
        index = int(leader.split("-")[1])
        drained = cluster.procs[index - 1]
        await registry.view.wait_for(lambda: registry.count() == 6, 10)
        load = Load(client, index)
        await wait_for(lambda: load.ok >= 20, 20, "load before the drain")

        report = await request_drain(admin, S, leader, "drain", 30)

        mine = {f"echo-{index}", f"calc-{index}"}
        assert set(report["moved"]) == mine, report
        assert report["not_moved"] == {}, report
        assert report["handoff"] == {a: "forwarded" for a in mine}, report  # drops copies
        assert all(t != leader and t in GROUP["members"] for t in report["moved"].values())
        print("drain report:", json.dumps(report))
        if hasattr(RaftMember, "transfer_leadership"):
            assert report["leadership"].get("cfg") not in (None, leader), report
            assert report["ready_to_stop"] is True, report
        await registry.view.wait_for(lambda: all(
            (r := registry.lookup(a)) is not None and r.node_id == report["moved"][a]
            and r.state == "running" for a in mine), 10)
        status, ready = await readyz(drained.http_port)
        assert status == 503 and "draining" in ready["problems"], ready
        moved_at = time.monotonic()
        await wait_for(lambda: any(t > moved_at and n != leader for t, n in load.answered_by),
                       10, "answers from the new hosts")

        drained.signal(signal.SIGTERM)
        assert await asyncio.to_thread(drained.wait, 20) == 0
        stopped_at = time.monotonic()
        before = load.ok
        await wait_for(lambda: load.ok >= before + 20, 20, "load after the stop")
        assert all(n != leader for t, n in load.answered_by if t > stopped_at)
        assert (await raft.propose({"op": "put", "key": "after", "value": 2},
                                   timeout=10))["ok"]
        await load.stop()
        assert load.failures == [], load.failures[:5]
        assert RETRIES == [], RETRIES[:5]
        print(f"requests: {load.ok} pairs ok, {len(RETRIES)} no-responders retries")
        for a in mine:
            assert registry.lookup(a).node_id == report["moved"][a]  # type: ignore[union-attr]
    finally:
        if load is not None and not load.task.done():
            await load.stop()
        await registry.close()
        for nc in (client, admin, observer):
            with contextlib.suppress(Exception):
                await nc.close()



async def test_cli_drain_prints_the_report_and_undrain_takes_the_node_back(
        tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, nodes=2, agents=AGENTS[:2],
                           services={"registry": SERVICES["registry"]})
    await cluster.start()
    try:
        assert cluster.auth is not None
        where = ["--nats", cluster.urls[0], "--context",
                 str(cluster.auth.contexts[Role.ADMIN])]
        drained = await asyncio.to_thread(cli, "drain", "node-1", "--timeout", "20", "--json",
                                          *where)
        assert drained.returncode == 0, drained.stderr
        report = json.loads(drained.stdout)
        assert report["moved"] == {"echo-1": "node-2", "calc-1": "node-2"}, report
        assert report["ready_to_stop"] is True and report["draining"] is True
        table = await asyncio.to_thread(cli, "drain", "node-1", *where)  # nothing left
        assert table.returncode == 0 and "ready to stop: True" in table.stdout, table.stdout
        assert (await readyz(cluster.procs[0].http_port))[0] == 503
        source = await scrape(cluster.procs[0].http_port)
        assert 'ba_handover_total{outcome="moved"} 2.0' in source
        assert "ba_node_draining 1.0" in source
        assert 'ba_handover_total{outcome="accepted"} 2.0' in await scrape(
            cluster.procs[1].http_port)
        back = await asyncio.to_thread(cli, "undrain", "node-1", "--json", *where)
        assert back.returncode == 0 and json.loads(back.stdout)["draining"] is False
        status, ready = await readyz(cluster.procs[0].http_port)
        assert status == 200, ready
        assert "ba_node_draining 0.0" in await scrape(cluster.procs[0].http_port)
        # a client (not an admin) is refused by the server: forbidden, exit 1
        denied = await asyncio.to_thread(cli, "drain", "node-2", "--json", "--nats",
                                         cluster.urls[0], "--context",
                                         str(cluster.auth.contexts[Role.CLIENT]))
        assert denied.returncode == 1 and "forbidden" in denied.stdout + denied.stderr
    finally:
        await asyncio.to_thread(cluster.stop)


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        return await resp.text()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", "node", *args],
                          capture_output=True, text=True, timeout=60)


class RunsOnlyOnNode1(EchoAgent):
    """An agent another node accepts (``check``) but cannot start."""

    async def on_start(self) -> None:
        if self.ctx.node_id != "node-1":
            raise RuntimeError(f"cannot run on {self.ctx.node_id}")
        await super().on_start()


async def test_an_agent_the_target_cannot_start_runs_on_here_and_is_reported(
        tmp_path: Path) -> None:
    this = f"{__name__}:RunsOnlyOnNode1"
    cluster = LocalCluster(
        tmp_path, nodes=2, services={"registry": SERVICES["registry"]},
        agents=[[{"class": this, "id": "stubborn"},
                 {"class": "broker_agents.samples:EchoAgent", "id": "echo-1"}], []],
        extra_env={"BA_HOSTING": json.dumps({"classes": [this, "broker_agents.samples:*"]})})
    await cluster.start()
    admin = await cluster.client(Role.ADMIN)
    client = await cluster.client()
    try:
        report = await request_drain(admin, S, "node-1", "drain", 30)
        assert report["moved"] == {"echo-1": "node-2"}, report
        why = report["not_moved"]["stubborn"]
        assert "node-2: start_failed" in why and "cannot run on node-2" in why, why
        assert report["ready_to_stop"] is False
        answer = await ask(client, S.agent("stubborn"), Echo(text="still here"))
        assert answer == {"text": "still here", "agent_id": "stubborn", "node_id": "node-1"}
        moved = await ask(client, S.agent("echo-1"), Echo(text="moved"))
        assert moved["node_id"] == "node-2"
        observer = await cluster.client(Role.OBSERVER)
        registry = await Registry.connect(observer)
        try:
            await registry.view.wait_for(lambda: (r := registry.lookup("stubborn")) is not None
                                         and r.node_id == "node-1" and r.state == "running", 10)
        finally:
            await registry.close()
            await observer.close()
    finally:
        await admin.close()
        await client.close()
        await asyncio.to_thread(cluster.stop)
