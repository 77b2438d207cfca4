"""Scenario ``rolling-upgrade``: three node daemons restarted one by one from build N onto
N+1 under load, then one rolled back to N (``chaos.rolling``, ``chaos.builds``).

The nodes host a Raft group (the KV register of the ``consensus`` scenario), auctioneers
and funded bidders (``auction``), coordinators and voters (``coord``). Load throughout,
from the scenarios' own clients: register reads/writes/CAS plus a unique key per write
(every acknowledged one must be readable at the end), auctions with money, votes; once
the feature flag ``demo-next`` is effective, ``incr`` commands (N+1's new Raft command).

The upgrade goes followers first, the leader's node last; the rollback takes the node
that leads then, so both end with a planned restart of the leader. Each restart is
planned: SIGTERM (the node stops its agents, and a Raft leader hands its
leadership over), the new build on the same data dir, then wait for /readyz and for its
member to apply the leader's commit index before the next. The flag is asked for after
every step: refused while any node runs N, accepted once all run N+1. The rollback
disables the flag, waits until the node's snapshot covers the last ``incr`` (N cannot
apply it), restarts it on N, and asks again: refused, not effective.

Retry window (what a "failed request" is): a Raft write retries one request id, and a
read retries, for ``OP_TIMEOUT`` (3 s); a vote waits as long for its decision
(``PatientNC``); an auction waits ``AUCTION_TIMEOUT`` (10 s) for its result. A request
still failed or undecided after that is a failed request (a CAS answered "mismatch" is an
answer, not a failure); there must be 0.
Checks: ``no-failed-requests``, ``linearizable-register``, ``no-lost-writes``,
``acked-writes-readable``, ``incr-exactly-once``, the money checks of ``auction``,
``vote-decisions-implied``, ``unknown-fields-kept`` and ``feature-flag-gated``.
Recovery: the commit gap of each restart (the longest interval between two acknowledged
commits while it ran), beside the same run's baseline (the longest in a window of
``BASELINE_COMMITS`` commits without a restart, before the first).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from broker_agents.auction.ledger import Ledger
from broker_agents.core.auction.audit import AuctionView
from broker_agents.raft.client import RaftClient
from chaos.checkers import check_awards, check_balances, check_no_lost_writes, check_register
from chaos.checkers.coord import check_votes
from chaos.checkers.escrow import check_no_dangling_holds
from chaos.checkers.money import check_books
from chaos.checkers.result import CheckResult
from chaos.cluster import server_version
from chaos.history import History, Operation
from chaos.nodes import NodeDaemon, service_env
from chaos.report import ScenarioReport
from chaos.rolling import (
    CommitClock,
    Restart,
    caught_up,
    finish_gap,
    leader_of,
    restart_onto,
)
from chaos.scenarios import ScenarioContext, auction, coord, scenario
from chaos.scenarios.consensus import GROUP, KEYS, OP_TIMEOUT, RegisterClient
from chaos.scenarios.rolling_load import (
    FeatureAdmin,
    FeatureGate,
    IncrClient,
    LoadProgress,
    MarkedAccounts,
    PatientNC,
    UniqueWriter,
    rollback_safe,
)
from chaos.scenarios.support import harness, seeded, until_ok
from node.auth.roles import Role

NODE_IDS = ("node-1", "node-2", "node-3")
SNAPSHOT_EVERY = 64  # small, so the node rolled back soon holds a snapshot past N+1's ops
STEP_TIMEOUT = 60.0
BASELINE_COMMITS = 300  # the quiet window before the first restart: as long as one restart


def node_agents(node_id: str) -> list[dict[str, Any]]:
    """Auctioneers and bidders (``auction``), coordinators and voters (``coord``)."""
    voting = [a for a in coord.node_agents(node_id) if a["class"] != coord.REPLICA]
    return auction.node_agents(node_id) + voting


async def upgrade_order(nodes: list[NodeDaemon]) -> list[NodeDaemon]:
    """Followers first, the leader's node last (as an operator upgrades: one leader
    change, measured: its graceful stop hands leadership over)."""
    leader = await leader_of(nodes, GROUP)
    return sorted(nodes, key=lambda n: (n.node_id == leader, n.node_id))


def services() -> dict[str, Any]:
    """The registry as in the other node scenarios, and the group with the deployment's
    Raft timing (its defaults), snapshotting often."""
    group = {"name": GROUP, "members": list(NODE_IDS), "snapshot_threshold": SNAPSHOT_EVERY}
    return {**service_env(), "consensus": {"groups": [group]}}


class WindowedRaft(RaftClient):
    """A RaftClient whose reads retry for the whole window, like the register's writes."""

    async def read(self, query: Any, timeout: float = OP_TIMEOUT) -> Any:
        return await super().read(query, timeout=max(timeout, OP_TIMEOUT))


class TimedRegister(RegisterClient):
    """The consensus scenario's register client; every acknowledged write ticks ``clock``
    and reads retry for ``OP_TIMEOUT`` too (one retry window for every Raft request)."""

    def __init__(self, *args: Any, clock: CommitClock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.raft = WindowedRaft(self.nc, GROUP)

    async def propose(self, command: dict[str, Any]) -> tuple[str, Any]:
        status, out = await super().propose(command)
        if status == "ok":
            self.clock.note()
        return status, out


def failed_requests(ops: list[Operation]) -> CheckResult:
    """Requests still failed or undecided after their retry window (module docstring)."""
    bad = [o for o in ops if o.status == "unknown"
           or (o.status == "fail" and o.error != "cas-mismatch")]
    by_f: dict[str, int] = {}
    for o in ops:
        by_f[o.f] = by_f.get(o.f, 0) + 1
    return CheckResult.of("no-failed-requests", [o.describe() + f" ({o.error})" for o in bad],
                          failed=len(bad), requests=len(ops), by_kind=by_f)


def getter(client: RegisterClient, key: str) -> Callable[[], Awaitable[Any]]:
    def read() -> Awaitable[Any]:
        return client.raft.read({"op": "get", "key": key}, timeout=1.0)
    return read


@scenario("rolling-upgrade", "three node daemons restarted one by one from build N onto "
          "N+1 under Raft, auction and vote load, then one rolled back; no failed request "
          "beyond the retry window, no acknowledged write lost, money conserved, the "
          "feature flag effective only while every node runs N+1; commit gap per restart")
async def run(ctx: ScenarioContext) -> ScenarioReport:
    report = ScenarioReport(scenario="rolling-upgrade", seed=ctx.seed,
                            duration_s=ctx.duration, nats_server=server_version())
    nodes = {n: node_agents(n) for n in NODE_IDS}
    async with harness(ctx, "roll", nodes, services(), report) as h:
        js = h.admin.jetstream(timeout=5)
        accounts_kv, auctions_kv = (await js.key_value("ba_accounts"),
                                    await js.key_value("ba_auctions"))
        book = Ledger(accounts_kv)
        watch = await MarkedAccounts.observing(h)
        assert isinstance(watch, MarkedAccounts)
        for who in auction.bidders():
            await book.deposit(who, auction.FUNDS, "rolling-funding")
        minted = auction.cents(auction.FUNDS) * len(auction.bidders())
        await asyncio.gather(*(caught_up(h.nodes, n.node_id, GROUP) for n in h.nodes))

        history, clock = History(), CommitClock()
        progress = LoadProgress(history, clock)
        gate = FeatureGate(FeatureAdmin.of(h), h.nodes)
        regs = [TimedRegister(f"r{i}", await h.client(f"r{i}", Role.CLIENT), history,
                              seeded(ctx, f"r{i}"), clock=clock) for i in range(2)]
        unique = UniqueWriter(TimedRegister("u0", await h.client("u0", Role.CLIENT), history,
                                            seeded(ctx, "u0"), clock=clock))
        incr = IncrClient(TimedRegister("i0", await h.client("i0", Role.CLIENT), history,
                                        seeded(ctx, "i0"), clock=clock), gate)
        bids = auction.AuctionClient("a0", await h.client("a0", Role.CLIENT), history,
                                     seeded(ctx, "a0"))
        votes = coord.CoordClient("v0", PatientNC(await h.client("v0", Role.CLIENT),
                                                  OP_TIMEOUT), history, seeded(ctx, "v0"))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(job) for job in (
            *(r.run(stop) for r in regs), unique.run(stop), incr.run(stop),
            bids.run(stop), votes.run("vote", stop))]
        restarts: list[Restart] = []
        try:
            ctx.progress("load on build N: waiting for commits, an auction and a vote")
            await progress.advanced(STEP_TIMEOUT)
            quiet = time.monotonic()  # the same-run baseline: a window without a restart
            await progress.advanced(STEP_TIMEOUT, commits=BASELINE_COMMITS)
            quiet_end = time.monotonic()
            await gate.ask("N on every node")
            for node in await upgrade_order(h.nodes):
                ctx.progress(f"restarting {node.node_id} onto N+1")
                restarts.append(await restart_onto(node, "N+1", h.nodes, GROUP, clock))
                await progress.advanced(STEP_TIMEOUT)
                await gate.ask(f"{node.node_id} on N+1")
            if gate.available:
                ctx.progress("every node on N+1: the flag is effective, incr in use")
                await gate.wait_effective(True, STEP_TIMEOUT)
                await incr.used(5, STEP_TIMEOUT)
                await gate.disable()
                await gate.wait_effective(False, STEP_TIMEOUT)
            back = h.node(await leader_of(h.nodes, GROUP) or NODE_IDS[0])
            if gate.available:
                await rollback_safe(back, h.nodes, GROUP, incr, STEP_TIMEOUT)
            ctx.progress(f"rolling {back.node_id} back to N")
            restarts.append(await restart_onto(back, "N", h.nodes, GROUP, clock))
            await progress.advanced(STEP_TIMEOUT)
            await gate.ask(f"{back.node_id} rolled back to N")
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        for record in restarts:
            finish_gap(record, clock)
        report.recovery["baseline_commit_gap_s"] = clock.gap(quiet, quiet_end)

        ctx.progress("final reads, auctions finished, checks")
        await h.settle()
        probe = regs[0]
        final: dict[str, Any] = {}
        for key in (*KEYS, *unique.acked, "counter"):
            reply = await until_ok(getter(probe, key), time.monotonic() + 15, each=1.5)
            final[key] = reply.get("value")
        records, audit = await auction.wait_finished(auctions_kv, accounts_kv,
                                                     time.monotonic() + 30)
        accounts = await book.all_accounts()
        await watch.stop()
        ops = history.operations()
        report.ops = history.counts()
        final_awards = {aid: auction.record_award(r) for aid, r in records.items()}
        views = {aid: AuctionView(r.stage, r.payments()) for aid, r in records.items()}
        balances = {a.owner: auction.cents(a.balance) for a in accounts}
        report.checks = [
            failed_requests(ops),
            check_register(ops),
            check_no_lost_writes(ops, {k: v for k, v in final.items()
                                       if k in KEYS and v is not None}),
            unique.check(final),
            incr.check(ops, final.get("counter")),
            check_awards(ops, final_awards, auction.debits(accounts)),
            check_balances({}, balances, watch.snapshots, minted=minted),
            check_no_dangling_holds(audit, views),
            check_books(audit, minted=auction.FUNDS * len(auction.bidders())),
            check_votes(ops, coord.PREFS),
            watch.check(),
            gate.check(),
        ]
        report.checks[5].details.update(auctions=len(records), settled=sum(
            r.stage == "settled" for r in records.values()))
        for record in restarts:
            key = f"commit_gap_{record.node}_{record.to_build.replace('+', 'p')}_s"
            report.recovery[key] = record.commit_gap_s
        (ctx.workdir / "restarts.json").write_text(json.dumps(
            [r.to_json() for r in restarts], indent=2))
        path = ctx.workdir / "history.jsonl"
        history.to_jsonl(path)
        report.history_path = str(path)
    return report
