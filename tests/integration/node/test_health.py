"""The embedded nats-server is supervised, and /healthz and /readyz say what is wrong.

A node runs in-process with its embedded server (a real nats-server process): the test
kills that process with SIGKILL and watches the node restart it, or give up and exit 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import REGISTRY

from broker_agents import codec
from broker_agents.messages import envelope
from broker_agents.samples import Echo
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.config import load_config
from node.daemon import Node
from node.exitcodes import ExitCode
from tests.integration.raft.helpers import wait_for
from tests.secured import connect_as


def config(tmp_path: Path, **embedded: Any) -> Any:
    return load_config(None, node={"id": "n1", "data_dir": tmp_path, "shutdown_timeout": 3},
                       nats={"embedded": {"port": 0, **embedded}, "max_reconnect_wait": 0.5},
                       http={"port": 0},
                       agents=[{"class": "broker_agents.samples:EchoAgent", "id": "e"}],
                       services={"consensus": {"groups": [
                           {"name": "solo", "members": ["n1"], "tick_ms": 5}]}})


async def get(node: Node, path: str) -> tuple[int, dict[str, Any]]:
    assert node.http is not None
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{node.http.port}{path}") as resp:
        return resp.status, json.loads(await resp.text())


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def echo(node: Node) -> str:
    assert node.embedded is not None
    nc = await connect_as(node.embedded, Role.CLIENT)
    try:
        reply = await nats_request(nc, "ba.agent.e", codec.encode(envelope(Echo(text="hi"))),
                                   timeout=5)
        return str(codec.decode(reply.data)["text"])
    finally:
        await nc.close()


async def test_killed_embedded_server_is_restarted_and_the_node_serves_again(
        tmp_path: Path) -> None:
    # a 1 s backoff: the outage lasts long enough to ask both endpoints during it
    node = Node(config(tmp_path, restart_backoff_initial=1.0))
    await node.start()
    try:
        assert node.embedded is not None
        assert await get(node, "/healthz") == (200, {"status": "ok", "healthy": True,
                                                     "problems": {}})
        assert (await get(node, "/readyz"))[0] == 200
        restarts, old_pid = metric("ba_nats_embedded_restarts_total"), node.embedded.pid
        node.embedded.kill()
        await wait_for(lambda: "nats.embedded" in node.readiness()["problems"], 5,
                       "the outage to be noticed")
        status, ready = await get(node, "/readyz")
        assert status == 503 and not ready["ready"]
        assert "restarting" in ready["problems"]["nats.embedded"]
        status, alive = await get(node, "/healthz")  # within its intensity: still alive
        assert status == 200 and alive["healthy"]
        assert metric("ba_nats_embedded_up") == 0
        started = time.monotonic()
        await wait_for(lambda: node.readiness()["ready"], 10, "the node to be ready again")
        assert time.monotonic() - started < 10
        assert node.embedded.pid != old_pid
        assert await echo(node) == "hi"
        assert (await get(node, "/readyz"))[0] == 200
        assert (await get(node, "/healthz"))[0] == 200
        assert metric("ba_nats_embedded_restarts_total") == restarts + 1
        assert metric("ba_nats_embedded_up") == 1 and metric("ba_node_healthy") == 1
    finally:
        await node.shutdown()
    assert node.embedded.process is not None and node.embedded.process.poll() is not None


async def test_embedded_server_dying_past_its_intensity_exits_the_node_non_zero(
        tmp_path: Path) -> None:
    node = Node(config(tmp_path, max_restarts=0))
    await node.start()
    stop = asyncio.Event()
    running = asyncio.ensure_future(node.wait(stop))
    try:
        assert node.embedded is not None and node.embedded_supervisor is not None
        node.embedded.kill()
        code = await asyncio.wait_for(running, 10)
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)
    assert code == ExitCode.FAILURE
    alive = node.liveness()
    assert not alive["healthy"] and "gave up" in alive["problems"]["nats.embedded"]
    assert metric("ba_node_healthy") == 0
    assert node.embedded.process is not None and node.embedded.process.poll() is not None


async def test_a_dead_raft_member_makes_the_node_unready_but_alive(tmp_path: Path) -> None:
    node = Node(config(tmp_path))
    await node.start()
    try:
        member = node.service_map["consensus"].group("solo")
        await wait_for(lambda: member.is_leader, what="the member to lead")
        assert (await get(node, "/readyz"))[0] == 200
        member._fail_stop("test", RuntimeError("disk gone"))  # what any internal error does
        status, ready = await get(node, "/readyz")
        assert status == 503 and "disk gone" in ready["problems"]["consensus.solo"]
        status, alive = await get(node, "/healthz")
        assert status == 200 and alive["problems"] == {}
    finally:
        await node.shutdown()


async def test_a_saturated_coordinator_makes_the_node_unready(tmp_path: Path) -> None:
    cfg = load_config(None, node={"id": "n1", "data_dir": tmp_path, "shutdown_timeout": 3},
                      nats={"embedded": {"port": 0}}, http={"port": 0},
                      agents=[{"class": "broker_agents.coord.coordinator:CoordinatorAgent",
                               "id": "coord", "kwargs": {"max_inflight": 1}}])
    node = Node(cfg)
    await node.start()
    try:
        assert (await get(node, "/readyz"))[0] == 200
        coord: Any = node.agents["coord"]
        coord._serving = coord.admission.max_inflight  # every slot taken: "busy" to all
        status, ready = await get(node, "/readyz")
        assert status == 503 and "saturated" in ready["problems"]["coordinator.coord"]
        coord._serving = 0
        assert (await get(node, "/readyz"))[0] == 200
    finally:
        await node.shutdown()


async def test_a_node_process_whose_server_keeps_dying_exits_1_saying_why(
        tmp_path: Path) -> None:
    """As a process manager sees it: kill -9 of the embedded server, past the intensity
    (here 0 restarts), and the node process exits 1 within 10 s with one clear line."""
    env = dict(os.environ, BA_NODE__ID="solo", BA_NODE__DATA_DIR=str(tmp_path),
               BA_NATS__EMBEDDED__PORT="0", BA_NATS__EMBEDDED__MAX_RESTARTS="0",
               BA_HTTP__PORT="0", BA_NODE__SHUTDOWN_TIMEOUT="3",
               BA_AGENTS='[{"class": "broker_agents.samples:EchoAgent", "id": "e"}]')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node.cli", "node", "run", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    try:
        while b"node ready" not in await asyncio.wait_for(proc.stderr.readline(), 30):
            pass
        pid = int((tmp_path / "nats" / "nats-server.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        reading = asyncio.ensure_future(proc.stderr.read())  # a full pipe would block it
        try:
            code = await asyncio.wait_for(proc.wait(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
            rest = await asyncio.wait_for(reading, 5)
        assert code == ExitCode.FAILURE, rest.decode()[-3000:]
        assert time.monotonic() - started < 10
        assert b"embedded nats-server supervisor gave up" in rest
        assert b"Traceback" not in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
