"""The CLI as a user runs it: `up` until Ctrl-C, and a second signal forcing a node out."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from broker_agents import codec
from broker_agents.subjects import Subjects
from broker_agents.transport import connect_client
from node.auth.local import ensure_local
from node.auth.roles import Role
from node.embedded import free_port

CLI = [sys.executable, "-m", "node.cli"]


def test_up_starts_nodes_prints_their_ports_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([*CLI, "up", "--nodes", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # the table, then the NATS line once every node is ready
        seen.append(line)
        if "Ctrl-C to stop" in line:
            break
    text = "".join(seen)
    assert "node-1" in text and "node-2" in text and "http://127.0.0.1:" in text
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, text + rest
    assert "node-1 exit 0" in rest and "node-2 exit 0" in rest


async def test_second_signal_forces_a_node_out_while_work_is_in_flight(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, BA_NODE__ID="solo", BA_NODE__DATA_DIR=str(tmp_path),
               BA_NATS__EMBEDDED__PORT=str(port), BA_HTTP__PORT="0",
               BA_NODE__SHUTDOWN_TIMEOUT="30",
               BA_AGENTS='[{"class": "broker_agents.samples:WorkerAgent", "id": "w"}]')
    proc = await asyncio.create_subprocess_exec(*CLI, "node", "run", env=env,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    while b"node ready" not in await asyncio.wait_for(proc.stderr.readline(), 30):
        pass
    auth = ensure_local(tmp_path, port=port)  # what the node made on its first start
    nc = await connect_client(auth.server_url, security=auth.security(Role.NODE))
    started = asyncio.Event()

    async def on_started(_: object) -> None:
        started.set()

    await nc.subscribe("ba.test.hold.started", cb=on_started)
    await nc.flush()
    await nc.publish(Subjects().agent("w"),
                     codec.encode({"type": "work", "data": {"release": "ba.test.hold"}}))
    await asyncio.wait_for(started.wait(), 10)
    proc.send_signal(signal.SIGTERM)  # graceful: waits for the held handler
    while b"shutting down" not in await asyncio.wait_for(proc.stderr.readline(), 10):
        pass
    proc.send_signal(signal.SIGTERM)  # second signal: out now
    assert await asyncio.wait_for(proc.wait(), 10) == 130
    await nc.close()
    # ... and it took its embedded nats-server with it: nobody listens there any more
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


async def test_a_node_restarted_after_kill_9_replaces_its_orphaned_embedded_server(
        tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, BA_NODE__ID="solo", BA_NODE__DATA_DIR=str(tmp_path),
               BA_NATS__EMBEDDED__PORT=str(port), BA_HTTP__PORT="0")

    async def start() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*CLI, "node", "run", env=env,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        while b"node ready" not in await asyncio.wait_for(proc.stderr.readline(), 30):
            pass
        return proc

    first = await start()
    first.kill()  # kill -9: its embedded nats-server (own session) keeps running
    await first.wait()
    second = await start()  # finds the pid file, stops the orphan, starts its own
    second.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.wait(), 20) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
