"""Scenario ``kv-register``: a JetStream KV register under partitions and kill -9.

Clients read, write and compare-and-set keys of an R3 KV bucket on the proxied 3-server
cluster while a seeded schedule cuts servers off, kills them, isolates a client, cuts one
direction of a route and slows links. The history must be linearizable and no
acknowledged write may be missing at the end.

Reads use the non-direct get (``$JS.API.STREAM.MSG.GET``, answered by the stream leader),
since direct gets may be served by followers and are not read-after-write. Written values
are unique, so CAS on a revision (``kv.update(last=rev)``) is CAS on the value read at
that revision. Outcomes: a publish the server rejected (wrong last sequence, API error,
no responders) did not happen: ``fail``; a timeout or a lost connection may have
happened: ``unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from typing import Any

from nats.errors import NoRespondersError
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
)

from broker_agents.kv import once_account_enabled
from broker_agents.transport import Security, connect_client
from chaos.checkers import check_no_lost_writes, check_register
from chaos.cluster import NatsCluster, ProxiedNatsCluster, server_version
from chaos.faults import (
    Fault,
    FaultSchedule,
    PauseProcess,
    asymmetric_cut,
    cut_server,
    isolate_client,
    kill_server,
    slow_links,
)
from chaos.history import History
from chaos.netns import nemesis
from chaos.netns.cluster import NetnsNatsCluster
from chaos.report import ScenarioReport
from chaos.scenarios import ScenarioContext, scenario
from node.auth.roles import Role

BUCKET = "ba_raw"  # the prefix's raw-KV bucket: one node creds may write
KEYS = ("r0", "r1", "r2")
WORKERS = 4
OP_TIMEOUT = 1.0


async def _quiet(*_: Any) -> None:
    return None


async def connect(urls: list[str], name: str, security: Security) -> Any:
    """A client that keeps reconnecting through its proxies (never directly), as the
    identity ``security`` names."""
    return await connect_client(
        urls, security=security, name=name, allow_reconnect=True, max_reconnect_attempts=-1,
        reconnect_time_wait=0.1, connect_timeout=1.0, ping_interval=1,
        max_outstanding_pings=2, dont_randomize=False, error_cb=_quiet,
        disconnected_cb=_quiet, reconnected_cb=_quiet, closed_cb=_quiet,
    )


class RegisterWorker:
    """One client process issuing random register operations and recording them."""

    def __init__(self, name: str, kv: Any, history: History, rng: random.Random,
                 weights: tuple[int, int, int] = (4, 3, 3)) -> None:
        self.name = name
        self.weights = weights
        self.kv = kv
        self.history = history
        self.rng = rng
        self.counter = 0

    async def read(self, key: str) -> tuple[str | None, int] | None:
        op = self.history.invoke(self.name, "read", key=key)
        try:
            entry = await asyncio.wait_for(self.kv.get(key), OP_TIMEOUT)
        except KeyNotFoundError:
            self.history.ok(op, None)
            return None, 0
        except Exception as exc:
            self.history.unknown(op, type(exc).__name__)
            return None
        value = entry.value.decode() if entry.value is not None else None
        self.history.ok(op, value)
        return value, int(entry.revision)

    async def _publish(self, op: int, call: Any) -> None:
        try:
            await asyncio.wait_for(call, OP_TIMEOUT)
        except (KeyWrongLastSequenceError, APIError, NoRespondersError,
                NoStreamResponseError) as exc:
            self.history.fail(op, type(exc).__name__)  # rejected: did not happen
        except Exception as exc:
            self.history.unknown(op, type(exc).__name__)
        else:
            self.history.ok(op)

    async def write(self, key: str) -> None:
        value = self._next_value()
        op = self.history.invoke(self.name, "write", value, key=key)
        await self._publish(op, self.kv.put(key, value.encode()))

    async def cas(self, key: str) -> None:
        seen = await self.read(key)
        if seen is None:
            return
        current, revision = seen
        value = self._next_value()
        op = self.history.invoke(self.name, "cas", [current, value], key=key)
        await self._publish(op, self.kv.update(key, value.encode(), last=revision))

    def _next_value(self) -> str:
        self.counter += 1
        return f"{self.name}-{self.counter}"

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            key = self.rng.choice(KEYS)
            kind = self.rng.choices(("read", "write", "cas"), weights=self.weights)[0]
            if kind == "read":
                await self.read(key)
            elif kind == "write":
                await self.write(key)
            else:
                await self.cas(key)


def plan_faults(ctx: ScenarioContext, cluster: NatsCluster) -> FaultSchedule:
    schedule = FaultSchedule(random.Random(ctx.seed))
    candidates: list[Fault] = [cut_server(cluster, i) for i in range(cluster.size)]
    candidates += [kill_server(cluster, i) for i in range(cluster.size)]
    candidates += [isolate_client(cluster, "w0"), asymmetric_cut(cluster, 0, 1),
                   slow_links(cluster.toxi, cluster.route_proxies(1, 2)
                              if isinstance(cluster, ProxiedNatsCluster)
                              else cluster.client_proxies("w1"), 100, 50)]
    hosts = host_faults(cluster, random.Random(f"{ctx.seed}-hosts"))
    if not hosts:
        schedule.random_plan(candidates, duration=ctx.duration, gap=(0.3, 1.2),
                             hold=(1.0, 2.5))
        return schedule
    # netns: each host fault once (a short run must see them), then seeded picks of all
    rng, t = schedule.rng, schedule.rng.uniform(0.3, 1.2)
    rng.shuffle(hosts)
    for fault in hosts:
        held = rng.uniform(1.0, 2.0)
        schedule.window(fault, t, held)
        t += held + rng.uniform(0.3, 1.2)
    while t < ctx.duration:
        held = min(rng.uniform(1.0, 2.5), max(ctx.duration - t, 0.1))
        schedule.window(rng.choice([*candidates, *hosts]), t, held)
        t += held + rng.uniform(0.3, 1.2)
    return schedule


def host_faults(cluster: NatsCluster, rng: random.Random) -> list[Fault]:
    """On netns (no node hosts here: the clients sit on the control host): a bridge over
    the three server hosts (one server sees both others, they do not see each other) and
    a paused nats-server (SIGSTOP: a JetStream leader that wakes up still leading)."""
    if not isinstance(cluster, NetnsNatsCluster) or cluster.firewall is None:
        return []
    paused = rng.randrange(cluster.size)
    return [nemesis.random_bridge(cluster.firewall, cluster.server_hosts, [], rng),
            PauseProcess(cluster.nodes[paused].process(), kind="pause_server",
                         target=f"server-{paused}")]


async def _until_ok(call: Any, deadline: float) -> Any:
    """Retry ``call()`` until it succeeds or the deadline passes (then re-raise)."""
    delay = 0.05
    while True:
        try:
            return await asyncio.wait_for(call(), OP_TIMEOUT)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)  # sleep-ok: retry backoff while the cluster recovers
            delay = min(delay * 2, 0.5)


@scenario("kv-register", "JetStream KV register (read/write/CAS), partitions and kill -9; "
          "checked for linearizability and lost writes")
async def run_cas(ctx: ScenarioContext) -> ScenarioReport:
    return await run(ctx, "kv-register", (4, 3, 3))


@scenario("kv-register-rw", "JetStream KV register, reads and blind writes only (no CAS), "
          "partitions and kill -9; checked for linearizability and lost writes")
async def run_rw(ctx: ScenarioContext) -> ScenarioReport:
    return await run(ctx, "kv-register-rw", (5, 5, 0))


async def run(ctx: ScenarioContext, name: str, weights: tuple[int, int, int]) -> ScenarioReport:
    """Start the cluster, drive the workload under the seeded faults, check the history."""
    cluster = ctx.cluster(ctx.workdir / "cluster", f"kv{ctx.seed}_")
    ctx.progress(f"starting a 3-server JetStream cluster ({ctx.network})")
    await asyncio.to_thread(cluster.start)
    conns: list[Any] = []
    history = History()
    report = ScenarioReport(scenario=name, seed=ctx.seed, duration_s=ctx.duration,
                            nats_server=server_version())
    ctx.describe(report, cluster)
    try:
        admin = await connect(cluster.client_urls("admin"), "admin",
                              cluster.security(Role.NODE))
        conns.append(admin)
        js = admin.jetstream(timeout=5)
        kv = await once_account_enabled(lambda: js.create_key_value(
            bucket=BUCKET, replicas=3, history=1, direct=False))
        workers = []
        for i in range(WORKERS):
            # the workload is JetStream KV itself: a node's to write
            nc = await connect(cluster.client_urls(f"w{i}"), f"w{i}",
                               cluster.security(Role.NODE))
            conns.append(nc)
            wkv = await nc.jetstream(timeout=OP_TIMEOUT).key_value(BUCKET)
            workers.append(RegisterWorker(f"w{i}", wkv, history,
                                          random.Random(f"{ctx.seed}-{i}"), weights))
        schedule = plan_faults(ctx, cluster)
        report.fault_plan = schedule.plan()
        ctx.progress(f"workload for {ctx.duration:.0f}s with {len(workers)} clients, "
                     f"{sum(s['action'] == 'inject' for s in report.fault_plan)} faults planned")
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        try:
            await schedule.run()
            healed = schedule.last_heal or time.monotonic()
            await _until_ok(lambda: kv.put("probe", b"1"), time.monotonic() + 15)
            report.recovery["kv_write_s"] = round(time.monotonic() - healed, 3)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        report.faults = [e.to_json() for e in schedule.events]
        ctx.progress("final reads and checks")
        await asyncio.to_thread(cluster.wait_healthy, 30.0)
        final: dict[str, Any] = {}
        for key in KEYS:
            try:
                entry = await _until_ok(lambda k=key: kv.get(k), time.monotonic() + 10)
                final[key] = entry.value.decode()
            except KeyNotFoundError:
                pass
        ops = history.operations()
        report.ops = history.counts()
        report.checks = [check_register(ops), check_no_lost_writes(ops, final)]
        path = ctx.workdir / "history.jsonl"
        history.to_jsonl(path)
        # what the checkers read besides the history: re-check (or plant bugs) offline
        (ctx.workdir / "inputs.json").write_text(json.dumps({"final": final}))
        report.history_path = str(path)
        return report
    finally:
        for nc in conns:
            with contextlib.suppress(Exception):
                await nc.close()
        await asyncio.to_thread(cluster.stop)
