"""The node daemon: NATS (embedded or external), HTTP, services, supervised agents.

Shutdown has stages under one deadline (``node.shutdown_timeout``), honoured in every
state of the NATS connection, including a first connection still being tried: stop agents
(their subscriptions drain, so no new work is taken and in-flight handlers finish; reverse
start order), stop services, then drain and close NATS. A second signal exits at once
(``ExitCode.FORCED``). HTTP starts before NATS, so a node waiting for NATS answers probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import nats.errors
import structlog
from nats.aio.client import Client as NATS

from broker_agents import codec, transport
from broker_agents.agent import Agent
from broker_agents.core.supervision import Backoff
from broker_agents.kv import configure_replicas
from broker_agents.logging import get_logger
from broker_agents.metrics import NODE_HEALTHY
from broker_agents.subjects import Subjects
from broker_agents.transport import ConnectOptions, NatsUnreachable, connect
from node import health
from node.agent_lifecycle import AgentLifecycle
from node.config import NodeConfig
from node.dashboard.innode import attach as attach_dashboard
from node.drain import DrainService
from node.embedded import NatsServer
from node.exitcodes import ExitCode
from node.features import FeatureService
from node.hosting import build_specs
from node.http import HttpServer
from node.nats_access import EmbeddedSupervisor, open_access
from node.services import NodeService, build_services
from node.status import StatusPublisher
from node.supervisor import Supervisor, SupervisorGaveUp


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.id = config.node.id
        configure_replicas(config.nats.bucket_replicas)  # every bucket this process opens
        self.subjects = Subjects(config.node.subject_prefix)
        self.log = get_logger(node_id=self.id)
        self.nc: NATS | None = None
        self.embedded: NatsServer | None = None
        self.embedded_supervisor: EmbeddedSupervisor | None = None
        self._servers: list[str] = list(config.nats.servers)
        self.http: HttpServer | None = None
        self.services: list[NodeService] = [*build_services(config.services), DrainService(),
                                            FeatureService()]
        self.service_map: dict[str, Any] = {}
        self.agents: dict[str, Agent] = {}
        self.supervisor: Supervisor | None = None
        self._supervisor_task: asyncio.Task[None] | None = None
        self._agents_ready = asyncio.Event()
        self._stopping = False
        self.stopping = asyncio.Event()
        self.healthy = True
        self.status: StatusPublisher | None = None
        self.dashboard: Any = None  # node.dashboard.innode.NodeDashboard when enabled

    @property
    def nats_url(self) -> str:
        if self.embedded is not None:
            return self.embedded.url
        return self._servers[0] if self._servers else ""

    # -- start -----------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        opening = asyncio.ensure_future(open_access(cfg, self.log))
        try:
            access = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # A thread may be starting the embedded server: let it finish (it is bounded),
            # so that shutdown stops it instead of leaving it orphaned.
            with contextlib.suppress(Exception):
                access = await opening
                self.embedded, self.embedded_supervisor = access.embedded, access.supervisor
            raise
        self.embedded, self.embedded_supervisor = access.embedded, access.supervisor
        self._servers = access.servers
        self._connect_options = ConnectOptions(
            servers=access.servers, name=f"ba-node-{self.id}", security=access.security,
            connect_timeout=cfg.nats.connect_timeout, reconnect_wait=cfg.nats.reconnect_wait,
            max_reconnect_wait=cfg.nats.max_reconnect_wait,
            initial_connect_timeout=cfg.nats.initial_connect_timeout,
            ping_interval=cfg.nats.ping_interval,
            max_outstanding_pings=cfg.nats.max_outstanding_pings)
        # HTTP first: /healthz and /readyz answer (not ready) while NATS is still away.
        self.http = HttpServer(cfg.http.host, cfg.http.port, self.readiness, self.liveness,
                               attach_dashboard(self))
        port = await self.http.start()
        self.log.info("http listening", host=cfg.http.host, port=port)
        self.nc = await connect(self._connect_options)
        self.status = StatusPublisher(self, cfg.node.status_interval_s)
        self.status.start()
        if self.dashboard is not None:
            self.dashboard.start()
        for service in self.services:
            await self._start_service(service)
            self.service_map[service.name] = service
        sup = cfg.supervisor
        self.supervisor = Supervisor(
            f"node-{self.id}", build_specs(cfg, self.nc, self.service_map), sup.strategy,
            sup.max_restarts, sup.period, Backoff(sup.backoff_initial, sup.backoff_max),
            AgentLifecycle(self))
        self._supervisor_task = asyncio.create_task(
            self.supervisor.run(self._agents_ready.set), name=f"node-{self.id}-supervisor")
        ready_wait = asyncio.ensure_future(self._agents_ready.wait())
        try:
            await asyncio.wait([ready_wait, self._supervisor_task],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready_wait.cancel()
        if not self._agents_ready.is_set():
            await self._supervisor_task  # raises why the agents could not start
        NODE_HEALTHY.set(1)
        self.log.info("node ready", agents=len(self.agents), http_port=port)
        await self.publish_event("ready")

    async def publish_event(self, event: str, agent_id: str | None = None, *,
                            kind: str = "node", **fields: Any) -> None:
        """``<p>.events.node.<event>`` / ``<p>.events.agent.<event>``: lets tools wait for a
        node or an agent instead of polling it."""
        if self.nc is None or not self.nc.is_connected:
            return
        payload: dict[str, Any] = {"node_id": self.id, **fields}
        if kind == "node":
            payload.update(pid=os.getpid(), agents=sorted(self.agents),
                           http_port=self.http.port if self.http else None,
                           nats_url=self.nats_url)
        else:
            payload["agent_id"] = agent_id
        await self.nc.publish(self.subjects.events(kind, event), codec.encode(payload))
        if kind == "node":  # bounded: NATS may be gone again (a killed embedded server)
            with contextlib.suppress(TimeoutError, nats.errors.Error):
                await self.nc.flush(timeout=1)

    async def _start_service(self, service: NodeService) -> None:
        """Services open JetStream buckets; during a partition that times out. Retry
        transient failures (with backoff, up to the initial connect timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.nats.initial_connect_timeout
        delay = 0.1
        while True:
            try:
                await service.start(self)
                return
            except (TimeoutError, nats.errors.Error) as exc:
                with contextlib.suppress(Exception):
                    await service.stop()  # undo a partial start before trying again
                if loop.time() + delay > deadline:
                    raise
                self.log.warning("service start failed; retrying", service=service.name,
                                 error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)  # start-up backoff
                delay = min(delay * 2, 2.0)

    def on_reconnect(self, hook: Any) -> None:
        """Run ``await hook()`` after every reconnect (KV watches may have died)."""
        self._connect_options.on_reconnect.append(hook)

    def readiness(self) -> dict[str, Any]:
        return health.readiness(self)

    def liveness(self) -> dict[str, Any]:
        return health.liveness(self)

    # -- run and stop ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Start, serve until ``stop`` is set, shut down; return the exit code.

        ``stop`` is honoured in every state: while the first connection is still being
        tried, while services wait for JetStream, while agents start (the start is
        cancelled, then the usual shutdown runs under its deadline). A start that gives up
        (NATS unreachable past ``initial_connect_timeout``, agents that cannot start) is
        one error line and ``ExitCode.FAILURE``; anything else is a bug and raises.
        """
        starting = asyncio.ensure_future(self.start())
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([starting, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
        if not starting.done():
            await _cancel_until_done(starting)
            self.log.info("stopped while starting")
            await self.shutdown()
            return ExitCode.OK
        error = starting.exception()
        if error is None:
            return await self.wait(stop)
        if isinstance(error, (SupervisorGaveUp, NatsUnreachable)):
            self.log.error("node could not start; giving up", error=str(error),
                           code=error.code.value, details=error.details)
            self.healthy = False
            NODE_HEALTHY.set(0)
            await self.shutdown()
            return ExitCode.FAILURE
        await self.shutdown()
        raise error

    async def wait(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set or the root supervisor gives up; return the exit code."""
        assert self._supervisor_task is not None
        stop_wait = asyncio.ensure_future(stop.wait())
        embedded = self.embedded_supervisor.task if self.embedded_supervisor else None
        try:
            await asyncio.wait(
                [stop_wait, self._supervisor_task, *([embedded] if embedded else [])],
                return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
        code = ExitCode.OK
        if embedded is not None and embedded.done() and not stop.is_set():
            self.healthy = False
            code = ExitCode.FAILURE
        if self._supervisor_task.done() and not stop.is_set():
            exc = self._supervisor_task.exception()
            self.healthy = False
            NODE_HEALTHY.set(0)
            self.log.error("root supervisor gave up; node is unhealthy", error=repr(exc))
            code = ExitCode.FAILURE
        await self.shutdown()
        return code

    async def shutdown(self) -> None:
        """Everything within ``node.shutdown_timeout``, whatever the state of NATS.

        Agents get the deadline less two reserves (their subscriptions drain, in-flight
        handlers finish), services the first reserve (deregistering), closing NATS, HTTP
        and the embedded server the second. A part that overruns its share is left to
        finish while NATS closes: most waits are on a disconnected NATS, and on a closed
        connection they fail at once. What still runs at the deadline is cancelled.
        NATS is drained only while connected, and closing it never raises.
        """
        if self._stopping:
            return
        self._stopping = True
        self.stopping.set()
        loop = asyncio.get_running_loop()
        timeout = self.config.node.shutdown_timeout
        reserve = min(1.0, timeout / 4)
        end = loop.time() + timeout
        self.log.info("shutting down", deadline_s=timeout,
                      nats_connected=bool(self.nc and self.nc.is_connected))
        overran: dict[str, asyncio.Future[Any]] = {}
        agents = asyncio.ensure_future(self._stop_agents())
        if not await _within(agents, timeout - 2 * reserve):
            overran["agents"] = agents
        for service in reversed(self.services):
            stopping = asyncio.ensure_future(service.stop())
            if not await _within(stopping, end - reserve - loop.time()):
                overran[f"service {service.name}"] = stopping
            elif not stopping.cancelled() and stopping.exception() is not None:
                self.log.warning("service failed to stop", service=service.name,
                                 error=repr(stopping.exception()))
        for part in (self.status, self.dashboard):
            if part is not None:
                await _within(asyncio.ensure_future(part.stop()), 0.5)
        await self._close_nats(end - loop.time())
        if overran:
            self.log.warning("graceful shutdown deadline passed; finishing on a closed "
                             "connection", parts=sorted(overran))
            late = asyncio.gather(*overran.values(), return_exceptions=True)
            if not await _within(late, end - loop.time()):
                self.log.warning("cancelled at the deadline", parts=sorted(
                    name for name, task in overran.items() if not task.done()))
                if self._supervisor_task is not None:
                    self._supervisor_task.cancel()
                late.cancel()
                await _within(late, 0.1)
        if self.http is not None:
            await self.http.stop()
        if self.embedded_supervisor is not None:
            await self.embedded_supervisor.stop()
        elif self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop, max(end - loop.time(), 0.5))
        self.log.info("node stopped")

    async def _close_nats(self, budget: float) -> None:
        nc = self.nc
        if nc is None or nc.is_closed:
            return
        if nc.is_connected and budget > 0:
            try:
                await asyncio.wait_for(self.publish_event("stopped"), budget / 2)
                await asyncio.wait_for(nc.drain(), timeout=max(budget / 2, 0.1))
                return
            except Exception as exc:  # expected when NATS goes away
                self.log.warning("nats drain failed; closing", error=repr(exc))
        await transport.close(nc, budget)

    async def _stop_agents(self) -> None:
        if self.supervisor is not None and self._supervisor_task is not None:
            self.supervisor.stop()
            results = await asyncio.gather(self._supervisor_task, return_exceptions=True)
            if isinstance(results[0], SupervisorGaveUp):
                self.healthy = False


async def _within(task: asyncio.Future[Any], timeout: float) -> bool:
    """Whether ``task`` ends within ``timeout``; never cancels it, never raises its error.

    Not ``wait_for``: that waits, past its timeout, for the cancelled task to finish, and
    an agent or a library that takes its time over a cancel would hold the deadline."""
    done, _ = await asyncio.wait({task}, timeout=max(timeout, 0.0))
    if done and not task.cancelled():
        task.exception()  # retrieved: logged by the caller or deliberately dropped
    return bool(done)


async def serve(config: NodeConfig) -> int:
    """Run a node until SIGINT/SIGTERM (a second one forces), return the exit code."""
    # Every log line of this process names the node, the NATS client's and the agents'
    # too (tasks copy the context they are created in).
    structlog.contextvars.bind_contextvars(node_id=config.node.id)
    node = Node(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            node.log.warning("second signal: forcing exit", signal=signum,
                             exit_code=int(ExitCode.FORCED))
            if node.embedded is not None:  # it runs in its own session: do not orphan it
                node.embedded.kill()
            os._exit(ExitCode.FORCED)
        node.log.info("signal received: graceful shutdown", signal=signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return await node.run(stop)


def run(config: NodeConfig) -> int:
    """Entry point used by the CLI: uvloop when available, then ``serve``."""
    try:
        import uvloop

        return uvloop.run(serve(config))
    except ImportError:
        return asyncio.run(serve(config))


async def _cancel_until_done(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it, cancelling again while it runs on: Python 3.11's
    ``asyncio.wait_for`` (inside nats-py's connect) can swallow a cancellation that races
    its own timeout, and the caller's retry loop would then go on connecting."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
