"""A consensus group's admin face (``admin.membership.<group>[.<member>]``): only admins and
nodes may publish there, only their signed acts count, and hostile payloads get a
structured error while the member keeps serving. The membership never changes on a
refused request."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from broker_agents import identity
from broker_agents.codec import decode, encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft.kvstore import KVStateMachine
from broker_agents.identity import UNAUTHORIZED
from broker_agents.raft.admin import MembershipClient, MembershipService, membership_subject
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.memstore import MemoryStorage
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.raft.helpers import leader_of, wait_for
from tests.secured import connect_as
from tests.security.violations import Violations

S = Subjects()
GROUP = "adm"
Connect = Callable[..., Coroutine[Any, Any, NATS]]


@pytest.fixture
async def group(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[list[RaftMember]]:
    """A 3-member group with its admin face, on node connections."""
    ids = ["a", "b", "c"]
    members, parts = [], []
    for i, mid in enumerate(ids):
        nc = await connect_as(nats_server, Role.NODE)
        member = RaftMember(nc, GROUP, mid, ids, MemoryStorage(), KVStateMachine(),
                            rng=random.Random(i))
        await member.start()
        admin = MembershipService(member)
        await admin.start()
        members.append(member)
        parts.append((nc, admin))
    await wait_for(lambda: leader_of(members), 10, "a leader")
    yield members
    for member, (nc, admin) in zip(members, parts, strict=True):
        await admin.stop()
        await member.stop()
        await nc.close()


def unauthorized(reason: str) -> float:
    return float(UNAUTHORIZED.labels("raft_admin", reason)._value.get())


def _voters(members: list[RaftMember]) -> list[list[str]]:
    return [m.membership()["voters"] for m in members]


@pytest.mark.parametrize("role", [Role.CLIENT, Role.OBSERVER])
async def test_only_admins_and_nodes_may_publish_membership_requests(
        group: list[RaftMember], connect: Connect, role: Role) -> None:
    violations = Violations()
    mallory = await connect(role, user="mallory", error_cb=violations.on_error)
    subject = membership_subject(S, GROUP)
    await mallory.publish(subject, encode({"op": "remove", "member": "a"}),
                          reply=mallory.new_inbox())
    await violations.expect(subject)
    leader = leader_of(group)
    assert leader is not None
    direct = membership_subject(S, GROUP, leader.id)
    await mallory.publish(direct, encode({"op": "transfer"}), reply=mallory.new_inbox())
    await violations.expect(direct)
    assert _voters(group) == [["a", "b", "c"]] * 3 and leader_of(group) is leader


async def test_an_unsigned_or_replayed_request_is_refused_and_counted(
        group: list[RaftMember], nats_server: NatsServer) -> None:
    admin = await connect_as(nats_server, Role.ADMIN)
    try:
        subject = membership_subject(S, GROUP)
        body = encode({"op": "remove", "member": "b"})
        before = unauthorized("unsigned")
        reply = decode((await admin.request(subject, body, timeout=5)).data)
        assert reply["error"]["code"] == ErrorCode.UNAUTHORIZED
        assert unauthorized("unsigned") == before + 1
        # a signature made for another subject (a read elsewhere) does not carry over
        headers = identity.act_headers(admin, S.raft(GROUP, "read"), body)
        reply = decode((await admin.request(subject, body, timeout=5, headers=headers)).data)
        assert reply["error"]["code"] == ErrorCode.UNAUTHORIZED
        assert _voters(group) == [["a", "b", "c"]] * 3
    finally:
        await admin.close()


@pytest.mark.parametrize(("payload", "code"), [
    (b"\xff\x00garbage", ErrorCode.MALFORMED),
    (b"[1, 2", ErrorCode.MALFORMED),
    (encode({"op": "explode"}), ErrorCode.VALIDATION),
    (encode({"op": "add"}), ErrorCode.BAD_REQUEST),                     # whom?
    (encode({"op": "add", "member": "x.>"}), ErrorCode.VALIDATION),      # not a token
    (encode({"op": "add", "member": "x" * 500}), ErrorCode.VALIDATION),
    (encode({"op": "remove", "member": "a", "timeout": 1e9}), ErrorCode.VALIDATION),
    (encode({"op": "members", "extra": 1}), ErrorCode.VALIDATION),
    (encode(["op", "members"]), ErrorCode.VALIDATION),
])
async def test_hostile_payloads_get_a_structured_error_and_the_member_serves_on(
        group: list[RaftMember], nats_server: NatsServer, payload: bytes,
        code: ErrorCode) -> None:
    admin = await connect_as(nats_server, Role.ADMIN)
    try:
        subject = membership_subject(S, GROUP)
        headers = identity.act_headers(admin, subject, payload)
        msg = await admin.request(subject, payload, timeout=5, headers=headers)
        err = BrokerError.from_payload(decode(msg.data, msg.headers))
        assert err is not None and err.code == code, err
        view = await MembershipClient(admin, GROUP).call("members")
        assert view["voters"] == ["a", "b", "c"]
    finally:
        await admin.close()


async def test_a_node_may_ask_too(group: list[RaftMember], nats_server: NatsServer) -> None:
    """Nodes are privileged (a drained node moves its leaderships away)."""
    node = await connect_as(nats_server, Role.NODE)
    try:
        leader = leader_of(group)
        assert leader is not None
        target = next(m.id for m in group if m is not leader)
        view = await MembershipClient(node, GROUP).call("transfer", target)
        assert view["leader"] == target
    finally:
        await node.close()
