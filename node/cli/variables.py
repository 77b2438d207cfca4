"""``broker-agents var ls|get|set|watch|history|define|freeze|unfreeze``: cluster-wide variables.

    broker-agents var define space.json              # a VariableSpace as JSON
    broker-agents var ls                             # spaces, versions, values
    broker-agents var get llm temperature
    broker-agents var set llm temperature=0.9 batch=16 [--expect-version 12]
    broker-agents var freeze llm temperature         # stops the engine and everyone
    broker-agents var watch [llm] [--count 10]       # change events as they commit
    broker-agents var history llm temperature

Writes are proposals to the consensus group, signed by the identity the command connects
with (the history names it); reads are linearizable reads through it (``--group``,
default ``variables``). ``--json`` prints machine-readable output. Values on the command
line are JSON when they parse as JSON, else strings. Every command is a client's request
to the group, but ``freeze`` and ``unfreeze`` (an admin's; so is redefining a space,
``define --admin``) and ``watch``, which reads change events (an observer's). A space whose
record is corrupt is listed as skipped; a malformed reply is a ``malformed`` error.

``set`` wins over the adaptation engine, which leaves each variable set alone for its
``operator_hold_s``; ``set`` naming a frozen variable changes nothing there and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from broker_agents.codec import decode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.subjects import Subjects
from broker_agents.variables.client import Variables
from broker_agents.variables.metrics import skipped_record
from broker_agents.variables.models import VariableChange
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
from node.exitcodes import ExitCode

app = typer.Typer(no_args_is_help=True, help="Cluster-wide variables: ls, get, set, watch, "
                  "history, define, freeze.")

GroupOpt = Annotated[str, typer.Option("--group", help="consensus group holding variables")]
DEFAULT_GROUP = "variables"
T = TypeVar("T")


def parse_assignments(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected name=value, got {item!r}")
        values[name] = common.json_or_text(raw)
    return values


ActorOpt = Annotated[str | None, typer.Option(
    "--actor", help="act for this identity (admins and nodes only; default: yourself)")]


def _call(where: common.Target, prefix: str, group: str, as_json: bool,
          use: Callable[[Variables], Awaitable[T]], role: Role = Role.CLIENT) -> T:
    """Connect as ``role``, ``use`` a ``Variables`` client, close; errors exit
    (``common.run``)."""

    async def call() -> T:
        nc = await common.connect(where, role=role)
        try:
            return await use(Variables(nc, group, Subjects(prefix)))
        finally:
            await nc.close()

    return common.run(call(), as_json)


def _show_result(result: Any, as_json: bool) -> None:
    data = result.model_dump(mode="json")
    changed = ", ".join(f"{k}={v!r}" for k, v in data["changed"].items()) or "nothing"
    frozen = f"; frozen {', '.join(data['frozen'])}" if data["frozen"] else ""
    common.show(data, as_json, lambda: f"{data['space']} version {data['space_version']}: "
                                       f"changed {changed}{frozen}")


@app.command("ls")
def ls(space: Annotated[str | None, typer.Argument(help="only this space")] = None,
       nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
       tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
       group: GroupOpt = DEFAULT_GROUP, as_json: JsonOpt = False) -> None:
    """List spaces with their versions and current values."""
    at = Target(nats_url, context, creds, tls_ca)
    skipped: dict[str, str] = {}

    async def read(v: Variables) -> dict[str, Any]:
        state = await v.state()
        skipped.update(v.skipped)
        return state

    state = _call(at, prefix, group, as_json, read)
    rows = [s for n, s in sorted(state.items()) if space is None or n == space]
    bad = sorted((n, why) for n, why in skipped.items() if space is None or n == space)

    def render() -> Table:
        table = Table(title=f"variables ({group})")
        for column in ("space", "version", "variable", "value", "frozen"):
            table.add_column(column)
        for r in rows:
            for name, value in r.values.items():
                table.add_row(r.space, str(r.version), name, repr(value),
                              "yes" if name in r.frozen else "")
        for name, why in bad:
            table.add_row(name, "", "", f"skipped: corrupt record ({why})", "")
        return table

    common.show([r.model_dump(mode="json") for r in rows]
                + [{"space": n, "skipped": why} for n, why in bad], as_json, render)


@app.command("get")
def get(space: str, variable: str,
        nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
        tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
        group: GroupOpt = DEFAULT_GROUP,
        as_json: JsonOpt = False) -> None:
    """Show one variable (a linearizable read)."""
    at = Target(nats_url, context, creds, tls_ca)
    view = _call(at, prefix, group, as_json, lambda v: v.get(space, variable))
    frozen = " (frozen)" if view.frozen else ""
    common.show(view.model_dump(mode="json"), as_json,
                lambda: f"{space}.{variable} = {view.value!r} at version {view.version}{frozen}")


@app.command("set")
def set_(space: str, assignments: Annotated[list[str], typer.Argument(help="name=value ...")],
         expect_version: Annotated[int | None, typer.Option(
             "--expect-version", help="commit only if the space is at this version")] = None,
         reason: Annotated[str, typer.Option("--reason")] = "",
         actor: ActorOpt = None,
         nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
         tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
         group: GroupOpt = DEFAULT_GROUP, as_json: JsonOpt = False) -> None:
    """Commit new values (validated as a whole configuration)."""
    values = parse_assignments(assignments)
    at = Target(nats_url, context, creds, tls_ca)
    result = _call(at, prefix, group, as_json, lambda v: v.set(
        space, values, expected_version=expect_version, actor=actor, reason=reason))
    _show_result(result, as_json)
    held = sorted(set(values) & set(result.frozen))
    if held:  # the group refuses a new value; the same value commits, but changes nothing
        common.fail(BrokerError(
            ErrorCode.VALIDATION, f"{', '.join(held)} {'is' if len(held) == 1 else 'are'} "
            f"frozen: the set changed nothing there (var unfreeze {space} {held[0]} first)",
            {"space": space, "frozen": held}), as_json)


@app.command("define")
def define(path: Annotated[Path, typer.Argument(help="a JSON file holding a VariableSpace")],
           admin: Annotated[bool, typer.Option(
               "--admin", help="as an admin: needed to redefine an existing space")] = False,
           nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
           tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
           group: GroupOpt = DEFAULT_GROUP, as_json: JsonOpt = False) -> None:
    """Define a space (redefining one takes --admin)."""
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        common.fail(BrokerError(ErrorCode.BAD_REQUEST, f"{path}: {common.describe(exc)}"),
                    as_json, label="bad space JSON", code=ExitCode.USAGE)
    at = Target(nats_url, context, creds, tls_ca)
    _show_result(_call(at, prefix, group, as_json, lambda v: v.define_space(spec),
                       Role.ADMIN if admin else Role.CLIENT), as_json)


def _freezing(frozen: bool) -> Callable[..., None]:
    """The ``freeze`` (``frozen=True``) or ``unfreeze`` command: the same but for the call."""

    def command(space: str, variable: str,
                nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
                tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
                group: GroupOpt = DEFAULT_GROUP,
                as_json: JsonOpt = False) -> None:
        def change(v: Variables) -> Awaitable[Any]:
            call = v.freeze if frozen else v.unfreeze
            return call(space, variable)

        at = Target(nats_url, context, creds, tls_ca)
        _show_result(_call(at, prefix, group, as_json, change, Role.ADMIN), as_json)

    command.__doc__ = ("Freeze a variable: nothing (operator or engine) changes it until "
                       "unfrozen (an admin's)." if frozen else
                       "Let a frozen variable change again (an admin's).")
    return command


app.command("freeze")(_freezing(True))
app.command("unfreeze")(_freezing(False))


@app.command("history")
def history(space: str, variable: str,
            nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
            tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
            group: GroupOpt = DEFAULT_GROUP,
            as_json: JsonOpt = False) -> None:
    """The last committed values of a variable (bounded), oldest first."""
    at = Target(nats_url, context, creds, tls_ca)
    entries = _call(at, prefix, group, as_json, lambda v: v.history(space, variable))

    def render() -> Table:
        table = Table(title=f"{space}.{variable} history ({len(entries)})")
        for column in ("version", "value", "actor", "reason"):
            table.add_column(column)
        for e in entries:
            table.add_row(str(e.version), repr(e.value), e.actor or "", e.reason)
        return table

    common.show([e.model_dump(mode="json") for e in entries], as_json, render)


async def _watch(where: common.Target, prefix: str, space: str | None, count: int | None,
                 as_json: bool) -> None:
    # change events are an observer's to read
    nc = await common.connect(where, role=Role.OBSERVER, reconnect=True)
    seen: dict[str, int] = {}
    done = asyncio.Event()
    shown = 0

    async def on_change(msg: Any) -> None:
        nonlocal shown
        try:
            change = VariableChange.model_validate(decode(msg.data, msg.headers))
        except Exception as exc:  # shown as skipped, never the end of the watch
            why = skipped_record("event", msg.subject, exc)
            common.show({"skipped": msg.subject, "error": why}, as_json,
                        lambda: escape(f"skipped a corrupt event on {msg.subject}: {why}"))
            return
        if seen.get(change.space, -1) >= change.version:
            return  # several members publish each change
        seen[change.space] = change.version
        moved = ", ".join(f"{k}={v!r}" for k, v in change.changed.items()) or change.op
        common.show(change.model_dump(mode="json"), as_json,
                    lambda: f"{change.space} v{change.version} [{change.actor or '-'}] {moved}")
        shown += 1
        if count is not None and shown >= count:
            done.set()

    try:
        await nc.subscribe(Subjects(prefix).variable_changes(space or "*"), cb=on_change)
        await nc.flush()
        if as_json:
            common.print_json({"watching": space or "*"})
        await done.wait()
    finally:
        await nc.close()


@app.command("watch")
def watch(space: Annotated[str | None, typer.Argument(help="only this space")] = None,
          count: Annotated[int | None, typer.Option("--count", help="stop after N")] = None,
          nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
          tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
          as_json: JsonOpt = False) -> None:
    """Print committed changes as they happen (Ctrl-C to stop)."""
    with contextlib.suppress(KeyboardInterrupt):
        at = Target(nats_url, context, creds, tls_ca)
        common.run(_watch(at, prefix, space, count, as_json), as_json)
