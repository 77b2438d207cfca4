"""Run nats-server processes: the node's embedded server, test fixtures, local clusters.

Secured by default: ``secured_server`` and ``start_cluster`` run servers from the configs
``node.auth.local`` renders (operator auth with the memory resolver, TLS for clients, route
TLS and route auth), and the server object carries the ``LocalAuth`` a caller connects
with (``server.auth.security(role)``). ``secure=False`` runs an open server, for
experiments (``auth = "none"``).

Readiness is an event, not a sleep: we wait for the server's "Server is ready" log line
and then for its monitoring ``/healthz`` to report JetStream usable.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

# Compare-and-set on a clustered (replicated) stream is serialized from 2.10 on; 2.9.x may
# accept two updates made from the same revision (nats-io/nats-server#4320, which our
# chaos suite reproduces on Debian's 2.9.10). Single-server CAS is fine on 2.9.
from broker_agents.transport import CLUSTER_CAS_SAFE as CLUSTER_CAS_SAFE
from node.auth.local import LocalAuth, ensure_cluster, ensure_local
from node.auth.server_config import ServerSpec
from node.nats_binary import INSTALL_HINT as INSTALL_HINT
from node.nats_binary import NatsServerError as NatsServerError
from node.nats_binary import binary_version as binary_version
from node.nats_binary import find_binary as find_binary

LOOPBACK = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "::", "")


_ports = random.Random()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


# The ports free_port handed out last (bounded: old ones may be free again).
_handed_out: deque[int] = deque(maxlen=4096)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on, chosen *below* the kernel's ephemeral range.

    Port 0 would hand out an ephemeral port, and outgoing connections (NATS clients,
    proxies) take ports from that same range, so a server started a moment later could
    find its port taken. Below the range only listeners compete. A port handed out is not
    handed out again by this process for a while: callers often take several before
    starting anything on them (a cluster's client, route and monitor ports).
    """
    low, _ = _ephemeral_range()
    for _ in range(100):
        port = _ports.randrange(10000, max(10001, low))
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            _handed_out.append(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class NatsServer:
    """One nats-server process we started and own.

    With ``config``, the server runs from that file alone (command-line flags such as
    ``-sd`` would clash with its settings): its ports must be the ones the fields name,
    and ``tls`` says whether clients must speak TLS (``tls://`` URLs).
    """

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    monitor_port: int = 0
    cluster_name: str | None = None
    cluster_port: int = 0
    routes: list[str] = field(default_factory=list)
    server_name: str | None = None
    extra_args: list[str] = field(default_factory=list)
    config: Path | None = None
    tls: bool = False
    auth: LocalAuth | None = None
    min_version: tuple[int, int] | None = None
    process: subprocess.Popen[bytes] | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _log_tail: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        host = LOOPBACK if self.host in WILDCARDS else self.host
        return f"{'tls' if self.tls else 'nats'}://{host}:{self.port}"

    @property
    def urls(self) -> list[str]:
        return [self.url]

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        binary = find_binary(self.min_version, cluster=bool(self.cluster_name))
        if self.config is not None:
            return [binary, "-c", str(self.config), *self.extra_args]
        args = [
            binary, "-js", "-a", self.host, "-p", str(self.port),
            "-m", str(self.monitor_port), "-sd", str(self.store_dir),
        ]
        if self.server_name:
            args += ["-n", self.server_name]
        if self.cluster_name:
            args += ["--cluster_name", self.cluster_name,
                     "--cluster", f"nats://{self.host}:{self.cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        return args + self.extra_args

    def start(self, timeout: float = 15.0, wait_jetstream: bool = True) -> NatsServer:
        self.port = self.port or free_port(self.host)
        self.monitor_port = self.monitor_port or free_port(self.host)
        if self.cluster_name:
            self.cluster_port = self.cluster_port or free_port(self.host)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        threading.Thread(target=self._pump_log, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise NatsServerError(
                "nats-server did not become ready:\n" + "\n".join(self._log_tail[-20:])
            )
        if wait_jetstream:
            self.wait_healthy(timeout)
        return self

    def _pump_log(self) -> None:
        proc = self.process
        assert proc is not None and proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self._log_tail.append(line)
            del self._log_tail[:-200]
            if "Server is ready" in line:
                self._ready.set()

    def healthz(self) -> tuple[int, dict[str, object]]:
        host = LOOPBACK if self.config is not None or self.host in WILDCARDS else self.host
        url = f"http://{host}:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except OSError:
            return 0, {}

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Poll the monitoring endpoint until JetStream is usable (bounded, no fixed sleep)."""
        deadline = time.monotonic() + timeout
        interval = 0.01
        while time.monotonic() < deadline:
            status, body = self.healthz()
            if status == 200 and body.get("status") == "ok":
                return
            if self.process is not None and self.process.poll() is not None:
                break
            threading.Event().wait(interval)  # bounded poll of an external process
            interval = min(interval * 2, 0.2)
        raise NatsServerError(
            "nats-server JetStream not healthy in time:\n" + "\n".join(self._log_tail[-20:])
        )

    def kill(self) -> None:
        """kill -9: what a crash looks like."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def restart(self, timeout: float = 15.0) -> NatsServer:
        """Start again on the same ports and store (after stop or kill)."""
        self.stop()
        return self.start(timeout)


def reap_stale(pid_file: Path, timeout: float = 10.0) -> int | None:
    """Stop a nats-server left running by a node that was killed (its pid file remains).

    Only a live process that is a nats-server is touched; returns its pid, if any.
    """
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if b"nats-server" not in cmdline:
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        threading.Event().wait(0.05)  # bounded wait for an unrelated process to exit
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)
    return pid


def secured_server(data_dir: Path, *, host: str = LOOPBACK, port: int = 0,
                   extra_args: list[str] | None = None) -> NatsServer:
    """A (not yet started) nats-server secured by ``ensure_local(data_dir)``: its creds and
    CA in ``<data_dir>/auth``, its JetStream store in ``<data_dir>/nats``. ``host`` is
    where it listens; a wildcard listens everywhere and is dialled on loopback."""
    dial = LOOPBACK if host in WILDCARDS else host
    port = port or free_port(dial)
    http_port = free_port(LOOPBACK)
    hosts = [] if dial in (LOOPBACK, "localhost") else [dial]
    auth = ensure_local(data_dir, hosts=hosts, port=port, http_port=http_port,
                        listen=host or "0.0.0.0")
    return NatsServer(store_dir=data_dir / "nats", host=dial, port=port,
                      monitor_port=http_port, config=auth.server_config, tls=True, auth=auth,
                      extra_args=list(extra_args or []))


def start_server(data_dir: Path, port: int = 0, host: str = LOOPBACK, *,
                 secure: bool = True) -> NatsServer:
    """A started nats-server with JetStream: secured (``secured_server``), or open
    (``secure=False``) with its store in ``data_dir``."""
    if secure:
        return secured_server(data_dir, host=host, port=port).start()
    return NatsServer(store_dir=data_dir, host=host, port=port).start()


@dataclass
class NatsCluster:
    servers: list[NatsServer]
    auth: LocalAuth | None = None

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_all(servers: list[NatsServer]) -> None:
    """Start every server, then wait until each is healthy; stop them all on a failure."""
    try:
        for server in servers:
            server.start(wait_jetstream=False)
        for server in servers:
            server.wait_healthy(30.0)
    except Exception:
        for server in servers:
            server.stop()
        raise


def start_cluster(base_dir: Path, size: int = 3, name: str = "ba", *,
                  secure: bool = True) -> NatsCluster:
    """Start ``size`` servers routed to each other and wait until JetStream is healthy.

    Secured (the default): configs from ``ensure_cluster(base_dir)``, the ones ``broker-agents
    auth server-config`` writes: TLS for clients and routes, route auth, operator auth.
    """
    if secure:
        specs = [ServerSpec(f"{name}-{i}", LOOPBACK, port=free_port(),
                            cluster_port=free_port(), http_port=free_port(), listen=LOOPBACK,
                            store_dir=base_dir.resolve() / f"n{i}")
                 for i in range(size)]
        auth = ensure_cluster(base_dir, specs, cluster_name=name)
        secured = [NatsServer(store_dir=spec.store_dir or base_dir / spec.name, port=spec.port,
                              monitor_port=spec.http_port or 0, cluster_name=name,
                              cluster_port=spec.cluster_port, server_name=spec.name,
                              config=config, tls=True, auth=auth)
                   for spec, config in zip(specs, auth.server_configs, strict=True)]
        start_all(secured)
        return NatsCluster(secured, auth)
    servers = [
        NatsServer(store_dir=base_dir / f"n{i}", cluster_name=name, server_name=f"{name}-{i}")
        for i in range(size)
    ]
    for server in servers:
        server.port = free_port()
        server.monitor_port = free_port()
        server.cluster_port = free_port()
    routes = [f"nats://127.0.0.1:{s.cluster_port}" for s in servers]
    for server in servers:
        server.routes = [r for r in routes if not r.endswith(f":{server.cluster_port}")]
    start_all(servers)
    return NatsCluster(servers)
