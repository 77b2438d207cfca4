"""The default node, secured: ``broker-agents node run`` with no NATS settings runs its
embedded server with the credentials it made in its data dir on first start. Outsiders
are refused (no creds, someone else's creds, plaintext); a client, with the context the
node wrote, can still make every public request the README shows, and the CLI finds that
context by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.auction.client import run_auction
from broker_agents.auction.ledger import Ledger
from broker_agents.core.errors import BrokerError
from broker_agents.kv import open_bucket
from broker_agents.messages import envelope
from broker_agents.raft.client import RaftClient
from broker_agents.samples import Calculate, Echo
from broker_agents.subjects import Subjects
from broker_agents.transport import connect_client
from broker_agents.transport import request as nats_request
from broker_agents.variables.client import Variables
from node.auth.context import ClientContext, context_name, tls_context
from node.auth.local import ensure_local
from node.auth.roles import Role
from node.embedded import free_port

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

S = Subjects()
AGENTS = [
    {"class": "broker_agents.samples:EchoAgent", "id": "echo"},
    {"class": "broker_agents.samples:CalculatorAgent", "id": "calc"},
    {"class": "broker_agents.coord.coordinator:CoordinatorAgent", "id": "coordinator"},
    {"class": "broker_agents.coord.voter:VoterAgent", "id": "v1", "kwargs": {"choice": "ship"}},
    {"class": "broker_agents.coord.voter:VoterAgent", "id": "v2", "kwargs": {"choice": "ship"}},
    {"class": "broker_agents.auction.auctioneer:AuctioneerAgent", "id": "auctioneer"},
    {"class": "broker_agents.auction.bidder:BidderAgent", "id": "b1", "kwargs": {"value": 10.0}},
    {"class": "broker_agents.auction.bidder:BidderAgent", "id": "b2", "kwargs": {"value": 14.0}},
    {"class": "broker_agents.variables.engine_agent:AdaptationEngineAgent", "id": "engine",
     "kwargs": {"spaces": ["llm"]}},
]
SERVICES = {"consensus": {"groups": [
    {"name": "kv", "members": ["solo"]},
    {"name": "variables", "members": ["solo"], "state_machine": "variables"}]}}
SPACE = {"name": "cfg", "variables": [  # set by hand; the engine adapts "llm"
    {"kind": "float", "name": "temperature", "min": 0.0, "max": 2.0, "default": 0.7}]}
ADAPTED = {"name": "llm", "variables": [
    {"kind": "float", "name": "temperature", "min": 0.0, "max": 2.0, "default": 0.7}]}


@dataclass
class DefaultNode:
    """A node process started with the defaults (no [nats] settings) in ``home``/data."""

    home: Path
    port: int
    process: asyncio.subprocess.Process

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def context(self, role: Role = Role.CLIENT) -> ClientContext:
        return ClientContext.read(self.data_dir / "auth" / context_name(role))

    async def connect(self, role: Role = Role.CLIENT) -> NATS:
        ctx = self.context(role)
        return await connect_client(list(ctx.servers), security=ctx.security())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DefaultNode]:
    home = tmp_path_factory.mktemp("default-node")
    port = free_port()
    env = {**os.environ, "BA_NODE__ID": "solo", "BA_NODE__DATA_DIR": str(home / "data"),
           "BA_NATS__EMBEDDED__PORT": str(port), "BA_HTTP__PORT": "0",
           "BA_NODE__LOG_LEVEL": "info", "BA_AGENTS": json.dumps(AGENTS),
           "BA_SERVICES": json.dumps(SERVICES)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node.cli", "node", "run", env=env, cwd=home,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    seen = []
    while b"node ready" not in (line := await asyncio.wait_for(proc.stderr.readline(), 30)):
        assert line, b"".join(seen).decode()[-3000:]
        seen.append(line)
    drain = asyncio.ensure_future(proc.stderr.read())  # keep its pipe from filling up
    yield DefaultNode(home, port, proc)
    proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    drain.cancel()


# -- outsiders ---------------------------------------------------------------------------


async def test_first_start_made_private_credentials_and_a_context_per_role(
        node: DefaultNode) -> None:
    auth = node.data_dir / "auth"
    assert (auth.stat().st_mode & 0o777) == 0o700
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in auth.rglob("*") if p.is_file())
    ctx = node.context()
    assert ctx.servers == (f"tls://127.0.0.1:{node.port}",)
    assert ctx.inbox_prefix == "_INBOX.client" and ctx.creds == auth / "creds" / "client.creds"


async def test_a_connection_without_creds_is_refused(node: DefaultNode) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(f"tls://127.0.0.1:{node.port}", tls=tls_context(node.context().ca),
                           allow_reconnect=False, connect_timeout=3)


async def test_creds_of_another_node_are_refused(node: DefaultNode, tmp_path: Path) -> None:
    other = ensure_local(tmp_path / "other", port=free_port())  # another machine's defaults
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(f"tls://127.0.0.1:{node.port}", tls=tls_context(node.context().ca),
                           user_credentials=str(other.creds[Role.NODE]),
                           allow_reconnect=False, connect_timeout=3)


async def test_a_plaintext_connection_is_refused(node: DefaultNode) -> None:
    """A client that speaks NATS without TLS (its creds would not help) gets no PONG: the
    server wants a TLS handshake after its INFO and drops the connection."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        assert b'"tls_required":true' in stream.readline()
        sock.sendall(b'CONNECT {"verbose":false,"tls_required":false}\r\nPING\r\n')
        assert b"PONG" not in stream.read()  # until the server closes the connection


# -- a client, with the context the node wrote -------------------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def client(node: DefaultNode) -> AsyncIterator[NATS]:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    ctx = node.context(Role.CLIENT)
    nc = await connect_client(list(ctx.servers), security=ctx.security(), error_cb=on_error)
    yield nc
    await nc.close()
    assert errors == []  # no permissions violation on the way


async def ask(nc: NATS, subject: str, payload: Any, *, signed: bool = False) -> Any:
    reply = await nats_request(nc, subject, codec.encode(payload), timeout=10, signed=signed)
    got = codec.decode(reply.data, reply.headers)
    err = BrokerError.from_payload(got)
    assert err is None, err
    return got


async def test_a_client_asks_agents_and_capabilities(client: NATS) -> None:
    assert (await ask(client, S.agent("echo"), envelope(Echo(text="hi"))))["text"] == "hi"
    got = await ask(client, S.cap("math"), envelope(Calculate(op="mul", a=6, b=7)))
    assert got["value"] == 42


async def test_a_client_votes_and_locks(client: NATS) -> None:
    got = await ask(client, S.coord("vote"), {"capability": "voter", "proposal": "ship?",
                                             "options": ["ship", "wait"]})
    assert got["decision"] == "ship"
    # A lock names its holder: a signed act, whose holder is the client's user.
    lock = await ask(client, S.coord("lock"), {"name": "db", "ttl_ms": 5000}, signed=True)
    assert (lock["granted"], lock["holder"]) == (True, "client")


async def test_a_client_looks_up_the_registry_over_nats(client: NATS) -> None:
    found = await ask(client, S.registry("find"), {"capability": "math"})
    assert [a["agent_id"] for a in found["agents"]] == ["calc"]
    got = await ask(client, S.registry("get"), {"agent_id": "echo"})
    assert got["agent"]["agent_id"] == "echo"
    assert (await ask(client, S.registry("count"), {}))["count"] == len(AGENTS)


async def test_a_client_proposes_and_reads_through_raft(client: NATS) -> None:
    raft = RaftClient(client, "kv")
    assert (await raft.propose({"op": "put", "key": "k", "value": 1}))["ok"]
    assert (await raft.read({"op": "get", "key": "k"}))["value"] == 1
    assert raft.leader == "solo"  # the member subject (ba.raft.kv.solo.read) next time
    assert (await raft.read({"op": "get", "key": "k"}))["value"] == 1


async def test_a_client_runs_an_auction_settled_against_budgets(node: DefaultNode,
                                                                client: NATS) -> None:
    treasury = await node.connect(Role.NODE)  # deposits still write the bucket directly
    book = Ledger(await open_bucket(treasury.jetstream(), S.bucket("accounts")))
    for who in ("b1", "b2"):
        await book.deposit(who, 100.0, "funding")
    await treasury.close()
    result = await run_auction(client, {"type": "vickrey", "capability": "bidder",
                                        "item": "gpu-hour", "reserve": 5.0})
    assert (result["winner"], result["price"], result["status"]) == ("b2", 10.0, "settled")


async def test_a_client_defines_sets_and_reads_variables_and_gives_feedback(
        client: NATS) -> None:
    v = Variables(client)
    await v.define_space(SPACE)
    await v.define_space(ADAPTED)
    assert (await v.set("cfg", {"temperature": 0.9})).values["temperature"] == 0.9
    assert (await v.get("cfg", "temperature")).value == 0.9
    assert [h.value for h in await v.history("cfg", "temperature")] == [0.7, 0.9]
    ack = await v.feedback("llm", reward=1.0, timeout=10)  # ba.variables.llm.feedback
    assert ack is not None and ack.version is not None


async def test_the_cli_finds_the_local_context_of_the_role_it_needs(node: DefaultNode) -> None:
    """Run where the node's ./data is, as a user would: no option names a credential."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("BA_CONTEXT", "BA_CREDS", "BA_TLS_CA", "BA_NODE__DATA_DIR")}
    env["XDG_CONFIG_HOME"] = str(node.home / "no-config")

    async def cli(*args: str) -> Any:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node.cli", *args, "--json", env=env, cwd=node.home,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, (out + err).decode()
        return json.loads(out)

    vote = await cli("request", "vote", '{"capability": "voter", "proposal": "go?"}')
    assert vote["decision"] == "ship"  # as the client
    agents = await cli("registry", "ls")  # as the observer: it reads the bucket
    assert {a["agent_id"] for a in agents} == {a["id"] for a in AGENTS}
