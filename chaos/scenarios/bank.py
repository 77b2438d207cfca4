"""Scenario ``bank``: money moved between accounts through the real auction and treasury
paths under kill -9, SIGSTOP and (on netns) Jepsen partitions; the total is conserved and
no balance goes negative, checked after every heal and at the end.

Six accounts (the bidders of ``chaos/scenarios/auction.py``, on three node daemons with
auctioneers on two, a treasury on two) are funded once through the treasury by an admin:
the only money minted. Then two kinds of transfer run side by side:

- **auctions**: each account's owner, a client connected as that account's own user,
  sells in turn (sellers rotate, so every account pays and is paid): the winner's escrow
  is debited and the seller credited (``ba.coord.auction``, a signed act binding the
  seller to its requester);
- **treasury transfers**: an admin withdraws an amount from one account and deposits it
  into another (``ba.treasury.withdraw``/``deposit``), each retried under its op id until
  answered, so every transfer ends whole.

What is conserved while auctions are in flight (escrow is part of a balance, a hold only
lowers what is available) is ``chaos.checkers.bank``'s: sum of balances + settlements
debited but not yet credited == the treasury's net deposits. A task checks it after every
heal (all accounts read through the leader-only bucket, with retries), and the end adds
the auction checks (awards once, balances never negative in any published version, no
dangling escrow, the books audit).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from typing import Any

from broker_agents.auction.client import run_auction
from broker_agents.auction.ledger import Ledger
from broker_agents.auction.records import AuctionRecord
from broker_agents.auction.treasury import treasury_request
from broker_agents.core.auction.audit import AuctionView
from broker_agents.core.budget import Account
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.transport import Security
from chaos.checkers import check_awards, check_balances
from chaos.checkers.bank import Payment, check_conservation
from chaos.checkers.escrow import check_no_dangling_holds
from chaos.checkers.money import check_books
from chaos.checkers.result import CheckResult
from chaos.cluster import server_version
from chaos.faults import FaultSchedule, cut_server, isolate_client
from chaos.history import History
from chaos.nodes import service_env
from chaos.report import ScenarioReport
from chaos.scenarios import ScenarioContext, scenario
from chaos.scenarios.auction import (
    AUCTION_TIMEOUT,
    DEFINITE,
    VALUES,
    AccountWatch,
    AuctionClient,
    all_records,
    award_of,
    bidders,
    cents,
    debits,
    node_agents,
    record_award,
    wait_finished,
)
from chaos.scenarios.kv_register import connect
from chaos.scenarios.support import (
    Harness,
    cover_plan,
    drive,
    fault_budget,
    harness,
    host_faults,
    p50_max,
    seeded,
    until_ok,
    window,
)
from node.auth.roles import Role, inbox_prefix

TREASURY = "broker_agents.auction.treasury:TreasuryAgent"
TREASURY_NODES = ("node-2", "node-3")
FUNDS = 500.0
SELLERS = 2  # client workloads, each rotating over half the accounts' owners
MOVE = (1.0, 25.0)  # a treasury transfer's amount
PAUSE_S = (1.2, 2.0)  # longer than the auction lease (1 s): a successor takes over
CHECK_WITHIN = 20.0  # a post-heal check retries its reads this long
RETRY = {ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE, ErrorCode.INTERNAL}  # no answer yet


def bank_agents(node_id: str) -> list[dict[str, Any]]:
    agents = node_agents(node_id)
    if node_id in TREASURY_NODES:
        agents.append({"class": TREASURY, "id": f"treasury-{node_id[-1]}"})
    return agents


async def owner_connection(h: Harness, owner: str) -> Any:
    """A client connected as ``owner``'s own user (issued on first use), so the auctions
    it requests sell for ``owner`` and nobody else."""
    authority = h.cluster.authority
    assert authority is not None
    security = Security(creds_file=authority.ensure_user(Role.CLIENT, owner),
                        tls_ca_file=authority.ca_path, inbox_prefix=inbox_prefix(owner))
    nc = await connect(h.cluster.client_urls(f"own-{owner}"), owner, security)
    h.conns.append(nc)
    return nc


class Sellers(AuctionClient):
    """An ``AuctionClient`` whose every auction is sold by the next owner in turn, to a
    seeded 1-3 of the other accounts (so every bidder wins some: each account pays and is
    paid over the run)."""

    def __init__(self, name: str, owners: dict[str, Any], history: History,
                 rng: random.Random) -> None:
        super().__init__(name, None, history, rng)
        self.owners = list(owners.items())

    async def one(self) -> None:
        seller, self.nc = self.owners[self.count % len(self.owners)]
        self.count += 1
        aid = f"{self.name}-{self.count}-{self.rng.randrange(1 << 30):x}"
        kind = self.rng.choice(("first_price", "vickrey"))
        others = [b for b in bidders() if b != seller]
        request = {"auction_id": aid, "type": kind, "duration_ms": 300,
                   "participants": self.rng.sample(others, self.rng.randint(1, 3)),
                   "award_timeout_ms": 1000}
        op = self.history.invoke(self.name, "award", [seller, kind], key=aid)
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


class Treasurer:
    """Treasury transfers (withdraw from one account, deposit into another) as the admin,
    each step retried under its op id until answered, so none is left half done."""

    def __init__(self, nc: Any, history: History, rng: random.Random) -> None:
        self.nc = nc
        self.history = history
        self.rng = rng
        self.ops: dict[str, float] = {}  # applied-op key -> signed amount
        self.transfers: list[tuple[str, str]] = []

    async def fund(self, owner: str, amount: float) -> None:
        key = self.expect("deposit", f"fund-{owner}", amount)
        await self.step("fund", "deposit", key, owner, amount, time.monotonic() + 30)

    def expect(self, op: str, op_id: str, amount: float) -> str:
        key = f"{op}:{op_id}"
        self.ops[key] = amount if op == "deposit" else -amount
        return key

    async def step(self, f: str, op: str, key: str, owner: str, amount: float,
                   deadline: float) -> bool:
        """Ask until the treasury answers (a repeat under the op id changes nothing);
        False: refused, a definite no. Raises when ``deadline`` passes unanswered."""
        ref = self.history.invoke("treasurer", f, [owner, cents(amount)], key=key)
        payload = {"op_id": key.split(":", 1)[1], "owner": owner, "amount": amount}
        while True:
            try:
                await treasury_request(self.nc, op, payload, timeout=2.0)
            except BrokerError as exc:
                if exc.code not in RETRY:
                    self.history.fail(ref, exc.code)
                    return False
                error = exc.code.value
            except Exception as exc:  # NATS trouble on our side of a cut
                error = type(exc).__name__
            else:
                self.history.ok(ref, cents(amount))
                return True
            if time.monotonic() > deadline:
                self.history.unknown(ref, error)
                raise TimeoutError(f"treasury {op} {key} unanswered: {error}")
            await asyncio.sleep(0.1)  # sleep-ok: retry backoff while the cluster recovers

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        accounts = bidders()
        while not stop.is_set():
            n += 1
            src, dst = self.rng.sample(accounts, 2)
            amount = round(self.rng.uniform(*MOVE), 2)
            out = self.expect("withdraw", f"mv{n}-out", amount)
            into = self.expect("deposit", f"mv{n}-in", amount)
            self.transfers.append((out, into))
            deadline = time.monotonic() + 60  # every fault heals well before
            if await self.step("withdraw", "withdraw", out, src, amount, deadline):
                await self.step("deposit", "deposit", into, dst, amount, deadline)
            await asyncio.sleep(0.05)  # sleep-ok: pace transfers, the auctions are the load


async def bank_state(book: Ledger, auctions_kv: Any) -> tuple[list[Account], list[Payment]]:
    """Every account, then every stored payment (read after: a debit seen names an
    outcome already stored)."""
    accounts = await book.all_accounts()
    records = await all_records(auctions_kv)
    return accounts, payments_of(records)


def payments_of(records: dict[str, AuctionRecord]) -> list[Payment]:
    return [Payment(aid, payer, r.request.seller, amount)
            for aid, r in records.items() for payer, amount in r.payments().items()]


class HealChecks:
    """After every heal, the conservation check (reads retried); how long each heal took
    to pass it again, and every violation seen."""

    def __init__(self, schedule: FaultSchedule, book: Ledger, auctions_kv: Any,
                 treasurer: Treasurer) -> None:
        self.schedule = schedule
        self.book = book
        self.auctions_kv = auctions_kv
        self.treasurer = treasurer
        self.recovered: list[float] = []
        self.checked = 0
        self.unreadable = 0
        self.violations: list[str] = []

    async def run(self, stop: asyncio.Event) -> None:
        seen = 0
        while True:
            heals = [e.at for e in self.schedule.events if e.action == "heal"]
            if len(heals) > seen:
                await self.check(heals[seen:])
                seen = len(heals)
            elif stop.is_set():
                return
            else:
                await asyncio.sleep(0.1)  # sleep-ok: polling the schedule for heals

    async def check(self, heals: list[float]) -> None:
        try:
            accounts, pays = await until_ok(lambda: bank_state(self.book, self.auctions_kv),
                                            time.monotonic() + CHECK_WITHIN, each=5.0)
        except Exception:
            self.unreadable += 1
            return
        self.checked += 1
        result = check_conservation(accounts, pays, dict(self.treasurer.ops),
                                    label=f"after heal {self.checked}")
        if result.ok:
            now = time.monotonic()
            self.recovered.extend(now - at for at in heals)
        else:
            self.violations.extend(result.violations)

    def result(self) -> CheckResult:
        violations = list(self.violations)
        if self.unreadable:
            violations.append(f"{self.unreadable} post-heal check(s) could not read the "
                              f"accounts within {CHECK_WITHIN}s")
        return CheckResult.of("conserved-after-heals", violations, checks=self.checked,
                              heals=len(self.recovered))


def plan_faults(ctx: ScenarioContext, h: Harness) -> FaultSchedule:
    schedule = FaultSchedule(random.Random(ctx.seed))
    rng = seeded(ctx, "targets")
    auctioneers = [n for n in VALUES if any(a["id"].startswith("auc-")
                                            for a in bank_agents(n))]
    target = h.node(rng.choice(auctioneers))
    kinds = [window(schedule, target.kill_fault(), (0.8, 1.5)),
             window(schedule, target.pause_fault(), PAUSE_S)]
    if h.cluster.network == "loopback":  # what its proxies can do; netns: the host nemeses
        kinds += [
            window(schedule, isolate_client(h.cluster, rng.choice(list(VALUES))), (1.0, 2.0)),
            window(schedule, cut_server(h.cluster, rng.randrange(h.cluster.size)), (1.0, 2.0))]
    cover_plan(schedule, kinds, ctx.duration, gap=(0.3, 0.8),
               hosts=host_faults(schedule, h, rng), budget=fault_budget(ctx))
    return schedule


async def first_transfer(sellers: Sellers, healed: float, deadline: float) -> float | None:
    """When the first transfer after the final heal succeeded: the first acknowledged
    award or treasury move the workloads saw complete after ``healed``; if none did (they
    stop at the heal), the first probe auction that is awarded (None: never)."""
    ops = sellers.history.operations()
    done = [o.complete_time for o in ops if o.status == "ok" and o.f != "fund"
            and healed <= o.complete_time]
    if done:
        return min(done)
    while time.monotonic() < deadline:
        before = len(ops)
        await sellers.one()
        ops = sellers.history.operations()
        if any(o.status == "ok" for o in ops[before:]):
            return time.monotonic()
    return None


@scenario("bank", "transfers between six accounts through auctions (sellers rotate) and "
          "treasury withdraw/deposit under kill -9 and SIGSTOP of an auctioneer's node and "
          "host partitions; money conserved after every heal and at the end, no balance "
          "ever negative, every settlement once")
async def run(ctx: ScenarioContext) -> ScenarioReport:
    report = ScenarioReport(scenario="bank", seed=ctx.seed, duration_s=ctx.duration,
                            nats_server=server_version())
    nodes = {n: bank_agents(n) for n in VALUES}
    async with harness(ctx, "bank", nodes, service_env(), report) as h:
        js = h.admin.jetstream(timeout=5)
        accounts_kv = await js.key_value("ba_accounts")
        auctions_kv = await js.key_value("ba_auctions")
        book = Ledger(accounts_kv)
        watch = await AccountWatch.observing(h)
        history = History()
        treasurer = Treasurer(await h.client("treasurer", Role.ADMIN), history,
                              seeded(ctx, "treasurer"))
        accounts = bidders()
        for owner in accounts:
            await treasurer.fund(owner, FUNDS)
        minted = FUNDS * len(accounts)
        owners = {o: await owner_connection(h, o) for o in accounts}
        sellers = [Sellers(f"s{i}", {o: owners[o] for o in accounts[i::SELLERS]}, history,
                           seeded(ctx, f"s{i}")) for i in range(SELLERS)]
        schedule = plan_faults(ctx, h)
        report.fault_plan = schedule.plan()
        heal_checks = HealChecks(schedule, book, auctions_kv, treasurer)
        ctx.progress(f"transfers for {ctx.duration:.0f}s, "
                     f"{sum(s['action'] == 'inject' for s in report.fault_plan)} faults planned")
        healed = await drive(h, schedule, [*(s.run for s in sellers), treasurer.run,
                                           heal_checks.run], report)
        ctx.progress("final heal: a transfer, every auction finished, then the books")
        ok_at = await first_transfer(sellers[0], healed, time.monotonic() + 20)
        records, audit = await wait_finished(auctions_kv, accounts_kv, time.monotonic() + 20)
        conserved_at = time.monotonic()
        final, pays = await until_ok(lambda: bank_state(book, auctions_kv),
                                     time.monotonic() + CHECK_WITHIN, each=5.0)
        await watch.stop()
        ops = history.operations()
        report.ops = history.counts()
        views = {aid: AuctionView(r.stage, r.payments()) for aid, r in records.items()}
        report.checks = [
            check_conservation(final, pays, treasurer.ops, transfers=treasurer.transfers,
                               final=True),
            heal_checks.result(),
            check_awards(ops, {aid: record_award(r) for aid, r in records.items()},
                         debits(final)),
            check_balances({}, {a.owner: cents(a.balance) for a in final}, watch.snapshots,
                           minted=cents(minted)),
            check_no_dangling_holds(audit, views),
            check_books(audit),
        ]
        report.checks[0].details.update(
            auctions=len(records), settled=sum(r.stage == "settled" for r in records.values()),
            sellers=sorted({p.seller for p in pays}), payers=sorted({p.payer for p in pays}),
            treasury_transfers=len(treasurer.transfers))
        p50, worst = p50_max(heal_checks.recovered)
        report.recovery = {
            "transfer_ok_s": None if ok_at is None else round(ok_at - healed, 3),
            "conserved_p50_s": p50, "conserved_max_s": worst,
            "all_finished_s": round(max(conserved_at - healed, 0.0), 3),
            "node_start_failures": float(sum(len(n.restart_errors) for n in h.nodes)),
        }
        path = ctx.workdir / "history.jsonl"
        history.to_jsonl(path)
        # what the bank checks read besides the history: re-check (or plant bugs) offline
        (ctx.workdir / "inputs.json").write_text(json.dumps(
            {"accounts": [a.model_dump(mode="json") for a in final],
             "payments": [dataclasses.asdict(p) for p in pays], "treasury": treasurer.ops,
             "transfers": treasurer.transfers, "snapshots": watch.snapshots,
             "minted": cents(minted)}))
        report.history_path = str(path)
    return report
