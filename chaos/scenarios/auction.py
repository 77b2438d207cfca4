"""Scenario ``auction``: sealed-bid auctions with budgets under kill -9, pauses, CPU
starvation and partitions.

Auctioneers on two node daemons, bidders on all three, every bidder's account funded by
deposits (the only money minted). Clients run first-price and Vickrey auctions while a
seeded schedule kills an auctioneer's node (then restarts it), pauses one (SIGSTOP for
longer than the auction lease, then SIGCONT: its successor takes over while it sleeps
mid-step, and it wakes up believing it still owns the auction), starves the machine's CPU
with bounded busy workers, isolates a node, cuts a server and flaps a link. Checks:

- ``awards-exactly-once``: every acknowledged result (status, winner, price) is what the
  auctions bucket holds at the end, never two different results for one auction, and no
  auction debited twice;
- ``balances``: no balance ever observed negative (a watch on the accounts bucket), and
  deposits = final balances (money in = money out);
- ``no-dangling-escrow`` and ``books-balance``: the ledger audit of the final state
  (``broker-agents auction audit``'s code): no orphaned or unexpected hold once every
  auction finished, every balance equal to deposited - paid + received, total paid equal
  to total received, deposits equal to the money minted.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterable
from typing import Any

from broker_agents import codec
from broker_agents.auction.audit import run_audit
from broker_agents.auction.client import run_auction
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.records import AuctionRecord
from broker_agents.core.auction.audit import AuctionView, Audit
from broker_agents.core.budget import Account
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.kv import all_keys
from chaos.checkers import check_awards, check_balances
from chaos.checkers.escrow import check_no_dangling_holds
from chaos.checkers.money import check_books
from chaos.cluster import server_version
from chaos.faults import CpuStarvation, FaultSchedule, cut_server, isolate_client
from chaos.history import History
from chaos.nodes import service_env
from chaos.report import ScenarioReport
from chaos.scenarios import ScenarioContext, scenario
from chaos.scenarios.support import (
    Harness,
    cover_plan,
    drive,
    fault_budget,
    flapping,
    harness,
    host_faults,
    seeded,
    window,
)
from node.auth.roles import Role

AUCTIONEER = "broker_agents.auction.auctioneer:AuctioneerAgent"
BIDDER = "broker_agents.auction.bidder:BidderAgent"
LEASE = {"lease_ms": 1000, "sweep_ms": 250}
PAUSE_S = (1.5, 3.0)  # longer than the lease: a successor takes over mid-step
STARVE_S = (2.0, 4.0)
VALUES = {"node-1": (20, 12), "node-2": (18, 9), "node-3": (15, 7)}
AUCTIONEER_NODES = ("node-1", "node-2")
FUNDS = 1000.0
CLIENTS = 2
AUCTION_TIMEOUT = 10.0
DEFINITE = {ErrorCode.VALIDATION, ErrorCode.BAD_REQUEST, ErrorCode.UNAVAILABLE}


def bidders() -> list[str]:
    return [f"b{n[-1]}{c}" for n in VALUES for c in "ab"]


def node_agents(node_id: str) -> list[dict[str, Any]]:
    agents: list[dict[str, Any]] = []
    if node_id in AUCTIONEER_NODES:
        agents.append({"class": AUCTIONEER, "id": f"auc-{node_id[-1]}", "kwargs": LEASE})
    for suffix, value in zip("ab", VALUES[node_id], strict=True):
        agents.append({"class": BIDDER, "id": f"b{node_id[-1]}{suffix}",
                       "kwargs": {"value": float(value)}})
    return agents


def cents(amount: float) -> int:
    return round(amount * 100)


def award_of(status: str, winner: str | None, price: float | None) -> list[Any]:
    """The canonical award compared between a client's result and the stored record."""
    return [status, winner, cents(price or 0.0)]


def record_award(record: AuctionRecord) -> list[Any]:
    outcome = record.outcome
    if outcome is None:
        return award_of(str(record.stage), None, None)
    return award_of(str(record.stage), outcome.winner, outcome.price)


class AuctionClient:
    """Runs auctions back to back and records each result as an ``award`` operation."""

    def __init__(self, name: str, nc: Any, history: History, rng: random.Random) -> None:
        self.name = name
        self.nc = nc
        self.history = history
        self.rng = rng
        self.count = 0

    async def one(self) -> None:
        self.count += 1
        aid = f"{self.name}-{self.count}-{self.rng.randrange(1 << 30):x}"
        kind = self.rng.choice(("first_price", "vickrey"))
        request = {"auction_id": aid, "type": kind, "participants": bidders(),
                   "duration_ms": 300, "award_timeout_ms": 1000}
        op = self.history.invoke(self.name, "award", kind, key=aid)
        try:
            result = await run_auction(self.nc, request, timeout=AUCTION_TIMEOUT)
        except BrokerError as exc:
            if exc.code in DEFINITE:
                self.history.fail(op, exc.code)
            else:
                self.history.unknown(op, exc.code)
            await asyncio.sleep(0.05)  # sleep-ok: do not spin while no auctioneer answers
        except Exception as exc:
            self.history.unknown(op, type(exc).__name__)
        else:
            self.history.ok(op, award_of(result["status"], result.get("winner"),
                                         result.get("price")))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.one()


class AccountWatch:
    """Every account version the accounts bucket publishes: (time, owner, cents)."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[float, str, int]] = []
        self._task: asyncio.Task[None] | None = None
        self._watcher: Any = None

    @classmethod
    async def observing(cls, h: Harness) -> AccountWatch:
        """A watch on the accounts bucket through an observer connection of its own."""
        watch = cls()
        monitor = await h.client("monitor", Role.OBSERVER)
        await watch.start(await monitor.jetstream(timeout=5).key_value("ba_accounts"))
        return watch

    async def start(self, kv: Any) -> None:
        self._watcher = await kv.watchall()
        self._task = asyncio.create_task(self._run(), name="account-watch")

    async def _run(self) -> None:
        async for entry in self._watcher:
            if entry is None or not entry.value:
                continue
            account = Account.model_validate(codec.decode(entry.value))
            self.snapshots.append((time.monotonic(), account.owner, cents(account.balance)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._watcher is not None:
            await asyncio.gather(self._watcher.stop(), return_exceptions=True)


def plan_faults(ctx: ScenarioContext, h: Harness) -> FaultSchedule:
    schedule = FaultSchedule(random.Random(ctx.seed))
    rng = seeded(ctx, "targets")
    ids = [n.node_id for n in h.nodes]
    kinds = [
        window(schedule, h.node(rng.choice(AUCTIONEER_NODES)).kill_fault(), (2.0, 3.5)),
        window(schedule, h.node(rng.choice(AUCTIONEER_NODES)).pause_fault(), PAUSE_S),
        window(schedule, CpuStarvation(workers=2, max_seconds=2 * STARVE_S[1]), STARVE_S),
        window(schedule, isolate_client(h.cluster, rng.choice(ids)), (1.0, 2.5)),
        window(schedule, cut_server(h.cluster, rng.randrange(h.cluster.size)), (1.0, 2.0)),
        flapping(schedule, isolate_client(h.cluster, rng.choice(AUCTIONEER_NODES)), 3.0),
    ]
    cover_plan(schedule, kinds, ctx.duration, hosts=host_faults(schedule, h, rng),
               budget=fault_budget(ctx))
    return schedule


async def all_records(kv: Any) -> dict[str, AuctionRecord]:
    out = {}
    for key in await all_keys(kv):
        entry = await kv.get(key)
        if entry.value:
            out[key] = AuctionRecord.model_validate(codec.decode(entry.value))
    return out


async def wait_finished(kv: Any, accounts_kv: Any, deadline: float
                        ) -> tuple[dict[str, AuctionRecord], Audit]:
    """Until every stored auction is terminal (a successor sweeps expired leases) and the
    audit finds no orphaned hold (the auctioneers' reconcile releases them); the records
    and the audit of the final state (grace 0: a hold naming no auction is orphaned)."""
    while True:
        try:
            records = await asyncio.wait_for(all_records(kv), 5.0)
            report, _ = await asyncio.wait_for(run_audit(accounts_kv, kv, grace_ms=0), 5.0)
        except Exception:
            records = None
        if records is not None and ((all(r.terminal for r in records.values())
                                     and not report.orphaned)
                                    or time.monotonic() > deadline):
            return records, report
        if time.monotonic() > deadline:
            raise TimeoutError("could not read the auctions bucket after the heal")
        await asyncio.sleep(0.2)  # sleep-ok: polling for lease takeovers to finish


def log_events(h: Harness, *events: str) -> dict[str, int]:
    """How many times the node daemons logged each event (logs survive restarts)."""
    counts = dict.fromkeys(events, 0)
    for node in h.nodes:
        path = node.proc.log_path
        if path is None or not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            for event in events:
                if f'"{event}"' in line:
                    counts[event] += 1
    return counts


def debits(accounts: Iterable[Account]) -> list[str]:
    return [op.split(":", 1)[1] for acc in accounts for op in acc.applied
            if op.startswith("debit:")]


async def first_success(nc: Any, deadline: float) -> float | None:
    """Run probe auctions until one finishes; the time it returned (None: never)."""
    n = 0
    while time.monotonic() < deadline:
        n += 1
        request = {"auction_id": f"probe-{n}", "type": "first_price",
                   "participants": bidders(), "duration_ms": 200}
        try:
            await run_auction(nc, request, timeout=3.0)
            return time.monotonic()
        except Exception:
            await asyncio.sleep(0.1)  # sleep-ok: retry backoff while the cluster recovers
    return None


@scenario("auction", "auctioneers on two node daemons, funded bidders, clients running "
          "auctions under kill -9 and SIGSTOP of an auctioneer's node, CPU starvation and "
          "partitions; awards exactly once, balances conserved and never negative, no "
          "dangling escrow")
async def run(ctx: ScenarioContext) -> ScenarioReport:
    report = ScenarioReport(scenario="auction", seed=ctx.seed, duration_s=ctx.duration,
                            nats_server=server_version())
    nodes = {n: node_agents(n) for n in VALUES}
    async with harness(ctx, "auc", nodes, service_env(), report) as h:
        js = h.admin.jetstream(timeout=5)
        accounts_kv = await js.key_value("ba_accounts")
        auctions_kv = await js.key_value("ba_auctions")
        book = Ledger(accounts_kv)
        watch = await AccountWatch.observing(h)
        for who in bidders():
            await book.deposit(who, FUNDS, "chaos-funding")
        minted = cents(FUNDS) * len(bidders())
        history = History()
        clients = [AuctionClient(f"c{i}", await h.client(f"c{i}", Role.CLIENT), history,
                                 seeded(ctx, f"c{i}")) for i in range(CLIENTS)]
        schedule = plan_faults(ctx, h)
        report.fault_plan = schedule.plan()
        ctx.progress(f"auctions for {ctx.duration:.0f}s from {CLIENTS} clients, "
                     f"{sum(s['action'] == 'inject' for s in report.fault_plan)} faults planned")
        healed = await drive(h, schedule, [c.run for c in clients], report)
        ready = time.monotonic()  # drive waits for restarted daemons: apart from auctions
        ctx.progress("final heal: waiting for every auction to finish, then checking money")
        ok_at = await first_success(h.admin, time.monotonic() + 15)
        records, audit = await wait_finished(auctions_kv, accounts_kv,
                                             time.monotonic() + 20)
        finished_at = time.monotonic()
        accounts = await book.all_accounts()
        await watch.stop()
        ops = history.operations()
        report.ops = history.counts()
        final_awards = {aid: record_award(r) for aid, r in records.items()}
        views = {aid: AuctionView(r.stage, r.payments()) for aid, r in records.items()}
        settled, balances = debits(accounts), {a.owner: cents(a.balance) for a in accounts}
        report.checks = [
            check_awards(ops, final_awards, settled),
            check_balances({}, balances, watch.snapshots, minted=minted),
            check_no_dangling_holds(audit, views),
            check_books(audit, minted=FUNDS * len(bidders())),
        ]
        logged = log_events(h, "auction.hold_released", "auction.hold_fenced",
                            "auction taken over")
        report.checks[0].details.update(
            auctions=len(records),
            settled=sum(r.stage == "settled" for r in records.values()),
            takeovers=sum(r.takeovers for r in records.values()),
            holds_released=logged["auction.hold_released"],
            holds_fenced=logged["auction.hold_fenced"])
        report.recovery = {
            "auction_ok_s": None if ok_at is None else round(ok_at - healed, 3),
            "all_finished_s": round(max(finished_at - healed, 0.0), 3),
        }
        report.recovery["nodes_ready_s"] = round(ready - healed, 3)
        report.recovery["node_start_failures"] = float(
            sum(len(n.restart_errors) for n in h.nodes))
        path = ctx.workdir / "history.jsonl"
        history.to_jsonl(path)
        # what the checkers read besides the history: re-check (or plant bugs) offline
        (ctx.workdir / "inputs.json").write_text(json.dumps(
            {"final_awards": final_awards, "debits": settled, "balances": balances,
             "snapshots": watch.snapshots, "minted": minted}))
        report.history_path = str(path)
    return report
