"""What every ``broker-agents`` command shares, written once.

- option types (``--nats``, ``--prefix``, ``--json``, ``--timeout``, ``--config``);
- ``connect``: a command's NATS connection, where failing to connect is an
  ``unavailable`` error rather than a traceback;
- ``run``: run a command's coroutine; a ``BrokerError`` (or NATS trouble) becomes a
  structured error and ``ExitCode.FAILURE``;
- output: results on stdout as a rich table, or one JSON document with ``--json``; errors
  as ``{"error": {"code", "message", "details"}}`` on stdout with ``--json``, else as a red
  line (and the details) on stderr;
- ``ExitCode`` (re-exported from ``node.exitcodes``): what every exit status means.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import nats.errors
import typer
from nats.aio.client import Client as NATS
from rich.console import Console, JustifyMethod, RenderableType
from rich.markup import escape
from rich.table import Table

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.transport import connect_client
from node.exitcodes import ExitCode

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_PREFIX = "ba"

NatsOpt = Annotated[str, typer.Option("--nats", help="NATS server URL")]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="subject and bucket prefix")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1,
                                           help="seconds to wait for the reply")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c",
                                                help="node config file (TOML)")]


async def _quiet(exc: Exception) -> None:
    """Connection trouble is reported once, as the command's error, not as tracebacks."""


async def connect(url: str, *, reconnect: bool = False) -> NATS:
    """A command's connection; one that cannot be made is a ``BrokerError(UNAVAILABLE)``.

    One-shot commands try once; ``reconnect=True`` (``var watch``) keeps nats-py's
    reconnecting default for a connection that lives until Ctrl-C.
    """
    options: dict[str, Any] = {} if reconnect else {"max_reconnect_attempts": 1}
    try:
        return await connect_client(url, connect_timeout=3, error_cb=_quiet, **options)
    except Exception as exc:
        raise BrokerError(ErrorCode.UNAVAILABLE,
                          f"cannot connect to NATS at {url}: {exc}") from exc


def run(work: Coroutine[Any, Any, T], as_json: bool = False) -> T:
    """``asyncio.run(work)``; an error is printed (see ``fail``) and exits FAILURE."""
    try:
        return asyncio.run(work)
    except BrokerError as err:
        fail(err, as_json)
    except nats.errors.NoRespondersError:
        fail(BrokerError(ErrorCode.UNAVAILABLE, "nobody is listening for this request"),
             as_json)
    except TimeoutError as exc:  # nats-py's timeouts are TimeoutErrors too
        fail(BrokerError(ErrorCode.TIMEOUT, f"no reply in time: {exc!r}"), as_json)
    except (OSError, nats.errors.Error) as exc:
        fail(BrokerError(ErrorCode.UNAVAILABLE, f"cannot reach NATS: {exc!r}"), as_json)


def fail(err: BrokerError, as_json: bool = False, *, label: str | None = None,
         code: ExitCode = ExitCode.FAILURE) -> NoReturn:
    """Print ``err`` (as its wire payload with ``--json``) and exit with ``code``.

    ``label`` replaces the error code at the start of the line (``config error``).
    """
    if as_json:
        print_json(err.to_payload())
    else:
        err_console.print(f"[red]{escape(label or str(err.code))}[/red] {escape(err.message)}")
        if err.details:
            err_console.print_json(json.dumps(err.details, default=str))
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    """One JSON document on one line of stdout (flushed: ``watch`` streams them)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def show(data: Any, as_json: bool, render: Callable[[], RenderableType]) -> None:
    """``data`` as JSON, or what ``render`` draws of it."""
    if as_json:
        print_json(data)
    else:
        console.print(render())


def pairs_table(title: str, rows: Iterable[tuple[str, str]],
                columns: tuple[str, str] | None = ("field", "value"),
                justify: JustifyMethod = "left") -> Table:
    """A two-column table of names and values (no header when ``columns`` is None)."""
    table = Table(title=title, show_header=columns is not None)
    name_column, value_column = columns or ("", "")
    table.add_column(name_column)
    table.add_column(value_column, justify=justify)
    for name, value in rows:
        table.add_row(name, value)
    return table


def json_or_text(raw: str) -> Any:
    """A command-line value: JSON when it parses as JSON, else the string itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw
