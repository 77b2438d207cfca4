"""Scenario ``consensus``: a Raft group's KV register under partitions and kill -9.

Three node daemons host one consensus group (members = the nodes, built-in KV state
machine). Clients, each on its own proxied connection, read, write and compare-and-set a
few keys through ``RaftClient`` while a seeded schedule kills the leader's node with
kill -9 and restarts it, pauses it (SIGSTOP/SIGCONT), starves the machine's CPU with
bounded busy processes, cuts the leader off NATS (once held, once flapping), isolates a
seeded node, cuts one NATS server from the others, cuts one route direction and slows a
member's links. Leader-aimed faults pick the leader from the members' /metrics at the
moment they strike. Checks:

- ``linearizable-register``: the history of reads (read-index), writes and CAS;
- ``one-leader-per-term``: from /metrics samples of every member during the run and the
  ``raft.elected`` lines of every node's log (which also catch short-lived leaders);
- ``no-lost-writes``: final linearizable reads after the heal;
- ``leader-recovery``: a proposal commits within 2 s of the final heal.

Outcomes. A proposal keeps one request id across all its retries, and the group applies a
request id at most once, so a timed-out attempt can be retried until the op deadline and
the op still happened at most once. If every attempt was answered ``not_leader`` or found
no responders, nothing was appended: ``fail``. If any attempt timed out (or the
connection broke), it may have been appended and committed later: ``unknown``. A CAS that
committed with ``ok: false`` changed nothing: ``fail``.

``BA_CHAOS_CONSENSUS_BREAK=stale-reads`` makes clients answer reads from their own cache
instead of the group (a deliberate bug, to see the checker catch it).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.errors import TimeoutError as NatsTimeout

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.raft.client import RaftClient
from chaos.checkers import (
    check_leader_recovery,
    check_no_lost_writes,
    check_one_leader_per_term,
    check_register,
)
from chaos.checkers.leaders import LeaderWatch, elections_from_logs
from chaos.cluster import server_version
from chaos.faults import (
    CpuStarvation,
    Fault,
    FaultSchedule,
    asymmetric_cut,
    cut_server,
    isolate_client,
    slow_links,
)
from chaos.history import History
from chaos.nodes import NodeDaemon
from chaos.report import ScenarioReport
from chaos.scenarios import ScenarioContext, scenario
from chaos.scenarios.support import (
    Harness,
    cover_plan,
    fault_budget,
    flapping,
    harness,
    host_faults,
    seeded,
    until_ok,
    window,
)
from node.auth.roles import Role

GROUP = "reg"
NODE_IDS = ("node-1", "node-2", "node-3")
KEYS = ("k0", "k1", "k2")
WORKERS = 3
OP_TIMEOUT = 3.0  # a proposal retries (same request id) this long before it is unknown
READ_TIMEOUT = 1.0
RAFT = {"tick_ms": 20.0, "election_ticks": 10, "heartbeat_ticks": 2}
BREAK_ENV = "BA_CHAOS_CONSENSUS_BREAK"
# "limit_data" resets the route as soon as src sends towards dst. The "timeout" toxic
# drops bytes inside a live TCP stream, which no real network does (TCP retransmits or
# resets): lost route interest updates then leave a subscription unreachable after the
# heal (seed 6: a node restarted during a 2->0 cut timed out on JetStream for 30 s).
ASYM_MODE = "limit_data"


def consensus_services() -> dict[str, Any]:
    """The group on every node; the registry service is off, since the group runs on core
    NATS only and a restarted node should not wait for JetStream to host its member."""
    return {"consensus": {"groups": [{"name": GROUP, "members": list(NODE_IDS), **RAFT}]},
            "registry": {"enabled": False}}


class TimeoutCountingNC:
    """A nats client wrapper counting requests that timed out: such a request may have
    reached a member and been appended, unlike one answered or without responders."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.timeouts = 0

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self.nc.request(*args, **kwargs)
        except (NatsTimeout, TimeoutError):
            self.timeouts += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.nc, name)


class RegisterClient:
    """One client process driving the group's KV register and recording every op."""

    def __init__(self, name: str, nc: Any, history: History, rng: random.Random,
                 stale_reads: bool = False, op_timeout: float = OP_TIMEOUT) -> None:
        self.name = name
        self.op_timeout = op_timeout
        self.nc = TimeoutCountingNC(nc)
        self.raft = RaftClient(self.nc, GROUP)
        self.history = history
        self.rng = rng
        self.stale_reads = stale_reads
        self.cache: dict[str, Any] = {}
        self.counter = 0

    async def propose(self, command: dict[str, Any]) -> tuple[str, Any]:
        """("ok", result) | ("fail", why) | ("unknown", why), retrying one request id."""
        rid = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.op_timeout
        maybe_sent = False
        while True:
            before = self.nc.timeouts
            try:
                left = max(deadline - loop.time(), 0.05)
                return "ok", await self.raft.propose(command, request_id=rid, timeout=left)
            except BrokerError as exc:
                maybe_sent = maybe_sent or self.nc.timeouts > before
                if exc.code not in (ErrorCode.TIMEOUT, ErrorCode.NOT_LEADER):
                    return "fail", exc.code  # rejected: nothing (or a no-op) was applied
                why = str(exc.code)
            except Exception as exc:  # connection trouble: the publish may have gone out
                maybe_sent = True
                why = type(exc).__name__
            if loop.time() >= deadline:
                return ("unknown" if maybe_sent else "fail"), why
            await asyncio.sleep(0.05)  # sleep-ok: backoff before retrying the same id

    async def read(self, key: str) -> tuple[bool, Any]:
        op = self.history.invoke(self.name, "read", key=key)
        if self.stale_reads:
            self.history.ok(op, self.cache.get(key))  # deliberately wrong: no read-index
            return True, self.cache.get(key)
        try:
            reply = await self.raft.read({"op": "get", "key": key}, timeout=READ_TIMEOUT)
        except BrokerError as exc:
            if exc.code == ErrorCode.NOT_LEADER:
                self.history.fail(op, exc.code)
            else:
                self.history.unknown(op, exc.code)
            return False, None
        except Exception as exc:
            self.history.unknown(op, type(exc).__name__)
            return False, None
        value = reply.get("value")
        self.cache[key] = value
        self.history.ok(op, value)
        return True, value

    async def write(self, key: str) -> None:
        value = self._next_value()
        op = self.history.invoke(self.name, "write", value, key=key)
        status, out = await self.propose({"op": "put", "key": key, "value": value})
        self._record(op, status, out)
        if status == "ok":
            self.cache[key] = value

    async def cas(self, key: str) -> None:
        seen, current = await self.read(key)
        if not seen:
            return
        value = self._next_value()
        op = self.history.invoke(self.name, "cas", [current, value], key=key)
        status, out = await self.propose(
            {"op": "cas", "key": key, "value": value, "expected": current})
        if status == "ok" and not out.get("ok"):
            self.history.fail(op, "cas-mismatch", out.get("value"))
            self.cache[key] = out.get("value")
            return
        self._record(op, status, out)
        if status == "ok":
            self.cache[key] = value

    def _record(self, op: int, status: str, out: Any) -> None:
        if status == "ok":
            self.history.ok(op)
        elif status == "fail":
            self.history.fail(op, str(out))
        else:
            self.history.unknown(op, str(out))

    def _next_value(self) -> str:
        self.counter += 1
        return f"{self.name}-{self.counter}"

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            key = self.rng.choice(KEYS)
            kind = self.rng.choices(("read", "write", "cas"), weights=(4, 3, 3))[0]
            if kind == "read":
                await self.read(key)
            elif kind == "write":
                await self.write(key)
            else:
                await self.cas(key)


@dataclass
class AtLeader:
    """A fault aimed at whichever node hosts the group leader when it is injected (seen on
    the members' /metrics), so leaders really get killed and cut off. ``make(node_id)``
    builds the concrete fault; the heal heals exactly that one. ``target`` says who it
    hit and whether it was the leader; ``hits`` counts leaders hit."""

    h: Harness
    watch: LeaderWatch
    rng: random.Random
    make: Callable[[str], Fault]
    kind: str
    target: str = "leader"
    inner: Fault | None = None
    hits: int = 0

    def inject(self) -> None:
        found = None
        deadline = time.monotonic() + 2.0
        while found is None and time.monotonic() < deadline:
            found = self.watch.leader()
        if found is None:
            node = self.rng.choice([n.node_id for n in self.h.nodes if n.alive] or NODE_IDS)
            self.target = f"{node} (no leader seen)"
        else:
            node, term = found
            self.target = f"{node} (leader, term {term})"
            self.hits += 1
        self.inner = self.make(node)
        self.inner.inject()

    def heal(self) -> None:
        if self.inner is not None:
            self.inner.heal()
            self.inner = None


def leader_faults(h: Harness, watch: LeaderWatch, rng: random.Random) -> list[AtLeader]:
    """kill -9 of the leader's node (heal: restart), cutting the leader off NATS, and
    pausing it (SIGSTOP: it wakes up still believing it leads, in an old term)."""
    return [
        AtLeader(h, watch, rng, lambda node: h.node(node).kill_fault(), "kill_leader"),
        AtLeader(h, watch, rng, lambda node: isolate_client(h.cluster, node),
                 "isolate_leader"),
        AtLeader(h, watch, rng, lambda node: h.node(node).pause_fault(), "pause_leader"),
    ]


def plan_faults(ctx: ScenarioContext, h: Harness, at_leader: list[AtLeader]
                ) -> FaultSchedule:
    schedule = FaultSchedule(random.Random(ctx.seed))
    rng = seeded(ctx, "targets")
    a, b = rng.sample(range(h.cluster.size), 2)
    slow = rng.choice(NODE_IDS)
    if h.cluster.network == "netns":
        slow = "c0"  # a node on its own host dials the servers directly: slow a client
    kill_leader, isolate_leader, pause_leader = at_leader
    kinds = [
        window(schedule, pause_leader, (1.0, 2.0)),
        window(schedule, CpuStarvation(workers=2, max_seconds=6.0), (1.5, 3.0)),
        window(schedule, kill_leader, (1.5, 2.5)),
        window(schedule, isolate_leader, (1.0, 2.0)),
        window(schedule, isolate_client(h.cluster, rng.choice(NODE_IDS)), (1.0, 2.0)),
        window(schedule, cut_server(h.cluster, rng.randrange(h.cluster.size)), (1.0, 2.0)),
        window(schedule, asymmetric_cut(h.cluster, a, b, ASYM_MODE), (1.0, 2.0)),
        window(schedule, slow_links(h.cluster.toxi, h.cluster.client_proxies(slow), 40, 30),
                (1.0, 2.0)),
        flapping(schedule, isolate_leader, 2.5),
    ]
    cover_plan(schedule, kinds, ctx.duration, gap=(0.3, 0.8), hosts=host_faults(schedule, h, rng),
               budget=fault_budget(ctx))
    return schedule


async def first_commit(client: RegisterClient, deadline: float) -> float | None:
    """Propose probe writes until one commits; when it did (None: never)."""
    n = 0
    while time.monotonic() < deadline:
        n += 1
        try:
            await client.raft.propose({"op": "put", "key": "probe", "value": n}, timeout=0.5)
            return time.monotonic()
        except Exception:
            await asyncio.sleep(0.02)  # sleep-ok: retry backoff while the group recovers
    return None


def ready(node: NodeDaemon, timeout: float) -> None:
    node.wait_ready(timeout)


def _reader(client: RegisterClient, key: str) -> Any:
    async def read() -> Any:
        return await client.raft.read({"op": "get", "key": key}, timeout=1.0)
    return read


def log_elections(h: Harness) -> list[tuple[str, int]]:
    paths = [h.cluster.base_dir / node.node_id / "node.log" for node in h.nodes]
    return elections_from_logs(paths, GROUP)


@scenario("consensus", "a Raft group's KV register (read/write/CAS) on 3 node daemons "
          "under kill -9 of the leader's node and partitions; linearizable, one leader per "
          "term, no acknowledged write lost, a leader within 2 s of the heal")
async def run(ctx: ScenarioContext) -> ScenarioReport:
    report = ScenarioReport(scenario="consensus", seed=ctx.seed, duration_s=ctx.duration,
                            nats_server=server_version())
    broken = os.environ.get(BREAK_ENV) == "stale-reads"
    nodes: dict[str, list[dict[str, Any]]] = {n: [] for n in NODE_IDS}
    async with harness(ctx, "raft", nodes, consensus_services(), report) as h:
        history = History()
        clients = [RegisterClient(f"c{i}", await h.client(f"c{i}", Role.CLIENT), history,
                                  seeded(ctx, f"c{i}"), stale_reads=broken)
                   for i in range(WORKERS)]
        watch = LeaderWatch(GROUP, h.nodes)
        at_leader = leader_faults(h, watch, seeded(ctx, "leader"))
        schedule = plan_faults(ctx, h, at_leader)
        report.fault_plan = schedule.plan()
        ctx.progress(f"register ops for {ctx.duration:.0f}s from {WORKERS} clients, "
                     f"{sum(s['action'] == 'inject' for s in report.fault_plan)} faults planned")
        stop, sampling = asyncio.Event(), asyncio.Event()
        sampler = asyncio.create_task(watch.run(sampling))
        tasks = [asyncio.create_task(c.run(stop)) for c in clients]
        try:
            await schedule.run()
            healed = schedule.last_heal or time.monotonic()
            probe = RegisterClient("probe", await h.client("probe", Role.CLIENT), History(),
                                   seeded(ctx, "p"))
            committed = await first_commit(probe, time.monotonic() + 15)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        report.faults = [e.to_json() for e in schedule.events]
        ctx.progress("final heal: waiting for restarted nodes, final reads, checks")
        await asyncio.gather(*(asyncio.to_thread(ready, n, 30.0) for n in h.nodes))
        final: dict[str, Any] = {}
        for key in KEYS:
            reply = await until_ok(_reader(probe, key), time.monotonic() + 15, each=1.5)
            if reply.get("value") is not None:
                final[key] = reply["value"]
        sampling.set()
        await asyncio.gather(sampler, return_exceptions=True)
        elected = log_elections(h)
        recovered = [] if committed is None else [
            (committed, probe.raft.leader or "?", watch.term_of(probe.raft.leader), "leader")]
        ops = history.operations()
        report.ops = history.counts()
        leaders = ([(m, t, r) for _, m, t, r in watch.samples]
                   + [(m, t, "leader") for m, t in elected])
        report.checks = [
            check_register(ops),
            check_one_leader_per_term(leaders),
            check_no_lost_writes(ops, final),
            check_leader_recovery(healed, recovered, within=2.0),
        ]
        report.checks[1].details.update(
            elections_logged=len(elected), leaders_hit={f.kind: f.hits for f in at_leader},
            max_term=max((t for _, _, t, _ in watch.samples), default=0),
            client_retries=sum(c.raft.retries for c in clients))
        report.recovery = {"commit_after_heal_s": None if committed is None
                           else round(committed - healed, 3)}
        path = ctx.workdir / "history.jsonl"
        history.to_jsonl(path)
        # what the checkers read besides the history: re-check (or plant bugs) offline
        (ctx.workdir / "inputs.json").write_text(json.dumps(
            {"final": final, "leaders": leaders, "healed": healed,
             "recovered": recovered}))
        report.history_path = str(path)
    return report
