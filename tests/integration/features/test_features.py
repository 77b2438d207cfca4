"""Feature flags on a real secured node (embedded nats-server, operator JWT auth, TLS).

An older build's node is a record in the nodes bucket without ``features`` (what such a
build's heartbeat writes), put there with node credentials. Enabling is refused while it
is registered, accepted once it is gone, and the effective state turns off the moment
another node without the feature registers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from broker_agents import codec
from broker_agents.core import features
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.kv import open_bucket
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.config import load_config
from node.daemon import Node
from node.features import FeatureService, request_feature
from tests.secured import cli_args, connect_as

S = Subjects()
FEATURE = "it-demo"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    features.register_feature(FEATURE)  # this build supports it (an "N+1" build)
    config = load_config(None, node={"id": "n1", "data_dir": tmp_path, "shutdown_timeout": 3},
                         nats={"embedded": {"port": 0}}, http={"port": 0})
    n = Node(config)
    await n.start()
    try:
        yield n
    finally:
        await n.shutdown()
        features.SUPPORTED_FEATURES.discard(FEATURE)


def service(node: Node) -> FeatureService:
    svc = node.service_map["features"]
    assert isinstance(svc, FeatureService)
    return svc


async def older_node(node: Node, node_id: str, *, remove: bool = False) -> None:
    """Register (or remove) a node of a build before this feature: no ``features``."""
    assert node.embedded is not None
    nc = await connect_as(node.embedded, Role.NODE)
    try:
        kv = await open_bucket(nc.jetstream(), S.bucket("nodes"))
        if remove:
            await kv.delete(node_id)
        else:
            await kv.put(node_id, codec.encode({"node_id": node_id, "last_heartbeat": 1e12}))
    finally:
        await nc.close()
    assert service(node).watcher is not None
    await service(node).watcher.sync()  # type: ignore[union-attr]


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"feature": FEATURE})


async def test_enable_refused_while_a_node_lacks_it_then_accepted_then_turned_off(
        node: Node) -> None:
    assert node.embedded is not None
    nc = await connect_as(node.embedded, Role.ADMIN)
    try:
        listing = await request_feature(nc, S, "list")
        assert FEATURE in listing["nodes"]["n1"]["features"]
        assert listing["nodes"]["n1"]["schema"] == 1

        await older_node(node, "old1")
        with pytest.raises(BrokerError) as refused:
            await request_feature(nc, S, "enable", FEATURE)
        assert refused.value.code is ErrorCode.FEATURE_UNSUPPORTED
        assert refused.value.details["lacking"] == ["old1"]
        assert not service(node).enabled(FEATURE)

        await older_node(node, "old1", remove=True)
        state = await request_feature(nc, S, "enable", FEATURE)
        assert state["requested"] and state["effective"]
        assert service(node).enabled(FEATURE)
        assert gauge("ba_feature_enabled") == 1 and gauge("ba_feature_requested") == 1

        await older_node(node, "old2")  # a node rolled back to the older build
        assert not service(node).enabled(FEATURE)
        rows = {r["name"]: r for r in (await request_feature(nc, S, "list"))["features"]}
        assert rows[FEATURE]["requested"] and not rows[FEATURE]["effective"]
        assert rows[FEATURE]["lacking"] == ["old2"]
        assert gauge("ba_feature_enabled") == 0

        await older_node(node, "old2", remove=True)
        assert service(node).enabled(FEATURE)  # still requested: back on
        off = await request_feature(nc, S, "disable", FEATURE)
        assert not off["requested"] and not off["effective"]
        assert not service(node).enabled(FEATURE)
    finally:
        await nc.close()


async def test_the_cli_lists_and_refuses_with_a_structured_error(node: Node) -> None:
    assert node.embedded is not None
    await older_node(node, "old1")
    base = [sys.executable, "-m", "node.cli", "feature"]
    args = cli_args(node.embedded, Role.ADMIN)

    async def run(*words: str) -> tuple[int, Any]:
        """The CLI as an operator runs it (the node answers from this process's loop)."""
        proc = await asyncio.create_subprocess_exec(
            *base, *words, "--json", *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert out, err.decode()
        return int(proc.returncode or 0), json.loads(out)

    code, listing = await run("list")
    assert code == 0 and set(listing["nodes"]) == {"n1", "old1"}
    row = next(r for r in listing["features"] if r["name"] == FEATURE)
    assert row == {"name": FEATURE, "requested": False, "effective": False,
                   "supported_by": ["n1"], "lacking": ["old1"]}
    code, answer = await run("enable", FEATURE)
    assert code != 0
    assert answer["error"]["code"] == "feature_unsupported"
    assert answer["error"]["details"]["lacking"] == ["old1"]
