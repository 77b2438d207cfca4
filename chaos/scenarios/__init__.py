"""The scenario registry: named async runs that return a ScenarioReport.

A scenario receives a ScenarioContext (seed, duration, a work dir, the Toxiproxy client,
the network to run on, a seeded rng and a progress callback) and makes its cluster with
``ctx.cluster(...)``: on ``loopback`` every link runs through proxies, on ``netns`` servers
and node daemons are hosts in network namespaces. Workload scenarios register themselves with
``@scenario("name", "what it proves")``; ``run_scenario`` sets up Toxiproxy (real one via
``TOXIPROXY_URL`` or the in-process server) and turns a crash into an "error" report.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import random
import tempfile
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.cluster import NatsCluster, ProxiedNatsCluster
from chaos.report import ScenarioReport
from chaos.toxiproxy.client import ToxiproxyClient, toxiproxy_client

Progress = Callable[[str], None]
NETWORKS = ("loopback", "netns")


@dataclass
class ScenarioContext:
    seed: int
    duration: float
    workdir: Path
    toxi: ToxiproxyClient
    rng: random.Random = field(init=False)
    progress: Progress = print
    network: str = "loopback"

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def cluster(self, base_dir: Path, prefix: str, node_hosts: list[str] | None = None
                ) -> NatsCluster:
        """A (not yet started) 3-server cluster on this run's network; on netns each of
        ``node_hosts`` (the node daemons' ids) gets a host of its own."""
        if self.network == "netns":
            from chaos.netns.cluster import NetnsNatsCluster  # root-only machinery: lazily

            return NetnsNatsCluster(base_dir, self.toxi, prefix=prefix,
                                    node_hosts=list(node_hosts or []))
        return ProxiedNatsCluster(base_dir, self.toxi, prefix=prefix)

    def describe(self, report: ScenarioReport, cluster: NatsCluster) -> None:
        """Record the network and its hosts in the report."""
        report.network = self.network
        report.hosts = cluster.hosts()


Runner = Callable[[ScenarioContext], Coroutine[Any, Any, ScenarioReport]]


@dataclass
class ScenarioSpec:
    name: str
    description: str
    run: Runner


REGISTRY: dict[str, ScenarioSpec] = {}


def scenario(name: str, description: str) -> Callable[[Runner], Runner]:
    def register(run: Runner) -> Runner:
        REGISTRY[name] = ScenarioSpec(name, description, run)
        return run
    return register


def load_builtin() -> None:
    """Import the built-in scenarios (every module of this package but ``support``) so
    they register; kept lazy: they import nats."""
    for module in pkgutil.iter_modules(__path__):
        if module.name != "support":
            importlib.import_module(f"{__name__}.{module.name}")


def names() -> list[str]:
    load_builtin()
    return sorted(REGISTRY)


def run_scenario(name: str, seed: int, duration: float, workdir: Path | None = None,
                 progress: Progress = print, network: str = "loopback") -> ScenarioReport:
    """Run one scenario to completion (blocking); never raises for a scenario failure."""
    load_builtin()
    spec = REGISTRY[name]
    base = workdir or Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        with toxiproxy_client() as toxi:
            ctx = ScenarioContext(seed, duration, base, toxi, progress=progress,
                                  network=network)
            return asyncio.run(spec.run(ctx))
    except Exception as exc:
        return ScenarioReport(scenario=name, seed=seed, duration_s=duration, network=network,
                              error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
