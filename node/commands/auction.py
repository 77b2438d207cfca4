"""``broker-agents auction ...``: run an auction over NATS, inspect and fund accounts.

    broker-agents auction run --type vickrey --item gpu-hour --capability bidder --reserve 5
    broker-agents auction accounts [--json]
    broker-agents auction deposit bidder-1 100 [--max-per-task 20]

``run`` sends one coordination request to ``<p>.coord.auction`` (any auctioneer agent
takes it) and prints the outcome as a table, or as JSON with ``--json``. ``bench_auction``
is the ``bench auction`` command body for the bench sub-app.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from broker_agents.core.auction import Mechanism, PaymentRule
from broker_agents.core.errors import BrokerError
from broker_agents.transport import connect_client

app = typer.Typer(no_args_is_help=True, help="Auctions: run one, inspect and fund accounts.")
console = Console()
err_console = Console(stderr=True)

NatsOpt = Annotated[str, typer.Option("--nats", help="NATS server URL")]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="subject prefix")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


async def _connect(url: str) -> Any:

    try:
        return await connect_client(url, connect_timeout=3, max_reconnect_attempts=1)
    except Exception as exc:
        raise BrokerError("unavailable", f"cannot connect to NATS at {url}: {exc}") from exc


def _fail(exc: BrokerError, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(exc.to_payload()) + "\n")
    else:
        err_console.print(f"[red]{exc.code}[/red] {exc.message}")
    raise typer.Exit(1)


@app.command("run")
def run(
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
    seller: str = "market",
    no_budgets: Annotated[bool, typer.Option("--no-budgets",
                                             help="no escrow or settlement")] = False,
    timeout: Annotated[float, typer.Option(min=0.1)] = 30.0,
    nats_url: NatsOpt = "nats://127.0.0.1:4222",
    prefix: PrefixOpt = "ba",
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
        "payment": str(payment), "seller": seller, "budgets": not no_budgets,
    }
    for key, value in (("items", items), ("start_price", start_price),
                       ("min_reputation", min_reputation), ("capability", capability),
                       ("participants", participant)):
        if value:
            request[key] = value

    async def main() -> dict[str, Any]:
        nc = await _connect(nats_url)
        try:
            return await run_auction(nc, request, timeout=timeout, subjects=Subjects(prefix))
        finally:
            await nc.close()

    try:
        result = asyncio.run(main())
    except BrokerError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    console.print(outcome_table(result))


def outcome_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"auction {result['auction_id']} ({result['mechanism']})")
    table.add_column("field")
    table.add_column("value")
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
    for key, value in rows:
        table.add_row(key, value)
    return table


@app.command("accounts")
def accounts(nats_url: NatsOpt = "nats://127.0.0.1:4222", prefix: PrefixOpt = "ba",
             as_json: JsonOpt = False) -> None:
    """List every account: balance, reserved (escrow), available, per-task cap."""
    from broker_agents.auction.ledger import Ledger
    from broker_agents.kv import open_bucket
    from broker_agents.subjects import Subjects

    async def main() -> list[dict[str, Any]]:
        nc = await _connect(nats_url)
        try:
            kv = await open_bucket(nc.jetstream(), Subjects(prefix).bucket("accounts"))
            return [{"owner": a.owner, "balance": a.balance, "reserved": a.reserved,
                     "available": a.available, "max_per_task": a.max_per_task}
                    for a in await Ledger(kv).all_accounts()]
        finally:
            await nc.close()

    try:
        rows = asyncio.run(main())
    except BrokerError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(title="accounts")
    for col in ("owner", "balance", "reserved", "available", "max/task"):
        table.add_column(col, justify="left" if col == "owner" else "right")
    for r in rows:
        cap = "-" if r["max_per_task"] is None else f"{r['max_per_task']:g}"
        table.add_row(r["owner"], f"{r['balance']:g}", f"{r['reserved']:g}",
                      f"{r['available']:g}", cap)
    console.print(table)


@app.command("deposit")
def deposit(
    owner: str, amount: Annotated[float, typer.Argument(min=0)],
    max_per_task: Annotated[float | None, typer.Option(min=0)] = None,
    op_id: Annotated[str | None, typer.Option(help="idempotency key")] = None,
    nats_url: NatsOpt = "nats://127.0.0.1:4222", prefix: PrefixOpt = "ba",
    as_json: JsonOpt = False,
) -> None:
    """Add money to an account (created if missing); idempotent with --op-id."""
    from broker_agents.auction.ledger import Ledger
    from broker_agents.kv import open_bucket
    from broker_agents.subjects import Subjects

    async def main() -> dict[str, Any]:
        nc = await _connect(nats_url)
        try:
            kv = await open_bucket(nc.jetstream(), Subjects(prefix).bucket("accounts"))
            acc = await Ledger(kv).deposit(owner, amount, op_id or uuid.uuid4().hex,
                                           max_per_task)
            return {"owner": acc.owner, "balance": acc.balance, "reserved": acc.reserved,
                    "max_per_task": acc.max_per_task}
        finally:
            await nc.close()

    try:
        row = asyncio.run(main())
    except BrokerError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        sys.stdout.write(json.dumps(row) + "\n")
    else:
        console.print(f"{row['owner']}: balance {row['balance']:g}, "
                      f"reserved {row['reserved']:g}")


def bench_auction(as_json: Annotated[bool, typer.Option("--json",
                                                        help="print one JSON object")] = False
                  ) -> None:
    """Sealed-bid auction over 100 bidder agents on two nodes, beside raw fan-out."""
    from broker_agents.auction.bench import run_auction_bench
    from node.cli import print_result

    print_result("auction", asyncio.run(run_auction_bench()), as_json)
