"""``broker-agents bench <suite>``: run one benchmark suite (``node.bench``) and print it.

``--json`` prints the suite's dict as one JSON object; otherwise a metric/value table.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table

from node.cli.common import JsonOpt, pairs_table, show

app = typer.Typer(no_args_is_help=True, help="Benchmarks: ours beside raw NATS.")


def _show(suite: str, result: dict[str, Any], as_json: bool) -> None:
    show(result, as_json, lambda: _table(suite, result))


def _table(suite: str, result: dict[str, Any]) -> Table:
    rows = ((key, f"{value:,.2f}" if isinstance(value, float) else str(value))
            for key, value in result.items())
    return pairs_table(f"bench {suite}", rows, columns=("metric", "value"), justify="right")


@app.command("messaging")
def messaging(
    as_json: JsonOpt = False,
    requests: Annotated[int, typer.Option(help="sequential round trips")] = 2000,
    messages: Annotated[int, typer.Option(help="one-way messages")] = 100_000,
) -> None:
    """Agent request/reply across two node processes and one-way throughput, beside raw."""
    from node.bench.messaging import run_messaging_bench

    _show("messaging", asyncio.run(run_messaging_bench(requests=requests, messages=messages)),
          as_json)


@app.command("registry")
def registry(as_json: JsonOpt = False) -> None:
    """Local-view lookups and queries with 10,000 agents, durable writes beside raw KV put."""
    from node.bench.harness import on_fresh_server
    from node.bench.registry import run_registry_bench

    result = asyncio.run(on_fresh_server(lambda server, _tmp: run_registry_bench(server)))
    _show("registry", result, as_json)


@app.command("consensus")
def consensus(
    as_json: JsonOpt = False,
    proposals: Annotated[int, typer.Option(help="sequential proposals")] = 2000,
    pipelined: Annotated[int, typer.Option(help="pipelined proposals")] = 20000,
) -> None:
    """Commit latency of a 3-member group beside raw request/reply; throughput; failover."""
    from node.bench.consensus import run_consensus_bench
    from node.bench.harness import on_fresh_server

    result = asyncio.run(on_fresh_server(lambda server, tmp: run_consensus_bench(
        server, proposals=proposals, pipelined=pipelined, tmp_dir=tmp)))
    _show("consensus", result, as_json)


@app.command("auction")
def auction(as_json: JsonOpt = False) -> None:
    """Sealed-bid auction over 100 bidder agents on two nodes, beside raw fan-out."""
    from node.bench.auction import run_auction_bench

    _show("auction", asyncio.run(run_auction_bench()), as_json)


@app.command("coordination")
def coordination(
    as_json: JsonOpt = False,
    runs: Annotated[int, typer.Option(help="timed requests per protocol")] = 100,
) -> None:
    """Vote among 10 agents on two nodes beside raw fan-out; PBFT 4; hierarchical 100."""
    from node.bench.coordination import run_coordination_bench

    _show("coordination", asyncio.run(run_coordination_bench(runs=runs)), as_json)


@app.command("variables")
def variables(as_json: JsonOpt = False) -> None:
    """Variables: committed set latency, sustained updates/s, feedback -> new value visible."""
    from node.bench.variables import run_variables_bench

    _show("variables", asyncio.run(run_variables_bench()), as_json)
