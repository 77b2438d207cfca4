"""``broker-agents raft members|add|remove|transfer <group>``: a consensus group's members.

    broker-agents raft members config                 # voters, learners, leader, term
    broker-agents raft add config node-4              # learner, then voter once caught up
    broker-agents raft remove config node-2           # the leader itself included
    broker-agents raft transfer config [node-3]       # default: the most caught-up voter

Changes are one member at a time (single-server changes, ``core/raft/membership.py``),
committed through the group's log. Every command connects as an admin (``--context``,
``--creds``) and signs its request; a node answers on ``<p>.admin.membership.<group>``
(``broker_agents/raft/admin.py``). To replace a dead member: ``add`` the new one (its node
runs the group with ``join = true``), then ``remove`` the dead one. ``--json`` prints the
group's view as JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from broker_agents.raft.admin import MembershipClient
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
    Target,
    TlsCaOpt,
)

app = typer.Typer(no_args_is_help=True, help="A consensus group's members: members, add, "
                  "remove, transfer (admin).")

GroupArg = Annotated[str, typer.Argument(help="consensus group name")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="seconds to wait for the "
                                           "change to commit (an add waits for catch-up)")]


def _call(at: Target, prefix: str, group: str, op: str, member: str | None, timeout: float,
          as_json: bool) -> None:
    async def call() -> dict[str, Any]:
        nc = await common.connect(at, role=Role.ADMIN)
        try:
            return await MembershipClient(nc, group, Subjects(prefix)).call(
                op, member, timeout=timeout)
        finally:
            await nc.close()

    view = common.run(call(), as_json)
    common.show(view, as_json, lambda: _render(view, op))


def _render(view: dict[str, Any], op: str) -> Table:
    title = f"raft group {view.get('group')}"
    if op != "members":
        title += f" ({op}: done)"
    table = Table(title=title)
    for column in ("member", "role"):
        table.add_column(column)
    leader = view.get("leader")
    for voter in view.get("voters", []):
        table.add_row(voter, "leader" if voter == leader else "voter")
    for learner in view.get("learners", []):
        table.add_row(learner, "learner (catching up)")
    table.caption = (f"term {view.get('term')} · commit {view.get('commit')} · "
                     f"answered by {view.get('member')}")
    return table


@app.command("members")
def members(group: GroupArg, nats_url: NatsOpt = None, context: ContextOpt = None,
            creds: CredsOpt = None, tls_ca: TlsCaOpt = None,
            prefix: PrefixOpt = DEFAULT_PREFIX, as_json: JsonOpt = False) -> None:
    """Voters, learners, leader and term, as one member sees them."""
    _call(Target(nats_url, context, creds, tls_ca), prefix, group, "members", None, 5.0,
          as_json)


@app.command("add")
def add(group: GroupArg, member: Annotated[str, typer.Argument(help="node id to add")],
        timeout: TimeoutOpt = 30.0, nats_url: NatsOpt = None, context: ContextOpt = None,
        creds: CredsOpt = None, tls_ca: TlsCaOpt = None,
        prefix: PrefixOpt = DEFAULT_PREFIX, as_json: JsonOpt = False) -> None:
    """Add a member: it catches up as a learner, then becomes a voter."""
    _call(Target(nats_url, context, creds, tls_ca), prefix, group, "add", member, timeout,
          as_json)


@app.command("remove")
def remove(group: GroupArg, member: Annotated[str, typer.Argument(help="node id to remove")],
           timeout: TimeoutOpt = 10.0, nats_url: NatsOpt = None, context: ContextOpt = None,
           creds: CredsOpt = None, tls_ca: TlsCaOpt = None,
           prefix: PrefixOpt = DEFAULT_PREFIX, as_json: JsonOpt = False) -> None:
    """Remove a member (a dead one too; the leader hands over when it removes itself)."""
    _call(Target(nats_url, context, creds, tls_ca), prefix, group, "remove", member,
          timeout, as_json)


@app.command("transfer")
def transfer(group: GroupArg,
             member: Annotated[str | None, typer.Argument(
                 help="the new leader (default: the most caught-up voter)")] = None,
             timeout: TimeoutOpt = 5.0, nats_url: NatsOpt = None, context: ContextOpt = None,
             creds: CredsOpt = None, tls_ca: TlsCaOpt = None,
             prefix: PrefixOpt = DEFAULT_PREFIX, as_json: JsonOpt = False) -> None:
    """Move the group's leadership (TimeoutNow: no election timeout, no failed commit)."""
    _call(Target(nats_url, context, creds, tls_ca), prefix, group, "transfer", member,
          timeout, as_json)
