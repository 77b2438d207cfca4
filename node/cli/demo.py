"""``broker-agents demo``: a local 3-node cluster, sample agents, real traffic, a table."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from node.cli.common import InsecureOpt, console, warn_insecure
from node.exitcodes import ExitCode


def demo(insecure: InsecureOpt = False) -> None:
    """Start a local 3-node cluster, exercise sample agents over NATS, print what happened."""
    from node.demo import run_demo

    if insecure:
        warn_insecure()
    steps, codes = asyncio.run(run_demo(insecure=insecure))
    table = Table(title="broker-agents demo: 3 node daemons, agents talking over NATS")
    for col in ("step", "subject", "outcome", "ok"):
        table.add_column(col)
    for step in steps:
        table.add_row(step.what, step.subject, step.outcome,
                      "[green]yes[/green]" if step.ok else "[red]NO[/red]")
    console.print(table)
    console.print("nodes stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    ok = all(s.ok for s in steps) and all(c == ExitCode.OK for c in codes.values())
    raise typer.Exit(ExitCode.OK if ok else ExitCode.FAILURE)
