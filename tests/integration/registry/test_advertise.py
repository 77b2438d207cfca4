"""A node advertising its agents right after a partition heals, against a real nats-server.

Chaos runs (scenario ``registry``, seeds 3 and 13) showed a restarted node exiting during
start-up: next to a server that had just rejoined the cluster, ``create`` found the key
taken while the read that followed found it gone, or JetStream answered "no responders";
``agent_started`` raised, so the node failed to start and its agents stayed missing for
seconds. These tests replay those answers through a KV wrapper over a real bucket.
"""

from __future__ import annotations

import types
from typing import Any

import nats.errors
import nats.js.errors as jse
import pytest

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.record import Health, ReapMark
from broker_agents.logging import get_logger
from broker_agents.registry.client import Registry
from broker_agents.registry.store import RegistryStore
from broker_agents.registry.view import LocalView
from node.registry import RegistryNodeService
from tests.integration.registry.helpers import agent


class RejoiningKV:
    """The real bucket, but the first calls answer like a server that just rejoined:
    ``no_responders`` calls fail outright, then ``stale`` creates report the key taken
    (while a read of it finds nothing)."""

    def __init__(self, kv: Any, no_responders: int = 0, stale: int = 0) -> None:
        self._kv = kv
        self.no_responders = no_responders
        self.stale = stale
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    def _trouble(self, op: str) -> None:
        self.calls.append(op)
        if self.no_responders > 0:
            self.no_responders -= 1
            raise nats.errors.NoRespondersError

    async def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
        self._trouble("get")
        return await self._kv.get(key, *args, **kwargs)

    async def create(self, key: str, value: bytes, *args: Any, **kwargs: Any) -> int:
        self._trouble("create")
        if self.stale > 0:
            self.stale -= 1
            raise jse.KeyWrongLastSequenceError(description="wrong last sequence: 7")
        result: int = await self._kv.create(key, value, *args, **kwargs)
        return result

    async def update(self, key: str, value: bytes, *args: Any, **kwargs: Any) -> int:
        self._trouble("update")
        result: int = await self._kv.update(key, value, *args, **kwargs)
        return result


async def _store(nc: Any, **trouble: int) -> tuple[RegistryStore, RejoiningKV]:
    real = await RegistryStore.open(nc, js_timeout=1.0)
    flaky = RejoiningKV(real.agents, **trouble)
    return RegistryStore(flaky, real.nodes), flaky  # type: ignore[arg-type]


async def test_the_old_register_then_update_path_fails_on_a_rejoining_server(nc: Any) -> None:
    """What ``agent_started`` did before: register, on already_exists update. Here the
    create says taken and the read says absent, so it ends in not_found."""
    store, _ = await _store(nc, stale=1)
    with pytest.raises(BrokerError) as taken:
        await store.register(agent("a1"))
    assert taken.value.code == ErrorCode.ALREADY_EXISTS
    with pytest.raises(BrokerError) as gone:
        await store.patch("a1", {"health": "healthy"})
    assert gone.value.code == ErrorCode.NOT_FOUND


async def test_put_record_goes_round_until_the_bucket_holds_the_record(nc: Any) -> None:
    store, flaky = await _store(nc, no_responders=2, stale=2)
    record = agent("a1", capabilities=["x"])
    revision = await store.put_record(record, backoff=0.01)
    got = await store.get("a1")
    assert got == (record, revision)
    assert flaky.calls.count("create") == 3  # two stale answers, then the real create


async def test_put_record_overwrites_a_reaper_marked_record(nc: Any) -> None:
    store, _ = await _store(nc)
    await store.register(agent("a1"))
    marked = agent("a1", health=Health.UNHEALTHY,
                   reaped=ReapMark(by="other", at=1.0, prior_health=Health.HEALTHY))
    got = await store.get("a1")
    assert got is not None
    assert await store.cas_put("a1", marked, got[1]) is not None
    fresh = agent("a1", capabilities=["y"])
    revision = await store.put_record(fresh)
    assert await store.get("a1") == (fresh, revision)


async def test_put_record_gives_up_as_unavailable_when_the_stream_never_answers(
        nc: Any) -> None:
    store, flaky = await _store(nc, no_responders=10**6)
    with pytest.raises(BrokerError) as info:
        await store.put_record(agent("a1"), attempts=3, backoff=0.01)
    assert info.value.code == ErrorCode.UNAVAILABLE
    assert info.value.details["attempts"] == 3 and len(flaky.calls) == 3


def _hosted(agent_id: str) -> Any:
    return types.SimpleNamespace(agent_id=agent_id, config={},
                                 all_capabilities=lambda: ["work"])


async def _service(nc: Any, flaky: RejoiningKV, store: RegistryStore,
                   ) -> tuple[RegistryNodeService, LocalView]:
    view = LocalView(flaky._kv, check_interval=0.1)
    await view.start()
    service = RegistryNodeService(heartbeat_interval=0.2, window=1.0)
    service.registry = Registry(store, view)
    service.node_id = "n1"
    service.log = get_logger(node_id="n1", service="registry")
    service.hosted = {}
    return service, view


async def test_agent_started_survives_a_rejoining_server(nc: Any) -> None:
    store, flaky = await _store(nc, no_responders=1, stale=1)
    service, view = await _service(nc, flaky, store)
    try:
        await service.agent_started(_hosted("a1"), restarts=0)
        await view.wait_for(lambda: view.get("a1") is not None, timeout=5)
        record = view.get("a1")
        assert record is not None and record.node_id == "n1" and record.capabilities == ["work"]
    finally:
        await view.stop()


async def test_an_agent_not_advertised_at_start_is_registered_by_the_next_beat(
        nc: Any) -> None:
    """When the bucket stays unavailable through every retry, the start does not fail;
    ``heal`` (run after each heartbeat) advertises the agent later."""
    store, flaky = await _store(nc, no_responders=10**6)
    service, view = await _service(nc, flaky, store)
    try:
        hosted = _hosted("a1")
        service.hosted = {"a1": hosted}
        await service.agent_started(hosted, restarts=0, attempts=2)
        assert view.get("a1") is None
        flaky.no_responders = 0  # the cluster settled
        await service.heal()
        await view.wait_for(lambda: view.get("a1") is not None, timeout=5)
    finally:
        await view.stop()
