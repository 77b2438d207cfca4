"""Connecting to NATS the way a long-running node should: reconnect forever, count trouble."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError, NoServersError, SlowConsumerError

from broker_agents import codec, deadlinks, identity
from broker_agents.core.errors import BrokerError, CodedError, ErrorCode
from broker_agents.logging import get_logger
from broker_agents.metrics import (
    CLUSTER_CAS_UNSAFE,
    NATS_CONNECTED,
    NATS_DISCONNECTS,
    NATS_ERRORS,
    NATS_RECONNECTS,
    SLOW_CONSUMER_DROPS,
)
from broker_agents.ratelog import RateLimitedLog


def _not_the_ssl_eof_notice(record: logging.LogRecord) -> bool:
    """asyncio logs a warning each time a TLS connection nats-py reads from ends (its
    protocol asks to keep the transport half-open, which TLS cannot): noise, not news."""
    return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_not_the_ssl_eof_notice)


@dataclass(frozen=True)
class Security:
    """Who a connection is and which servers it trusts: every auth and TLS argument of
    nats-py's ``connect`` comes from here (one home for them).

    ``inbox_prefix`` matters as much as the creds: a user may subscribe under its own
    ``_INBOX.<user>`` only, so a connection with nats-py's default ``_INBOX`` would have
    every reply subscription denied.
    """

    creds_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_verify: bool = True
    inbox_prefix: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None

    @property
    def anonymous(self) -> bool:
        """Neither an identity nor a trusted CA: what an open server accepts."""
        return not (self.creds_file or self.user or self.token or self.tls_ca_file
                    or self.tls_cert_file)

    def tls_context(self) -> ssl.SSLContext | None:
        """Verifies the server against ``tls_ca_file`` (and its host name) when given."""
        if not (self.tls_ca_file or self.tls_cert_file):
            return None
        try:
            ctx = ssl.create_default_context(
                cafile=str(self.tls_ca_file) if self.tls_ca_file else None)
            if self.tls_cert_file:
                ctx.load_cert_chain(str(self.tls_cert_file),
                                    str(self.tls_key_file) if self.tls_key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(ErrorCode.CONFIG, f"cannot load TLS files: {exc}",
                              {"ca": str(self.tls_ca_file), "cert": str(self.tls_cert_file)}
                              ) from exc
        if not self.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def kwargs(self) -> dict[str, Any]:
        """nats-py ``connect`` keyword arguments for this identity and trust."""
        out: dict[str, Any] = {}
        if self.user:
            out.update(user=self.user, password=self.password)
        if self.token:
            out["token"] = self.token
        if self.creds_file:
            out["user_credentials"] = str(self.creds_file)
        tls = self.tls_context()
        if tls is not None:
            out["tls"] = tls
        if self.inbox_prefix:
            out["inbox_prefix"] = self.inbox_prefix
        return out


@dataclass
class ConnectOptions:
    servers: list[str]
    name: str = "broker-agents"
    security: Security = field(default_factory=Security)
    connect_timeout: float = 2.0
    reconnect_wait: float = 0.25
    max_reconnect_wait: float = 2.0
    initial_connect_timeout: float = 60.0
    # A link that silently drops packets (an unplugged host, a firewall) shows no error
    # until pings go unanswered: nats-py's default (2 min x 2) keeps a node on a dead
    # server for minutes. These bound it to ping_interval * (max_outstanding_pings + 1).
    ping_interval: float = 5.0
    max_outstanding_pings: int = 3
    on_reconnect: list[Any] = field(default_factory=list)
    on_error: list[Any] = field(default_factory=list)  # async (connection, exception)


CLUSTER_CAS_SAFE = (2, 10)

deadlinks.install()  # every connection of this process: a dead link must not stall reconnects


def check_server(nc: NATS) -> bool:
    """Warn when clustered JetStream cannot be trusted with compare-and-set.

    nats-server before 2.10 may accept two KV updates made from the same revision on a
    replicated stream (nats-io/nats-server#4320; our chaos suite reproduces it on 2.9.10).
    Registry reapers, budgets and auctions decide with CAS, so say it loudly.
    """
    info: dict[str, Any] = getattr(nc, "_server_info", None) or {}
    parts = [int(p) for p in str(info.get("version", "0.0")).split("-")[0].split(".")[:2]]
    unsafe = bool(info.get("cluster")) and tuple(parts) < CLUSTER_CAS_SAFE
    CLUSTER_CAS_UNSAFE.set(1 if unsafe else 0)
    if unsafe:
        get_logger(component="nats").error(
            "clustered JetStream older than 2.10: KV compare-and-set is not serialized "
            "(nats-server#4320); upgrade the servers before relying on budgets/auctions",
            server_version=info.get("version"), cluster=info.get("cluster"))
    return not unsafe


# Pauses before asking again after "no responders": nats-server 2.9 sometimes reports no
# responders for a subject whose subscriber (on another connection) has just subscribed
# and flushed (seen ~1 in 60 fresh subscriptions here; never on 2.15).
NO_RESPONDERS_RETRIES = (0.005, 0.02, 0.05, 0.1)


async def request(nc: NATS, subject: str, data: bytes, timeout: float,
                  headers: dict[str, str] | None = None, *, signed: bool = False,
                  acting_for: str | None = None) -> Msg:
    """``nc.request`` that asks again, briefly, when the server says no responders.
    ``signed``: the request is an act of the connection's user (or of ``acting_for``,
    when a node or an admin speaks for someone), see ``broker_agents.identity``."""
    if signed:
        headers = identity.act_headers(nc, subject, data, acting_for, headers)
    for pause in NO_RESPONDERS_RETRIES:
        try:
            return await nc.request(subject, data, timeout=timeout, headers=headers)
        except NoRespondersError:
            await asyncio.sleep(pause)  # spurious-answer backoff (see above)
    return await nc.request(subject, data, timeout=timeout, headers=headers)


async def call(nc: NATS, subject: str, data: bytes, timeout: float, *, what: str,
               signed: bool = True) -> dict[str, Any]:
    """A request whose answer is an object (``request``, signed by default): the object,
    or the structured error it carries, raised. ``what`` names the answerer in the error
    for an answer that is not an object."""
    reply = await request(nc, subject, data, timeout, signed=signed)
    answer = codec.decode(reply.data, reply.headers)
    err = BrokerError.from_payload(answer)
    if err is not None:
        raise err
    if not isinstance(answer, dict):
        raise BrokerError(ErrorCode.MALFORMED, f"{what}'s answer is not an object")
    return answer


async def _connect_without_reconnects(kwargs: dict[str, Any]) -> NATS:
    """``nats.connect`` with reconnects off for the first connection, then as asked.

    With reconnects on, nats-py 2.16 never returns from a first connect whose TLS handshake
    failed (a server certificate the CA does not vouch for): it waits forever on closing
    the broken transport. Off, the error is raised at once; nats-py reads the option anew
    at each disconnect, so turning it on afterwards gives the usual reconnects.
    """
    reconnect = kwargs.get("allow_reconnect", True)
    nc: NATS = await nats.connect(**{**kwargs, "allow_reconnect": False})
    nc.options["allow_reconnect"] = reconnect
    return nc


async def connect_client(servers: str | list[str], *, security: Security | None = None,
                         **options: Any) -> NATS:
    """A tool's connection (``security``: its creds, CA and inbox prefix), connected and
    flushed once before the first request. Each server is tried in turn until one takes
    the connection; the last refusal is raised.

    On nats-server 2.9 a brand-new connection's first request occasionally gets a
    spurious "no responders" (about 1 in 200 here; not seen on 2.15); one round trip on
    the new connection first avoids it.
    """
    urls = [servers] if isinstance(servers, str) else list(servers)
    kwargs = {**(security.kwargs() if security is not None else {}), **options}
    failure: BaseException | None = None
    for first in range(len(urls)):
        order = urls[first:] + urls[:first]
        try:
            nc = await _connect_without_reconnects(
                {"dont_randomize": True, **kwargs, "servers": order})
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            failure = exc
            continue
        await nc.flush()
        return identity.attach(nc, identity.Identity.from_creds(
            security.creds_file if security is not None else None))
    assert failure is not None, "no servers given"
    raise failure


class NatsUnreachable(CodedError):
    """No server took the first connection within ``initial_connect_timeout``."""

    CODE = ErrorCode.UNAVAILABLE


async def _attempt_first(kwargs: dict[str, Any]) -> NATS:
    """One pass over the servers (each tried at most twice: nats-py's smallest bound; any
    negative or zero bound loops forever inside ``connect``), then reconnect-forever.
    A failed or cancelled attempt closes its client, so it leaves no task behind."""
    nc = NATS()
    try:
        await nc.connect(**{**kwargs, "allow_reconnect": False, "max_reconnect_attempts": 1})
        await nc.flush()  # see connect_client
    except BaseException:
        # Bounded: closing a transport whose TLS handshake broke off can wait forever.
        await close(nc, kwargs.get("connect_timeout", 2.0))
        raise
    nc.options["allow_reconnect"] = kwargs.get("allow_reconnect", True)
    nc.options["max_reconnect_attempts"] = kwargs.get("max_reconnect_attempts", -1)
    return nc


async def _first_connect(kwargs: dict[str, Any], opts: ConnectOptions,
                         log: RateLimitedLog) -> NATS:
    """nats-py only reconnects after a first success: retry that one too, with backoff
    (``reconnect_wait`` doubling up to ``max_reconnect_wait``), so a node started during a
    partition waits for NATS instead of exiting; past ``initial_connect_timeout`` it gives
    up with ``NatsUnreachable``. Cancelling it (a signal) stops at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + opts.initial_connect_timeout
    delay = opts.reconnect_wait
    while True:
        try:
            return await _attempt_first(kwargs)
        except (NoServersError, OSError, TimeoutError) as exc:  # not a refusal: raised
            if loop.time() + delay > deadline:
                raise NatsUnreachable(
                    f"no NATS server answered within {opts.initial_connect_timeout}s",
                    {"servers": list(opts.servers), "error": repr(exc)}) from None
            log.warning("first_connect", "cannot reach NATS yet; retrying",
                        error=repr(exc), retry_in=delay)
            await asyncio.sleep(delay)  # connection backoff
            delay = min(delay * 2, opts.max_reconnect_wait)


async def close(nc: NATS, timeout: float = 2.0) -> None:
    """Close a connection in any state, within ``timeout``, without raising.

    While disconnected, nats-py keeps what was published meanwhile and, on ``close``,
    writes it into the lost socket: that raises ``ConnectionResetError`` and skips the
    rest of its cleanup, leaving every subscription's task behind. What was never
    delivered cannot be now, so it is dropped first. Its last step, waiting for a TLS
    transport to close, can wait forever on a server that went away mid-handshake:
    bounded (subscriptions and tasks are released before it).
    """
    if nc.is_closed:
        return
    if not nc.is_connected:
        nc._pending = []  # see above: nats-py has no public way to discard it
        nc._pending_data_size = 0
    try:
        await asyncio.wait_for(nc.close(), max(timeout, 0.1))
    except Exception as exc:  # an unexpected failure of nats-py's own cleanup, or late
        get_logger(component="nats").info("nats close did not finish", error=repr(exc))


def _subject_kind(subject: str) -> str:
    parts = subject.split(".")
    return parts[1] if len(parts) > 1 else subject


async def connect(opts: ConnectOptions) -> NATS:
    """Connect with reconnect-forever; connection state and errors go to metrics and logs."""
    log = get_logger(component="nats")
    # A flood on one subscription drops messages by the thousand: a line per drop would
    # be a flood of its own, so one line per subject kind and window, with the count.
    drops = RateLimitedLog(log)
    trouble = RateLimitedLog(log)
    conn: dict[str, NATS] = {}

    async def error_cb(exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            kind = _subject_kind(exc.subject)
            SLOW_CONSUMER_DROPS.labels(kind).inc()
            drops.warning(kind, "slow consumer: message dropped", subject=exc.subject,
                          sid=exc.sid)
            return
        NATS_ERRORS.labels(type(exc).__name__).inc()
        # nats-py reports every failed (re)connect attempt here: one line per kind of
        # error and window while NATS is away, with the count.
        trouble.warning(type(exc).__name__, "nats error", error=repr(exc))
        nc = conn.get("nc")
        if nc is not None and nc.is_reconnecting:
            # nats-py waits a fixed reconnect_time_wait between attempts but reads it anew
            # each time, and reports every failed attempt here: double it, up to the cap.
            wait = nc.options["reconnect_time_wait"]
            nc.options["reconnect_time_wait"] = min(opts.max_reconnect_wait, wait * 2)
        for hook in list(opts.on_error):
            await hook(nc, exc)

    async def disconnected_cb() -> None:
        if "nc" not in conn:  # a failed first attempt: _first_connect says so, with backoff
            return
        NATS_CONNECTED.set(0)
        NATS_DISCONNECTS.inc()
        log.warning("nats disconnected")

    async def reconnected_cb() -> None:
        NATS_CONNECTED.set(1)
        NATS_RECONNECTS.inc()
        nc = conn["nc"]
        nc.options["reconnect_time_wait"] = opts.reconnect_wait
        log.info("nats reconnected", server=str(nc.connected_url.netloc)
                 if nc.connected_url else None)
        for hook in list(opts.on_reconnect):
            await hook()

    async def closed_cb() -> None:
        NATS_CONNECTED.set(0)

    kwargs: dict[str, Any] = dict(
        servers=opts.servers, name=opts.name, connect_timeout=opts.connect_timeout,
        max_reconnect_attempts=-1, reconnect_time_wait=opts.reconnect_wait,
        ping_interval=opts.ping_interval, max_outstanding_pings=opts.max_outstanding_pings,
        allow_reconnect=True, error_cb=error_cb, disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb, closed_cb=closed_cb,
    )
    kwargs.update(opts.security.kwargs())
    nc = conn["nc"] = await _first_connect(kwargs, opts, trouble)
    NATS_CONNECTED.set(1)
    check_server(nc)
    return identity.attach(nc, identity.Identity.from_creds(opts.security.creds_file))
