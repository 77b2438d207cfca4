"""Feature flags are an admin operation: who may ask, and what a forged write can do.

A node runs in-process with its embedded (secured) nats-server. Clients and observers
cannot publish a feature operation, and nobody but a node can write the features bucket
(permissions violations); an unsigned act or one signed by a non-admin (a node) is refused
and counted; malformed requests get structured errors, counted. A node's credentials could
still write a flag directly, but a flag is only a request: a feature is effective only
while every registered node announces it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.features import FeatureFlag
from broker_agents.kv import open_bucket
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.config import load_config
from node.daemon import Node
from node.features import FeatureService, request_feature
from tests.secured import connect_as
from tests.security.violations import Violations

S = Subjects()
FEATURES = S.bucket("features")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = load_config(None, node={"id": "n1", "data_dir": tmp_path, "shutdown_timeout": 3},
                         nats={"embedded": {"port": 0}}, http={"port": 0})
    n = Node(config)
    await n.start()
    yield n
    await n.shutdown()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def service(node: Node) -> FeatureService:
    svc = node.service_map["features"]
    assert isinstance(svc, FeatureService)
    return svc


@pytest.mark.parametrize("role", [Role.CLIENT, Role.OBSERVER])
async def test_clients_and_observers_cannot_publish_a_feature_operation(
        node: Node, role: Role) -> None:
    assert node.embedded is not None
    violations = Violations()
    enabled = metric("ba_feature_requests_total", verb="enable", outcome="ok")
    nc = await connect_as(node.embedded, role, error_cb=violations.on_error)
    try:
        for verb in ("enable", "disable", "list"):
            subject = S.admin("features", verb)
            await nc.publish(subject, codec.encode({"name": "versioned_records"}))
            await nc.flush()
            await violations.expect(subject)
    finally:
        await nc.close()
    assert metric("ba_feature_requests_total", verb="enable", outcome="ok") == enabled


@pytest.mark.parametrize("role", [Role.CLIENT, Role.OBSERVER, Role.ADMIN])
async def test_only_nodes_may_write_the_features_bucket(node: Node, role: Role) -> None:
    assert node.embedded is not None
    violations = Violations()
    nc = await connect_as(node.embedded, role, error_cb=violations.on_error)
    try:
        subject = f"$KV.{FEATURES}.versioned_records"
        forged = FeatureFlag(name="versioned_records", requested=True)
        await nc.publish(subject, codec.encode(forged))
        await nc.flush()
        await violations.expect(subject)
    finally:
        await nc.close()
    watcher = service(node).watcher
    assert watcher is not None
    await watcher.sync()
    assert watcher.requested() == {}


async def test_an_unsigned_or_node_signed_act_is_refused_and_counted(node: Node) -> None:
    assert node.embedded is not None
    unsigned = metric("ba_unauthorized_total", component="features", reason="unsigned")
    not_admin = metric("ba_unauthorized_total", component="features", reason="not_admin")
    nc = await connect_as(node.embedded, Role.NODE)  # may publish there, is not an admin
    try:
        with pytest.raises(BrokerError) as refused:
            await request_feature(nc, S, "enable", "versioned_records")
        assert refused.value.code is ErrorCode.UNAUTHORIZED
        reply = await nc.request(S.admin("features", "enable"),
                                 codec.encode({"name": "versioned_records"}), timeout=5)
        assert codec.decode(reply.data)["error"]["code"] == "unauthorized"
    finally:
        await nc.close()
    assert metric("ba_unauthorized_total", component="features",
                  reason="not_admin") == not_admin + 1
    assert metric("ba_unauthorized_total", component="features",
                  reason="unsigned") == unsigned + 1
    assert not service(node).enabled("versioned_records")


async def test_malformed_requests_get_structured_errors_and_are_counted(node: Node) -> None:
    assert node.embedded is not None
    before = metric("ba_feature_requests_total", verb="enable", outcome="validation_error")
    nc = await connect_as(node.embedded, Role.ADMIN)
    try:
        for name in ("has space", "", "x" * 200, None):
            with pytest.raises(BrokerError) as bad:
                await request_feature(nc, S, "enable", name)
            assert bad.value.code is ErrorCode.VALIDATION
        with pytest.raises(BrokerError) as verb:
            await request_feature(nc, S, "explode", "versioned_records")
        assert verb.value.code is ErrorCode.BAD_REQUEST
        reply = await nc.request(S.admin("features", "list"), b"\xc1garbage", timeout=5)
        assert "features" in codec.decode(reply.data)  # list reads no payload
    finally:
        await nc.close()
    assert metric("ba_feature_requests_total", verb="enable",
                  outcome="validation_error") == before + 4
    assert metric("ba_feature_requests_total", verb="other", outcome="bad_request") >= 1


async def test_a_flag_forged_by_a_node_cannot_turn_on_what_a_node_lacks(node: Node) -> None:
    assert node.embedded is not None
    nc = await connect_as(node.embedded, Role.NODE)
    try:
        flags = await open_bucket(nc.jetstream(), FEATURES)
        await flags.put("not-supported-here", codec.encode(
            FeatureFlag(name="not-supported-here", requested=True)))
    finally:
        await nc.close()
    watcher = service(node).watcher
    assert watcher is not None
    await watcher.sync()
    assert watcher.requested()["not-supported-here"] is True
    assert not service(node).enabled("not-supported-here")
