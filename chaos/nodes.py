"""Node daemons in the chaos harness: separate OS processes whose NATS links run through
their own Toxiproxy proxies, so ``isolate_client(cluster, node_id)`` cuts one node off.

Each daemon is ``python -m node.cli node run`` configured by ``BA_*`` variables (as
``node.cluster.LocalCluster`` does: the cluster's node creds and CA among them),
registered with the cluster via ``add_process`` (so the cluster stops it), and ready when
its ``/readyz`` answers 200 (a probe, no sleep).
kill -9 and restart keep the node id, data dir and HTTP port.

Buckets are created up front with replicas 3 (and leader-only reads), because a node
creates a missing bucket with one replica, which a single killed server would take away.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.js.errors
from nats.js.api import KeyValueConfig

from broker_agents.kv import once_account_enabled
from broker_agents.transport import Security
from chaos.cluster import HOST, NatsCluster, http_json
from chaos.faults import PauseProcess
from chaos.process import ManagedProcess, ProcessError
from node.auth.roles import Role
from node.embedded import free_port

CONCERNS = ("agents", "nodes", "accounts", "auctions", "reputation")


@dataclass
class NodeDaemon:
    """One node daemon process of the harness."""

    node_id: str
    http_port: int
    proc: ManagedProcess
    http_host: str = HOST
    agents: list[dict[str, Any]] = field(default_factory=list)
    restart_errors: list[str] = field(default_factory=list)
    _restart: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.proc.alive

    def ready(self) -> bool:
        status, _ = http_json(f"http://{self.http_host}:{self.http_port}/readyz", timeout=0.5)
        return status == 200

    def agent_ids(self) -> list[str]:
        """The agent ids this node hosts (``count`` > 1 expands to ``id-1..id-N``)."""
        ids: list[str] = []
        for spec in self.agents:
            count = int(spec.get("count", 1))
            base = spec["id"]
            ids += [base] if count == 1 else [f"{base}-{i}" for i in range(1, count + 1)]
        return ids

    def metrics_text(self, timeout: float = 1.0) -> str:
        """The node's Prometheus exposition ('' when unreachable)."""
        try:
            with urllib.request.urlopen(f"http://{self.http_host}:{self.http_port}/metrics",
                                        timeout=timeout) as resp:
                return str(resp.read().decode())
        except (OSError, urllib.error.URLError):
            return ""

    def start(self, timeout: float = 30.0) -> None:
        self.proc.start(timeout)

    def kill(self) -> None:
        self.proc.kill()

    def restart_in_background(self, timeout: float = 30.0) -> None:
        """Start again without blocking the caller (a fault schedule must keep its timing).

        A daemon that exits during start (e.g. NATS timed out under a later fault) is
        started again, as a process supervisor would, until ``timeout``; each failed
        attempt is kept in ``restart_errors``. ``settle()`` waits and raises if it never
        came back.
        """
        self.settle(timeout)

        def start() -> None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.proc.start(max(deadline - time.monotonic(), 1.0))
                    return
                except Exception as exc:  # surfaced by settle() if it never comes up
                    self.restart_errors.append(f"{type(exc).__name__}: {exc}"[:2000])
                    if time.monotonic() > deadline:
                        return

        self._restart = threading.Thread(target=start, name=f"restart-{self.node_id}",
                                         daemon=True)
        self._restart.start()

    def settle(self, timeout: float = 30.0) -> None:
        """Wait for a background restart; raise ProcessError if the daemon is not up."""
        if self._restart is not None:
            self._restart.join(timeout)
            self._restart = None
            if not (self.alive and self.ready()):
                raise ProcessError(f"{self.node_id} did not restart: {self.restart_errors}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for a background restart, then until /readyz answers: a node whose link
        was healed a moment ago is still reconnecting. ProcessError if it never does."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ProcessError):  # it may be up but still reconnecting
            self.settle(timeout)
        pause = 0.02
        while not (self.alive and self.ready()):
            if time.monotonic() > deadline:
                raise ProcessError(f"{self.node_id} not ready within {timeout}s: "
                                   f"{self.restart_errors}")
            time.sleep(pause)  # sleep-ok: polling an external process's readiness probe
            pause = min(pause * 2, 0.2)

    def kill_fault(self) -> KillNode:
        """kill -9 as a schedulable fault; its heal restarts the daemon in the background."""
        return KillNode(self, target=self.node_id)

    def pause_fault(self) -> PauseProcess:
        """SIGSTOP as a schedulable fault (whichever process is current); heal: SIGCONT."""
        return PauseProcess(self.proc, kind="pause_node", target=self.node_id)


@dataclass
class KillNode:
    """kill -9 a node daemon; heal restarts it without blocking the schedule."""

    daemon: NodeDaemon
    kind: str = "kill_node"
    target: str = ""

    def inject(self) -> None:
        self.daemon.settle()
        self.daemon.kill()

    def heal(self) -> None:
        self.daemon.restart_in_background()


def node_env(node_id: str, servers: list[str], http_port: int, data_dir: str,
             agents: list[dict[str, Any]], services: dict[str, Any], security: Security,
             prefix: str = "ba", http_host: str = HOST) -> dict[str, str]:
    """The ``BA_*`` environment of one node daemon (same keys as ``LocalCluster``)."""
    return {
        "BA_NATS__AUTH": "creds",
        "BA_NATS__CREDS": str(security.creds_file),
        "BA_NATS__TLS_CA": str(security.tls_ca_file),
        "BA_NODE__ID": node_id,
        "BA_NODE__DATA_DIR": data_dir,
        "BA_NODE__SUBJECT_PREFIX": prefix,
        "BA_NODE__LOG_FORMAT": "json",
        "BA_NATS__SERVERS": json.dumps(servers),
        # a cut link is a black hole on netns: find it dead within ~2 s, then fail over
        "BA_NATS__PING_INTERVAL": "0.5",
        "BA_NATS__MAX_OUTSTANDING_PINGS": "3",
        "BA_HTTP__HOST": http_host,
        "BA_HTTP__PORT": str(http_port),
        "BA_AGENTS": json.dumps(agents),
        "BA_SERVICES": json.dumps(services),
        "PYTHONUNBUFFERED": "1",
    }


def add_node(cluster: NatsCluster, node_id: str, agents: list[dict[str, Any]],
             services: dict[str, Any] | None = None, prefix: str = "ba") -> NodeDaemon:
    """Declare (not start) a node daemon placed as the cluster's network places it: on
    loopback behind its own proxies, or on its own host in a namespace."""
    link = cluster.node_link(node_id)
    port = free_port()
    base = cluster.base_dir / node_id
    base.mkdir(parents=True, exist_ok=True)
    env = node_env(node_id, link.servers, port, str(base / "data"), agents,
                   services or {}, cluster.security(Role.NODE), prefix, link.http_host)
    argv = link.wrap([sys.executable, "-m", "node.cli", "node", "run"])
    proc = cluster.add_process(node_id, argv, env=env, cwd=_repo_root(),
                               log_path=base / "node.log")
    daemon = NodeDaemon(node_id, port, proc, link.http_host, list(agents))
    proc.probe = daemon.ready
    return daemon


async def start_nodes(daemons: list[NodeDaemon], timeout: float = 60.0) -> None:
    """Start daemons concurrently (each waits for its own /readyz)."""
    await asyncio.gather(*(asyncio.to_thread(d.start, timeout) for d in daemons))


async def create_buckets(js: Any, prefix: str = "ba", replicas: int = 3,
                         concerns: tuple[str, ...] = CONCERNS) -> None:
    """Create the node buckets replicated (history 1, reads from the stream leader)."""
    for concern in concerns:
        config = KeyValueConfig(bucket=f"{prefix}_{concern}", history=1, replicas=replicas,
                                direct=False)
        try:
            await once_account_enabled(functools.partial(js.create_key_value, config))
        except nats.js.errors.BadRequestError:
            await js.key_value(config.bucket)  # exists already: bind


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def service_env(registry: dict[str, Any] | None = None) -> dict[str, Any]:
    """``BA_SERVICES`` for chaos runs: fast liveness so reaping fits in a short run."""
    options = {"heartbeat_interval": 0.2, "window": 1.0, "grace": 0.5, "reap_interval": 0.2}
    options.update(registry or {})
    return {"registry": options}
