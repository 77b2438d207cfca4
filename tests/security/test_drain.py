"""Node drain and agent handover are privileged: who may ask, and what a node refuses.

A node runs in-process with its embedded (secured) nats-server: clients and observers
cannot even publish the drain request or a handover (permissions violations); a signed
drain act of a non-admin (a node) is refused and counted; a hostile handover spec is
answered with a structured error, counted, and the node keeps serving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from broker_agents import codec, identity
from broker_agents.codec import encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.messages import envelope
from broker_agents.samples import Echo
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.auth.roles import Role
from node.config import load_config
from node.daemon import Node
from node.drain import request_drain
from node.handover import ask
from tests.secured import connect_as
from tests.security.violations import Violations

S = Subjects()
ECHO = "broker_agents.samples:EchoAgent"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = load_config(None, node={"id": "n1", "data_dir": tmp_path, "shutdown_timeout": 3},
                         nats={"embedded": {"port": 0}}, http={"port": 0},
                         agents=[{"class": ECHO, "id": "e"}])
    n = Node(config)
    await n.start()
    yield n
    await n.shutdown()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def echo(node: Node) -> str:
    assert node.embedded is not None
    nc = await connect_as(node.embedded, Role.CLIENT)
    try:
        reply = await nats_request(nc, S.agent("e"), codec.encode(envelope(Echo(text="hi"))),
                                   timeout=5)
        return str(codec.decode(reply.data)["text"])
    finally:
        await nc.close()


@pytest.mark.parametrize("role", [Role.CLIENT, Role.OBSERVER])
async def test_clients_and_observers_cannot_publish_drain_or_handover(
        node: Node, role: Role) -> None:
    assert node.embedded is not None
    violations = Violations()
    nc = await connect_as(node.embedded, role, error_cb=violations.on_error)
    try:
        for subject in (S.admin("drain", "n1"), S.handover("n1")):
            await nc.publish(subject, b"{}")
            await nc.flush()
            await violations.expect(subject)
    finally:
        await nc.close()
    assert not node.service_map["drain"].draining


async def test_a_drain_act_signed_by_a_non_admin_is_refused_and_counted(node: Node) -> None:
    assert node.embedded is not None
    before = metric("ba_unauthorized_total", component="drain", reason="not_admin")
    nc = await connect_as(node.embedded, Role.NODE)  # may publish there, is not an admin
    try:
        with pytest.raises(BrokerError) as refused:
            await request_drain(nc, S, "n1", "drain", 5)
        assert refused.value.code == ErrorCode.UNAUTHORIZED
        # unsigned: refused too
        reply = await nc.request(S.admin("drain", "n1"), encode({"op": "drain"}), timeout=5)
        assert codec.decode(reply.data)["error"]["code"] == "unauthorized"
    finally:
        await nc.close()
    assert metric("ba_unauthorized_total", component="drain", reason="not_admin") == before + 1
    assert not node.service_map["drain"].draining
    assert node.readiness()["ready"]


async def test_an_admin_drain_without_another_node_reports_not_ready_to_stop(
        node: Node) -> None:
    assert node.embedded is not None
    nc = await connect_as(node.embedded, Role.ADMIN)
    try:
        with pytest.raises(BrokerError) as bad:  # malformed: a structured error
            await request_drain(nc, S, "n1", "explode", 5)
        assert bad.value.code == ErrorCode.VALIDATION
        report = await request_drain(nc, S, "n1", "drain", 5)
        assert report["moved"] == {} and "e" in report["not_moved"]
        assert "no live, non-draining node" in report["not_moved"]["e"]
        assert report["ready_to_stop"] is False
        state = node.readiness()
        assert not state["ready"] and "draining" in state["problems"]
        assert metric("ba_node_draining") == 1
        assert await echo(node) == "hi"  # not moved: it still serves here
        undrained = await request_drain(nc, S, "n1", "undrain", 5)
        assert undrained["draining"] is False and node.readiness()["ready"]
        assert metric("ba_node_draining") == 0
    finally:
        await nc.close()


def spec(**fields: Any) -> dict[str, Any]:
    return {"agent_id": "newcomer", "class": ECHO, **fields}


HOSTILE: list[tuple[dict[str, Any], str, str]] = [
    ({"phase": "start", "from_node": "n2", "spec": spec(**{"class": "no.such.module:X"})},
     "validation_error", "cannot import module"),
    ({"phase": "start", "from_node": "n2",
      "spec": spec(**{"class": "broker_agents.samples:Echo"})},
     "validation_error", "is not an Agent subclass"),
    ({"phase": "start", "from_node": "n2", "spec": spec(kwargs={"resources": "lots"})},
     "validation_error", "resources"),
    ({"phase": "start", "from_node": "n2", "spec": spec(agent_id="e")},
     "already_exists", "runs on node n1 already"),
    ({"phase": "start", "from_node": "n2", "spec": spec(agent_id="bad.id")},
     "validation_error", "agent id"),
    ({"phase": "start", "from_node": "n2", "spec": spec()},  # n2 is not draining
     "rejected", "is not draining"),
    ({"phase": "boom", "spec": spec()}, "validation_error", "phase"),
]


async def test_hostile_handover_specs_are_refused_with_structured_errors(
        node: Node, tmp_path: Path) -> None:
    assert node.embedded is not None
    # allow every samples class and any module path: the import itself must refuse
    node.config.hosting.classes.extend(["broker_agents.samples:*", "no.such.module:*"])
    refused = metric("ba_handover_total", outcome="refused")
    nc = await connect_as(node.embedded, Role.NODE)
    try:
        for body, code, text in HOSTILE:
            with pytest.raises(BrokerError) as exc:
                await ask(nc, S.handover("n1"), body, 5)
            assert exc.value.code == code, (body, exc.value)
            assert text in exc.value.message, (body, exc.value.message)
        reply = await nc.request(S.handover("n1"), b"\xc1\xff not msgpack", timeout=5,
                                 headers=None)
        assert "error" in codec.decode(reply.data)  # unsigned: answered
        garbage = b"\xc1\xff not msgpack"
        reply = await nc.request(S.handover("n1"), garbage, timeout=5, headers=identity.act_headers(
            nc, S.handover("n1"), garbage))
        assert codec.decode(reply.data)["error"]["code"] == "malformed"
    finally:
        await nc.close()
    assert metric("ba_handover_total", outcome="refused") >= refused + len(HOSTILE) + 2
    assert "newcomer" not in node.agents and node.supervisor is not None
    assert node.supervisor.spec("newcomer") is None
    assert await echo(node) == "hi" and node.readiness()["ready"]


async def test_a_not_allowed_class_is_refused_by_default_hosting(node: Node) -> None:
    """Without ``[hosting] classes`` a node takes only the classes it hosts itself."""
    assert node.embedded is not None
    nc = await connect_as(node.embedded, Role.NODE)
    try:
        with pytest.raises(BrokerError) as exc:
            await ask(nc, S.handover("n1"), {"phase": "check", "from_node": "n2", "spec": spec(
                **{"class": "broker_agents.samples:CalculatorAgent"})}, 5)
        assert exc.value.code == ErrorCode.VALIDATION
    finally:
        await nc.close()
