"""``broker-agents var ls|get|set|watch|history|define|freeze|unfreeze``: cluster-wide variables.

    broker-agents var define space.json              # a VariableSpace as JSON
    broker-agents var ls                             # spaces, versions, values
    broker-agents var get llm temperature
    broker-agents var set llm temperature=0.9 batch=16 [--expect-version 12]
    broker-agents var freeze llm temperature         # stops the engine and everyone
    broker-agents var watch [llm] [--count 10]       # change events as they commit
    broker-agents var history llm temperature

Writes are proposals to the consensus group; reads are linearizable reads through it
(``--group``, default ``variables``). ``--json`` prints machine-readable output. Values on
the command line are JSON when they parse as JSON, else strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from broker_agents.codec import decode
from broker_agents.core.errors import BrokerError
from broker_agents.subjects import Subjects
from broker_agents.transport import connect_client
from broker_agents.variables.client import Variables
from broker_agents.variables.models import VariableChange

app = typer.Typer(no_args_is_help=True, help="Cluster-wide variables: ls, get, set, watch, "
                  "history, define, freeze.")
console = Console()
err_console = Console(stderr=True)

NatsOpt = Annotated[str, typer.Option("--nats", help="NATS server URL")]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="subject prefix")]
GroupOpt = Annotated[str, typer.Option("--group", help="consensus group holding variables")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
DEFAULT_URL = "nats://127.0.0.1:4222"
T = TypeVar("T")


def _out(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def parse_assignments(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected name=value, got {item!r}")
        try:
            values[name] = json.loads(raw)
        except ValueError:
            values[name] = raw
    return values


async def _with(url: str, prefix: str, group: str,
                use: Callable[[Variables], Awaitable[T]]) -> T:

    nc = await connect_client(url, connect_timeout=3, max_reconnect_attempts=1)
    try:
        return await use(Variables(nc, group, Subjects(prefix)))
    finally:
        await nc.close()


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except BrokerError as err:
        details = f" {json.dumps(err.details, default=str)}" if err.details else ""
        err_console.print(f"[red]{err.code}[/red]: {err.message}{details}", markup=True)
        raise typer.Exit(1) from None
    except (OSError, TimeoutError) as exc:
        err_console.print(f"[red]cannot reach NATS[/red]: {exc!r}")
        raise typer.Exit(2) from None


def _show_result(result: Any, as_json: bool) -> None:
    data = result.model_dump(mode="json")
    if as_json:
        _out(data)
        return
    changed = ", ".join(f"{k}={v!r}" for k, v in data["changed"].items()) or "nothing"
    console.print(f"{data['space']} version {data['space_version']}: changed {changed}"
                  + (f"; frozen {', '.join(data['frozen'])}" if data["frozen"] else ""))


@app.command("ls")
def ls(space: Annotated[str | None, typer.Argument(help="only this space")] = None,
       nats_url: NatsOpt = DEFAULT_URL, prefix: PrefixOpt = "ba", group: GroupOpt = "variables",
       as_json: JsonOpt = False) -> None:
    """List spaces with their versions and current values."""
    state = _run(_with(nats_url, prefix, group, lambda v: v.state()))
    rows = [s for n, s in sorted(state.items()) if space is None or n == space]
    if as_json:
        _out([r.model_dump(mode="json") for r in rows])
        return
    table = Table(title=f"variables ({group})")
    for column in ("space", "version", "variable", "value", "frozen"):
        table.add_column(column)
    for r in rows:
        for name, value in r.values.items():
            table.add_row(r.space, str(r.version), name, repr(value),
                          "yes" if name in r.frozen else "")
    console.print(table)


@app.command("get")
def get(space: str, variable: str, nats_url: NatsOpt = DEFAULT_URL, prefix: PrefixOpt = "ba",
        group: GroupOpt = "variables", as_json: JsonOpt = False) -> None:
    """Show one variable (a linearizable read)."""
    view = _run(_with(nats_url, prefix, group, lambda v: v.get(space, variable)))
    if as_json:
        _out(view.model_dump(mode="json"))
    else:
        frozen = " (frozen)" if view.frozen else ""
        console.print(f"{space}.{variable} = {view.value!r} at version {view.version}{frozen}")


@app.command("set")
def set_(space: str, assignments: Annotated[list[str], typer.Argument(help="name=value ...")],
         expect_version: Annotated[int | None, typer.Option(
             "--expect-version", help="commit only if the space is at this version")] = None,
         reason: Annotated[str, typer.Option("--reason")] = "",
         actor: Annotated[str, typer.Option("--actor")] = "cli",
         nats_url: NatsOpt = DEFAULT_URL, prefix: PrefixOpt = "ba", group: GroupOpt = "variables",
         as_json: JsonOpt = False) -> None:
    """Commit new values (validated as a whole configuration)."""
    values = parse_assignments(assignments)
    result = _run(_with(nats_url, prefix, group, lambda v: v.set(
        space, values, expected_version=expect_version, actor=actor, reason=reason)))
    _show_result(result, as_json)


@app.command("define")
def define(path: Annotated[Path, typer.Argument(help="a JSON file holding a VariableSpace")],
           nats_url: NatsOpt = DEFAULT_URL, prefix: PrefixOpt = "ba",
           group: GroupOpt = "variables", as_json: JsonOpt = False) -> None:
    """Define (or redefine) a space."""
    spec = json.loads(path.read_text())
    result = _run(_with(nats_url, prefix, group, lambda v: v.define_space(spec, actor="cli")))
    _show_result(result, as_json)


@app.command("freeze")
def freeze(space: str, variable: str, nats_url: NatsOpt = DEFAULT_URL, prefix: PrefixOpt = "ba",
           group: GroupOpt = "variables", as_json: JsonOpt = False) -> None:
    """Freeze a variable: nothing (operator or engine) changes it until unfrozen."""
    _show_result(_run(_with(nats_url, prefix, group,
                            lambda v: v.freeze(space, variable, actor="cli"))), as_json)


@app.command("unfreeze")
def unfreeze(space: str, variable: str, nats_url: NatsOpt = DEFAULT_URL,
             prefix: PrefixOpt = "ba", group: GroupOpt = "variables",
             as_json: JsonOpt = False) -> None:
    """Let a frozen variable change again."""
    _show_result(_run(_with(nats_url, prefix, group,
                            lambda v: v.unfreeze(space, variable, actor="cli"))), as_json)


@app.command("history")
def history(space: str, variable: str, nats_url: NatsOpt = DEFAULT_URL,
            prefix: PrefixOpt = "ba", group: GroupOpt = "variables",
            as_json: JsonOpt = False) -> None:
    """The last committed values of a variable (bounded), oldest first."""
    entries = _run(_with(nats_url, prefix, group, lambda v: v.history(space, variable)))
    if as_json:
        _out([e.model_dump(mode="json") for e in entries])
        return
    table = Table(title=f"{space}.{variable} history ({len(entries)})")
    for column in ("version", "value", "actor", "reason"):
        table.add_column(column)
    for e in entries:
        table.add_row(str(e.version), repr(e.value), e.actor or "", e.reason)
    console.print(table)


async def _watch(url: str, prefix: str, space: str | None, count: int | None,
                 as_json: bool) -> None:

    nc = await connect_client(url, connect_timeout=3)
    seen: dict[str, int] = {}
    done = asyncio.Event()
    shown = 0

    async def on_change(msg: Any) -> None:
        nonlocal shown
        try:
            change = VariableChange.model_validate(decode(msg.data, msg.headers))
        except Exception:
            return
        if seen.get(change.space, -1) >= change.version:
            return  # several members publish each change
        seen[change.space] = change.version
        if as_json:
            _out(change.model_dump(mode="json"))
        else:
            moved = ", ".join(f"{k}={v!r}" for k, v in change.changed.items()) or change.op
            console.print(f"{change.space} v{change.version} [{change.actor or '-'}] {moved}")
        shown += 1
        if count is not None and shown >= count:
            done.set()

    try:
        await nc.subscribe(Subjects(prefix).variable_changes(space or "*"), cb=on_change)
        await nc.flush()
        if as_json:
            _out({"watching": space or "*"})
        await done.wait()
    finally:
        await nc.close()


@app.command("watch")
def watch(space: Annotated[str | None, typer.Argument(help="only this space")] = None,
          count: Annotated[int | None, typer.Option("--count", help="stop after N")] = None,
          nats_url: NatsOpt = DEFAULT_URL, prefix: PrefixOpt = "ba",
          as_json: JsonOpt = False) -> None:
    """Print committed changes as they happen (Ctrl-C to stop)."""
    with contextlib.suppress(KeyboardInterrupt):
        _run(_watch(nats_url, prefix, space, count, as_json))


def bench_variables(as_json: JsonOpt = False) -> None:
    """Variables: committed set latency, sustained updates/s, feedback -> new value visible."""
    from broker_agents.variables.bench import run_variables_bench
    from node.cli import print_result

    print_result("variables", asyncio.run(run_variables_bench()), as_json)
