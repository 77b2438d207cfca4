"""``broker-agents node run``: one node daemon in this process.

Exit status: the daemon's own (``ExitCode.OK`` on a clean stop, ``FAILURE`` when its root
supervisor gave up, ``FORCED`` on a second signal), or ``CONFIG`` for a config that
cannot be used or a NATS server that would not start.
"""

from __future__ import annotations

import typer

from node.cli.common import ConfigOpt, fail
from node.exitcodes import ExitCode

app = typer.Typer(no_args_is_help=True, help="Run a node daemon.")


@app.command("run")
def node_run(config: ConfigOpt = None) -> None:
    """Run a node daemon until SIGINT/SIGTERM (a second signal forces exit)."""
    from broker_agents.logging import configure_logging
    from node.config import ConfigError, load_config
    from node.daemon import run
    from node.embedded import NatsServerError

    try:
        cfg = load_config(config)
        configure_logging(cfg.node.log_format, cfg.node.log_level)
        code = run(cfg)
    except ConfigError as exc:
        fail(exc, label="config error", code=ExitCode.CONFIG)
    except NatsServerError as exc:
        fail(exc, label="cannot start NATS", code=ExitCode.CONFIG)
    raise typer.Exit(code)
