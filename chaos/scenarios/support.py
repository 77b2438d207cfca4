"""What the node-daemon scenarios share: a proxied cluster with node daemons, a seeded
fault plan that covers every fault kind, and a registry monitor that timestamps changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from broker_agents.core.registry.index import Change, ChangeKind
from broker_agents.registry.client import Registry
from chaos.cluster import NatsCluster
from chaos.faults import Fault, FaultEvent, FaultSchedule, PauseProcess
from chaos.netns import nemesis
from chaos.netns.cluster import NetnsNatsCluster
from chaos.nodes import NodeDaemon, add_node, create_buckets, start_nodes
from chaos.report import ScenarioReport
from chaos.scenarios import ScenarioContext
from chaos.scenarios.kv_register import connect
from node.auth.roles import Role


@dataclass
class Harness:
    """A 3-server cluster on the run's network, its node daemons and an admin connection
    (node creds: it creates buckets and funds accounts, what only nodes may do)."""

    cluster: NatsCluster
    nodes: list[NodeDaemon]
    admin: Any
    conns: list[Any] = field(default_factory=list)

    def node(self, node_id: str) -> NodeDaemon:
        return next(n for n in self.nodes if n.node_id == node_id)

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until every node daemon (restarted or reconnecting after a heal) is ready."""
        await asyncio.gather(*(asyncio.to_thread(n.wait_ready, timeout) for n in self.nodes))

    async def client(self, name: str, role: Role) -> Any:
        """A connection as ``role`` through ``name``'s own proxies (closed with the
        harness): clients for public requests, observers to read buckets and events."""
        nc = await connect(self.cluster.client_urls(name), name, self.cluster.security(role))
        self.conns.append(nc)
        return nc


@asynccontextmanager
async def harness(ctx: ScenarioContext, tag: str, nodes: dict[str, list[dict[str, Any]]],
                  services: dict[str, Any], report: ScenarioReport | None = None
                  ) -> AsyncIterator[Harness]:
    """Start the cluster and the daemons (recording the network in ``report``); stop it
    all after.

    On loopback the servers advertise no addresses (a route must not bypass a cut), so a
    node cannot tell it is on a cluster: the replicated buckets are created up front. On
    netns nothing is: the nodes create them as a deployment's do (``broker_agents.kv``:
    3 replicas on a cluster of 3, leader-only reads)."""
    base = ctx.workdir / "cluster"
    if base.exists():  # a fresh JetStream store: ids from an earlier run of a seed repeat
        await asyncio.to_thread(shutil.rmtree, base)
    cluster = ctx.cluster(base, f"{tag}{ctx.seed}_", node_hosts=list(nodes))
    ctx.progress(f"starting a 3-server JetStream cluster ({ctx.network})")
    await asyncio.to_thread(cluster.start)
    h: Harness | None = None
    try:
        if report is not None:
            ctx.describe(report, cluster)
        admin = await connect(cluster.client_urls("admin"), "admin",
                              cluster.security(Role.NODE))
        h = Harness(cluster, [], admin, [admin])
        if cluster.network == "loopback":
            await create_buckets(admin.jetstream(timeout=5))
        h.nodes = [add_node(cluster, node_id, agents, services)
                   for node_id, agents in nodes.items()]
        ctx.progress(f"starting {len(h.nodes)} node daemons")
        await start_nodes(h.nodes)
        if report is not None:
            report.buckets = await bucket_layout(admin.jetstream(timeout=5))
        yield h
    finally:
        for nc in (h.conns if h else []):
            with contextlib.suppress(Exception):
                await nc.close()
        await asyncio.to_thread(cluster.stop)


Kind = Callable[[float], float]  # plan(start) -> end: schedules its own windows
KIND_S = 2.5  # a kind's mean hold plus gap: how many fit in a short run


async def bucket_layout(js: Any) -> dict[str, dict[str, Any]]:
    """Each KV bucket's replicas and read mode, as the nodes (or the harness) made them."""
    layout = {}
    for info in await js.streams_info():
        if info.config.name.startswith("KV_"):
            layout[info.config.name.removeprefix("KV_")] = {
                "replicas": info.config.num_replicas,
                "direct": bool(info.config.allow_direct)}
    return layout


def cover_plan(schedule: FaultSchedule, kinds: Sequence[Kind], duration: float,
               gap: tuple[float, float] = (0.4, 1.2), hosts: Sequence[Kind] = (),
               budget: float | None = None) -> None:
    """One fault at a time: every kind once in a seeded order, then seeded picks until
    ``duration``. ``hosts`` (``host_faults``) are dealt alternately with ``kinds``, so
    both come early. With ``budget`` (seconds), only the kinds that fit are covered (at
    least 3): a short run plays a seeded selection, a long one every kind."""
    rng = schedule.rng
    own, nets = list(kinds), list(hosts)
    rng.shuffle(own)
    rng.shuffle(nets)
    order = [k for pair in zip_longest(nets, own) for k in pair if k is not None]
    if budget is not None:
        order = order[:max(3, int(budget / KIND_S))]
    every = [*own, *nets]
    t = rng.uniform(*gap)
    while order or t < duration:
        kind = order.pop(0) if order else rng.choice(every)
        t = kind(t) + rng.uniform(*gap)


def fault_budget(ctx: ScenarioContext) -> float | None:
    """The plan's budget: on netns, the run's duration (the CI runs every scenario there
    in a few minutes); on loopback, none (every kind, whatever the duration)."""
    return ctx.duration if ctx.network == "netns" else None


HOST_KINDS = frozenset({"majority_split", "bridge", "one_way", "isolate_host", "pause_server"})


def host_faults(schedule: FaultSchedule, h: Harness, rng: random.Random) -> list[Kind]:
    """The faults only real hosts allow (netns; none on loopback), for ``cover_plan``: a
    majority/minority split and a bridge over every host, a one-way drop from a node's
    host to a server's, a flapping node host, and a paused nats-server (SIGSTOP)."""
    cluster = h.cluster
    if not isinstance(cluster, NetnsNatsCluster):
        return []
    firewall = cluster.firewall
    assert firewall is not None
    servers, others = cluster.server_hosts, cluster.node_hosts
    paused = rng.randrange(cluster.size)
    return [
        window(schedule, nemesis.majority_split(firewall, servers, others, rng), (1.0, 2.0)),
        window(schedule, nemesis.random_bridge(firewall, servers, others, rng), (1.0, 2.0)),
        window(schedule, nemesis.one_way_drop(firewall, rng.choice(others),
                                              rng.choice(servers)), (1.0, 2.0)),
        flapping(schedule, nemesis.isolate_host(firewall, rng.choice(others)), 2.0),
        window(schedule, PauseProcess(cluster.nodes[paused].process(), kind="pause_server",
                                      target=f"server-{paused}"), (1.0, 2.0)),
    ]


def window(schedule: FaultSchedule, fault: Fault, hold: tuple[float, float]) -> Kind:
    def plan(start: float) -> float:
        held = schedule.rng.uniform(*hold)
        schedule.window(fault, start, held)
        return start + held
    return plan


def flapping(schedule: FaultSchedule, fault: Fault, length: float) -> Kind:
    def plan(start: float) -> float:
        schedule.flapping(fault, start, length, up=(0.2, 0.6), down=(0.2, 0.6))
        return start + length + 0.6
    return plan


def outages(events: Sequence[FaultEvent], kind: str = "kill_node"
            ) -> list[tuple[str, float, float]]:
    """(target, down at, up at) for every inject/heal pair of ``kind``."""
    down: dict[int, FaultEvent] = {}
    out = []
    for ev in events:
        if ev.kind != kind:
            continue
        if ev.action == "inject":
            down[ev.fault_id] = ev
        elif ev.fault_id in down:
            start = down.pop(ev.fault_id)
            out.append((start.target, start.at, ev.at))
    return out


class RegistryMonitor:
    """A registry view on a client connection that timestamps every change it applies
    (monotonic): when each agent was removed, and when a reaper mark was first seen."""

    def __init__(self, registry: Registry, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.clock = clock
        self.removed: dict[str, list[float]] = defaultdict(list)
        self.marked: dict[str, list[float]] = defaultdict(list)
        self._unsubscribe = registry.subscribe(self._on_change)

    @classmethod
    async def open(cls, nc: Any) -> RegistryMonitor:
        registry = await Registry.connect(nc)
        return cls(registry)

    def _on_change(self, change: Change) -> None:
        now = self.clock()
        if change.kind == ChangeKind.REMOVED:
            self.removed[change.agent_id].append(now)
        elif change.record.reaped is not None and (
                change.previous is None or change.previous.reaped is None):
            self.marked[change.agent_id].append(now)

    def reaped_between(self, agent_id: str, start: float, end: float) -> list[float]:
        """Removal times in [start, end] that a reaper mark preceded (within the span)."""
        marks = [t for t in self.marked.get(agent_id, ()) if t <= end]
        return [t for t in self.removed.get(agent_id, ())
                if start <= t <= end and any(m <= t for m in marks)]

    async def close(self) -> None:
        self._unsubscribe()
        await self.registry.close()


async def until_ok(call: Callable[[], Any], deadline: float, each: float = 1.0) -> Any:
    """Retry ``call()`` until it succeeds or ``deadline`` (monotonic) passes, then re-raise."""
    delay = 0.05
    while True:
        try:
            return await asyncio.wait_for(call(), each)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)  # sleep-ok: retry backoff while the cluster recovers
            delay = min(delay * 2, 0.5)


def p50_max(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The median and the worst of recovery times, in seconds (None, None: none)."""
    if not values:
        return None, None
    return round(statistics.median(values), 3), round(max(values), 3)


def seeded(ctx: ScenarioContext, label: str) -> random.Random:
    return random.Random(f"{ctx.seed}-{label}")


async def drive(h: Harness, schedule: FaultSchedule,
                workloads: list[Callable[[asyncio.Event], Coroutine[Any, Any, Any]]],
                report: ScenarioReport) -> float:
    """Run the workloads while the fault schedule plays, stop them, wait until every node
    is ready again; record the faults and return the time of the final heal."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run(stop)) for run in workloads]
    try:
        await schedule.run()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    await h.settle()
    report.faults = [e.to_json() for e in schedule.events]
    return schedule.last_heal or time.monotonic()

