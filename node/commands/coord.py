"""Coordination commands: ``schema [PROTOCOL]``, ``request <protocol> --json '{...}'``.

    broker-agents schema vote
    broker-agents request vote '{"proposal": "ship?", "capability": "voter"}'   # table
    broker-agents request pbft --json @pbft.json                                  # JSON

``schema_command`` and ``request_command`` are plain typer command functions so they can
be mounted at the top level (``app.command("schema")(schema_command)``); ``app`` holds
both for mounting as a group, and ``bench_coordination`` is the ``bench coordination``
command body. The request (inline JSON or ``@file``) is sent as JSON; ``--json`` prints
the reply as one JSON line instead of tables.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from broker_agents.core.errors import BrokerError
from broker_agents.transport import connect_client
from broker_agents.transport import request as nats_request

app = typer.Typer(no_args_is_help=True, help="Coordination: JSON Schemas and requests.")
console = Console()
err_console = Console(stderr=True)


def schema_command(
    protocol: Annotated[str | None, typer.Argument(help="one protocol (default: all)")] = None,
) -> None:
    """Print the JSON Schema of coordination requests and responses."""
    from broker_agents.coord.schema import PROTOCOLS, schemas

    every = schemas()
    if protocol is not None and protocol not in every:
        err_console.print(f"[red]unknown protocol[/red] {protocol!r}; known: "
                          f"{', '.join(PROTOCOLS)}")
        raise typer.Exit(2)
    sys.stdout.write(json.dumps(every[protocol] if protocol else every, indent=2) + "\n")


def _load(spec: str) -> Any:
    text = Path(spec[1:]).read_text() if spec.startswith("@") else spec
    return json.loads(text)


async def _quiet(exc: Exception) -> None:
    """Connection errors are reported once, as the command's error, not as tracebacks."""


async def _send(url: str, prefix: str, protocol: str, body: Any, timeout: float) -> Any:
    import nats
    import nats.errors

    from broker_agents import codec
    from broker_agents.subjects import Subjects

    try:
        nc = await connect_client(url, connect_timeout=3, max_reconnect_attempts=1,
                                allow_reconnect=False, error_cb=_quiet)
    except Exception as exc:
        raise BrokerError("unavailable", f"cannot connect to NATS at {url}: {exc}") from exc
    try:
        reply = await nats_request(nc, Subjects(prefix).coord(protocol),
                                 codec.encode(body, as_json=True), timeout=timeout)
        return codec.decode(reply.data, reply.headers)
    except nats.errors.NoRespondersError as exc:
        raise BrokerError("unavailable", "no coordinator is listening") from exc
    except nats.errors.TimeoutError as exc:
        raise BrokerError("timeout", f"no reply within {timeout:g}s") from exc
    finally:
        await nc.close()


def request_command(
    protocol: Annotated[str, typer.Argument(help="vote, hierarchical, pbft, barrier, lock, "
                                                 "leader, ensemble or auto")],
    request_json: Annotated[str, typer.Argument(metavar="REQUEST",
                                                help="request JSON, or @file.json")],
    nats_url: Annotated[str, typer.Option("--nats", help="NATS server URL")] = (
        "nats://127.0.0.1:4222"),
    as_json: Annotated[bool, typer.Option("--json", help="print the reply as JSON")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the reply")] = 30.0,
    prefix: Annotated[str, typer.Option(help="subject prefix")] = "ba",
) -> None:
    """Send one coordination request and print the result (table, or JSON)."""
    from broker_agents.coord.render import print_result

    try:
        body = _load(request_json)
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]bad request JSON[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        reply = asyncio.run(_send(nats_url, prefix, protocol, body, timeout))
    except BrokerError as exc:
        reply = exc.to_payload()
    err = BrokerError.from_payload(reply)
    if as_json:
        sys.stdout.write(json.dumps(reply) + "\n")
    elif err is not None:
        err_console.print(f"[red]{err.code}[/red] {err.message}")
        if err.details:
            err_console.print_json(json.dumps(err.details))
    else:
        print_result(console, protocol, reply)
    raise typer.Exit(1 if err is not None else 0)


def bench_coordination(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    runs: Annotated[int, typer.Option(help="timed requests per protocol")] = 100,
) -> None:
    """Vote among 10 agents on two nodes beside raw fan-out; PBFT 4; hierarchical 100."""
    from broker_agents.coord.bench import run_coordination_bench
    from node.cli import print_result as print_bench

    print_bench("coordination", asyncio.run(run_coordination_bench(runs=runs)), as_json)


app.command("schema")(schema_command)
app.command("request")(request_command)
