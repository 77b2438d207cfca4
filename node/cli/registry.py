"""``broker-agents registry ls|get|find|query``: inspect the agent registry.

    broker-agents registry ls [--json]
    broker-agents registry get a1
    broker-agents registry find --capability inference --health healthy
    broker-agents registry query 'capability eq inference' 'resources.memory_available gte 0.5'
    broker-agents registry query --criteria '[{"field":"health","op":"in","value":["healthy"]}]'

Reads a snapshot of the agents bucket directly (no node needs to be running), through the
same ``LocalView`` and query engine the nodes use: so it connects as an ``observer`` (the
role that may read buckets), not a client. A client asks over ``<p>.registry.*`` instead.
Corrupt or foreign records are left out of the answer and named in a note on stderr (the
JSON on stdout stays a list of records); ``get`` of such a key fails as ``malformed``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.record import AgentRecord
from broker_agents.kvskip import SkippedRecord
from broker_agents.registry.view import LocalView
from broker_agents.subjects import Subjects
from node.auth.roles import Role
from node.cli import common
from node.cli.common import (
    DEFAULT_PREFIX,
    ContextOpt,
    CredsOpt,
    JsonOpt,
    NatsOpt,
    PrefixOpt,
    TlsCaOpt,
)

app = typer.Typer(no_args_is_help=True, help="Agent registry: list, get, find, query.")
T = TypeVar("T")


def parse_where(text: str) -> dict[str, Any]:
    """``"field op value"``; the value is JSON when it parses as JSON, else a string."""
    parts = text.split(None, 2)
    if len(parts) != 3:
        raise typer.BadParameter(f"expected 'field op value', got {text!r}")
    field, op, raw = parts
    return {"field": field, "op": op, "value": common.json_or_text(raw)}


async def _with_view(where: common.Target, prefix: str, use: Callable[[LocalView], T]) -> T:
    import nats.js.errors

    nc = await common.connect(where, role=Role.OBSERVER)
    try:
        try:
            kv = await nc.jetstream().key_value(Subjects(prefix).bucket("agents"))
        except nats.js.errors.BucketNotFoundError:
            raise BrokerError(ErrorCode.NOT_FOUND,
                              f"no registry bucket for prefix {prefix!r}") from None
        view = LocalView(kv, name="cli")
        await view.start()
        try:
            return use(view)
        finally:
            await view.stop()
    finally:
        await nc.close()


def _agents(where: common.Target, prefix: str, as_json: bool,
            use: Callable[[LocalView], list[AgentRecord]], title: str) -> None:
    records, skipped = common.run(
        _with_view(where, prefix, lambda v: (use(v), sorted(v.skipped.values(),
                                                            key=lambda s: s.key))), as_json)
    common.show([r.model_dump(mode="json") for r in records], as_json,
                lambda: _agents_table(records, title))
    _note_skipped(skipped, as_json)


def _note_skipped(skipped: list[SkippedRecord], as_json: bool) -> None:
    """Name the records left out as corrupt or foreign (stderr: stdout stays parseable)."""
    if not skipped:
        return
    rows = [{"key": s.key, "revision": s.revision, "reason": s.reason, "error": s.error}
            for s in skipped]
    if as_json:
        sys.stderr.write(json.dumps({"skipped": rows}) + "\n")
        return
    common.err_console.print(f"[yellow]{len(rows)} corrupt or foreign record(s) skipped:[/]")
    for s in skipped:
        common.err_console.print(f"  {escape(s.key)} (revision {s.revision}): {s.reason}: "
                                 f"{escape(s.error)}")


def _agents_table(records: list[AgentRecord], title: str) -> Table:
    table = Table(title=f"{title} ({len(records)})")
    for column in ("agent_id", "name", "node", "health", "state", "capabilities", "resources"):
        table.add_column(column)
    for r in records:
        resources = ", ".join(f"{k}={v:g}" for k, v in sorted(r.resources.items()))
        table.add_row(r.agent_id, r.name, r.node_id, r.health.value, r.state.value,
                      ", ".join(r.capabilities), resources)
    return table


@app.command("ls")
def ls(nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
       tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
       as_json: JsonOpt = False) -> None:
    """List every registered agent."""
    at = common.Target(nats_url, context, creds, tls_ca)
    _agents(at, prefix, as_json, lambda v: v.all_agents(), "agents")


@app.command("get")
def get(agent_id: str, nats_url: NatsOpt = None, context: ContextOpt = None,
        creds: CredsOpt = None, tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
        as_json: JsonOpt = False) -> None:
    """Show one agent."""
    at = common.Target(nats_url, context, creds, tls_ca)
    record, skipped = common.run(
        _with_view(at, prefix, lambda v: (v.get(agent_id), v.skipped.get(agent_id))), as_json)
    if skipped is not None:
        common.fail(BrokerError(
            ErrorCode.MALFORMED, f"the record under {agent_id!r} is {skipped.reason}: "
            f"{skipped.error}", {"key": skipped.key, "revision": skipped.revision,
                                 "reason": skipped.reason}), as_json)
    if record is None:
        missing = BrokerError(ErrorCode.NOT_FOUND, f"agent {agent_id!r} is not registered")
        common.fail(missing, as_json)
    data = record.model_dump(mode="json")
    common.show(data, as_json, lambda: common.pairs_table(f"agent {agent_id}", (
        (key, json.dumps(value) if isinstance(value, dict | list) else str(value))
        for key, value in data.items()), columns=None))


@app.command("find")
def find(
    capability: Annotated[str | None, typer.Option(help="has this capability")] = None,
    node: Annotated[str | None, typer.Option(help="runs on this node")] = None,
    health: Annotated[str | None, typer.Option(help="healthy|degraded|unhealthy")] = None,
    nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
    tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: JsonOpt = False,
) -> None:
    """Find agents by capability, node and/or health (AND-ed)."""
    criteria = [{"field": f, "op": "eq", "value": v}
                for f, v in (("capabilities", capability), ("node_id", node), ("health", health))
                if v is not None]
    if not criteria:
        raise typer.BadParameter("give at least one of --capability, --node, --health")
    at = common.Target(nats_url, context, creds, tls_ca)
    _agents(at, prefix, as_json, lambda v: v.query(criteria), "found")


@app.command("query")
def query(
    where: Annotated[list[str] | None, typer.Argument(help="'field op value' criteria")] = None,
    criteria_json: Annotated[str | None, typer.Option("--criteria", help="JSON list")] = None,
    nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
    tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: JsonOpt = False,
) -> None:
    """Query with AND-ed criteria (eq neq gt gte lt lte in not_in) over dot paths."""
    criteria: list[Any] = [parse_where(w) for w in where or []]
    if criteria_json:
        try:
            criteria += json.loads(criteria_json)
        except ValueError as exc:
            raise typer.BadParameter(f"--criteria is not JSON: {exc}") from None
    at = common.Target(nats_url, context, creds, tls_ca)
    _agents(at, prefix, as_json, lambda v: v.query(criteria), "matched")
