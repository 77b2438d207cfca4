"""Shutdown is bounded in every state of the NATS connection, with documented exit codes.

Node daemons run as their own processes (``node.cluster``); NATS is a secured nats-server
the test stops under them. Each test waits for the log line or the endpoint that says the
node is in the state under test, then signals it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker_agents import codec
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.cluster import LocalCluster, NodeProcess
from node.embedded import start_server
from node.exitcodes import ExitCode

S = Subjects()
SHUTDOWN_TIMEOUT = 3.0
# A Python process takes its time to exit after the node stopped (interpreter teardown).
EXIT_SLACK = 3.0
WORKER = [[{"class": "broker_agents.samples:WorkerAgent", "id": "w"}]]
ENV = {"BA_NODE__SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
       "BA_NATS__RECONNECT_WAIT": "0.05", "BA_NATS__MAX_RECONNECT_WAIT": "0.4"}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=1, agents=WORKER, extra_env=ENV)
    await c.start()
    yield c
    await asyncio.to_thread(c.stop, 5)


async def unspawned_node(tmp_path: Path, env: dict[str, str]
                         ) -> tuple[LocalCluster, NodeProcess]:
    """A node set up for a secured server (its creds, CA and URL) that has stopped."""
    c = LocalCluster(tmp_path, nodes=1, extra_env=env)
    c.nats = await asyncio.to_thread(start_server, tmp_path)
    proc = c._node(1)
    c.procs.append(proc)
    await asyncio.to_thread(c.nats.stop)
    return c, proc


def log_lines(proc: NodeProcess) -> list[str]:
    return proc.log_path.read_text(errors="replace").splitlines()


def events(proc: NodeProcess) -> list[dict[str, Any]]:
    out = []
    for line in log_lines(proc):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


async def wait_for_log(proc: NodeProcess, event: str, timeout: float = 15.0) -> dict[str, Any]:
    """The first log record named ``event`` (bounded poll of another process's log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in events(proc):
            if record.get("event") == event:
                return record
        assert proc.process is not None and proc.process.poll() is None, log_lines(proc)[-20:]
        await asyncio.sleep(0.05)  # polling a file another process writes
    raise AssertionError(f"no {event!r} in {proc.log_path}:\n" + "\n".join(log_lines(proc)[-20:]))


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def terminate(proc: NodeProcess, bound: float) -> tuple[int | None, float]:
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, bound + 10)
    return code, time.monotonic() - started


def assert_clean_log(proc: NodeProcess) -> None:
    """No traceback, and the node id on every line the node wrote."""
    lines = log_lines(proc)
    assert not [line for line in lines if "Traceback" in line or "Error:" in line[:40]], \
        "\n".join(lines[-40:])
    records = events(proc)
    assert records and all(r.get("node_id") == proc.node_id for r in records), \
        [r for r in records if r.get("node_id") != proc.node_id][:3]


async def test_sigterm_while_nats_was_never_reachable_exits_0_in_time(tmp_path: Path) -> None:
    c, proc = await unspawned_node(tmp_path, ENV)
    try:
        proc.spawn(None)
        first = await wait_for_log(proc, "cannot reach NATS yet; retrying")
        assert first["retry_in"] == 0.05
        # HTTP is served meanwhile: alive, not ready
        assert await asyncio.to_thread(http_status, proc.http_port, "/readyz") == 503
        code, took = await terminate(proc, SHUTDOWN_TIMEOUT)
        assert code == ExitCode.OK
        assert took < SHUTDOWN_TIMEOUT + EXIT_SLACK
        assert_clean_log(proc)
        # failed attempts are logged rate-limited, not once per attempt
        retries = [r for r in events(proc) if r["event"] == "cannot reach NATS yet; retrying"]
        assert len(retries) <= 2
    finally:
        await asyncio.to_thread(c.stop, 5)


async def test_node_gives_up_on_unreachable_nats_with_exit_1(tmp_path: Path) -> None:
    c, proc = await unspawned_node(tmp_path, {**ENV, "BA_NATS__INITIAL_CONNECT_TIMEOUT": "1"})
    try:
        proc.spawn(None)
        code = await asyncio.to_thread(proc.wait, 20)
        assert code == ExitCode.FAILURE
        gave_up = [r for r in events(proc) if r["event"] == "node could not start; giving up"]
        assert gave_up and gave_up[0]["code"] == "unavailable"
        assert_clean_log(proc)
    finally:
        await asyncio.to_thread(c.stop, 5)


async def test_sigterm_while_disconnected_exits_0_in_time(cluster: LocalCluster) -> None:
    proc = cluster.procs[0]
    assert cluster.nats is not None
    await asyncio.to_thread(cluster.nats.stop)
    await wait_for_log(proc, "nats disconnected")
    # the node publishes while NATS is away (its registry heartbeats): buffered, never sent
    code, took = await terminate(proc, SHUTDOWN_TIMEOUT)
    assert code == ExitCode.OK
    assert took < SHUTDOWN_TIMEOUT + EXIT_SLACK
    assert_clean_log(proc)


async def test_sigterm_while_connected_exits_0(cluster: LocalCluster) -> None:
    proc = cluster.procs[0]
    code, took = await terminate(proc, SHUTDOWN_TIMEOUT)
    assert code == ExitCode.OK and took < SHUTDOWN_TIMEOUT + EXIT_SLACK
    assert_clean_log(proc)


async def test_second_signal_forces_exit_130(cluster: LocalCluster) -> None:
    """A handler that never finishes holds the graceful stage; the second signal does not
    wait for it."""
    proc = cluster.procs[0]
    nc = await cluster.client(Role.NODE)  # the release subject is a node's
    try:
        started = asyncio.Event()
        watcher = await cluster.client(Role.NODE)

        async def on_started(_: Any) -> None:
            started.set()

        await watcher.subscribe("ba.test.never.started", cb=on_started)
        await watcher.flush()
        await nc.publish(S.agent("w"), codec.encode(
            {"type": "work", "data": {"release": "ba.test.never"}}), reply="ba.test.sink")
        await asyncio.wait_for(started.wait(), 10)
        await watcher.close()
        proc.signal(signal.SIGTERM)
        await wait_for_log(proc, "shutting down")
        proc.signal(signal.SIGINT)
        code = await asyncio.to_thread(proc.wait, 10)
        assert code == ExitCode.FORCED
        assert any(r["event"] == "second signal: forcing exit" for r in events(proc))
    finally:
        await nc.close()
