"""How a node reaches NATS, and who it is there: one decision, made at start.

- ``auth = "local"`` (no servers configured): the embedded nats-server runs secured by
  ``<data_dir>/auth`` (``ensure_local``: created on first start, 0600), and the node
  connects as the ``node`` user with the local CA and its inbox prefix.
- ``auth = "creds"`` (servers or a context configured): the node connects with what the
  config names (a context, or creds and a CA; user/password, token and ``[nats.tls]``
  as before).
- ``auth = "none"``: no authentication and no TLS, the embedded server open to anyone who
  reaches it. For experiments only: the node says what is turned off at WARNING and
  exports ``ba_nats_insecure 1``; so does a ``creds`` node that was given no identity.

The embedded server is supervised (``EmbeddedSupervisor``): a server that dies is started
again on the same ports and store, with backoff, within ``[nats.embedded]``'s restart
intensity; past it the supervisor gives up and the node exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field, replace

from prometheus_client import Counter, Gauge
from structlog.typing import FilteringBoundLogger

from broker_agents.core.supervision import Backoff, RestartIntensity
from broker_agents.metrics import NATS_INSECURE, NODE_HEALTHY
from broker_agents.transport import Security
from node.auth.context import ClientContext
from node.auth.creds import creds_inbox_prefix
from node.auth.roles import Role
from node.config import EmbeddedSection, NatsSection, NodeConfig
from node.embedded import NatsServer, NatsServerError, reap_stale, secured_server

EMBEDDED_RESTARTS = Counter("ba_nats_embedded_restarts_total",
                            "Restarts of the node's embedded nats-server after it died")
EMBEDDED_UP = Gauge("ba_nats_embedded_up", "1 while the node's embedded nats-server runs")

TURNED_OFF = (
    "authentication: anyone who reaches the server may connect",
    "permissions: every connection may read and write every subject and KV bucket, "
    "including balances, auctions and Raft peer traffic",
    "TLS: traffic, and any credentials in it, travel in plaintext",
)


@dataclass
class NatsAccess:
    """The servers to dial, the identity to dial them with, and the embedded server."""

    servers: list[str]
    security: Security
    embedded: NatsServer | None = None
    turned_off: list[str] = field(default_factory=list)
    supervisor: EmbeddedSupervisor | None = None


def configured_security(nats: NatsSection) -> tuple[list[str], Security]:
    """``auth = "creds"``: the servers and identity the config names (a context first,
    each field given explicitly overriding it)."""
    ctx = ClientContext.read(nats.context) if nats.context is not None else None
    base = ctx.security() if ctx is not None else Security()
    tls = nats.tls
    security = Security(
        creds_file=nats.creds or base.creds_file,
        tls_ca_file=nats.tls_ca or (tls.ca_file if tls else None) or base.tls_ca_file,
        tls_cert_file=tls.cert_file if tls else None,
        tls_key_file=tls.key_file if tls else None,
        tls_verify=tls.verify if tls else True,
        inbox_prefix=nats.inbox_prefix or (None if nats.creds else base.inbox_prefix),
        user=nats.user, password=nats.password, token=nats.token)
    if security.inbox_prefix is None:
        security = replace(security, inbox_prefix=creds_inbox_prefix(security.creds_file))
    servers = list(nats.servers) or list(ctx.servers if ctx is not None else ())
    return servers, security


def _gaps(servers: list[str], security: Security) -> list[str]:
    """What a ``creds`` connection goes without."""
    gaps = []
    if security.anonymous:
        gaps.append(TURNED_OFF[0] + " (no creds, user or token configured)")
    if security.tls_context() is None and not all(u.startswith("tls://") for u in servers):
        gaps.append(TURNED_OFF[2] + " (no tls_ca and nats:// URLs)")
    return gaps


async def open_access(config: NodeConfig, log: FilteringBoundLogger) -> NatsAccess:
    """Start the embedded server if there is one; say loudly what is not secured."""
    nats = config.nats
    mode = nats.mode
    if mode == "creds":
        servers, security = configured_security(nats)
        access = NatsAccess(servers, security, turned_off=_gaps(servers, security))
    elif nats.embedded_server:
        access = await _embedded(config, secure=mode == "local", log=log)
    else:  # "none" with servers: dial them without credentials or TLS
        access = NatsAccess(list(nats.servers), Security())
    if mode == "none":
        access.turned_off = list(TURNED_OFF)
    NATS_INSECURE.set(1 if access.turned_off else 0)
    if access.turned_off:
        log.warning("nats.insecure: NATS security is OFF for this node", auth=mode,
                    turned_off=access.turned_off,
                    how_to_fix="remove auth = 'none' (the embedded server then runs "
                               "secured), or configure creds and tls_ca / a context")
    return access


async def _embedded(config: NodeConfig, *, secure: bool, log: FilteringBoundLogger
                    ) -> NatsAccess:
    data_dir, embedded = config.node.data_dir, config.nats.embedded
    pid_file = data_dir / "nats" / "nats-server.pid"
    stale = await asyncio.to_thread(reap_stale, pid_file)
    if stale is not None:
        log.warning("stopped a nats-server left by a killed node", pid=stale)
    extra = ["-P", str(pid_file)]
    if secure:
        server = await asyncio.to_thread(secured_server, data_dir, host=embedded.host,
                                         port=embedded.port, extra_args=extra)
        assert server.auth is not None
        security = server.auth.security(Role.NODE)
    else:
        server = NatsServer(store_dir=data_dir / "nats", host=embedded.host,
                            port=embedded.port, extra_args=extra)
        security = Security()
    await asyncio.to_thread(server.start)
    supervisor = EmbeddedSupervisor(server, embedded, log)
    supervisor.start()
    if server.auth is not None:
        log.info("embedded nats-server started", url=server.url, auth="local",
                 auth_dir=str(server.auth.dir), client_context=str(server.auth.context))
    else:
        log.info("embedded nats-server started", url=server.url, auth="none")
    return NatsAccess([server.url], security, server, supervisor=supervisor)


class EmbeddedSupervisor:
    """Keeps the embedded nats-server running: restarts it when it dies, within an intensity.

    ``task`` ends only when the supervisor gives up (then ``gave_up`` says why) or is
    stopped; the daemon waits on it as on its agents' supervisor. ``problem`` is what the
    node's health reports while the server is not serving.
    """

    def __init__(self, server: NatsServer, settings: EmbeddedSection,
                 log: FilteringBoundLogger) -> None:
        self.server = server
        self.intensity = RestartIntensity(settings.max_restarts, settings.restart_period)
        self.backoff = Backoff(settings.restart_backoff_initial, settings.restart_backoff_max)
        self.log = log
        self.restarts = 0
        self.problem: str | None = None  # why the server is not serving right now
        self.gave_up: str | None = None
        self.task: asyncio.Task[None] | None = None
        self._starting: asyncio.Future[NatsServer] | None = None
        self._stopping = False

    def start(self) -> None:
        EMBEDDED_UP.set(1)
        self.task = asyncio.create_task(self._run(), name="embedded-nats-supervisor")

    async def stop(self) -> None:
        """Stop the server for good (no restart), then the supervisor."""
        self._stopping = True
        if self._starting is not None:  # a restart in flight: let it finish, then stop
            await asyncio.gather(self._starting, return_exceptions=True)
        await asyncio.to_thread(self.server.stop)
        EMBEDDED_UP.set(0)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _exited(self) -> int:
        """The server process's exit status, awaited without blocking the loop (a daemon
        thread waits, so a node that exits without stopping it is not held up)."""
        proc = self.server.process
        assert proc is not None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()

        def settle(code: int) -> None:
            if not done.done():
                done.set_result(code)

        def wait() -> None:
            code = proc.wait()
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, code)

        threading.Thread(target=wait, name="embedded-nats-wait", daemon=True).start()
        return await done

    async def _run(self) -> None:
        while True:
            code = await self._exited()
            if self._stopping:
                return
            EMBEDDED_UP.set(0)
            why = f"embedded nats-server exited with status {code}"
            while True:
                if not self.intensity.record(time.monotonic()):
                    self._give_up(why)
                    return
                delay = self.backoff.delay(self.intensity.recent)
                self.problem = f"{why}; restarting (restart {self.intensity.recent} of " \
                               f"{self.intensity.max_restarts} in {self.intensity.period:g}s)"
                self.log.error("embedded nats-server died; restarting", exit_status=code,
                               retry_in=delay, restarts_recent=self.intensity.recent,
                               max_restarts=self.intensity.max_restarts)
                await asyncio.sleep(delay)  # sleep-ok: restart backoff
                if self._stopping:
                    return
                self._starting = asyncio.ensure_future(asyncio.to_thread(self.server.start))
                try:
                    await asyncio.shield(self._starting)
                except NatsServerError as exc:
                    why = f"embedded nats-server did not start again: {exc}".splitlines()[0]
                    continue
                finally:
                    self._starting = None
                break
            self.restarts += 1
            EMBEDDED_RESTARTS.inc()
            EMBEDDED_UP.set(1)
            self.problem = None
            self.log.warning("embedded nats-server restarted", url=self.server.url,
                             pid=self.server.pid, restarts=self.restarts)

    def _give_up(self, why: str) -> None:
        self.gave_up = self.problem = (
            f"{why}; gave up: more than {self.intensity.max_restarts} restarts within "
            f"{self.intensity.period:g}s")
        NODE_HEALTHY.set(0)
        self.log.error("embedded nats-server supervisor gave up; the node exits",
                       reason=self.gave_up)
