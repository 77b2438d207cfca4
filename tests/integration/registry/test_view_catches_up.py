"""The local view provably catches up (issue 19): a listing that ends early is never
accepted, status calls that time out count toward a stall, and a reconnect re-lists
without anyone wiring a hook. Each bound below is derived from the feed's timers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from broker_agents.registry.store import RegistryStore
from broker_agents.registry.view import LocalView
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.registry.faulty_kv import EMPTY, MARKER_FIRST, SHORT, FaultyKv
from tests.integration.registry.helpers import agent
from tests.integration.registry.test_view import bucket_state, retrying
from tests.secured import connect_as

CHECK = 0.05
AGENTS = 17


async def filled(nc: Any) -> RegistryStore:
    store = await RegistryStore.open(nc)
    for i in range(AGENTS):
        await store.register(agent(f"a{i}"))
    return store


async def caught_up(view: LocalView, store: RegistryStore, within: float) -> None:
    """The view holds exactly the bucket within ``within`` seconds."""
    truth = await bucket_state(store)
    try:
        await view.wait_for(lambda: view.index.records == truth, timeout=within)
    except TimeoutError:
        pytest.fail(f"view holds {len(view)} agents, the bucket {len(truth)}, "
                    f"{within}s later (resyncs {view.feed.resyncs})")


@pytest.mark.parametrize("fault", [MARKER_FIRST, EMPTY, SHORT])
@pytest.mark.parametrize("when", ["start", "resync"])
async def test_a_short_listing_of_a_non_empty_bucket_is_never_accepted(
        nc: Any, fault: str, when: str) -> None:
    """The 'resync after reconnect loaded 0 keys from a bucket that held 17' of issue 19.
    A stall cannot rescue it: the listing claims the stream's last revision, so the view
    believes it is caught up. Only confirming the listing against the stream does."""
    store = await filled(nc)
    kv = FaultyKv(store.agents)
    view = LocalView(kv, "faulty", check_interval=CHECK, stall_after=4 * CHECK)
    if when == "start":
        kv.listings.append(fault)
    try:
        await view.start()
        if when == "resync":
            await caught_up(view, store, 2.0)
            kv.listings.append(fault)
            view.feed.request_resync("reconnected")
        # the short listing is refused and listed again after at most one check interval
        await caught_up(view, store, 2.0)
        assert not kv.listings
        rev = await store.register(agent("later"))
        await view.wait_revision(rev, 2.0)
        assert view.get("later") is not None
    finally:
        await view.stop()


async def test_status_calls_that_time_out_count_toward_the_stall(nc: Any) -> None:
    """A dead watch while every status call times out (a server cut): the stall clock
    runs through the failures, so once the stream answers again the view re-lists at the
    next check instead of waiting a whole stall threshold more."""
    stall = 2.0
    store = await filled(nc)
    kv = FaultyKv(store.agents)
    view = LocalView(kv, "faulty", check_interval=CHECK, stall_after=stall)
    await view.start()
    try:
        await view.feed._watcher._sub.unsubscribe()  # the watch dies silently
        kv.status_fails = True
        await store.unregister("a3")
        await store.register(agent("b1"))
        failing_since = time.monotonic()
        while time.monotonic() - failing_since < stall + 2 * CHECK:
            kv.status_failed.clear()
            await asyncio.wait_for(kv.status_failed.wait(), 5)
        kv.status_fails = False
        # bound: one check interval and one re-list, well under the stall threshold
        await caught_up(view, store, stall / 2)
    finally:
        await view.stop()


async def test_a_reconnect_relists_without_a_hook(nats_server: NatsServer) -> None:
    """The server the watch depends on restarts; nobody calls notify_reconnected (the
    auctioneer's mirrors, chaos clients): the feed notices the reconnect itself."""
    stall = 30.0  # so a stall cannot be what rescues the view
    view_nc = await connect_as(nats_server, Role.OBSERVER, reconnect_time_wait=0.05,
                                 max_reconnect_attempts=-1)
    writer = await connect_as(nats_server, Role.NODE, reconnect_time_wait=0.05,
                                max_reconnect_attempts=-1)
    view: LocalView | None = None
    try:
        store = await filled(writer)
        view = await LocalView.open(view_nc, name="nohook", check_interval=CHECK,
                                    stall_after=stall)
        nats_server.restart()
        await retrying(lambda: store.unregister("a0"))
        await retrying(lambda: store.register(agent("b1")))
        await view_nc.flush(timeout=5)  # the view's connection is back
        # bound: one check interval to notice the reconnect, one re-list
        await caught_up(view, store, 2.0)
        assert view.feed.resyncs >= 2
    finally:
        if view is not None:
            await view.stop()
        await view_nc.close()
        await writer.close()
