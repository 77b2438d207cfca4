"""The roles' subject permissions, checked with NATS's matching rules against the subjects
the code really uses (``Subjects``, the one home of the scheme)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.subjects import Subjects
from node.auth.roles import ADMIN_OPERATIONS, Permissions, Role, inbox_prefix, permissions


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    pat, sub = pattern.split("."), subject.split(".")
    for i, token in enumerate(pat):
        if token == ">":
            return len(sub) > i
        if i >= len(sub) or (token != "*" and token != sub[i]):
            return False
    return len(pat) == len(sub)


def may(allow: tuple[str, ...], deny: tuple[str, ...], subject: str) -> bool:
    return any(matches(p, subject) for p in allow) and not any(matches(p, subject)
                                                             for p in deny)


def may_publish(perms: Permissions, subject: str) -> bool:
    return may(perms.pub_allow, perms.pub_deny, subject)


def may_subscribe(perms: Permissions, subject: str) -> bool:
    return may(perms.sub_allow, perms.sub_deny, subject)


S = Subjects()
PUBLIC_REQUESTS = [S.coord("vote"), S.coord("auction"), S.registry("find"), S.agent("calc"),
                   S.cap("math"), S.raft("config", "propose"), S.raft("config", "read"),
                   S.raft("config", "node-1", "propose"), S.raft("config", "node-1", "read"),
                   S.auction("a1", "bid"), S.variable_feedback("serving")]
NEVER_FOR_CLIENTS = ["$KV.ba_accounts.x", "$JS.API.INFO", "$JS.API.STREAM.CREATE.KV_ba_x",
                     "$JS.ACK.KV_ba_accounts.c.1.1.1.1.0", S.raft("config", "node-1"),
                     S.events("node", "ready"), S.node("n1", "control"),
                     S.vote("pbft", "g", "m"), S.auction("a1", "announce"),
                     "ba.treasury.deposit", "$SYS.REQ.SERVER.PING", "_INBOX.node.abc"]


@pytest.mark.parametrize("role", [Role.CLIENT, Role.ADMIN])
def test_clients_publish_the_public_requests_only(role: Role) -> None:
    perms = permissions(role, "alice")
    for subject in PUBLIC_REQUESTS:
        assert may_publish(perms, subject), subject
    for subject in NEVER_FOR_CLIENTS:
        if role is Role.ADMIN and subject == "ba.treasury.deposit":
            continue
        assert not may_publish(perms, subject), subject


@pytest.mark.parametrize("role", [Role.CLIENT, Role.ADMIN, Role.OBSERVER])
def test_a_user_subscribes_to_its_own_inbox_only(role: Role) -> None:
    perms = permissions(role, "alice")
    assert may_subscribe(perms, f"{inbox_prefix('alice')}.nuid.1")
    for subject in ("_INBOX.bob.nuid.1", "_INBOX.nuid", S.agent("calc"), S.raft("g", "m"),
                    "$KV.ba_accounts.x"):
        assert not may_subscribe(perms, subject), subject


def test_an_admin_adds_only_the_listed_operations() -> None:
    client, admin = permissions(Role.CLIENT, "a"), permissions(Role.ADMIN, "a")
    extra = set(admin.pub_allow) - set(client.pub_allow)
    assert extra == {f"ba.{op}" for op in ADMIN_OPERATIONS}
    assert not may_publish(client, "ba.admin.membership.config")
    assert may_publish(admin, "ba.admin.membership.config")


@given(group=st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True),
       member=st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True))
def test_no_raft_peer_subject_is_public(group: str, member: str) -> None:
    if member in ("propose", "read"):  # the group-wide request subjects, not a member
        return
    for role in (Role.CLIENT, Role.ADMIN, Role.OBSERVER):
        assert not may_publish(permissions(role, "u"), S.raft(group, member))


def test_a_node_runs_the_protocols_and_the_prefix_buckets() -> None:
    perms = permissions(Role.NODE, "node-1")
    for subject in [*PUBLIC_REQUESTS, S.raft("config", "node-2"), S.events("node", "ready"),
                    "$JS.API.STREAM.CREATE.KV_ba_agents", "$KV.ba_agents.a1",
                    "$JS.ACK.KV_ba_agents.c.1.1.1.1.0", "_INBOX.client.nuid.1"]:
        assert may_publish(perms, subject), subject
    assert not may_publish(perms, "$KV.other_bucket.k")
    assert not may_publish(perms, "$SYS.REQ.SERVER.PING")
    assert may_subscribe(perms, S.raft("config", "node-1"))
    assert may_subscribe(perms, "_INBOX.node-1.nuid.1")
    assert not may_subscribe(perms, "_INBOX.client.nuid.1")


def test_an_observer_reads_and_never_writes() -> None:
    perms = permissions(Role.OBSERVER, "dash")
    for subject in [S.registry("list"), S.raft("config", "read"),
                    "$JS.API.STREAM.INFO.KV_ba_agents", "$JS.API.CONSUMER.CREATE.KV_ba_agents",
                    "$JS.API.DIRECT.GET.KV_ba_accounts.$KV.ba_accounts.bidder-1"]:
        assert may_publish(perms, subject), subject
    for subject in ["$KV.ba_agents.a1", "$JS.API.STREAM.CREATE.KV_ba_agents",
                    "$JS.API.STREAM.DELETE.KV_ba_agents", "$JS.API.STREAM.PURGE.KV_ba_agents",
                    S.raft("config", "propose"), S.agent("calc"), S.coord("vote")]:
        assert not may_publish(perms, subject), subject
    assert may_subscribe(perms, S.events("variables", "serving"))
    assert not perms.allow_responses


def test_permissions_follow_the_prefix() -> None:
    perms = permissions(Role.CLIENT, "alice", prefix="xy")
    assert may_publish(perms, Subjects("xy").coord("vote"))
    assert not may_publish(perms, Subjects("ba").coord("vote"))
    node = permissions(Role.NODE, "n", prefix="xy")
    assert may_publish(node, "$KV.xy_agents.a") and not may_publish(node, "$KV.ba_agents.a")


def test_jwt_permission_claims() -> None:
    claims = permissions(Role.CLIENT, "alice").claims()
    assert claims["resp"] == {"max": 1, "ttl": 0}
    assert "$KV.>" in claims["pub"]["deny"] and claims["sub"]["allow"][-1] == "_INBOX.alice.>"
    nothing = Permissions(pub_allow=(), sub_allow=("x",), allow_responses=False).claims()
    assert nothing == {"pub": {"deny": [">"]}, "sub": {"allow": ["x"]}}  # {} would allow all


@pytest.mark.parametrize("bad", ["a.b", "*", ">", "", "a b"])
def test_user_names_are_subject_tokens(bad: str) -> None:
    with pytest.raises(ValueError):
        permissions(Role.CLIENT, bad)
