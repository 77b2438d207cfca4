"""``broker-agents up``: N node daemons as separate processes until Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from node.auth.local import LocalAuth
from node.auth.roles import Role
from node.cli.common import ConfigOpt, InsecureOpt, console, warn_insecure
from node.exitcodes import ExitCode


def up(
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=64)] = 3,
    nats_cluster: Annotated[bool, typer.Option("--nats-cluster",
                                               help="3 routed nats-servers")] = False,
    config: ConfigOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Start N node daemons as separate processes on local NATS; Ctrl-C stops them all."""
    if insecure:
        warn_insecure()
    codes = asyncio.run(_run_until_interrupted(nodes, nats_cluster, config, insecure))
    console.print("stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    clean = all(c == ExitCode.OK for c in codes.values())
    raise typer.Exit(ExitCode.OK if clean else ExitCode.FAILURE)


async def _run_until_interrupted(nodes: int, nats_cluster: bool, config: Path | None,
                                 insecure: bool) -> dict[str, int | None]:
    """Start the cluster, print where it is, wait for SIGINT/SIGTERM; the exit codes."""
    from node.cluster import LocalCluster

    with tempfile.TemporaryDirectory(prefix="ba-up-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=nodes, nats_cluster=nats_cluster,
                               config=config, insecure=insecure)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before we tell anyone to press it
            loop.add_signal_handler(sig, stop.set)
        await cluster.start()
        table = Table(title=f"{nodes} node(s) up")
        for col in ("node", "pid", "http (/metrics /healthz /readyz)"):
            table.add_column(col, no_wrap=True)
        for proc in cluster.procs:
            table.add_row(proc.node_id, str(proc.pid), f"http://127.0.0.1:{proc.http_port}")
        console.print(table)
        console.print(f"logs: {tmp}/node-N.log")
        console.print(f"NATS: {', '.join(cluster.urls)}  —  Ctrl-C to stop")
        if cluster.auth is not None:
            _print_contexts(cluster.auth)
        await stop.wait()
        return await asyncio.to_thread(cluster.stop)


def _print_contexts(auth: LocalAuth) -> None:
    """Where each role's context is, and how a shell uses the client's."""
    table = Table(title=f"credentials (0600, in {auth.dir}; gone when this stops)")
    for col in ("role", "context"):
        table.add_column(col, no_wrap=True)
    for role, path in auth.contexts.items():
        table.add_row(str(role), str(path))
    console.print(table)
    console.print("use it from another shell:\n"
                  f"  export BA_CONTEXT={auth.context}\n"
                  "  broker-agents request vote '{\"proposal\": \"go?\", \"capability\": "
                  "\"voter\"}'\n"
                  "  (registry ls needs the observer's: --context "
                  f"{auth.contexts[Role.OBSERVER]})", soft_wrap=True)
