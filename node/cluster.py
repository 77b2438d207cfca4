"""A local cluster of node daemons, each its own OS process, sharing NATS.

Used by ``broker-agents up``, the demo, the benchmarks and the tests. Nodes are configured
through ``BA_*`` environment variables (on top of an optional base TOML file), and we wait
for each node's ``<p>.events.node.ready`` event rather than polling it.

A base file keeps its ``[services]`` and its ``[[agents]]`` unless the caller gives its
own (``services``, ``agents``). Its agents are spread over the nodes by ``split_agents``:
every node reads the same file, so without that each node would try to host every id.

Secured by default: one ``ensure_local`` (or ``ensure_cluster``) in the base directory
makes the operator, the users of every role, a CA and the server configs; node processes
get the node creds and the CA through their environment, and ``client(role)`` connects
as any role (``auth.contexts`` are the context files a command can use). ``insecure=True``
runs open servers and tells the nodes ``auth = "none"``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from broker_agents import codec
from broker_agents.subjects import Subjects
from broker_agents.transport import Security, connect_client
from node.auth.local import LocalAuth
from node.auth.roles import Role
from node.config import ConfigError
from node.embedded import NatsCluster, NatsServer, free_port, start_cluster, start_server

HOST_KEY = "node"  # an [[agents]] key that only `up` reads: which node hosts the section


def split_agents(config: Path, nodes: int) -> list[list[dict[str, Any]]]:
    """The file's ``[[agents]]`` per node: a section names its node (``node = "node-2"``,
    the key is taken out before the node sees it), or runs on node-1."""
    sections = _agent_sections(config)
    names = [f"node-{i}" for i in range(1, nodes + 1)]
    per_node: list[list[dict[str, Any]]] = [[] for _ in names]
    for index, section in enumerate(sections):
        section = dict(section)
        host = section.pop(HOST_KEY, names[0])
        if host not in names:
            raise ConfigError(f"agents.{index}.{HOST_KEY}: {host!r} is not one of the "
                              f"{nodes} node(s) ({', '.join(names)})")
        per_node[names.index(host)].append(section)
    return per_node


def file_agents(config: Path) -> list[dict[str, Any]]:
    """The file's ``[[agents]]`` in its order, as one node config (``up``'s key taken out):
    validating them together checks every section once and every id cluster-wide."""
    return [{k: v for k, v in section.items() if k != HOST_KEY}
            for section in _agent_sections(config)]


def _agent_sections(config: Path) -> list[dict[str, Any]]:
    try:
        sections = tomllib.loads(config.read_text()).get("agents", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{config}: {exc}") from exc
    if not isinstance(sections, list) or not all(isinstance(s, dict) for s in sections):
        raise ConfigError(f"{config}: agents must be [[agents]] tables")
    return sections


@dataclass
class NodeProcess:
    node_id: str
    env: dict[str, str]
    log_path: Path
    http_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def spawn(self, config: Path | None) -> None:
        cmd = [sys.executable, "-m", "node.cli", "node", "run"]
        if config is not None:
            cmd += ["--config", str(config)]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log,
                                        start_new_session=True)
        log.close()

    def signal(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


@dataclass
class LocalCluster:
    """N node daemons; one embedded nats-server, or a 3-server NATS cluster."""

    base_dir: Path
    nodes: int = 3
    nats_cluster: bool = False
    agents: list[list[dict[str, Any]]] | None = None
    services: dict[str, dict[str, Any]] | None = None
    config: Path | None = None
    prefix: str = "ba"
    extra_env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 30.0
    insecure: bool = False
    nats: NatsServer | NatsCluster | None = None
    procs: list[NodeProcess] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        assert self.nats is not None
        return self.nats.urls

    @property
    def auth(self) -> LocalAuth | None:
        """The creds, CA and contexts of every role (None when insecure)."""
        return self.nats.auth if self.nats is not None else None

    def security(self, role: Role = Role.CLIENT) -> Security:
        return self.auth.security(role) if self.auth is not None else Security()

    async def start(self) -> LocalCluster:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        secure = not self.insecure
        if self.nats_cluster:
            where = self.base_dir if secure else self.base_dir / "nats"
            self.nats = await asyncio.to_thread(start_cluster, where, 3, secure=secure)
        else:
            where = self.base_dir if secure else self.base_dir / "nats"
            self.nats = await asyncio.to_thread(start_server, where, secure=secure)
        if self.agents is None and self.config is not None:
            self.agents = split_agents(self.config, self.nodes)
        for i in range(1, self.nodes + 1):
            self.procs.append(self._node(i))
        await self._spawn_and_wait(self.procs)
        return self

    def _node(self, index: int) -> NodeProcess:
        node_id = f"node-{index}"
        agents = self.agents[index - 1] if self.agents else []
        urls = self.urls
        servers = [urls[(index - 1 + k) % len(urls)] for k in range(len(urls))]
        env = dict(os.environ)
        env.update({
            "BA_NODE__ID": node_id,
            "BA_NODE__DATA_DIR": str(self.base_dir / node_id),
            "BA_NODE__SUBJECT_PREFIX": self.prefix,
            "BA_NODE__LOG_FORMAT": "json",
            "BA_NATS__SERVERS": json.dumps(servers),
            "BA_HTTP__PORT": str(free_port()),
            "BA_AGENTS": json.dumps(agents),
            **self._auth_env(),
        })
        if self.services is not None or self.config is None:  # else the file's services
            env["BA_SERVICES"] = json.dumps(self.services or {})
        env.update(self.extra_env)
        return NodeProcess(node_id, env, self.base_dir / f"{node_id}.log",
                           int(env["BA_HTTP__PORT"]))

    def _auth_env(self) -> dict[str, str]:
        """The node creds and the CA (the inbox prefix follows from the creds' user), and
        the observer context a node's own dashboard (``[dashboard] enabled``) reads with."""
        if self.auth is None:
            return {"BA_NATS__AUTH": "none"}
        env = {"BA_NATS__AUTH": "creds", "BA_NATS__CREDS": str(self.auth.creds[Role.NODE]),
               "BA_NATS__TLS_CA": str(self.auth.ca)}
        if Role.OBSERVER in self.auth.contexts:
            env["BA_DASHBOARD__CONTEXT"] = str(self.auth.contexts[Role.OBSERVER])
        return env

    async def _spawn_and_wait(self, procs: list[NodeProcess]) -> None:
        nc = await self.client(Role.OBSERVER)  # lifecycle events are an observer's to read
        try:
            waiting = {p.node_id for p in procs}
            all_ready = asyncio.get_running_loop().create_future()

            async def on_ready(msg: Any) -> None:
                waiting.discard(codec.decode(msg.data).get("node_id"))
                if not waiting and not all_ready.done():
                    all_ready.set_result(True)

            sub = await nc.subscribe(Subjects(self.prefix).events("node", "ready"), cb=on_ready)
            await nc.flush()
            for proc in procs:
                proc.spawn(self.config)
            await self._await_ready(all_ready, procs, waiting)
            await sub.unsubscribe()
        finally:
            await nc.close()

    async def _await_ready(self, all_ready: asyncio.Future[bool], procs: list[NodeProcess],
                           waiting: set[str]) -> None:
        deadline = asyncio.get_running_loop().time() + self.ready_timeout
        while not all_ready.done():
            dead = [p for p in procs if p.process and p.process.poll() is not None
                    and p.node_id in waiting]
            if dead:
                raise RuntimeError(f"{dead[0].node_id} exited during start; see "
                                   f"{dead[0].log_path}:\n{dead[0].log_path.read_text()[-2000:]}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"nodes not ready in {self.ready_timeout}s: {sorted(waiting)}")
            await asyncio.wait([all_ready], timeout=0.2)

    def kill(self, index: int) -> None:
        """kill -9 node ``index`` (0-based)."""
        proc = self.procs[index]
        proc.signal(signal.SIGKILL)
        proc.wait(10)

    async def restart(self, index: int) -> None:
        await self._spawn_and_wait([self.procs[index]])

    async def client(self, role: Role = Role.CLIENT, **options: Any) -> NATS:
        """A connection as ``role`` (the client's by default: the public requests only)."""
        return await connect_client(self.urls, security=self.security(role), **options)

    def stop(self, timeout: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every node (graceful), then stop NATS; returns exit codes by node id."""
        for proc in self.procs:
            proc.signal(signal.SIGTERM)
        codes = {proc.node_id: proc.wait(timeout) for proc in self.procs}
        for proc in self.procs:
            if proc.process and proc.process.poll() is None:
                proc.process.kill()
                proc.process.wait(5)
        if self.nats is not None:
            self.nats.stop()
        return codes
