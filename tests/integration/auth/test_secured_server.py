"""A single nats-server run with the config ``ensure_local`` renders: who gets in, and what
each role may do once in (permissions enforced by the server, seen through nats-py)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg

from node.auth.context import tls_context
from node.auth.creds import Creds
from node.auth.local import LocalAuth, ensure_local
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.auth.conftest import Connect

pytestmark = pytest.mark.timeout(60)


# -- who gets in -------------------------------------------------------------------------


async def test_a_connection_without_creds_is_refused(local_auth: LocalAuth,
                                                     secured_server: NatsServer) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(local_auth.server_url, tls=tls_context(local_auth.ca),
                           allow_reconnect=False, connect_timeout=3)


async def test_creds_from_another_operator_are_refused(
        local_auth: LocalAuth, secured_server: NatsServer, tmp_path: Path) -> None:
    stranger = ensure_local(tmp_path / "elsewhere", port=1)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(local_auth.server_url, tls=tls_context(local_auth.ca),
                           user_credentials=str(stranger.creds[Role.CLIENT]),
                           allow_reconnect=False, connect_timeout=3)


async def test_a_user_jwt_without_its_seed_is_refused(
        local_auth: LocalAuth, secured_server: NatsServer, tmp_path: Path) -> None:
    """A copied JWT is not an identity: the server's nonce must be signed by its key."""
    stolen = Creds(Creds.read(local_auth.creds[Role.ADMIN]).jwt,
                   Creds.read(local_auth.creds[Role.CLIENT]).seed).write(tmp_path / "x.creds")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(local_auth.server_url, tls=tls_context(local_auth.ca),
                           user_credentials=str(stolen), allow_reconnect=False,
                           connect_timeout=3)


async def test_a_server_certificate_from_another_ca_is_not_trusted(
        local_auth: LocalAuth, secured_server: NatsServer, tmp_path: Path) -> None:
    stranger = ensure_local(tmp_path / "elsewhere", port=1)
    with pytest.raises(ssl.SSLCertVerificationError):
        await nats.connect(local_auth.server_url, tls=tls_context(stranger.ca),
                           user_credentials=str(local_auth.creds[Role.CLIENT]),
                           allow_reconnect=False, connect_timeout=3)


def test_a_plaintext_connection_is_refused(secured_server: NatsServer) -> None:
    """A client that speaks the NATS protocol without TLS gets no PONG: the server wants
    a TLS handshake after its INFO, and drops the connection."""
    with socket.create_connection(("127.0.0.1", secured_server.port), timeout=5) as sock:
        stream = sock.makefile("rb")
        info = stream.readline()
        assert info.startswith(b"INFO ") and b'"tls_required":true' in info
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"tls_required":false}\r\n'
                     b"PING\r\n")
        rest = stream.read()  # until the server closes the connection
    assert b"PONG" not in rest


# -- what a client may not do ------------------------------------------------------------


async def test_a_client_may_not_write_kv_or_call_the_jetstream_api(connect: Connect) -> None:
    client = await connect(Role.CLIENT)
    await client.nc.publish("$KV.ba_accounts.x", b'{"balance": 1000000}')
    await client.violation("publish", "$KV.ba_accounts.x")
    await client.nc.publish("$JS.API.STREAM.CREATE.KV_ba_accounts", b"{}")
    await client.violation("publish", "$JS.API.STREAM.CREATE.KV_ba_accounts")
    await client.nc.publish("$JS.API.INFO", b"")
    await client.violation("publish", "$JS.API.INFO")


async def test_a_client_may_not_publish_to_a_raft_peer_subject(connect: Connect) -> None:
    client = await connect(Role.CLIENT)
    await client.nc.publish("ba.raft.config.node-1", b"forged heartbeat")
    await client.violation("publish", "ba.raft.config.node-1")


async def test_a_client_may_not_subscribe_to_agents_or_other_inboxes(connect: Connect) -> None:
    client = await connect(Role.CLIENT)
    for subject in ("ba.agent.calc", "_INBOX.admin.>", "_INBOX.>", "ba.>"):
        await client.nc.subscribe(subject)
        await client.violation("subscription", subject)


async def test_a_client_may_not_use_a_treasury_operation(connect: Connect) -> None:
    client = await connect(Role.CLIENT)
    await client.nc.publish("ba.treasury.deposit", b"{}")
    await client.violation("publish", "ba.treasury.deposit")
    admin = await connect(Role.ADMIN)
    await admin.nc.publish("ba.treasury.deposit", b"{}")
    await admin.nc.flush()
    assert admin.errors.empty()  # flush waited for the server: an error would be here


# -- what the roles can do ---------------------------------------------------------------


async def test_a_client_requests_and_a_node_answers_on_a_public_subject(
        connect: Connect) -> None:
    node = await connect(Role.NODE)

    async def echo(msg: Msg) -> None:
        await msg.respond(b"echo: " + msg.data)

    await node.nc.subscribe("ba.agent.echo", cb=echo)
    await node.nc.flush()
    client = await connect(Role.CLIENT)
    reply = await client.nc.request("ba.agent.echo", b"hi", timeout=5)
    assert reply.data == b"echo: hi"
    assert reply.subject.startswith("_INBOX.client.")
    for subject in ("ba.raft.config.propose", "ba.raft.config.node-1.read", "ba.coord.vote",
                    "ba.cap.math", "ba.registry.find", "ba.auction.a1.bid"):
        await client.nc.publish(subject, b"{}")
    await client.nc.flush()  # a violation would reach the error callback before the PONG
    assert client.errors.empty() and node.errors.empty()


async def test_a_node_creates_a_bucket_and_puts_and_gets(connect: Connect) -> None:
    node = await connect(Role.NODE)
    js = node.nc.jetstream(timeout=5)
    kv = await js.create_key_value(bucket="ba_accounts", history=1)
    revision = await kv.put("bidder-1", b'{"balance": 100}')
    entry = await kv.get("bidder-1")
    assert (entry.value, entry.revision) == (b'{"balance": 100}', revision)
    assert node.errors.empty()


async def test_an_observer_watches_a_bucket_but_cannot_write_it(connect: Connect) -> None:
    node = await connect(Role.NODE)
    kv = await node.nc.jetstream(timeout=5).create_key_value(bucket="ba_agents", history=1)
    await kv.put("a1", b"first")
    observer = await connect(Role.OBSERVER)
    watched = await observer.nc.jetstream(timeout=5).key_value("ba_agents")
    watcher = await watched.watchall()
    entry = await watcher.updates(timeout=5)
    assert entry is not None and (entry.key, entry.value) == ("a1", b"first")
    await kv.put("a1", b"second")
    while (entry := await watcher.updates(timeout=5)) is None:  # the end-of-history marker
        pass
    assert entry.value == b"second"
    await watcher.stop()
    await observer.nc.publish("$KV.ba_agents.a1", b"forged")
    await observer.violation("publish", "$KV.ba_agents.a1")
    await observer.nc.publish("ba.agent.calc", b"{}")
    await observer.violation("publish", "ba.agent.calc")
