"""``broker-agents auth init|issue|server-config|context``: credentials for real clusters.

    broker-agents auth init --dir ./ba-auth
    broker-agents auth issue node node-1 --dir ./ba-auth
    broker-agents auth issue client alice --dir ./ba-auth
    broker-agents auth server-config --dir ./ba-auth --servers 3 --host h1 --host h2 --host h3
    broker-agents auth context --dir ./ba-auth --user alice --server tls://h1:4222

Every command prints what it wrote (``--json``: one JSON document). Errors are
structured: a usage or validation problem exits ``ExitCode.USAGE``, anything else that
went wrong (an existing operator, a directory never initialised) ``ExitCode.FAILURE``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from broker_agents.core.errors import BrokerError, ErrorCode
from node.auth.authority import Authority
from node.auth.context import ClientContext
from node.auth.roles import DEFAULT_PREFIX, Role, inbox_prefix
from node.auth.server_config import ServerSpec, write_configs
from node.cli import common
from node.cli.common import JsonOpt, PrefixOpt
from node.exitcodes import ExitCode

app = typer.Typer(no_args_is_help=True,
                  help="Identities and roles: operator, account, users, TLS, server configs.")
T = TypeVar("T")
V = TypeVar("V")

DEFAULT_DIR = Path("./ba-auth")
CLUSTER_SIZES = (1, 3, 5)
USAGE_CODES = {ErrorCode.VALIDATION, ErrorCode.CONFIG, ErrorCode.BAD_REQUEST}

DirOpt = Annotated[Path, typer.Option("--dir", envvar="BA_AUTH_DIR",
                                      help="the auth directory (secrets: keep it private)")]


def _attempt(work: Callable[[], T], as_json: bool) -> T:
    """``work()``; a ``BrokerError`` (or a bad value) is printed and exits with its code."""
    try:
        return work()
    except BrokerError as err:
        common.fail(err, as_json,
                    code=ExitCode.USAGE if err.code in USAGE_CODES else ExitCode.FAILURE)
    except ValueError as exc:
        common.fail(BrokerError(ErrorCode.VALIDATION, str(exc)), as_json, code=ExitCode.USAGE)
    except OSError as exc:
        common.fail(BrokerError(ErrorCode.UNAVAILABLE, str(exc)), as_json)


def _wrote(title: str, paths: Sequence[Path], as_json: bool, **extra: str) -> None:
    data = {"wrote": [str(p) for p in paths], **extra}
    common.show(data, as_json, lambda: common.pairs_table(
        title, [*(("wrote", str(p)) for p in paths), *extra.items()], columns=None))


@app.command("init")
def init(directory: DirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Create the operator, the application account (JetStream on) and the system account."""
    auth = _attempt(lambda: Authority.create(directory), as_json)
    _wrote("auth init", sorted(p for p in directory.iterdir() if p.is_file()), as_json,
           operator=auth.operator.public_key, account=auth.account.public_key,
           system_account=auth.system.public_key)


@app.command("issue")
def issue(
    role: Annotated[Role, typer.Argument(help="node, client, admin or observer")],
    name: Annotated[str, typer.Argument(help="user name (letters, digits, '_', '-')")],
    directory: DirOpt = DEFAULT_DIR,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    out: Annotated[Path | None, typer.Option("--out", help="creds file to write "
                                             "(default: <dir>/creds/NAME.creds)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace existing creds")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Issue NAME's user JWT and nkey in ROLE, written as NAME.creds."""

    def work() -> Path:
        auth = Authority.load(directory)
        path = out or auth.creds_path(name)
        if path.exists() and not force:
            raise BrokerError(ErrorCode.ALREADY_EXISTS, f"{path} exists; --force replaces it "
                              "(the old creds keep working until the account revokes them)",
                              {"path": str(path)})
        return auth.issue(role, name, prefix=prefix, out=path)

    path = _attempt(work, as_json)
    _wrote("auth issue", [path], as_json, role=role.value, inbox_prefix=inbox_prefix(name))


def _per_server(values: list[V], count: int, option: str) -> list[V]:
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise BrokerError(ErrorCode.VALIDATION, f"give {option} once, or once per server "
                          f"({count})", {option: values})
    return values


@app.command("server-config")
def server_config(
    servers: Annotated[int, typer.Option("--servers", help="1 (single) or 3/5 (cluster)")] = 1,
    hosts: Annotated[list[str] | None, typer.Option(
        "--host", help="host name or address clients and peers dial: once per server, or "
                       "once for all (then give each server its own ports)")] = None,
    ports: Annotated[list[int] | None, typer.Option("--port", help="client port(s)")] = None,
    cluster_ports: Annotated[list[int] | None, typer.Option(
        "--cluster-port", help="route port(s)")] = None,
    http_ports: Annotated[list[int] | None, typer.Option(
        "--http-port", help="monitoring port(s), served on 127.0.0.1 only")] = None,
    listen: Annotated[str, typer.Option("--listen", help="address to listen on")] = "0.0.0.0",
    cluster_name: Annotated[str, typer.Option("--cluster-name")] = "ba",
    store_dir: Annotated[str | None, typer.Option(
        "--store-dir", help="JetStream store; {name} is the server's name "
                            "(default: <dir>/jetstream/{name})")] = None,
    sync_interval: Annotated[str | None, typer.Option(
        "--sync-interval", help="JetStream fsync: 'always' for every write (nats-server "
                                ">= 2.10; default: the server's lazy 2 minutes)")] = None,
    directory: DirOpt = DEFAULT_DIR,
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", help="where the configs go (default: <dir>/servers)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write nats-server configs: operator auth with the memory resolver, TLS for clients
    and routes, route authentication, a cluster block for 3 or 5 servers, JetStream."""

    def work() -> list[Path]:
        if servers not in CLUSTER_SIZES:
            raise BrokerError(ErrorCode.VALIDATION, f"--servers must be one of {CLUSTER_SIZES}",
                              {"servers": servers})
        auth = Authority.load(directory)
        names = [f"{cluster_name}-{i + 1}" for i in range(servers)]
        specs = [
            ServerSpec(name, host, port=port, cluster_port=cport, http_port=hport,
                       listen=listen,
                       store_dir=Path(store_dir.format(name=name)) if store_dir else None)
            for name, host, port, cport, hport in zip(
                names, _per_server(hosts or ["127.0.0.1"], servers, "--host"),
                _per_server(ports or [4222], servers, "--port"),
                _per_server(cluster_ports or [6222], servers, "--cluster-port"),
                _per_server(http_ports or [8222], servers, "--http-port"), strict=True)]
        return write_configs(auth, specs, out_dir=out_dir, cluster_name=cluster_name,
                             sync_interval=sync_interval)

    paths = _attempt(work, as_json)
    _wrote("auth server-config", paths, as_json,
           ca=str(Authority.load(directory).ca_path))


@app.command("context")
def context(
    user: Annotated[str, typer.Option("--user", help="whose creds (<dir>/creds/USER.creds)")],
    server_urls: Annotated[list[str] | None, typer.Option(
        "--server", help="server URL(s), e.g. tls://h1:4222")] = None,
    creds: Annotated[Path | None, typer.Option("--creds", help="creds file (default: the "
                                               "user's in --dir)")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="context file (default: <dir>/context-USER.json; point $BA_CONTEXT at "
                      "it, or copy it to ~/.config/broker-agents/context.json)")] = None,
    directory: DirOpt = DEFAULT_DIR,
    prefix: PrefixOpt = DEFAULT_PREFIX,
    as_json: JsonOpt = False,
) -> None:
    """Write a client context: servers, creds, the CA and the user's inbox prefix."""

    def work() -> Path:
        auth = Authority.load(directory)
        path = creds or auth.creds_path(user)
        if not path.is_file():
            raise BrokerError(ErrorCode.NOT_FOUND, f"no creds at {path}: run `broker-agents "
                              f"auth issue ROLE {user}` first", {"path": str(path)})
        urls = tuple(server_urls or ["tls://127.0.0.1:4222"])
        bad = [u for u in urls if "://" not in u]
        if bad:
            raise BrokerError(ErrorCode.VALIDATION, f"not server URLs: {bad}")
        auth.ensure_ca()  # the one server-config signs with, made now if it has not run yet
        ctx = ClientContext(servers=urls, creds=path, ca=auth.ca_path,
                            inbox_prefix=inbox_prefix(user), subject_prefix=prefix,
                            description=f"broker-agents user {user}")
        return ctx.write(out or directory / f"context-{user}.json")

    path = _attempt(work, as_json)
    _wrote("auth context", [path], as_json, inbox_prefix=inbox_prefix(user),
           ca=str(Authority.load(directory).ca_path))
