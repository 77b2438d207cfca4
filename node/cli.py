"""The ``broker-agents`` command line: a thin layer over typed config and ``run()``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from node.config import ConfigError, load_config

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="broker-agents: multi-agent coordination on NATS")
node_app = typer.Typer(no_args_is_help=True, help="Run a node daemon.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: ours beside raw NATS.")
app.add_typer(node_app, name="node")
app.add_typer(bench_app, name="bench")
err_console = Console(stderr=True)
console = Console()


@app.callback()
def _setup(ctx: typer.Context) -> None:
    """Tools log warnings to stderr (stdout is for results, e.g. --json); nodes configure
    their own logging from their config."""
    if ctx.invoked_subcommand != "node":
        from broker_agents.logging import configure_logging

        configure_logging("console", "warning")


@node_app.command("run")
def node_run(
    config: Annotated[Path | None, typer.Option("--config", "-c",
                                                help="TOML config file")] = None,
) -> None:
    """Run a node daemon until SIGINT/SIGTERM (a second signal forces exit)."""
    from broker_agents.logging import configure_logging
    from node.daemon import EXIT_CONFIG, run
    from node.embedded import NatsServerError

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        err_console.print(f"[red]config error[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    configure_logging(cfg.node.log_format, cfg.node.log_level)
    try:
        code = run(cfg)
    except ConfigError as exc:
        err_console.print(f"[red]config error[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    except NatsServerError as exc:
        err_console.print(f"[red]cannot start NATS[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    raise typer.Exit(code)


@app.command()
def up(
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=64)] = 3,
    nats_cluster: Annotated[bool, typer.Option("--nats-cluster",
                                               help="3 routed nats-servers")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c",
                                                help="base node config")] = None,
) -> None:
    """Start N node daemons as separate processes on local NATS; Ctrl-C stops them all."""
    from node.cluster import LocalCluster

    async def main() -> dict[str, int | None]:
        with tempfile.TemporaryDirectory(prefix="ba-up-") as tmp:
            cluster = LocalCluster(Path(tmp), nodes=nodes, nats_cluster=nats_cluster,
                                   config=config)
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
            await stop.wait()
            return await asyncio.to_thread(cluster.stop)

    codes = asyncio.run(main())
    console.print("stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    raise typer.Exit(0 if all(c == 0 for c in codes.values()) else 1)


@app.command()
def demo() -> None:
    """Start a local 3-node cluster, exercise sample agents over NATS, print what happened."""
    from node.demo import run_demo

    steps, codes = asyncio.run(run_demo())
    table = Table(title="broker-agents demo: 3 node daemons, agents talking over NATS")
    for col in ("step", "subject", "outcome", "ok"):
        table.add_column(col)
    for step in steps:
        table.add_row(step.what, step.subject, step.outcome,
                      "[green]yes[/green]" if step.ok else "[red]NO[/red]")
    console.print(table)
    console.print("nodes stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    ok = all(s.ok for s in steps) and all(c == 0 for c in codes.values())
    raise typer.Exit(0 if ok else 1)


@bench_app.command("messaging")
def bench_messaging(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    requests: Annotated[int, typer.Option(help="sequential round trips")] = 2000,
    messages: Annotated[int, typer.Option(help="one-way messages")] = 100_000,
) -> None:
    """Agent request/reply across two node processes and one-way throughput, beside raw."""
    from broker_agents.bench.messaging import run_messaging_bench

    result = asyncio.run(run_messaging_bench(requests=requests, messages=messages))
    print_result("messaging", result, as_json)


def print_result(suite: str, result: dict[str, object], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title=f"bench {suite}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:,.2f}" if isinstance(value, float) else str(value))
    console.print(table)


async def _on_fresh_server(bench: Any) -> dict[str, object]:
    """Run ``await bench(url, tmp_dir)`` against a nats-server of its own."""
    from node.embedded import NatsServer

    with tempfile.TemporaryDirectory(prefix="ba-bench-") as tmp:
        server = await asyncio.to_thread(NatsServer(store_dir=Path(tmp) / "nats").start)
        try:
            result: dict[str, object] = await bench(server.url, Path(tmp))
            return result
        finally:
            server.stop()


@bench_app.command("registry")
def bench_registry(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Local-view lookups and queries with 10,000 agents, durable writes beside raw KV put."""
    from broker_agents.registry.bench import run_registry_bench

    result = asyncio.run(_on_fresh_server(lambda url, _tmp: run_registry_bench(url)))
    print_result("registry", result, as_json)


@bench_app.command("consensus")
def bench_consensus(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    proposals: Annotated[int, typer.Option(help="sequential proposals")] = 2000,
    pipelined: Annotated[int, typer.Option(help="pipelined proposals")] = 20000,
) -> None:
    """Commit latency of a 3-member group beside raw request/reply; throughput; failover."""
    from broker_agents.raft.bench import run_consensus_bench

    result = asyncio.run(_on_fresh_server(lambda url, tmp: run_consensus_bench(
        url, proposals=proposals, pipelined=pipelined, tmp_dir=tmp)))
    print_result("consensus", result, as_json)


def _mount_optional() -> None:
    """Sub-commands contributed by the capability packages."""
    from chaos.cli import app as chaos_app
    from node.commands.auction import app as auction_app
    from node.commands.auction import bench_auction
    from node.commands.coord import bench_coordination, request_command, schema_command
    from node.commands.registry import app as registry_app
    from node.commands.variables import app as variables_app
    from node.commands.variables import bench_variables

    app.add_typer(registry_app, name="registry")
    app.add_typer(auction_app, name="auction")
    app.add_typer(variables_app, name="var")
    app.add_typer(chaos_app, name="chaos")
    app.command("schema")(schema_command)
    app.command("request")(request_command)
    bench_app.command("auction")(bench_auction)
    bench_app.command("coordination")(bench_coordination)
    bench_app.command("variables")(bench_variables)


_mount_optional()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
