"""``broker-agents node run``: one node daemon in this process.
``broker-agents node drain <id>`` / ``node undrain <id>``: move a node's agents and Raft
leaderships away before it stops, or take it back into service (admin; ``node/drain.py``).

Exit status: the daemon's own (``ExitCode.OK`` on a stop by signal, in any state of its
NATS connection; ``FAILURE`` when a supervisor gave up or no NATS server answered within
``nats.initial_connect_timeout``; ``FORCED`` on a second signal), or ``CONFIG`` for a
config that cannot be used or a NATS server that would not start. A port another
process holds (the HTTP port, the embedded server's) is ``CONFIG`` too, said in one line
before anything starts, rather than a bind traceback or a server that waits out its start
timeout.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.table import Table

from broker_agents.core.errors import BrokerError, ErrorCode
from node.cli import common
from node.cli.common import (
    DEFAULT_PREFIX,
    ConfigOpt,
    ContextOpt,
    CredsOpt,
    JsonOpt,
    NatsOpt,
    PrefixOpt,
    Target,
    TlsCaOpt,
    describe,
    fail,
)
from node.exitcodes import ExitCode

if TYPE_CHECKING:
    from node.config import NodeConfig

app = typer.Typer(no_args_is_help=True, help="Run a node daemon; drain or undrain one.")
NodeArg = Annotated[str, typer.Argument(help="node id")]


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (a bind with SO_REUSEADDR, as servers
    bind, fails only then: a port in TIME_WAIT counts as free)."""
    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _port_taken(what: str, host: str, port: int, setting: str) -> BrokerError:
    return BrokerError(ErrorCode.CONFIG, f"{what} port {host}:{port} is already in use by "
                       f"another process: stop it, or choose another port ({setting}, 0 "
                       "picks a free one)", {"host": host, "port": port, "setting": setting})


def check_ports(cfg: NodeConfig) -> None:
    """Refuse, in one line, ports someone else holds. A nats-server a killed node left on
    its data dir is not someone else: it is stopped first (``reap_stale``), as the node
    would."""
    from broker_agents.logging import get_logger
    from node.embedded import reap_stale

    if port_in_use(cfg.http.host, cfg.http.port):
        raise _port_taken("HTTP", cfg.http.host, cfg.http.port, "[http] port, BA_HTTP__PORT")
    embedded = cfg.nats.embedded
    if cfg.nats.embedded_server and port_in_use(embedded.host, embedded.port):
        stale = reap_stale(cfg.node.data_dir / "nats" / "nats-server.pid")
        if stale is not None:
            get_logger(component="node", node=cfg.node.id).warning(
                "stopped a nats-server left by a killed node", pid=stale)
        if port_in_use(embedded.host, embedded.port):
            raise _port_taken("NATS", embedded.host, embedded.port,
                              "[nats.embedded] port, BA_NATS__EMBEDDED__PORT")


def _first_and_last(text: str) -> str:
    """A server's failure in one line: what failed and its last log line (the fatal one)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"


@app.command("run")
def node_run(config: ConfigOpt = None) -> None:
    """Run a node daemon until SIGINT/SIGTERM (a second signal forces exit)."""
    from nats.aio.client import Client as NATS

    from broker_agents.logging import configure_logging
    from node.config import ConfigError, load_config
    from node.daemon import run
    from node.embedded import NatsServerError
    from node.hosting import build_specs

    try:
        cfg = load_config(config)
        build_specs(cfg, NATS(), {})  # every agent class, id and kwargs, before NATS and HTTP
        configure_logging(cfg.node.log_format, cfg.node.log_level)
        check_ports(cfg)
        code = run(cfg)
    except ConfigError as exc:
        fail(exc, label="config error", code=ExitCode.CONFIG)
    except NatsServerError as exc:
        fail(BrokerError(ErrorCode.UNAVAILABLE, _first_and_last(str(exc))),
             label="cannot start NATS", code=ExitCode.CONFIG)
    except BrokerError as exc:  # a port taken (config_error), or the start refused
        fail(exc, code=ExitCode.CONFIG if exc.code == ErrorCode.CONFIG else ExitCode.FAILURE)
    except OSError as exc:  # a port taken between the check and the bind
        if exc.errno != errno.EADDRINUSE:
            raise
        fail(BrokerError(ErrorCode.CONFIG, describe(exc)), label="port in use",
             code=ExitCode.CONFIG)
    raise typer.Exit(code)


def _drain_call(at: Target, prefix: str, node_id: str, op: str, timeout: float,
                as_json: bool) -> dict[str, Any]:
    """Send the admin request, print its answer (JSON, or tables)."""
    from broker_agents.subjects import Subjects
    from node.auth.roles import Role
    from node.drain import request_drain

    async def call() -> dict[str, Any]:
        nc = await common.connect(at, role=Role.ADMIN)
        try:
            return await request_drain(nc, Subjects(prefix), node_id, op, timeout)
        finally:
            await nc.close()

    report = common.run(call(), as_json)
    if op == "drain":
        common.show(report, as_json, lambda: render_drain(report))
    else:
        common.show(report, as_json, lambda: common.pairs_table(
            f"node {node_id}", [(k, str(v)) for k, v in report.items()]))
    return report


def render_drain(report: dict[str, Any]) -> Group:
    """The drain report as tables: agents (moved or not, and why), leaderships."""
    agents = Table(title=f"node {report.get('node')}: agents")
    for column in ("agent", "moved to", "gap (ms)", "held messages", "not moved because"):
        agents.add_column(column)
    gaps, handoff = report.get("gaps_ms", {}), report.get("handoff", {})
    for agent_id, target in sorted(report.get("moved", {}).items()):
        agents.add_row(agent_id, target, str(gaps.get(agent_id, "")),
                       handoff.get(agent_id, ""), "")
    for agent_id, why in sorted(report.get("not_moved", {}).items()):
        agents.add_row(agent_id, "", "", "", why)
    groups = Table(title="raft leadership")
    for column in ("group", "new leader", "not moved because"):
        groups.add_column(column)
    for group, leader in sorted(report.get("leadership", {}).items()):
        groups.add_row(group, leader, "")
    for group, why in sorted(report.get("leadership_not_moved", {}).items()):
        groups.add_row(group, "", why)
    ready = report.get("ready_to_stop")
    agents.caption = (f"draining: {report.get('draining')} · ready to stop: {ready} · "
                      f"{report.get('elapsed_s', 0)} s")
    return Group(agents, groups)


@app.command("drain")
def node_drain(node_id: NodeArg,
               timeout: Annotated[float, typer.Option(
                   "--timeout", help="seconds the whole drain may take")] = 60.0,
               nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
               tls_ca: TlsCaOpt = None, prefix: PrefixOpt = DEFAULT_PREFIX,
               as_json: JsonOpt = False) -> None:
    """Drain a node: no new work, its agents started on other nodes, its Raft leaderships
    moved. Exit 1 unless the report says ready_to_stop."""
    report = _drain_call(Target(nats_url, context, creds, tls_ca), prefix, node_id, "drain",
                         timeout, as_json)
    if not report.get("ready_to_stop"):
        raise typer.Exit(ExitCode.FAILURE)


@app.command("undrain")
def node_undrain(node_id: NodeArg, nats_url: NatsOpt = None, context: ContextOpt = None,
                 creds: CredsOpt = None, tls_ca: TlsCaOpt = None,
                 prefix: PrefixOpt = DEFAULT_PREFIX, as_json: JsonOpt = False) -> None:
    """Take a drained (not stopped) node back into service: ready again, it takes
    handovers; agents already moved stay where they are."""
    _drain_call(Target(nats_url, context, creds, tls_ca), prefix, node_id, "undrain", 10.0,
                as_json)
