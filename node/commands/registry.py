"""``broker-agents registry ls|get|find|query``: inspect the agent registry.

    broker-agents registry ls [--json]
    broker-agents registry get a1
    broker-agents registry find --capability inference --health healthy
    broker-agents registry query 'capability eq inference' 'resources.memory_available gte 0.5'
    broker-agents registry query --criteria '[{"field":"health","op":"in","value":["healthy"]}]'

Reads a snapshot of the agents bucket directly (no node needs to be running), through the
same ``LocalView`` and query engine the nodes use.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from broker_agents.core.errors import BrokerError
from broker_agents.core.registry.record import AgentRecord
from broker_agents.registry.view import LocalView
from broker_agents.subjects import Subjects
from broker_agents.transport import connect_client

app = typer.Typer(no_args_is_help=True, help="Agent registry: list, get, find, query.")
console = Console()
err_console = Console(stderr=True)

NatsOpt = Annotated[str, typer.Option("--nats", help="NATS server URL")]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="subject/bucket prefix")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
DEFAULT_URL = "nats://127.0.0.1:4222"
T = TypeVar("T")


def parse_where(text: str) -> dict[str, Any]:
    """``"field op value"``; the value is JSON when it parses as JSON, else a string."""
    parts = text.split(None, 2)
    if len(parts) != 3:
        raise typer.BadParameter(f"expected 'field op value', got {text!r}")
    field, op, raw = parts
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return {"field": field, "op": op, "value": value}


async def _with_view(url: str, prefix: str, use: Callable[[LocalView], T]) -> T:
    import nats
    import nats.js.errors

    nc = await connect_client(url, connect_timeout=3, max_reconnect_attempts=1)
    try:
        try:
            kv = await nc.jetstream().key_value(Subjects(prefix).bucket("agents"))
        except nats.js.errors.BucketNotFoundError:
            raise BrokerError("not_found", f"no registry bucket for prefix {prefix!r}") from None
        view = LocalView(kv, name="cli")
        await view.start()
        try:
            return use(view)
        finally:
            await view.stop()
    finally:
        await nc.close()


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except BrokerError as err:
        err_console.print(f"[red]{err.code}[/red]: {err.message}")
        raise typer.Exit(1) from None
    except (OSError, TimeoutError) as exc:
        err_console.print(f"[red]cannot reach NATS[/red]: {exc!r}")
        raise typer.Exit(2) from None


def _print(records: list[AgentRecord], as_json: bool, title: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps([r.model_dump(mode="json") for r in records]) + "\n")
        return
    table = Table(title=f"{title} ({len(records)})")
    for column in ("agent_id", "name", "node", "health", "state", "capabilities", "resources"):
        table.add_column(column)
    for r in records:
        resources = ", ".join(f"{k}={v:g}" for k, v in sorted(r.resources.items()))
        table.add_row(r.agent_id, r.name, r.node_id, r.health.value, r.state.value,
                      ", ".join(r.capabilities), resources)
    console.print(table)


@app.command("ls")
def ls(nats_url: NatsOpt = DEFAULT_URL, prefix: PrefixOpt = "ba",
       as_json: JsonOpt = False) -> None:
    """List every registered agent."""
    _print(_run(_with_view(nats_url, prefix, lambda v: v.all_agents())), as_json, "agents")


@app.command("get")
def get(agent_id: str, nats_url: NatsOpt = DEFAULT_URL, prefix: PrefixOpt = "ba",
        as_json: JsonOpt = False) -> None:
    """Show one agent."""
    record = _run(_with_view(nats_url, prefix, lambda v: v.get(agent_id)))
    if record is None:
        err_console.print(f"[red]not_found[/red]: agent {agent_id!r} is not registered")
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(record.model_dump_json() + "\n")
        return
    table = Table(title=f"agent {agent_id}", show_header=False)
    for key, value in record.model_dump(mode="json").items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    console.print(table)


@app.command("find")
def find(
    capability: Annotated[str | None, typer.Option(help="has this capability")] = None,
    node: Annotated[str | None, typer.Option(help="runs on this node")] = None,
    health: Annotated[str | None, typer.Option(help="healthy|degraded|unhealthy")] = None,
    nats_url: NatsOpt = DEFAULT_URL, prefix: PrefixOpt = "ba", as_json: JsonOpt = False,
) -> None:
    """Find agents by capability, node and/or health (AND-ed)."""
    criteria = [{"field": f, "op": "eq", "value": v}
                for f, v in (("capabilities", capability), ("node_id", node), ("health", health))
                if v is not None]
    if not criteria:
        raise typer.BadParameter("give at least one of --capability, --node, --health")
    _print(_run(_with_view(nats_url, prefix, lambda v: v.query(criteria))), as_json, "found")


@app.command("query")
def query(
    where: Annotated[list[str] | None, typer.Argument(help="'field op value' criteria")] = None,
    criteria_json: Annotated[str | None, typer.Option("--criteria", help="JSON list")] = None,
    nats_url: NatsOpt = DEFAULT_URL, prefix: PrefixOpt = "ba", as_json: JsonOpt = False,
) -> None:
    """Query with AND-ed criteria (eq neq gt gte lt lte in not_in) over dot paths."""
    criteria: list[Any] = [parse_where(w) for w in where or []]
    if criteria_json:
        try:
            criteria += json.loads(criteria_json)
        except ValueError as exc:
            raise typer.BadParameter(f"--criteria is not JSON: {exc}") from None
    _print(_run(_with_view(nats_url, prefix, lambda v: v.query(criteria))), as_json, "matched")
