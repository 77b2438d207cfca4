"""``broker-agents up``: N node daemons as separate processes until Ctrl-C.

``--config FILE`` gives every node the file's settings and ``[services]``, and spreads its
``[[agents]]`` over the nodes (a section's ``node = "node-2"`` picks one; default node-1).
Once the nodes are ready it writes each role's context where every command looks by
itself (``$XDG_CONFIG_HOME/broker-agents/``), so another shell needs no flags; it never
replaces a context it did not write, and removes its own when it stops.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from broker_agents.core.errors import BrokerError, ErrorCode
from node.auth.context import ENV_VAR, ClientContext, candidates
from node.auth.local import LocalAuth
from node.auth.roles import Role
from node.cli.common import ConfigOpt, InsecureOpt, console, fail, warn_insecure
from node.exitcodes import ExitCode

MARK = "broker-agents up"  # the description of the contexts `up` writes, and may remove


def up(
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=64)] = 3,
    nats_cluster: Annotated[bool, typer.Option("--nats-cluster",
                                               help="3 routed nats-servers")] = False,
    config: ConfigOpt = None,
    insecure: InsecureOpt = False,
    allow_old_nats: Annotated[bool, typer.Option(
        "--allow-old-nats", help="run --nats-cluster on a nats-server older than 2.10 "
        "(KV compare-and-set is not serialized there: experiments only)")] = False,
) -> None:
    """Start N node daemons as separate processes on local NATS; Ctrl-C stops them all."""
    from node.config import ConfigError
    from node.nats_binary import ALLOW_OLD_ENV

    if insecure:
        warn_insecure()
    if allow_old_nats:
        os.environ[ALLOW_OLD_ENV] = "1"  # the binary choice warns on the console if used
    try:
        codes = asyncio.run(_run_until_interrupted(nodes, nats_cluster, config, insecure))
    except ConfigError as exc:
        fail(exc, label="config error", code=ExitCode.CONFIG)
    except (RuntimeError, TimeoutError) as exc:  # a node exited or hung while starting
        fail(BrokerError(ErrorCode.UNAVAILABLE, str(exc)), label="start failed")
    console.print("stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    clean = all(c == ExitCode.OK for c in codes.values())
    raise typer.Exit(ExitCode.OK if clean else ExitCode.FAILURE)


async def _run_until_interrupted(nodes: int, nats_cluster: bool, config: Path | None,
                                 insecure: bool) -> dict[str, int | None]:
    """Start the cluster, print where it is, wait for SIGINT/SIGTERM; the exit codes."""
    from node.cluster import LocalCluster

    if config is not None:
        check_config(config, nodes)
    with tempfile.TemporaryDirectory(prefix="ba-up-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=nodes, nats_cluster=nats_cluster,
                               config=config, insecure=insecure)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before we tell anyone to press it
            loop.add_signal_handler(sig, stop.set)
        try:
            await cluster.start()
        except BaseException:
            await asyncio.to_thread(cluster.stop)
            raise
        table = Table(title=f"{nodes} node(s) up")
        for col in ("node", "pid", "http (/metrics /healthz /readyz)"):
            table.add_column(col, no_wrap=True)
        for proc in cluster.procs:
            table.add_row(proc.node_id, str(proc.pid), f"http://127.0.0.1:{proc.http_port}")
        console.print(table)
        console.print(f"logs: {tmp}/node-N.log")
        console.print(f"NATS: {', '.join(cluster.urls)}  —  Ctrl-C to stop", soft_wrap=True)
        written: dict[Path, str] = {}
        if cluster.auth is not None:
            written = publish_contexts(cluster.auth)
            _print_contexts(cluster.auth, written)
        try:
            await stop.wait()
        finally:
            withdraw_contexts(written)
        return await asyncio.to_thread(cluster.stop)


def check_config(config: Path, nodes: int) -> None:
    """The nodes' config, every agent class imported, its kwargs checked and every id
    unique, before any process starts: one ``ConfigError`` (exit 2) instead of a node's
    log. The nodes run ``python -m`` here, so this directory is on their path: on ours."""
    from nats.aio.client import Client as NATS

    from node.cluster import file_agents, split_agents
    from node.config import load_config
    from node.hosting import build_specs

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    split_agents(config, nodes)  # every section's node exists
    build_specs(load_config(config, agents=file_agents(config)), NATS(), {})


def user_context(role: Role) -> Path:
    """Where commands look for ``role``'s context when nothing names one."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    return candidates(env=env, role=role)[0]


def publish_contexts(auth: LocalAuth) -> dict[Path, str]:
    """Copy every role's context to the user's config dir unless one not ours is there;
    the paths written, with what was written (to remove only our own later)."""
    written: dict[Path, str] = {}
    for role, source in auth.contexts.items():
        target = user_context(role)
        if target.exists() and not _ours(target):
            continue
        ctx = ClientContext.read(source)
        ctx = ClientContext(ctx.servers, ctx.creds, ctx.ca, ctx.inbox_prefix,
                            ctx.subject_prefix, f"{MARK} {role} (pid {os.getpid()})")
        ctx.write(target)
        written[target] = target.read_text()
    return written


def withdraw_contexts(written: dict[Path, str]) -> None:
    """Remove the contexts we wrote, unless someone replaced them meanwhile."""
    for path, text in written.items():
        try:
            if path.read_text() == text:
                path.unlink()
        except OSError:
            pass


def _ours(path: Path) -> bool:
    try:
        return ClientContext.read(path).description.startswith(MARK)
    except BrokerError:
        return False


def _print_contexts(auth: LocalAuth, written: dict[Path, str]) -> None:
    """Where each role's context is, and whether other shells find it by themselves."""
    table = Table(title=f"credentials (0600, in {auth.dir}; gone when this stops)")
    for col in ("role", "context"):
        table.add_column(col, no_wrap=True)
    for role, path in auth.contexts.items():
        table.add_row(str(role), str(path))
    console.print(table)
    client = user_context(Role.CLIENT)
    if client in written:
        console.print(f"contexts written to {client.parent} (removed when this stops): "
                      "commands in any shell find them, e.g.\n"
                      "  broker-agents request vote '{\"proposal\": \"go?\", \"capability\": "
                      "\"voter\"}'", soft_wrap=True)
        if os.environ.get(ENV_VAR):
            console.print(f"[yellow]${ENV_VAR} is set in this shell and wins over them[/yellow]")
        return
    console.print(f"{client} is not ours: left alone. Use the cluster from another shell "
                  f"with\n  export {ENV_VAR}={auth.context}\n"
                  f"  (bucket reads need the observer's: --context "
                  f"{auth.contexts[Role.OBSERVER]})", soft_wrap=True)
