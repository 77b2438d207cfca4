"""What every ``broker-agents`` command shares, written once.

- option types (``--nats``, ``--prefix``, ``--json``, ``--timeout``, ``--config``, and who
  a command is: ``--context``, ``--creds``, ``--tls-ca``, also ``$BA_CONTEXT``,
  ``$BA_CREDS``, ``$BA_TLS_CA``);
- ``Target`` and ``connect``: a command's NATS connection as the least role that can do
  its work (client by default; observer to read a bucket; node where a command still
  writes one directly). With no ``--context``, the role's context is found by itself
  (``~/.config/broker-agents/``, then ``./data/auth/``, what a local node writes);
  ``--creds`` and ``--tls-ca`` override the context's. Failing to connect is an
  ``unavailable`` error rather than a traceback;
- ``run``: run a command's coroutine; a ``BrokerError`` (or NATS trouble) becomes a
  structured error and ``ExitCode.FAILURE``;
- output: results on stdout as a rich table, or one JSON document with ``--json``; errors
  as ``{"error": {"code", "message", "details"}}`` on stdout with ``--json``, else as one
  unwrapped line ``<code> <message>`` on stderr: never a traceback (``crash``);
- ``ExitCode`` (re-exported from ``node.exitcodes``): what every exit status means.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import nats.errors
import nats.js.errors
import typer
from nats.aio.client import Client as NATS
from rich.console import Console, JustifyMethod, RenderableType
from rich.markup import escape
from rich.table import Table

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.transport import Security, connect_client
from node.auth import context as contexts
from node.auth.context import ClientContext
from node.auth.creds import creds_inbox_prefix
from node.auth.roles import Role
from node.exitcodes import ExitCode

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_PREFIX = "ba"

NatsOpt = Annotated[str | None, typer.Option(
    "--nats", help="NATS server URL(s), comma-separated (default: the context's servers, "
                   f"else {DEFAULT_URL})")]
ContextOpt = Annotated[Path | None, typer.Option(
    "--context", envvar="BA_CONTEXT",
    help="client context file: servers, creds, CA (default: found by itself for the role "
         "the command needs, in ~/.config/broker-agents/ or ./data/auth/)")]
CredsOpt = Annotated[Path | None, typer.Option(
    "--creds", envvar="BA_CREDS", help="NATS user .creds file (instead of the context's)")]
TlsCaOpt = Annotated[Path | None, typer.Option(
    "--tls-ca", envvar="BA_TLS_CA",
    help="CA that signed the servers' certificates (instead of the context's)")]
InsecureOpt = Annotated[bool, typer.Option(
    "--insecure", help="no NATS authentication, permissions or TLS (experiments only)")]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="subject and bucket prefix")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1,
                                           help="seconds to wait for the reply")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c",
                                                help="node config file (TOML)")]


_denied: list[str] = []  # permissions violations the server reported to this command


def _on_error(command: asyncio.Task[Any] | None) -> Callable[[Exception], Awaitable[None]]:
    """Connection trouble is reported once, as the command's error, not as tracebacks. A
    permissions violation ends the command at once (its request would only time out):
    ``run`` reports it as ``forbidden``."""

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            _denied.append(str(exc))
            if command is not None and not command.done():
                command.cancel()

    return on_error


@dataclass(frozen=True)
class Target:
    """Where a command connects and who it says it is: its options, as given."""

    nats: str | None = None
    context: Path | None = None
    creds: Path | None = None
    tls_ca: Path | None = None

    def resolve(self, role: Role = Role.CLIENT) -> tuple[list[str], Security, Path | None]:
        """Servers, security and the context file used (if any) for a ``role`` command."""
        found = contexts.find(self.context, role=role)
        ctx = ClientContext.read(found) if found is not None else None
        base = ctx.security() if ctx is not None else Security()
        security = Security(
            creds_file=self.creds or base.creds_file,
            tls_ca_file=self.tls_ca or base.tls_ca_file,
            inbox_prefix=creds_inbox_prefix(self.creds) if self.creds else base.inbox_prefix)
        if self.nats:
            servers = [u.strip() for u in self.nats.split(",") if u.strip()]
        else:
            servers = list(ctx.servers) if ctx is not None else [DEFAULT_URL]
        return servers, security, found


async def connect(where: Target, *, role: Role = Role.CLIENT, reconnect: bool = False) -> NATS:
    """A command's connection as ``role``; one that cannot be made is a
    ``BrokerError(UNAVAILABLE)`` that says which servers and which identity were tried.

    Every server is tried (twice) before the command gives up; ``reconnect=True`` (``var
    watch``) reconnects after a later disconnect, for a connection that lives until Ctrl-C.
    """
    servers, security, found = where.resolve(role)
    options: dict[str, Any] = {"max_reconnect_attempts": 1, "reconnect_time_wait": 0.25}
    if not reconnect:
        options["allow_reconnect"] = False
    try:
        return await connect_client(servers, security=security, connect_timeout=3,
                                    error_cb=_on_error(asyncio.current_task()), **options)
    except Exception as exc:
        who = (f"context {found}" if found else f"creds {security.creds_file}"
               if security.creds_file else "no credentials (no context found: --context, "
               "$BA_CONTEXT, or run where ./data/auth is)")
        raise BrokerError(ErrorCode.UNAVAILABLE,
                          f"cannot connect to NATS at {', '.join(servers)} as {role} with "
                          f"{who}: {describe(exc)}",
                          {"servers": servers, "role": str(role)}) from exc


def warn_insecure() -> None:
    """What ``--insecure`` turns off, said before anything starts."""
    err_console.print("[bold red]--insecure[/bold red]: NATS runs without authentication, "
                      "permissions and TLS. Anyone who reaches it can read and write every "
                      "subject and bucket, balances and Raft traffic included. For "
                      "experiments only.")


def run(work: Coroutine[Any, Any, T], as_json: bool = False) -> T:
    """``asyncio.run(work)``; an error is printed (see ``fail``) and exits FAILURE. A
    request the server refused to carry (a permissions violation) is ``forbidden``; NATS
    trouble is ``unavailable``; anything else is ``internal``, one line too (a traceback
    only with ``$BA_DEBUG`` set)."""
    _denied.clear()
    try:
        return asyncio.run(work)
    except BrokerError as err:
        fail(err, as_json)
    except (nats.errors.NoRespondersError, TimeoutError, asyncio.CancelledError) as exc:
        if _denied:
            fail(BrokerError(ErrorCode.FORBIDDEN, f"{_denied[0]}: the identity this command "
                             "used may not do that; give it a context (--context) of a role "
                             "that may", {"violations": list(_denied)}), as_json)
        if isinstance(exc, asyncio.CancelledError):
            raise
        if isinstance(exc, nats.errors.NoRespondersError):
            fail(BrokerError(ErrorCode.UNAVAILABLE, "nobody is listening for this request"),
                 as_json)
        fail(BrokerError(ErrorCode.TIMEOUT, f"no reply in time: {describe(exc)}"), as_json)
    except nats.js.errors.ServiceUnavailableError:
        fail(BrokerError(ErrorCode.UNAVAILABLE, "JetStream does not answer on this server "
                         "(is it enabled, for this account?)"), as_json)
    except (OSError, nats.errors.Error) as exc:
        fail(BrokerError(ErrorCode.UNAVAILABLE, f"cannot reach NATS: {describe(exc)}"),
             as_json)
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except Exception as exc:
        crash(exc, as_json)


def describe(exc: BaseException) -> str:
    """An exception as one line: its message, or its type when it has none
    (``TimeoutError()``, nats-py's ``ServiceUnavailableError``)."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text}" if text and name not in text else text or name


def crash(exc: BaseException, as_json: bool = False) -> NoReturn:
    """A bug or an unforeseen condition: ``internal``, one line, ``ExitCode.FAILURE``; the
    traceback only with ``$BA_DEBUG`` set (a user gets a message, a developer the stack)."""
    if os.environ.get("BA_DEBUG"):
        traceback.print_exception(exc)
    where = _raised_at(exc)
    fail(BrokerError(ErrorCode.INTERNAL, f"{describe(exc)} at {where} (set BA_DEBUG=1 for "
                     "the traceback)", {"type": type(exc).__name__, "where": where}), as_json)


def _raised_at(exc: BaseException) -> str:
    """Where ``exc`` was raised, as ``file:line in function`` of the innermost frame of
    ours (else the innermost): enough to tell one bare ``TimeoutError()`` from another in
    a CI log."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if any(f"/{pkg}/" in f.filename for pkg in _OURS)]
    if not (ours or frames):
        return "?"
    last = (ours or frames)[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


_OURS = ("broker_agents", "node", "chaos")


def fail(err: BrokerError, as_json: bool = False, *, label: str | None = None,
         code: ExitCode = ExitCode.FAILURE) -> NoReturn:
    """Print ``err`` and exit with ``code``: with ``--json`` its wire payload on stdout,
    else ``<code> <message>`` on stderr, never wrapped (the details are in ``--json``).

    ``label`` replaces the error code at the start of the line (``config error``).
    """
    if as_json:
        print_json(err.to_payload())
    else:
        err_console.print(f"[red]{escape(label or str(err.code))}[/red] {escape(err.message)}",
                          soft_wrap=True)
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
