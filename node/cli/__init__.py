"""The ``broker-agents`` command line: parsing, then one call per command.

One module per command group: ``node`` (run a daemon), ``up`` (a local cluster),
``demo``, ``bench`` (``node.bench`` suites), ``registry``, ``auction``, ``variables``
(mounted as ``var``), ``auth`` (identities, roles, server configs), ``feature`` (cluster
feature flags), ``raft`` (a consensus group's members and leadership), ``coord``
(``schema`` and ``request``, at the top level). What they share (options, connecting,
output, errors, ``ExitCode``) is in ``common``. The chaos suite's CLI is mounted lazily:
``chaos`` is imported only when ``broker-agents chaos`` runs. ``--version`` prints the
installed version; ``main`` turns an exception nobody caught into one ``internal`` line.
"""

from __future__ import annotations

import importlib.metadata
import sys
from typing import Annotated

import typer

from node.cli import (
    auction,
    auth,
    bench,
    coord,
    dashboard,
    demo,
    feature,
    raft,
    registry,
    up,
    variables,
)
from node.cli import node as node_commands

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="broker-agents: multi-agent coordination on NATS")
app.add_typer(node_commands.app, name="node")
app.command("up")(up.up)
app.command("demo")(demo.demo)
app.add_typer(bench.app, name="bench")
app.add_typer(registry.app, name="registry")
app.add_typer(auction.app, name="auction")
app.add_typer(variables.app, name="var")
app.add_typer(auth.app, name="auth")
app.add_typer(feature.app, name="feature")
app.add_typer(raft.app, name="raft")
app.command("schema")(coord.schema_command)
app.command("request")(coord.request_command)
app.command("dashboard")(dashboard.dashboard)


def version() -> str:
    """The installed package's version (``--version``)."""
    try:
        return importlib.metadata.version("broker-agents")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"broker-agents {version()}")
        raise typer.Exit()


@app.callback()
def _setup(ctx: typer.Context, _version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="print the version and exit")] = False) -> None:
    """Tools log warnings to stderr (stdout is for results, e.g. --json); nodes configure
    their own logging from their config."""
    if ctx.invoked_subcommand != "node":
        from broker_agents.logging import configure_logging

        configure_logging("console", "warning")


@app.command("chaos", add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def chaos(ctx: typer.Context) -> None:
    """Fault-injection scenarios with history checking."""
    from chaos.cli import app as chaos_app

    chaos_app(args=ctx.args, prog_name=f"{ctx.find_root().info_name} chaos")


def main() -> None:
    """Every command ends in a documented exit status (``node.exitcodes``) and, on an
    error, one line: an exception no command caught is ``internal`` (``common.crash``)."""
    from node.cli.common import crash

    try:
        app()
    except Exception as exc:  # SystemExit and KeyboardInterrupt are not Exceptions
        try:
            crash(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)
