"""``broker-agents chaos ...``: the Typer sub-app the node CLI mounts (lazily) as ``chaos``.

``run`` shows progress while scenarios run, ends with a table and a JSON report, and
exits ``ExitCode.FAILURE`` if any scenario found a violation, could not decide, or
crashed (``ExitCode.USAGE`` for an unknown scenario or network name, and for
``--network netns`` where namespaces are not permitted: one line says why).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from broker_agents.logging import configure_logging
from chaos import scenarios
from chaos.report import ChaosReport
from node.cli.common import console, err_console
from node.exitcodes import ExitCode

DEFAULT_REPORT = Path("chaos-report.json")

app = typer.Typer(help="Fault-injection scenarios with history checking.", no_args_is_help=True,
                  add_completion=False)


@app.command("list")
def list_scenarios() -> None:
    """Show the registered scenarios."""
    for name in scenarios.names():
        console.print(f"[bold]{name}[/bold]  {scenarios.REGISTRY[name].description}")


@app.command("run")
def run(
    scenario: str = typer.Option("all", "--scenario", help="scenario name, or 'all'"),
    seed: int | None = typer.Option(None, "--seed", help="seed (default: time-based, printed)"),
    duration: float = typer.Option(20.0, "--duration", help="fault phase length in seconds"),
    report: Annotated[Path, typer.Option("--report", help="JSON report path")] = DEFAULT_REPORT,
    workdir: Annotated[Path | None, typer.Option("--workdir", help="keep cluster data here")]
    = None,
    network: str = typer.Option(
        "loopback", "--network",
        help="loopback: one interface, faults through proxies; netns: each server and node "
             "daemon a host in its own network namespace, faults as nft drops (root)"),
) -> None:
    """Run scenarios under a seeded fault schedule and check their histories."""
    if network not in scenarios.NETWORKS:
        err_console.print(f"[red]unknown network[/red] {network!r}; known: "
                          f"{list(scenarios.NETWORKS)}", soft_wrap=True)
        raise typer.Exit(ExitCode.USAGE)
    if network == "netns":
        from chaos.netns.hosts import unavailable_reason

        reason = unavailable_reason()
        if reason is not None:
            err_console.print(f"--network netns is not possible here: {reason}",
                              markup=False, soft_wrap=True)
            raise typer.Exit(ExitCode.USAGE)
    # the scenario's own clients log through structlog; keep the progress view readable
    configure_logging(level="error")
    scenarios.load_builtin()
    names = scenarios.names() if scenario == "all" else [scenario]
    unknown = [n for n in names if n not in scenarios.REGISTRY]
    if unknown:
        err_console.print(f"[red]unknown scenario(s)[/red] {unknown}; known: "
                          f"{scenarios.names()}", soft_wrap=True)
        raise typer.Exit(ExitCode.USAGE)
    chosen_seed = seed if seed is not None else int(time.time()) % 1_000_000
    result = ChaosReport(network=network, seed=chosen_seed)
    for name in names:
        console.print(f"[bold]{name}[/bold] seed={chosen_seed} duration={duration:g}s "
                      f"network={network} (replay: --network {network} --scenario {name} "
                      f"--seed {chosen_seed})")
        with console.status(f"{name}: starting") as status:
            def progress(msg: str, name: str = name, status: object = status) -> None:
                console.log(f"{name}: {msg}")
                status.update(f"{name}: {msg}")  # type: ignore[attr-defined]

            result.scenarios.append(scenarios.run_scenario(
                name, chosen_seed, duration,
                workdir / name if workdir else None, progress=progress, network=network))
    result.write(report)
    result.render(console)
    console.print(f"report: {report}")
    if result.failed:
        raise typer.Exit(ExitCode.FAILURE)
