"""Coordination acts bound to principals, on a secured server (issue 13: votes, locks,
leaders, PBFT keys, corrupt records).

The coordinator, voters and replicas run in-process on a node connection; each attack
runs as the least-privileged principal that could try it: a client ("mallory") for
requests and bucket writes, a node for answers (only nodes may publish into inboxes)
and for records (only nodes write buckets). Each ends refused with a structured error,
and what it aimed at is unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from broker_agents import codec, identity
from broker_agents.agent import handler
from broker_agents.coord.coordinator import CoordinatorAgent
from broker_agents.coord.pbft_replica import PbftReplicaAgent
from broker_agents.coord.voter import PredictorAgent, VoterAgent
from broker_agents.coord.wire import PbftHello, PbftKeyInfo
from broker_agents.core.errors import BrokerError
from broker_agents.gather import gatherer
from broker_agents.identity import UNAUTHORIZED
from broker_agents.kv import open_bucket
from broker_agents.kvskip import SKIPPED
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from tests.integration.test_runtime import Hosted
from tests.security.violations import Violations

S = Subjects()
Connect = Callable[..., Coroutine[Any, Any, NATS]]


async def coord(nc: NATS, protocol: str, body: dict[str, Any], *, signed: bool = True,
                acting_for: str | None = None, timeout: float = 10) -> Any:
    reply = await nats_request(nc, S.coord(protocol), codec.encode(body), timeout,
                               signed=signed, acting_for=acting_for)
    return codec.decode(reply.data, reply.headers)


def error_of(reply: Any) -> BrokerError:
    err = BrokerError.from_payload(reply)
    assert err is not None, f"expected an error reply, got {reply!r}"
    return err


@pytest.fixture
async def host(connect: Connect) -> AsyncIterator[Hosted]:
    hosted = Hosted(await connect(Role.NODE))
    await hosted.add(CoordinatorAgent("coordinator"))
    yield hosted
    await hosted.stop_all()


def unauthorized(reason: str, component: str = "coord") -> float:
    return UNAUTHORIZED.labels(component, reason)._value.get()


def skipped(concern: str, reason: str) -> float:
    return SKIPPED.labels(S.bucket(concern), reason)._value.get()


# -- 1. forged vote / ensemble / hierarchical answers -------------------------------


async def test_client_cannot_publish_into_the_coordinators_reply_subjects(
        host: Hosted, connect: Connect) -> None:
    violations = Violations()
    mallory = await connect(Role.CLIENT, user="mallory", error_cb=violations.on_error)
    reply_subject = f"{(await gatherer(host.nc)).prefix}.1-0"
    await mallory.publish(reply_subject, codec.encode({"choice": "no"}))
    await violations.expect(reply_subject)


async def _forgers(nc: NATS) -> list[str]:
    """Participants whose answers are not acts of theirs: signed as another agent (v1),
    signed by their node as itself. (An unsigned answer into the coordinator's inbox is
    its node's word for the agent it hosts: only nodes may publish there, which
    ``test_client_cannot_publish_into_the_coordinators_reply_subjects`` pins.)"""

    def responder(acting_for: str | None, sign: bool) -> Callable[[Msg], Coroutine[Any, Any,
                                                                                 None]]:
        async def answer(msg: Msg) -> None:
            data = codec.encode({"choice": "no", "label": "no"})
            headers = identity.act_headers(nc, msg.reply, data, acting_for) if sign else None
            await nc.publish(msg.reply, data, headers=headers)
        return answer

    for name, acting_for, sign in (("f-as-v1", "v1", True), ("f-as-node", None, True)):
        await nc.subscribe(S.agent(name), cb=responder(acting_for, sign))
    await nc.flush()
    return ["f-as-v1", "f-as-node"]


@pytest.mark.parametrize("protocol", ["vote", "hierarchical", "ensemble"])
async def test_answers_signed_by_anyone_but_the_asked_participant_do_not_count(
        host: Hosted, connect: Connect, protocol: str) -> None:
    for i in (1, 2):
        await host.add(VoterAgent(f"v{i}", choice="yes") if protocol != "ensemble"
                       else PredictorAgent(f"v{i}", label="yes"))
    forgers = await _forgers(await connect(Role.NODE))
    alice = await connect(Role.CLIENT, user="alice")
    who = {"participants": ["v1", "v2", *forgers], "timeout_ms": 3000}
    body: dict[str, Any] = {"proposal": "ship?", **who}
    if protocol == "ensemble":
        body = {"question": "ship?", **who}
    elif protocol == "hierarchical":
        body["cluster_size"] = 5
    result = await coord(alice, protocol, body)
    if protocol == "ensemble":
        assert result["result"] == "yes" and sorted(result["missing"]) == sorted(forgers)
        errors = {p["participant"]: p["error"] for p in result["predictions"]
                  if p["status"] == "error"}
    else:
        vote = result if protocol == "vote" else result["levels"][0]["clusters"][0]["result"]
        assert result["decision"] == "yes", result
        assert sorted(vote["errored"]) == sorted(forgers) and vote["tally"] == {"yes": 2.0}
        errors = {a["participant"]: a["error"] for a in vote["answers"]
                  if a["status"] == "error"}
    assert set(errors) == set(forgers)
    assert all(e.startswith("unauthorized") for e in errors.values()), errors


# -- 2. Sybil voter records ---------------------------------------------------------


async def test_client_cannot_write_voter_records(host: Hosted, connect: Connect) -> None:
    violations = Violations()
    mallory = await connect(Role.CLIENT, user="mallory", error_cb=violations.on_error)
    subject = f"$KV.{S.bucket('agents')}.sybil-1"
    await mallory.publish(subject, codec.encode({"agent_id": "sybil-1",
                                                 "capabilities": ["voter"]}))
    await violations.expect(subject)
    kv = await open_bucket(host.nc.jetstream(), S.bucket("agents"))
    assert [k async for k in _keys(kv)] == []


async def _keys(kv: Any) -> AsyncIterator[str]:
    try:
        for key in await kv.keys():
            yield key
    except Exception:  # no keys at all
        return


# -- 3. lock release / renew and leader resign by anyone ----------------------------


async def test_mallory_cannot_release_or_renew_alices_lock_nor_take_it(
        host: Hosted, connect: Connect) -> None:
    alice = await connect(Role.CLIENT, user="alice")
    mallory = await connect(Role.CLIENT, user="mallory")
    held = await coord(alice, "lock", {"name": "db", "ttl_ms": 30_000})
    assert held["granted"] and held["holder"] == "alice"
    token = held["token"]
    for action in ("release", "renew"):
        err = error_of(await coord(mallory, "lock", {"action": action, "name": "db",
                                                     "holder": "alice", "token": token}))
        assert err.code == "unauthorized" and err.details["reason"] == "identity_mismatch"
        as_herself = await coord(mallory, "lock", {"action": action, "name": "db",
                                                   "token": token})
        assert as_herself["granted"] is False and as_herself["holder"] == "alice"
    err = error_of(await coord(mallory, "lock", {"action": "release", "name": "db",
                                                 "holder": "alice"}, signed=False))
    assert err.code == "unauthorized" and err.details["reason"] == "unsigned"
    taken = await coord(mallory, "lock", {"name": "db", "ttl_ms": 30_000})
    assert taken["granted"] is False and taken["holder"] == "alice"
    after = await coord(alice, "lock", {"action": "query", "name": "db"})
    assert after["holder"] == "alice" and after["token"] == token


async def test_an_admin_may_release_a_lock_for_its_holder(host: Hosted,
                                                          connect: Connect) -> None:
    alice = await connect(Role.CLIENT, user="alice")
    admin = await connect(Role.ADMIN)
    held = await coord(alice, "lock", {"name": "jobs", "ttl_ms": 30_000})
    freed = await coord(admin, "lock", {"action": "release", "name": "jobs"},
                        acting_for="alice")
    assert freed["holder"] is None and freed["token"] == held["token"]


async def test_mallory_cannot_resign_alices_leadership(host: Hosted, connect: Connect) -> None:
    alice = await connect(Role.CLIENT, user="alice")
    mallory = await connect(Role.CLIENT, user="mallory")
    led = await coord(alice, "leader", {"action": "campaign", "role": "sched",
                                        "ttl_ms": 30_000})
    assert led["is_leader"] and led["leader"] == "alice"
    err = error_of(await coord(mallory, "leader", {"action": "resign", "role": "sched",
                                                   "candidate": "alice"}))
    assert err.code == "unauthorized"
    ran = await coord(mallory, "leader", {"action": "campaign", "role": "sched"})
    assert ran["is_leader"] is False and ran["leader"] == "alice"
    query = await coord(mallory, "leader", {"action": "query", "role": "sched"})
    assert query["leader"] == "alice" and query["token"] == led["token"]


async def test_mallory_cannot_arrive_at_a_barrier_for_alice(host: Hosted,
                                                             connect: Connect) -> None:
    """Arriving for someone else would release a barrier they never reached."""
    mallory = await connect(Role.CLIENT, user="mallory")
    body = {"barrier_id": "meet", "participants": ["alice", "mallory"], "timeout_ms": 5000}
    for signed, reason in ((True, "identity_mismatch"), (False, "unsigned")):
        err = error_of(await coord(mallory, "barrier", {**body, "participant": "alice"},
                                   signed=signed))
        assert (err.code, err.details["reason"]) == ("unauthorized", reason)
    alice = await connect(Role.CLIENT, user="alice")
    both = await asyncio.gather(coord(alice, "barrier", {**body, "participant": "alice"}),
                                coord(mallory, "barrier", {**body, "participant": "mallory"}))
    assert all(r["released"] and sorted(r["arrived"]) == ["alice", "mallory"] for r in both)


# -- 4. PBFT keys -------------------------------------------------------------------


class UncertifiedReplica(PbftReplicaAgent):
    """Answers pbft_hello with its key and no certificate (a key 'from a first hello')."""

    @handler(PbftHello)
    async def pbft_hello(self, msg: PbftHello) -> PbftKeyInfo:
        return PbftKeyInfo(agent_id=self.agent_id, public_key=self.signer.public_key)


class MiscertifiedReplica(PbftReplicaAgent):
    """Answers with its key and its node's certificate of *another* key."""

    @handler(PbftHello)
    async def pbft_hello(self, msg: PbftHello) -> PbftKeyInfo:
        signer = identity.identity_of(self.ctx.nc).signer
        assert signer is not None
        return PbftKeyInfo(agent_id=self.agent_id, public_key=self.signer.public_key,
                           certificate=signer.certify(self.agent_id, self._bogus.public_key),
                           node_jwt=signer.jwt)


async def test_replica_keys_need_their_nodes_certificate(host: Hosted,
                                                         connect: Connect) -> None:
    for i in (1, 2):
        await host.add(PbftReplicaAgent(f"r{i}"))
    await host.add(UncertifiedReplica("r-uncertified"))
    await host.add(MiscertifiedReplica("r-miscertified"))
    alice = await connect(Role.CLIENT, user="alice")
    before = unauthorized("uncertified", "pbft"), unauthorized("bad_certificate", "pbft")
    err = error_of(await coord(alice, "pbft", {
        "operation": "x", "participants": ["r1", "r2", "r-uncertified", "r-miscertified"],
        "timeout_ms": 3000}))
    assert err.code == "unavailable"
    assert sorted(err.details["silent"]) == ["r-miscertified", "r-uncertified"]
    assert err.details["refused"] == {"r-uncertified": "uncertified",
                                      "r-miscertified": "bad_certificate"}
    after = unauthorized("uncertified", "pbft"), unauthorized("bad_certificate", "pbft")
    assert after == (before[0] + 1, before[1] + 1)


async def test_honest_certified_replicas_decide(host: Hosted, connect: Connect) -> None:
    for i in range(4):
        await host.add(PbftReplicaAgent(f"h{i}"))
    alice = await connect(Role.CLIENT, user="alice")
    result = await coord(alice, "pbft", {"operation": "ok", "participants":
                                         [f"h{i}" for i in range(4)], "timeout_ms": 5000})
    assert result["decided"] and result["operation"] == "ok"


# -- 6. corrupt or foreign records --------------------------------------------------


async def test_corrupt_lease_and_barrier_records_affect_only_their_key(
        host: Hosted, connect: Connect) -> None:
    js = host.nc.jetstream()  # a node: the only role that writes buckets
    leases = await open_bucket(js, S.bucket("leases"))
    barriers = await open_bucket(js, S.bucket("barriers"))
    before = (skipped("leases", "undecodable"), skipped("leases", "invalid"),
              skipped("barriers", "undecodable"))
    bad_rev = await leases.put("lock.bad", b"\xc1\xff not msgpack")
    await leases.put("leader.foreign", codec.encode({"holder": ["x"], "token": "many"}))
    await barriers.put("b-bad", b"\x00garbage")
    alice = await connect(Role.CLIENT, user="alice")
    good = await coord(alice, "lock", {"name": "good", "ttl_ms": 5000})
    assert good["granted"]
    bad = await coord(alice, "lock", {"name": "bad", "ttl_ms": 5000})
    assert bad["granted"] and bad["holder"] == "alice" and bad["token"] > bad_rev
    led = await coord(alice, "leader", {"action": "campaign", "role": "foreign"})
    assert led["is_leader"]
    released = await coord(alice, "barrier", {"barrier_id": "b-bad",
                                              "participants": ["alice"],
                                              "participant": "alice", "timeout_ms": 5000})
    assert released["released"] is True
    assert skipped("leases", "undecodable") == before[0] + 1
    assert skipped("leases", "invalid") == before[1] + 1
    assert skipped("barriers", "undecodable") == before[2] + 1
