"""Coordination commands: ``schema [PROTOCOL]``, ``request <protocol> REQUEST``.

    broker-agents schema vote
    broker-agents request vote '{"proposal": "ship?", "capability": "voter"}'   # table
    broker-agents request pbft --json @pbft.json                                  # JSON

Both are mounted at the top level of ``broker-agents``; ``app`` holds them as a group
too. The request (inline JSON or ``@file``) is sent as JSON to ``<prefix>.coord.<protocol>``;
``--json`` prints the reply as one JSON line instead of tables. An error reply exits
``ExitCode.FAILURE`` (so does a result in which every participant answered with an error),
request JSON that does not parse ``ExitCode.USAGE``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.subjects import Subjects
from broker_agents.transport import request as nats_request
from node.cli import common
from node.cli.common import (
    DEFAULT_PREFIX,
    ContextOpt,
    CredsOpt,
    JsonOpt,
    NatsOpt,
    PrefixOpt,
    TimeoutOpt,
    TlsCaOpt,
)
from node.exitcodes import ExitCode

app = typer.Typer(no_args_is_help=True, help="Coordination: JSON Schemas and requests.")


def schema_command(
    protocol: Annotated[str | None, typer.Argument(help="one protocol (default: all)")] = None,
) -> None:
    """Print the JSON Schema of coordination requests and responses."""
    from broker_agents.coord.schema import PROTOCOLS, schemas

    every = schemas()
    if protocol is not None and protocol not in every:
        common.fail(BrokerError(ErrorCode.UNKNOWN_PROTOCOL, f"{protocol!r}; known: "
                                f"{', '.join(PROTOCOLS)}"), label="unknown protocol",
                    code=ExitCode.USAGE)
    sys.stdout.write(json.dumps(every[protocol] if protocol else every, indent=2) + "\n")


def _load(spec: str) -> Any:
    """Inline JSON, or ``@path`` to a JSON file."""
    text = Path(spec[1:]).read_text() if spec.startswith("@") else spec
    return json.loads(text)


async def _send(where: common.Target, prefix: str, protocol: str, body: Any,
                timeout: float) -> Any:
    nc = await common.connect(where)
    try:
        reply = await nats_request(nc, Subjects(prefix).coord(protocol),
                                   codec.encode(body, as_json=True), timeout=timeout,
                                   signed=True)
        return codec.decode(reply.data, reply.headers)
    finally:
        await nc.close()


def request_command(
    protocol: Annotated[str, typer.Argument(help="vote, hierarchical, pbft, barrier, lock, "
                                                 "leader, ensemble or auto")],
    request_json: Annotated[str, typer.Argument(metavar="REQUEST",
                                                help="request JSON, or @file.json")],
    nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
    tls_ca: TlsCaOpt = None,
    as_json: JsonOpt = False,
    timeout: TimeoutOpt = 30.0,
    prefix: PrefixOpt = DEFAULT_PREFIX,
) -> None:
    """Send one coordination request and print the result (table, or JSON)."""
    from node.cli.render import renderables

    try:
        body = _load(request_json)
    except (OSError, ValueError) as exc:
        common.fail(BrokerError(ErrorCode.BAD_REQUEST, common.describe(exc)), as_json,
                    label="bad request JSON", code=ExitCode.USAGE)
    at = common.Target(nats_url, context, creds, tls_ca)
    reply = common.run(_send(at, prefix, protocol, body, timeout), as_json)
    err = BrokerError.from_payload(reply)
    if err is not None:
        common.fail(err, as_json)
    common.show(reply, as_json, lambda: Group(*renderables(reply, f"{protocol} result")))
    nobody = all_errored(reply)
    if nobody is not None:
        common.fail(nobody, as_json)


def all_errored(reply: Any) -> BrokerError | None:
    """A result every participant of which answered with an error decided nothing: the
    command fails (exit 1) rather than print a decision-less result and exit 0."""
    if not isinstance(reply, dict):
        return None
    asked, errored = reply.get("participants"), reply.get("errored")
    if not isinstance(asked, int) or not isinstance(errored, list) or asked <= 0:
        return None
    if len(errored) < asked:
        return None
    return BrokerError(ErrorCode.HANDLER_ERROR, f"all {asked} participant(s) answered with an "
                       "error: nothing was decided", {"errored": errored})


app.command("schema")(schema_command)
app.command("request")(request_command)
