"""Run one Raft member (built-in KV state machine) as its own OS process.

    python -m broker_agents.raft.serve --nats URL --group G --member M --peers a,b,c \
        --data-dir DIR [--join] \
        [--creds node.creds --tls-ca ca.pem --inbox-prefix _INBOX.node]

On a secured server (the default) a member needs a node's creds, the CA and the node
user's inbox prefix (``$BA_CREDS``, ``$BA_TLS_CA``, ``$BA_INBOX_PREFIX`` work too).

``--join``: a member outside ``--peers`` that waits, not voting, to be added
(``broker-agents raft add``); the admin face (``admin.py``) is served as on a node.
SIGTERM/SIGINT stop it cleanly, a leader handing its leadership over first. The node
daemon hosts groups by calling ``serve_member`` (or by building ``RaftMember`` itself);
this module only adds the process shell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from broker_agents.core.raft.config import DEFAULT_SNAPSHOT_TRAIL
from broker_agents.core.raft.kvstore import KVStateMachine
from broker_agents.raft.admin import MembershipService
from broker_agents.raft.commands import DEFAULT_MAX_COMMAND_BYTES
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.storage import FileStorage
from broker_agents.subjects import Subjects
from broker_agents.transport import Security, connect_client


@dataclass
class MemberConfig:
    nats_url: str
    group: str
    member: str
    peers: list[str]
    data_dir: Path
    prefix: str = "ba"
    tick_ms: float = 20.0
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    snapshot_threshold: int = 10_000
    snapshot_trail: int = DEFAULT_SNAPSHOT_TRAIL
    max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES
    dedup_capacity: int = 100_000
    dedup_window: int = 0
    fsync: bool = True
    join: bool = False
    servers: list[str] = field(default_factory=list)
    security: Security = field(default_factory=Security)


async def serve_member(config: MemberConfig, stop: asyncio.Event | None = None) -> None:
    """Run a member until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    stop = stop or _signal_event()
    nc = await connect_client(
        config.servers or [config.nats_url], security=config.security,
        max_reconnect_attempts=-1, reconnect_time_wait=0.2,
        name=f"raft-{config.group}-{config.member}",
    )
    member = RaftMember(
        nc, config.group, config.member, config.peers,
        FileStorage(config.data_dir, fsync=config.fsync), KVStateMachine(),
        Subjects(config.prefix), tick_ms=config.tick_ms,
        election_ticks=config.election_ticks, heartbeat_ticks=config.heartbeat_ticks,
        snapshot_threshold=config.snapshot_threshold, snapshot_trail=config.snapshot_trail,
        max_command_bytes=config.max_command_bytes,
        dedup_capacity=config.dedup_capacity, dedup_window=config.dedup_window,
        join=config.join,
    )
    admin = MembershipService(member)
    try:
        await member.start()
        await admin.start()
        print(f"raft member {config.member} of {config.group} ready", flush=True)
        await stop.wait()
    finally:
        await admin.stop()
        await member.stop(handover=True)
        with contextlib.suppress(Exception):
            await nc.drain()


def _signal_event() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


def parse_args(argv: list[str]) -> MemberConfig:
    p = argparse.ArgumentParser(prog="python -m broker_agents.raft.serve")
    p.add_argument("--nats", required=True, help="NATS URL (comma-separated for several)")
    p.add_argument("--group", required=True)
    p.add_argument("--member", required=True)
    p.add_argument("--peers", required=True,
                   help="the group's first members, comma-separated")
    p.add_argument("--join", action="store_true",
                   help="not among --peers: wait, not voting, to be added")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--prefix", default="ba")
    p.add_argument("--tick-ms", type=float, default=20.0)
    p.add_argument("--election-ticks", type=int, default=10)
    p.add_argument("--heartbeat-ticks", type=int, default=2)
    p.add_argument("--snapshot-threshold", type=int, default=10_000)
    p.add_argument("--snapshot-trail", type=int, default=DEFAULT_SNAPSHOT_TRAIL,
                   help="entries kept after a snapshot, so a follower that trails by "
                        "less catches up without one")
    p.add_argument("--max-command-bytes", type=int, default=DEFAULT_MAX_COMMAND_BYTES,
                   help="refuse commands whose stored form is larger (too_large)")
    p.add_argument("--dedup-capacity", type=int, default=100_000,
                   help="request ids remembered for exactly-once retries")
    p.add_argument("--dedup-window", type=int, default=0,
                   help="forget a request id this many log entries later (0: never)")
    p.add_argument("--no-fsync", action="store_true", help="unsafe: skip fsync (tests)")
    p.add_argument("--creds", type=Path, default=os.environ.get("BA_CREDS") or None,
                   help="the node user's .creds file")
    p.add_argument("--tls-ca", type=Path, default=os.environ.get("BA_TLS_CA") or None,
                   help="CA of the servers' certificates")
    p.add_argument("--inbox-prefix", default=os.environ.get("BA_INBOX_PREFIX") or None,
                   help="the creds' user's inbox prefix (_INBOX.<user>)")
    a = p.parse_args(argv)
    urls = [u for u in a.nats.split(",") if u]
    return MemberConfig(
        nats_url=urls[0], servers=urls, group=a.group, member=a.member,
        peers=[x for x in a.peers.split(",") if x], data_dir=a.data_dir, prefix=a.prefix,
        tick_ms=a.tick_ms, election_ticks=a.election_ticks,
        heartbeat_ticks=a.heartbeat_ticks, snapshot_threshold=a.snapshot_threshold,
        snapshot_trail=a.snapshot_trail,
        max_command_bytes=a.max_command_bytes, fsync=not a.no_fsync,
        dedup_capacity=a.dedup_capacity, dedup_window=a.dedup_window, join=a.join,
        security=Security(creds_file=a.creds, tls_ca_file=a.tls_ca,
                          inbox_prefix=a.inbox_prefix),
    )


def main(argv: list[str] | None = None) -> None:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    asyncio.run(serve_member(config))


if __name__ == "__main__":
    main()
