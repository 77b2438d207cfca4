"""``broker-agents auction ...``: run an auction over NATS, inspect and fund accounts.

    broker-agents auction run --type vickrey --item gpu-hour --capability bidder --reserve 5
    broker-agents auction accounts [--json]
    broker-agents auction deposit bidder-1 100 [--max-per-task 20] [--op-id fund-1]
    broker-agents auction withdraw bidder-1 30 [--op-id payout-1]
    broker-agents auction freeze bidder-1 / unfreeze bidder-1
    broker-agents auction audit [--json] [--grace-ms 30000]

``run`` sends one coordination request to ``<p>.coord.auction`` (any auctioneer agent
takes it) and prints the outcome as a table, or as JSON with ``--json``. ``audit`` reads
both buckets and exits non-zero on an orphaned hold or books that do not balance.
``accounts`` lists a corrupt or foreign account record as a row of its own.

Roles: ``run`` is a client's; ``accounts`` and ``audit`` read buckets (observer);
``deposit``, ``withdraw``, ``freeze`` and ``unfreeze`` are signed requests to the treasury
(``<p>.treasury.<op>``, served by ``TreasuryAgent``), which only an admin may send. Each
has an idempotency id (``--op-id``; a fresh one when left out): repeating a command with
the same id moves no money twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from broker_agents.core.auction import Mechanism, PaymentRule
from broker_agents.core.identity import Role
from node.cli import common
from node.cli.common import (
    DEFAULT_PREFIX,
    ContextOpt,
    CredsOpt,
    JsonOpt,
    NatsOpt,
    PrefixOpt,
    TimeoutOpt,
    TlsCaOpt,
)
from node.exitcodes import ExitCode

if TYPE_CHECKING:  # imported when a command needs it
    from broker_agents.auction.audit import Snapshot
    from broker_agents.auction.ledger import Ledger
    from broker_agents.core.auction.audit import Audit

OpIdOpt = Annotated[str | None, typer.Option(
    "--op-id", help="idempotency id: a repeat with the same id changes nothing "
    "(default: a fresh one)")]

app = typer.Typer(no_args_is_help=True, help="Auctions: run one, inspect and fund accounts.")
T = TypeVar("T")


@app.command("run")
def run_command(
    type_: Annotated[Mechanism, typer.Option("--type", help="auction mechanism")],
    item: Annotated[str, typer.Option(help="item on offer (single-item auctions)")] = "item",
    items: Annotated[list[str] | None, typer.Option("--items",
                                                    help="items (combinatorial)")] = None,
    capability: Annotated[str | None, typer.Option(help="invite agents with it")] = None,
    participant: Annotated[list[str] | None, typer.Option(
        "--participant", "-p", help="invite this agent (repeatable)")] = None,
    reserve: Annotated[float, typer.Option(min=0)] = 0.0,
    start_price: Annotated[float | None, typer.Option(min=0)] = None,
    increment: Annotated[float, typer.Option(min=0)] = 1.0,
    decrement: Annotated[float, typer.Option(min=0)] = 1.0,
    round_ms: Annotated[int, typer.Option(min=1)] = 1000,
    duration_ms: Annotated[int, typer.Option(min=1)] = 2000,
    payment: PaymentRule = PaymentRule.PAY_AS_BID,
    min_reputation: Annotated[float | None, typer.Option(min=0, max=1)] = None,
    seller: Annotated[str | None, typer.Option(
        help="who sells and is paid (default: you; naming another takes an admin)")] = None,
    no_budgets: Annotated[bool, typer.Option("--no-budgets",
                                             help="no escrow or settlement")] = False,
    timeout: TimeoutOpt = 30.0,
    nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
    tls_ca: TlsCaOpt = None,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: JsonOpt = False,
) -> None:
    """Run one auction and print its outcome."""
    from broker_agents.auction.client import run_auction
    from broker_agents.subjects import Subjects

    if capability is None and not participant:
        capability = "bidder"
    request: dict[str, Any] = {
        "type": str(type_), "item": item, "reserve": reserve, "increment": increment,
        "decrement": decrement, "round_ms": round_ms, "duration_ms": duration_ms,
        "payment": str(payment), "budgets": not no_budgets,
    }
    for key, value in (("items", items), ("start_price", start_price), ("seller", seller),
                       ("min_reputation", min_reputation), ("capability", capability),
                       ("participants", participant)):
        if value:
            request[key] = value

    async def auction() -> dict[str, Any]:
        nc = await common.connect(common.Target(nats_url, context, creds, tls_ca))
        try:
            return await run_auction(nc, request, timeout=timeout, subjects=Subjects(prefix))
        finally:
            await nc.close()

    result = common.run(auction(), as_json)
    common.show(result, as_json, lambda: outcome_table(result))


def outcome_table(result: dict[str, Any]) -> Table:
    alloc = ", ".join(f"{w}: {'+'.join(i)} @ {result['prices'].get(w, 0.0):g}"
                      for w, i in result["allocation"].items()) or "-"
    rows = [
        ("status", result["status"]), ("winner(s)", ", ".join(result["winners"]) or "none"),
        ("allocation", alloc), ("price", f"{result['price']:g}"),
        ("bids", str(result["num_bids"])),
        ("participants", f"{result['num_participants']} of {result['invited']} invited"),
        ("rounds", str(result["rounds"])), ("tie broken", str(result["tie_broken"])),
        ("reason", result["reason"]), ("settled", str(result["settled"])),
        ("duration", f"{result['duration_ms']:.1f} ms"), ("auctioneer", result["auctioneer"]),
    ]
    if result.get("failure"):
        rows.append(("failure", result["failure"]))
    return common.pairs_table(f"auction {result['auction_id']} ({result['mechanism']})", rows)


async def _with_ledger(where: common.Target, prefix: str, role: Role,
                       use: Callable[[Ledger], Awaitable[T]]) -> T:
    from broker_agents.auction.ledger import Ledger
    from broker_agents.kv import open_bucket
    from broker_agents.subjects import Subjects

    nc = await common.connect(where, role=role)
    try:
        return await use(Ledger(await open_bucket(nc.jetstream(),
                                                  Subjects(prefix).bucket("accounts"))))
    finally:
        await nc.close()


@app.command("accounts")
def accounts(nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
             tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
             as_json: JsonOpt = False) -> None:
    """List every account: balance, reserved (escrow), available, per-task cap; a record
    that is corrupt (or another owner's) is listed as such."""
    at = common.Target(nats_url, context, creds, tls_ca)
    listed = common.run(_with_ledger(at, prefix, Role.OBSERVER,
                                     lambda ledger: ledger.listing()), as_json)
    rows: list[dict[str, Any]] = []
    for row in listed:
        a = row.account
        if a is None:
            rows.append({"owner": row.key, "corrupt": row.problem})
        else:
            rows.append({"owner": a.owner, "balance": a.balance, "reserved": a.reserved,
                         "available": a.available, "max_per_task": a.max_per_task,
                         "frozen": a.frozen})
    common.show(rows, as_json, lambda: _accounts_table(rows))


def _accounts_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="accounts")
    for col in ("owner", "balance", "reserved", "available", "max/task"):
        table.add_column(col, justify="left" if col == "owner" else "right")
    for r in rows:
        if "corrupt" in r:
            table.add_row(escape(r["owner"]), "[red]corrupt[/red]", "-", "-",
                          escape(str(r["corrupt"])[:60]))
            continue
        cap = "-" if r["max_per_task"] is None else f"{r['max_per_task']:g}"
        owner = escape(r["owner"]) + (" [yellow](frozen)[/yellow]" if r["frozen"] else "")
        table.add_row(owner, f"{r['balance']:g}", f"{r['reserved']:g}",
                      f"{r['available']:g}", cap)
    return table


def _treasury(op: str, payload: dict[str, Any], where: common.Target, prefix: str,
              timeout: float, as_json: bool) -> None:
    """One signed treasury request as an admin (the least role that may send it)."""
    from broker_agents.auction.treasury import treasury_request
    from broker_agents.subjects import Subjects

    async def work() -> dict[str, Any]:
        nc = await common.connect(where, role=Role.ADMIN)
        try:
            return await treasury_request(nc, op, payload, subjects=Subjects(prefix),
                                          timeout=timeout)
        finally:
            await nc.close()

    row = common.run(work(), as_json)
    text = f"{row['owner']}: balance {row['balance']:g}, reserved {row['reserved']:g}"
    if row["frozen"]:
        text += " (frozen)"
    if not row["applied"]:
        text += f" (op {row['op_id']} was applied before)"
    common.show(row, as_json, lambda: escape(text))


@app.command("deposit")
def deposit(
    owner: str, amount: Annotated[float, typer.Argument(min=0)],
    max_per_task: Annotated[float | None, typer.Option(min=0)] = None,
    op_id: OpIdOpt = None, timeout: TimeoutOpt = 10.0,
    nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
    tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: JsonOpt = False,
) -> None:
    """Add money to an account (created if missing), through the treasury (admin)."""
    payload: dict[str, Any] = {"op_id": op_id or uuid.uuid4().hex, "owner": owner,
                               "amount": amount}
    if max_per_task is not None:
        payload["max_per_task"] = max_per_task
    _treasury("deposit", payload, common.Target(nats_url, context, creds, tls_ca), prefix,
              timeout, as_json)


@app.command("withdraw")
def withdraw(
    owner: str, amount: Annotated[float, typer.Argument(min=0)],
    op_id: OpIdOpt = None, timeout: TimeoutOpt = 10.0,
    nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
    tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: JsonOpt = False,
) -> None:
    """Take money out of an account (never escrowed money), through the treasury (admin)."""
    _treasury("withdraw", {"op_id": op_id or uuid.uuid4().hex, "owner": owner,
                           "amount": amount},
              common.Target(nats_url, context, creds, tls_ca), prefix, timeout, as_json)


@app.command("freeze")
def freeze(
    owner: str, op_id: OpIdOpt = None, timeout: TimeoutOpt = 10.0,
    nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
    tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: JsonOpt = False,
) -> None:
    """Freeze an account: no new holds (bids) and no withdrawals (admin)."""
    _treasury("freeze", {"op_id": op_id or uuid.uuid4().hex, "owner": owner},
              common.Target(nats_url, context, creds, tls_ca), prefix, timeout, as_json)


@app.command("unfreeze")
def unfreeze(
    owner: str, op_id: OpIdOpt = None, timeout: TimeoutOpt = 10.0,
    nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
    tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: JsonOpt = False,
) -> None:
    """Unfreeze an account (admin)."""
    _treasury("unfreeze", {"op_id": op_id or uuid.uuid4().hex, "owner": owner},
              common.Target(nats_url, context, creds, tls_ca), prefix, timeout, as_json)


@app.command("audit")
def audit_command(
    grace_ms: Annotated[int, typer.Option(
        "--grace-ms", min=0, help="a hold naming no stored auction is orphaned after this "
        "long (default 30000)")] = 30_000,
    nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
    tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: JsonOpt = False,
) -> None:
    """Every hold with its auction's stage, every balance, the conservation totals.

    Exits 1 on an orphaned or unexpected hold, a balance that is not deposited - paid +
    received, or total paid != total received while no settlement is in flight.
    """
    from broker_agents.auction.audit import run_audit
    from broker_agents.kv import open_bucket
    from broker_agents.subjects import Subjects

    async def work() -> tuple[Audit, Snapshot]:
        at = common.Target(nats_url, context, creds, tls_ca)
        nc = await common.connect(at, role=Role.OBSERVER)
        try:
            js, sub = nc.jetstream(), Subjects(prefix)
            return await run_audit(await open_bucket(js, sub.bucket("accounts")),
                                   await open_bucket(js, sub.bucket("auctions")), grace_ms)
        finally:
            await nc.close()

    report, snap = common.run(work(), as_json)
    data = {**report.to_json(), "grace_ms": grace_ms, "skipped": dict(snap.skipped),
            "unusable": dict(sorted(snap.unusable.items()))}
    if as_json:
        common.print_json(data)
    else:
        for table in _audit_tables(data):
            common.console.print(table)
        for problem in report.problems:
            common.err_console.print(f"[red]problem[/red] {escape(problem)}")
    if not report.ok:
        raise typer.Exit(ExitCode.FAILURE)


def _audit_tables(data: dict[str, Any]) -> list[Table]:
    holds = Table(title="holds")
    for col in ("account", "auction", "amount", "stage", "verdict", "taken by (lease)"):
        holds.add_column(col, justify="right" if col == "amount" else "left")
    for h in data["holds"]:
        taker = "-" if h["by"] is None else f"{h['by']} ({h['lease']})"
        verdict = h["verdict"] + (f": {h['reason']}" if h["reason"] else "")
        holds.add_row(h["account"], h["auction_id"], f"{h['amount']:g}",
                      h["stage"] or "no record", verdict, taker)
    balances = Table(title="balances")
    columns = ("balance", "reserved", "available", "deposited", "withdrawn", "paid",
               "received")
    balances.add_column("owner")
    for col in columns:
        balances.add_column(col, justify="right")
    for b in data["balances"]:
        balances.add_row(b["owner"], *(f"{b[c]:g}" for c in columns))
    t = data["totals"]
    rows = [(name, f"{t[name]:g}") for name in
            ("accounts", "balance", "held", "deposited", "withdrawn", "paid", "received",
             "settling")]
    rows.append(("paid == received", "yes" if t["balanced"] else
                 ("in flight" if t["settling"] else "NO")))
    rows += [(f"skipped {k}", str(v)) for k, v in sorted(data["skipped"].items())]
    rows += [(f"unusable {escape(k)}", v) for k, v in data["unusable"].items()]
    rows.append(("verdict", "ok" if data["ok"] else f"{len(data['problems'])} problem(s)"))
    return [holds, balances, common.pairs_table("conservation", rows)]
