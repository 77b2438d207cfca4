"""``broker-agents dashboard``: the live web dashboard over a running cluster.

    broker-agents up --config config/playground.toml     # in one shell
    broker-agents dashboard                              # in another: http://127.0.0.1:8765/

Thin over ``node.dashboard.server``: flags and an optional node or playground config
(``[node] subject_prefix``, ``[dashboard] host/port/prometheus_url/context``) make a
``DashboardSettings``; ``serve`` runs until Ctrl-C. It connects as an ``observer``.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from broker_agents.core.errors import BrokerError, ErrorCode
from node.cli import common
from node.cli.common import ConfigOpt, ContextOpt, CredsOpt, NatsOpt, TlsCaOpt
from node.exitcodes import ExitCode

if TYPE_CHECKING:
    from node.dashboard.server import DashboardSettings


def dashboard(
    host: Annotated[str | None, typer.Option(
        "--host", help="address to listen on (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(
        "--port", min=0, max=65535, help="port (default 8765; 0 picks one)")] = None,
    config: ConfigOpt = None,
    prometheus_url: Annotated[str | None, typer.Option(
        "--prometheus-url", help="also show Prometheus' firing alerts")] = None,
    nats_url: NatsOpt = None, context: ContextOpt = None, creds: CredsOpt = None,
    tls_ca: TlsCaOpt = None,
    prefix: Annotated[str | None, typer.Option(
        "--prefix", help="subject and bucket prefix (default: the config's, else ba)")] = None,
) -> None:
    """Serve the live web dashboard (read-only; connects as an observer)."""
    from pydantic import ValidationError

    from node.dashboard.server import DashboardSettings

    flags = {"host": host, "port": port, "prometheus_url": prometheus_url, "nats": nats_url,
             "context": context, "creds": creds, "tls_ca": tls_ca, "prefix": prefix}
    try:
        settings = (DashboardSettings.from_config_file(config, **flags) if config is not None
                    else DashboardSettings(**{k: v for k, v in flags.items()
                                              if v is not None}))
    except (OSError, ValueError, ValidationError) as exc:
        common.fail(BrokerError(ErrorCode.CONFIG, common.describe(exc)),
                    label="config error", code=ExitCode.CONFIG)
    common.run(_serve(settings))


async def _serve(settings: DashboardSettings) -> None:
    from node.dashboard.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)
