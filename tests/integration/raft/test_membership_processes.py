"""Membership changes with members as OS processes (python -m broker_agents.raft.serve):
kill -9 the leader while a member is being added, under writes. Whatever became of that
request, an admin's retry settles it, every live member ends with the same configuration,
and no acknowledged write is lost; the killed member comes back and agrees."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.raft.admin import MembershipClient
from broker_agents.raft.client import RaftClient
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.raft.test_process_group import REPO, SNAPSHOT_EVERY, ProcGroup
from tests.secured import connect_as
from tests.secured import security as secured

FIRST = ["p0", "p1", "p2"]
RETRYABLE = (ErrorCode.CONFLICT, ErrorCode.NOT_LEADER, ErrorCode.TIMEOUT,
             ErrorCode.UNAVAILABLE)


def spawn_joiner(group: ProcGroup, mid: str) -> None:
    """A member outside the first configuration, waiting (not voting) to be added."""
    cmd = [sys.executable, "-m", "broker_agents.raft.serve", "--nats", group.server.url,
           "--group", group.group, "--member", mid, "--peers", ",".join(FIRST),
           "--data-dir", str(group.data / mid), "--snapshot-threshold", str(SNAPSHOT_EVERY),
           "--join"]
    security = secured(group.server, Role.NODE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "BA_CREDS": str(security.creds_file),
           "BA_TLS_CA": str(security.tls_ca_file), "BA_INBOX_PREFIX": str(security.inbox_prefix)}
    group.procs[mid] = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, cwd=REPO)


async def until(admin: Any, group: str, member: str, holds: Callable[[dict[str, Any]], bool],
                what: str, timeout: float = 20.0) -> dict[str, Any]:
    """Ask ``member`` for its view until ``holds`` (it may be starting: no responders)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: Any = None
    while True:
        try:
            seen = await MembershipClient(admin, group).call("members", at=member, timeout=2)
            if holds(seen):
                return dict(seen)
        except BrokerError as exc:
            seen = exc
        assert loop.time() < deadline, f"timed out waiting for {what}; last seen {seen!r}"
        await asyncio.sleep(0.02)  # sleep-ok: polling another process over NATS


async def _write(client: RaftClient, acked: dict[str, int], i: int) -> None:
    await client.propose({"op": "put", "key": f"k{i % 11}", "value": i}, timeout=15)
    acked[f"k{i % 11}"] = i


async def _settle_add(members: MembershipClient, adding: asyncio.Task[Any]) -> str:
    """The add's outcome; a failed one is retried as an admin would."""
    try:
        return f"acknowledged: {(await adding)['voters']}"
    except BrokerError as exc:
        if exc.code not in RETRYABLE:
            raise
        outcome = f"failed with {exc.code.value}, retried"
    for _ in range(5):
        try:
            await members.call("add", "p3", timeout=20)
            return outcome
        except BrokerError as again:
            if again.code == ErrorCode.BAD_REQUEST:  # it went through after all
                return outcome + " (already a member)"
            if again.code not in RETRYABLE:
                raise
    raise AssertionError("the add never settled")


async def test_kill9_of_the_leader_during_an_add(nats_server: NatsServer,
                                                tmp_path: Path) -> None:
    group = ProcGroup(nats_server, "memproc", FIRST, tmp_path)
    for mid in FIRST:
        group.start(mid)
    nc = await connect_as(nats_server, Role.CLIENT)
    admin = await connect_as(nats_server, Role.ADMIN)
    writer: asyncio.Task[None] | None = None
    final = sorted([*FIRST, "p3"])
    try:
        client = RaftClient(nc, group.group)
        acked: dict[str, int] = {}
        for i in range(2 * SNAPSHOT_EVERY):  # past a snapshot: p3 gets InstallSnapshot
            await _write(client, acked, i)
        victim = client.leader
        assert victim in FIRST
        stop_writing = asyncio.Event()

        async def keep_writing() -> None:
            i = 1000
            while not stop_writing.is_set():  # never cancelled mid-write: each one settles
                await _write(client, acked, i)
                i += 1

        writer = asyncio.create_task(keep_writing())
        members = MembershipClient(admin, group.group)
        # p3 is not up yet, so the change stops half-way: p3 is logged as a learner and
        # cannot catch up. The leader dies then; p3 starts; the admin's retry resumes.
        adding = asyncio.create_task(members.call("add", "p3", timeout=5))
        await until(admin, group.group, victim, lambda v: "p3" in v["learners"],
                    "p3 logged as a learner")
        await asyncio.to_thread(group.kill9, victim)
        spawn_joiner(group, "p3")
        outcome = await _settle_add(members, adding)
        print(f"kill -9 of leader {victim} during add: the request {outcome}")
        live = [m for m in final if m != victim]
        for mid in live:
            await until(admin, group.group, mid,
                        lambda v: v["voters"] == final and v["leader"] in live,
                        f"{mid} agreeing on {final}")
        stop_writing.set()
        await writer
        for i in range(200, 210):
            await _write(client, acked, i)
        for key, value in acked.items():
            got = await client.read({"op": "get", "key": key}, timeout=15)
            assert got["value"] == value, f"acknowledged write {key}={value} lost"
        # the killed leader comes back, learns the change, and agrees
        group.start(victim)
        await until(admin, group.group, victim,
                    lambda v: v["voters"] == final and v["leader"] in live,
                    "the killed member learning the change")
    finally:
        if writer is not None:
            writer.cancel()
        await nc.close()
        await admin.close()
        group.stop_all()
