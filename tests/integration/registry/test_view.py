"""The local view: follows the bucket, tolerates duplicates, heals after restarts/stalls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
import pytest

from broker_agents.codec import encode
from broker_agents.core.registry.index import ChangeKind
from broker_agents.core.registry.record import AgentRecord, Health
from broker_agents.kvfeed import BucketFeed
from broker_agents.registry.store import RegistryStore, decode_agent
from broker_agents.registry.view import LocalView
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.registry.helpers import agent
from tests.secured import connect_as


async def retrying(op: Callable[[], Awaitable[Any]], attempts: int = 5) -> Any:
    """Core NATS is at-most-once: a request sent into a dying socket is lost (a timeout,
    or the socket's end of file while the server restarts); resend."""
    for attempt in range(attempts):
        try:
            return await op()
        except (nats.errors.TimeoutError, nats.errors.UnexpectedEOF,
                nats.errors.ConnectionClosedError):
            if attempt == attempts - 1:
                raise
    return None


async def bucket_state(store: RegistryStore) -> dict[str, AgentRecord]:
    """Ground truth: a fresh snapshot of the bucket. A listing whose end marker comes
    before the entries reads as empty (the nats-py race the feed itself guards against,
    ``MARKER_FIRST``): an empty snapshot of a stream holding values is taken again."""
    for _ in range(5):
        watcher = await store.agents.watchall()
        state: dict[str, AgentRecord] = {}
        while (entry := await watcher.updates(timeout=5)) is not None:
            if entry.operation is None:
                state[entry.key] = decode_agent(entry.value)
            else:
                state.pop(entry.key, None)
        await watcher.stop()
        if state or (await store.agents.status()).values == 0:
            return state
    return state


async def converged(view: LocalView, store: RegistryStore) -> None:
    truth = await bucket_state(store)
    await view.wait_for(lambda: view.index.records == truth, timeout=10)
    assert view.index.records == truth


async def test_view_follows_register_update_unregister_as_watch_events(nc: Any) -> None:
    store = await RegistryStore.open(nc)
    await store.register(agent("pre"))
    view = await LocalView.open(nc, check_interval=0.1)
    try:
        assert view.get("pre") is not None
        async with view.watch() as changes:
            await store.register(agent("a1", capabilities=["x"]))
            await store.patch("a1", {"health": "degraded"})
            await store.unregister("a1")
            kinds = [(await changes.get(5)).kind for _ in range(3)]
        assert kinds == [ChangeKind.ADDED, ChangeKind.UPDATED, ChangeKind.REMOVED]
        assert view.get("a1") is None and view.find_by_capability("x") == []
    finally:
        await view.stop()


async def test_entries_applied_twice_and_relists_are_harmless(nc: Any) -> None:
    store = await RegistryStore.open(nc)
    view = await LocalView.open(nc, check_interval=0.1)
    try:
        seen: list[Any] = []
        view.subscribe(seen.append)
        rev = await store.register(agent("a1", resources={"m": 0.5}))
        await view.wait_revision(rev)
        view.apply_entry("a1", encode(agent("a1", resources={"m": 0.5})), rev)
        view.feed.request_resync("test")
        await view.wait_for(lambda: view.feed.resyncs >= 2)
        assert len(seen) == 1
        assert view.index.by_resource["m"].items() == [(0.5, "a1")]
        assert view.query([{"field": "resources.m", "op": "eq", "value": 0.5}])[0].agent_id == "a1"
    finally:
        await view.stop()


@pytest.mark.parametrize("hook", [True, False], ids=["reconnect-hook", "stall-detection-only"])
async def test_view_converges_after_nats_server_restart(
    nats_server: NatsServer, hook: bool,
) -> None:
    view_nc: Any = None
    view: LocalView | None = None

    async def reconnected() -> None:
        if view is not None and hook:
            view.notify_reconnected()

    view_nc = await connect_as(nats_server, Role.OBSERVER, reconnected_cb=reconnected,
                                 reconnect_time_wait=0.05, max_reconnect_attempts=-1)
    writer = await connect_as(nats_server, Role.NODE, reconnect_time_wait=0.05,
                                max_reconnect_attempts=-1)
    try:
        store = await RegistryStore.open(writer)
        for i in range(20):
            await store.register(agent(f"a{i}", capabilities=["x"]))
        view = await LocalView.open(view_nc, check_interval=0.1, stall_after=0.3)
        assert len(view) == 20
        nats_server.restart()
        for i in range(10):
            await retrying(lambda i=i: store.unregister(f"a{i}"))
        for i in range(20, 30):
            await store.register(agent(f"a{i}", health=Health.DEGRADED))
        await converged(view, store)
        assert len(view) == 20 and len(view.find_by_health("degraded")) == 10
    finally:
        if view is not None:
            await view.stop()
        await view_nc.close()
        await writer.close()


async def test_dead_watch_is_detected_as_a_stall_and_relisted(nc: Any) -> None:
    """The watch dies silently; writes and a hard purge happen; the view still converges."""
    store = await RegistryStore.open(nc)
    for i in range(5):
        await store.register(agent(f"a{i}"))
    view = await LocalView.open(nc, check_interval=0.05, stall_after=0.2)
    try:
        feed: BucketFeed = view.feed
        await feed._watcher._sub.unsubscribe()  # the known client bug, simulated
        js = nc.jetstream()
        await js.purge_stream(f"KV_{store.agents._name}", subject=f"{store.agents._pre}a0")
        await store.unregister("a1")
        await store.register(agent("b1"))
        await converged(view, store)
        assert sorted(view.index.records) == ["a2", "a3", "a4", "b1"]
        assert feed.resyncs >= 2
    finally:
        await view.stop()


async def test_undecodable_value_is_skipped_not_fatal(nc: Any) -> None:
    store = await RegistryStore.open(nc)
    await store.register(agent("good"))
    await store.agents.put("bad", b"\xc1 not msgpack")
    view = await LocalView.open(nc)
    try:
        assert sorted(view.index.records) == ["good"]
        rev = await store.register(agent("later"))
        await view.wait_revision(rev)
        assert view.get("later") is not None
    finally:
        await view.stop()
