"""``broker-agents feature list|enable|disable <name>``: cluster-wide feature flags.

    broker-agents feature list [--json]
    broker-agents feature enable demo-next
    broker-agents feature disable demo-next

Asks a node over ``<p>.admin.features.<verb>`` as the admin role; ``enable`` and
``disable`` are signed acts. ``enable`` is refused (``feature_unsupported``, exit 1) while
a registered node does not announce the feature, naming those nodes. A feature is
effective only while requested AND announced by every registered node
(``broker_agents.core.features``).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

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
    TimeoutOpt,
    TlsCaOpt,
)
from node.features import request_feature

app = typer.Typer(no_args_is_help=True,
                  help="Cluster-wide feature flags: list, enable, disable (admin).")


async def ask(where: common.Target, prefix: str, verb: str, name: str | None,
              timeout: float) -> dict[str, Any]:
    """One feature admin request as the admin role; the answer, or ``BrokerError``."""
    nc = await common.connect(where, role=Role.ADMIN)
    try:
        return await request_feature(nc, Subjects(prefix), verb, name, timeout)
    finally:
        await nc.close()


def _table(listing: dict[str, Any]) -> Table:
    table = Table(title="features")
    for col in ("feature", "requested", "effective", "supported by", "lacking"):
        table.add_column(col)
    for row in listing.get("features", []):
        table.add_row(escape(row["name"]), "yes" if row["requested"] else "no",
                      "[green]yes[/green]" if row["effective"] else "no",
                      escape(", ".join(row["supported_by"])) or "-",
                      escape(", ".join(row["lacking"])) or "-")
    return table


def _nodes(listing: dict[str, Any]) -> Table:
    table = Table(title="nodes")
    for col in ("node", "version", "schema", "features"):
        table.add_column(col)
    for node_id, info in sorted(listing.get("nodes", {}).items()):
        table.add_row(escape(node_id), escape(str(info.get("version"))),
                      str(info.get("schema")), escape(", ".join(info.get("features", []))))
    return table


@app.command("list")
def list_features(
    timeout: TimeoutOpt = 10.0, nats_url: NatsOpt = None, context: ContextOpt = None,
    creds: CredsOpt = None, tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: JsonOpt = False,
) -> None:
    """Every feature: requested, effective, which nodes support it; and each node's build."""
    where = common.Target(nats_url, context, creds, tls_ca)
    listing = common.run(ask(where, prefix, "list", None, timeout), as_json)
    if as_json:
        common.print_json(listing)
        return
    common.console.print(_table(listing))
    common.console.print(_nodes(listing))


def _change(verb: str, name: str, where: common.Target, prefix: str, timeout: float,
            as_json: bool) -> None:
    row = common.run(ask(where, prefix, verb, name, timeout), as_json)
    state = "effective" if row.get("effective") else "requested, not effective" if row.get(
        "requested") else "off"
    common.show(row, as_json, lambda: escape(f"{name}: {state}"))


@app.command("enable")
def enable(
    name: str, timeout: TimeoutOpt = 10.0, nats_url: NatsOpt = None,
    context: ContextOpt = None, creds: CredsOpt = None, tls_ca: TlsCaOpt = None,
    prefix: PrefixOpt = DEFAULT_PREFIX, as_json: JsonOpt = False,
) -> None:
    """Request a feature for the whole cluster (refused while a node lacks it)."""
    _change("enable", name, common.Target(nats_url, context, creds, tls_ca), prefix,
            timeout, as_json)


@app.command("disable")
def disable(
    name: str, timeout: TimeoutOpt = 10.0, nats_url: NatsOpt = None,
    context: ContextOpt = None, creds: CredsOpt = None, tls_ca: TlsCaOpt = None,
    prefix: PrefixOpt = DEFAULT_PREFIX, as_json: JsonOpt = False,
) -> None:
    """Withdraw the request: the feature is off everywhere."""
    _change("disable", name, common.Target(nats_url, context, creds, tls_ca), prefix,
            timeout, as_json)
