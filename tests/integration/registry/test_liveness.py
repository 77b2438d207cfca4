"""Liveness: agents of a kill -9'd node turn unhealthy then vanish; reapers never double-act."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from broker_agents.core.registry.index import ChangeKind
from broker_agents.core.registry.record import Health
from broker_agents.registry.liveness import Heartbeater, Reaper, ReapReport, deregister_node
from broker_agents.registry.store import RegistryStore
from broker_agents.registry.view import LocalView, NodeView
from node.auth.roles import Role
from node.embedded import NatsServer
from tests.integration.registry.helpers import agent
from tests.secured import connect_as, context

ROOT = Path(__file__).resolve().parents[3]
WINDOW, GRACE = 0.6, 0.4


async def _views(nc: Any) -> tuple[RegistryStore, LocalView, NodeView]:
    store = await RegistryStore.open(nc)
    return store, await LocalView.open(nc, check_interval=0.1), await NodeView.open(nc)


async def test_kill_9_node_agents_become_unhealthy_then_vanish(nats_server: NatsServer,
                                                               nc: Any) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.registry.node_proc",
        str(context(nats_server, Role.NODE)), "victim", "5",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    store, view, nodes = await _views(nc)
    reaper = Reaper(store, view, nodes, "survivor", WINDOW, GRACE, interval=0.05,
                    own_node="survivor")
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"ready", line
        await view.wait_for(lambda: len(view.find_by_node("victim")) == 5)
        reaper.start()
        async with view.watch() as changes:
            await asyncio.sleep(3 * WINDOW)  # sleep-ok: the node must stay alive this long
            assert all(r.health is Health.HEALTHY for r in view.find_by_node("victim"))
            proc.kill()  # SIGKILL: no goodbye, no deregistration
            await proc.wait()
            killed_at = time.monotonic()
            events: list[tuple[ChangeKind, Health | None]] = []
            while len([e for e in events if e[0] is ChangeKind.REMOVED]) < 5:
                change = await changes.get(timeout=5)
                events.append((change.kind, None if change.kind is ChangeKind.REMOVED
                               else change.record.health))
        elapsed = time.monotonic() - killed_at
        assert [k for k, _ in events[:5]] == [ChangeKind.UPDATED] * 5
        assert all(h is Health.UNHEALTHY for _, h in events[:5])
        assert view.find_by_node("victim") == []
        # the window starts at the last heartbeat; allow scan period and propagation slack
        assert WINDOW + GRACE - 0.1 <= elapsed <= WINDOW + GRACE + 1.0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reaper.stop()
        await view.stop()
        await nodes.stop()


async def test_two_racing_reapers_never_both_act(nats_server: NatsServer) -> None:
    conns = [await connect_as(nats_server, Role.NODE) for _ in range(3)]
    try:
        store = await RegistryStore.open(conns[0])
        await Heartbeater(store, "dead").beat()
        for i in range(20):
            await store.register(agent(f"d{i}", node_id="dead"))
        setups = [await _views(c) for c in conns[1:]]
        reapers = [Reaper(s, v, n, f"r{i}", 0.3, 0.2, interval=0.01)
                   for i, (s, v, n) in enumerate(setups)]
        reports: list[list[ReapReport]] = [[], []]

        async def run(i: int) -> None:
            view = setups[i][1]
            deadline = time.monotonic() + 10
            while len(view) and time.monotonic() < deadline:
                reports[i].append(await reapers[i].scan_once())
                await asyncio.sleep(0.005)  # sleep-ok: scan period

        await asyncio.gather(run(0), run(1))
        marked = [a for rs in reports for r in rs for a in r.marked]
        removed = [a for rs in reports for r in rs for a in r.removed]
        assert sorted(marked) == sorted(f"d{i}" for i in range(20))
        assert sorted(removed) == sorted(marked)
        nodes_removed = [n for rs in reports for r in rs for n in r.nodes_removed]
        assert len(nodes_removed) <= 1
        for _, view, nview in setups:
            await view.stop()
            await nview.stop()
    finally:
        for c in conns:
            await c.close()


async def test_node_that_comes_back_is_restored_not_clobbered(nc: Any) -> None:
    store, view, nodes = await _views(nc)
    beater = Heartbeater(store, "flaky", interval=0.05, view=view)
    reaper = Reaper(store, view, nodes, "r", 0.4, 5.0, interval=0.05)
    try:
        await beater.beat()
        await store.register(agent("f1", node_id="flaky", health=Health.DEGRADED))
        await view.wait_for(lambda: view.get("f1") is not None)
        reaper.start()
        await view.wait_for(lambda: (r := view.get("f1")) is not None and r.reaped is not None)
        assert view.get("f1").health is Health.UNHEALTHY  # type: ignore[union-attr]
        beater.start()
        await view.wait_for(lambda: (r := view.get("f1")) is not None and r.reaped is None)
        record = view.get("f1")
        assert record is not None and record.health is Health.DEGRADED
        await asyncio.sleep(1.0)  # sleep-ok: longer than window + scan period, node alive
        assert view.get("f1") is not None and view.get("f1").reaped is None  # type: ignore[union-attr]
    finally:
        await reaper.stop()
        await beater.stop()
        await view.stop()
        await nodes.stop()


async def test_graceful_stop_deregisters_agents_and_node_at_once(nc: Any) -> None:
    store, view, nodes = await _views(nc)
    beater = Heartbeater(store, "calm", view=view)
    try:
        await beater.beat()
        for i in range(3):
            await store.register(agent(f"c{i}", node_id="calm"))
        await store.register(agent("other", node_id="elsewhere"))
        await view.wait_for(lambda: len(view) == 4)
        await nodes.feed.ready.wait()
        assert await deregister_node(store, view, "calm") == 3
        await beater.stop(graceful=True)
        await view.wait_for(lambda: len(view) == 1)
        assert await store.get_node("calm") is None
    finally:
        await view.stop()
        await nodes.stop()


async def test_the_reap_bound_holds_when_every_compare_and_set_is_slow(nc: Any) -> None:
    """The reap bound (window + grace + two scans + slack) presumes a scan every
    ``interval``. On a loaded machine each CAS takes a while: a reaper that performed its
    actions one after another and only then slept a full interval stretched its period by
    the sum of them, and reaped a dead node's agents late (issue 19: 3.62 s against 2.90 s).
    """
    latency, window, grace, interval = 0.15, 0.4, 0.3, 0.05
    store, view, nodes = await _views(nc)
    real_put, real_delete = store.cas_put, store.cas_delete

    async def slow_put(agent_id: str, record: Any, revision: int) -> int | None:
        await asyncio.sleep(latency)  # sleep-ok: the round trip of a loaded server
        return await real_put(agent_id, record, revision)

    async def slow_delete(agent_id: str, revision: int) -> bool:
        await asyncio.sleep(latency)  # sleep-ok: the round trip of a loaded server
        return await real_delete(agent_id, revision)

    store.cas_put, store.cas_delete = slow_put, slow_delete  # type: ignore[method-assign]
    reaper = Reaper(store, view, nodes, "survivor", window, grace, interval=interval)
    try:
        await Heartbeater(store, "dead").beat()  # one beat, then silence
        for i in range(6):
            await store.register(agent(f"d{i}", node_id="dead"))
        await view.wait_for(lambda: len(view.find_by_node("dead")) == 6)
        await nodes.feed.ready.wait()
        started = time.monotonic()
        reaper.start()  # the silence is counted from the first scan
        bound = window + grace + 2 * interval + 2 * latency + 0.3
        await view.wait_for(lambda: not view.find_by_node("dead"), timeout=10)
        took = time.monotonic() - started
        assert took <= bound, f"reaped {took:.2f}s after the first scan (bound {bound:.2f}s)"
    finally:
        await reaper.stop()
        await view.stop()
        await nodes.stop()
