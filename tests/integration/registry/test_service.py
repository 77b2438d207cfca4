"""Registry requests over NATS: JSON in/JSON out, msgpack in/msgpack out, errors, garbage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

from broker_agents.registry.client import Registry
from broker_agents.registry.service import RegistryService
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request

S = Subjects()


@pytest.fixture
async def served(nc: Any) -> AsyncIterator[Registry]:
    registry = await Registry.connect(nc)
    service = RegistryService(nc, registry.view)
    await service.start()
    for i, (health, mem) in enumerate([("healthy", 0.7), ("degraded", 0.2), ("healthy", 0.9)]):
        await registry.register({"agent_id": f"a{i + 1}", "name": f"agent {i}",
                                 "node_id": "n1", "capabilities": ["inference", "training"],
                                 "health": health, "resources": {"memory_available": mem}})
    await registry.sync()
    try:
        yield registry
    finally:
        await service.stop()
        await registry.close()


async def _json(nc: Any, op: str, body: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await nats_request(nc, S.registry(op), raw, timeout=2)
    return json.loads(msg.data)


async def test_query_over_nats_json_in_json_out(nc: Any, served: Registry) -> None:
    reply = await _json(nc, "query", {"criteria": [
        {"field": "capability", "op": "eq", "value": "inference"},
        {"field": "health", "op": "eq", "value": "healthy"},
        {"field": "resources.memory_available", "op": "gte", "value": 0.5}]})
    assert [a["agent_id"] for a in reply["agents"]] == ["a1", "a3"] and reply["count"] == 2


async def test_msgpack_request_gets_msgpack_reply(nc: Any, served: Registry) -> None:
    msg = await nats_request(nc, S.registry("count"), msgpack.packb({}), timeout=2)
    assert msgpack.unpackb(msg.data) == {"count": 3}


async def test_get_list_find_and_count(nc: Any, served: Registry) -> None:
    assert (await _json(nc, "get", {"agent_id": "a2"}))["agent"]["health"] == "degraded"
    listed = await _json(nc, "list", {"offset": 1, "limit": 1})
    assert [a["agent_id"] for a in listed["agents"]] == ["a2"] and listed["count"] == 3
    found = await _json(nc, "find", {"capability": "training", "health": "healthy"})
    assert [a["agent_id"] for a in found["agents"]] == ["a1", "a3"]
    counted = await _json(nc, "count", {"criteria": [["health", "neq", "healthy"]]})
    assert counted == {"count": 1}
    empty = await nats_request(nc, S.registry("count"), b"", timeout=2)
    assert json.loads(empty.data) == {"count": 3}


@pytest.mark.parametrize(("op", "body", "code"), [
    ("get", {"agent_id": "nobody"}, "not_found"),
    ("get", {}, "bad_request"),
    ("find", {}, "bad_request"),
    ("query", {"criteria": [{"field": "health", "op": "like", "value": 1}]}, "validation_error"),
    ("query", {"criteria": "all"}, "validation_error"),
    ("list", {"limit": -1}, "bad_request"),
    ("list", [1, 2], "bad_request"),
    ("query", b"{not json", "malformed"),
])
async def test_bad_requests_get_structured_errors_and_service_survives(
    nc: Any, served: Registry, op: str, body: Any, code: str,
) -> None:
    reply = await _json(nc, op, body)
    assert reply["error"]["code"] == code and reply["error"]["message"]
    assert (await _json(nc, "count", {}))["count"] == 3


async def test_garbage_bytes_are_answered_not_fatal(nc: Any, served: Registry) -> None:
    msg = await nats_request(nc, S.registry("query"), b"\xc1\xff\x00garbage", timeout=2)
    assert msgpack.unpackb(msg.data)["error"]["code"] == "malformed"
    assert (await _json(nc, "count", {}))["count"] == 3
