"""Variables: the actor of a change is the signer of its command, and freezing, unfreezing
and redefining a space are privileged acts (admin or node).

Each attack runs as the least-privileged principal that could try it: a client
("mallory") for proposals (clients may publish ``ba.raft.<group>.propose``), a node for
answers to the group's read subject (only nodes may subscribe there). Each ends refused
with a structured error, and the group's state (values, history, freezes, definitions)
is what it was.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from typer.testing import CliRunner

from broker_agents import identity
from broker_agents.codec import decode, encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.identity import UNAUTHORIZED
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.memstore import MemoryStorage
from broker_agents.runtime import AgentRunner
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from broker_agents.variables.acts import act_subject
from broker_agents.variables.client import Variables
from broker_agents.variables.engine_agent import AdaptationEngineAgent
from broker_agents.variables.models import VariableChange
from broker_agents.variables.raft_adapter import VariablesRaftAdapter
from node.auth.roles import Role
from node.cli.variables import app
from node.embedded import NatsServer
from tests.integration.variables.helpers import TEMPERATURE_SPACE, variables_group
from tests.secured import discovery_env

S = Subjects()
Connect = Callable[..., Coroutine[Any, Any, NATS]]
PROPOSE = S.raft("variables", "propose")


async def _state(v: Variables) -> dict[str, Any]:
    """Everything an attack could change: values, freezes, definition, histories."""
    values = await v.values("llm")
    return {"values": values.model_dump(), "space": (await v.space("llm")).model_dump(),
            "history": {n: [h.model_dump() for h in await v.history("llm", n)]
                        for n in values.values}}


async def _refused(call: Coroutine[Any, Any, Any]) -> BrokerError:
    with pytest.raises(BrokerError) as err:
        await call
    assert err.value.code == ErrorCode.UNAUTHORIZED, err.value.to_payload()
    return err.value


async def _propose_raw(nc: NATS, command: Any) -> dict[str, Any]:
    """A proposal sent as bytes on the wire, bypassing the client library."""
    msg = await nats_request(nc, PROPOSE, encode({"command": command,
                                                  "request_id": uuid.uuid4().hex}), 10)
    reply: dict[str, Any] = decode(msg.data, msg.headers)
    return reply


async def test_a_client_cannot_set_values_as_someone_else(
        nats_server: NatsServer, nc: NATS, connect: Connect) -> None:
    async with variables_group(nats_server):
        owner = Variables(nc)
        await owner.define_space(TEMPERATURE_SPACE)
        before = await _state(owner)
        mallory = Variables(await connect(Role.CLIENT, user="mallory"))
        err = await _refused(mallory.set("llm", {"temperature": 1.5}, actor="operator"))
        assert err.details["reason"] == "acting_for_denied"
        assert await _state(owner) == before
        # her own change is recorded as hers, whatever the command claimed before signing
        mine = await mallory.set("llm", {"temperature": 1.25})
        assert mine.values["temperature"] == 1.25
        assert (await owner.history("llm", "temperature"))[-1].actor == "mallory"


async def test_a_client_cannot_freeze_unfreeze_or_redefine_but_an_admin_can(
        nats_server: NatsServer, nc: NATS, connect: Connect) -> None:
    async with variables_group(nats_server):
        owner = Variables(nc)
        await owner.define_space(TEMPERATURE_SPACE)
        mallory = Variables(await connect(Role.CLIENT, user="mallory"))
        admin = Variables(await connect(Role.ADMIN))
        before = await _state(owner)
        err = await _refused(mallory.freeze("llm", "temperature"))
        assert err.details["reason"] == "not_privileged"
        narrowed = {**TEMPERATURE_SPACE, "variables": TEMPERATURE_SPACE["variables"][1:]}
        await _refused(mallory.define_space(narrowed))  # would drop temperature's freeze
        assert await _state(owner) == before

        assert (await admin.freeze("llm", "temperature")).frozen == ["temperature"]
        frozen = await _state(owner)
        await _refused(mallory.unfreeze("llm", "temperature"))
        await _refused(mallory.define_space(narrowed))
        assert await _state(owner) == frozen
        assert (await admin.unfreeze("llm", "temperature")).frozen == []
        assert "temperature" not in (await admin.define_space(narrowed)).values


@pytest.mark.parametrize("forgery", ["unsigned", "claimed_actor", "tampered", "other_space"])
async def test_a_raw_proposal_with_a_forged_actor_is_refused(
        nats_server: NatsServer, nc: NATS, connect: Connect, forgery: str) -> None:
    async with variables_group(nats_server):
        owner = Variables(nc)
        await owner.define_space(TEMPERATURE_SPACE)
        before = await _state(owner)
        mallory = await connect(Role.CLIENT, user="mallory")
        signer = identity.identity_of(mallory).signer
        assert signer is not None
        command = {"op": "set", "space": "llm", "values": {"temperature": 1.9},
                   "actor": "operator", "command_id": uuid.uuid4().hex}
        if forgery == "unsigned":
            proposal: Any = command
        else:
            honest = {**command, "actor": None if forgery != "claimed_actor" else "operator"}
            data = json.dumps({k: v for k, v in honest.items() if v is not None}).encode()
            subject = act_subject("variables", "other" if forgery == "other_space" else "llm")
            headers = signer.headers(subject, data)
            if forgery == "tampered":  # signed as her own, then claimed for the operator
                data = json.dumps(command).encode()
            proposal = {"op": "signed", "act": {"subject": subject, "data": data,
                                                "headers": headers}}
        reply = await _propose_raw(mallory, proposal)
        assert reply["error"]["code"] == ErrorCode.UNAUTHORIZED, reply
        assert await _state(owner) == before


def _json(result: Any) -> Any:
    lines = [ln for ln in result.output.splitlines() if ln.startswith(("{", "["))]
    assert lines, result.output
    return json.loads(lines[-1])


async def test_corrupt_group_replies_are_skipped_and_the_cli_does_not_crash(
        nats_server: NatsServer, nc: NATS) -> None:
    """A forged or corrupt read reply (only a node can answer on the group's subjects):
    a corrupt space is listed as skipped beside the good ones; a reply that is garbage
    as a whole is a structured ``malformed`` error, never a traceback."""
    answers: list[Any] = [
        {"result": {"version": 3, "spaces": {
            "good": {"space": "good", "version": 1, "values": {"x": 1}, "frozen": []},
            "bad": {"space": "bad", "version": "nope", "values": [1, 2]},
            "worse": 17}}},
        {"result": ["not", "a", "state"]},
        {"result": {"version": 1}},
    ]

    async def forged(msg: Any) -> None:
        await nc.publish(msg.reply, encode(answers[0]))

    sub = await nc.subscribe(S.raft("variables", "read"), queue="raft-variables", cb=forged)
    await nc.flush()
    runner = CliRunner()
    try:
        out = await asyncio.to_thread(runner.invoke, app, ["ls", "--json"],
                                      env=discovery_env(nats_server))
        assert out.exit_code == 0, out.output
        listed = _json(out)
        assert [r["space"] for r in listed if "skipped" not in r] == ["good"]
        assert sorted(r["space"] for r in listed if "skipped" in r) == ["bad", "worse"]
        table = await asyncio.to_thread(runner.invoke, app, ["ls"],
                                        env=discovery_env(nats_server))
        assert table.exit_code == 0 and "skipped" in table.output, table.output
        for garbage in answers[1:]:
            answers[0] = garbage
            out = await asyncio.to_thread(runner.invoke, app, ["ls", "--json"],
                                          env=discovery_env(nats_server))
            assert out.exit_code == 1 and isinstance(out.exception, SystemExit), out.output
            assert _json(out)["error"]["code"] == ErrorCode.MALFORMED, out.output
    finally:
        await sub.unsubscribe()


async def test_corrupt_change_events_are_shown_as_skipped_and_the_watch_goes_on(
        nats_server: NatsServer, nc: NATS) -> None:
    """Garbage on the change-event subject (only nodes may publish there) is listed as
    skipped; the watch keeps going and prints the next good event."""
    runner = CliRunner()
    watching = asyncio.ensure_future(asyncio.to_thread(
        runner.invoke, app, ["watch", "llm", "--count", "2", "--json"],
        env=discovery_env(nats_server)))
    subject = S.variable_changes("llm")
    version = 0
    while not watching.done():  # the watcher subscribes at some point: keep sending
        version += 1  # between two good events it prints, garbage was sent: one order
        await nc.publish(subject, b"\xc1 not msgpack")
        await nc.publish(subject, encode({"space": "llm", "version": "x"}))
        await nc.publish(subject, encode(VariableChange(
            space="llm", version=version, values={"t": 1.0}, op="set", sm_version=version)))
        await asyncio.wait([watching], timeout=0.05)
    out = watching.result()
    assert out.exit_code == 0, out.output
    printed = [json.loads(ln) for ln in out.output.splitlines() if ln.startswith("{")]
    changes = [p["version"] for p in printed if "op" in p]
    skipped = [p for p in printed if "skipped" in p]
    assert len(changes) == 2 and changes[0] < changes[1]
    assert len(skipped) >= 2 and all(p["skipped"] == subject for p in skipped), printed


class _Consensus:
    """What the node's consensus service offers an agent: its member of a group."""

    def __init__(self, member: RaftMember) -> None:
        self.member = member

    def group(self, name: str) -> RaftMember:
        return self.member


@asynccontextmanager
async def _engine(nc: NATS) -> AsyncIterator[None]:
    """A one-member variables group and an adaptation engine on a node connection, as a
    node hosts them."""
    sm = VariablesRaftAdapter()
    sm.bind_connection(nc, "variables")
    member = RaftMember(nc, "variables", "m1", ["m1"], MemoryStorage(), sm, tick_ms=10)
    await member.start()
    agent = AdaptationEngineAgent("var-engine-1", spaces=["llm"], seed=1)
    runner = AgentRunner(agent, nc, node_id="node-1", subjects=S,
                         services={"consensus": _Consensus(member)})
    ready = asyncio.Event()
    task = asyncio.create_task(runner.run(ready.set))
    stepped = asyncio.Event()

    async def on_step(msg: Any) -> None:
        stepped.set()

    steps = await nc.subscribe(S.adaptation_steps("llm"), cb=on_step)
    try:
        await asyncio.wait_for(ready.wait(), 5)
        await Variables(nc).define_space(TEMPERATURE_SPACE)
        await asyncio.wait_for(stepped.wait(), 10)  # the engine leads and adapts "llm"
        yield
    finally:
        await steps.unsubscribe()
        runner.stop()
        await asyncio.gather(task, return_exceptions=True)
        await member.stop()


async def test_a_client_cannot_report_feedback_as_someone_else(
        nats_server: NatsServer, nc: NATS, connect: Connect) -> None:
    """The source of a feedback report is its signer; an unsigned report is anonymous
    and may not name one."""
    async with _engine(nc):
        mallory_nc = await connect(Role.CLIENT, user="mallory")
        mallory = Variables(mallory_nc)
        ack = await mallory.feedback("llm", reward=1.0, timeout=5)
        assert ack is not None and ack.action != "ignored"
        refused = UNAUTHORIZED.labels("variables.feedback", "acting_for_denied")._value.get()
        err = await _refused(mallory.feedback("llm", reward=1.0, source="market"))
        assert err.details["reason"] == "acting_for_denied"
        assert UNAUTHORIZED.labels("variables.feedback", "acting_for_denied"
                                   )._value.get() == refused + 1
        subject = S.variable_feedback("llm")
        raw = await nats_request(mallory_nc, subject, encode(
            {"space": "llm", "reward": 1.0, "source": "market"}), 5)
        assert decode(raw.data)["error"]["details"]["reason"] == "unsigned"
        anonymous = await nats_request(mallory_nc, subject, encode(
            {"space": "llm", "reward": 1.0}), 5)
        assert decode(anonymous.data)["space"] == "llm"  # acknowledged, as nobody's
        assert (await mallory.feedback("llm", reward=1.0, source="mallory")) is not None
