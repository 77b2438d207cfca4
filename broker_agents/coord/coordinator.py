"""``CoordinatorAgent``: serves ``<p>.coord.<protocol>`` for every coordination protocol.

Host one (or more, on several nodes: they share a queue group per subject) with
``{"class": "broker_agents.coord.coordinator:CoordinatorAgent", "id": "coordinator"}``.
Requests are JSON or msgpack (the reply uses the same encoding); every request gets a
reply: the protocol's result model, or ``{"error": {"code", "message", "details"}}``
(``validation_error`` naming the fields, ``unknown_protocol``, ``too_few_participants``,
``no_agents``, ``deadline_exceeded``, ...). Each request runs in its own task, so a slow
barrier never holds up a vote; nothing a client sends can crash the agent.

Trust (``broker_agents.coord.admission``): a request is a signed act; its signer is the
requester, the only name it may give as a lock's holder or a role's candidate. Each
requester has an in-flight and a rate quota per protocol; timeouts, TTLs, participants
and PBFT groups are bounded. Participants' answers count only when signed by the
participant asked (votes, predictions).

Every coordination emits ``<p>.events.coord.<protocol>.started|finished`` and updates
``ba_coord_duration_seconds{protocol}`` and ``ba_coord_total{protocol,outcome}``.
Kwargs: ``CoordinatorSettings`` (checked when the node starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from nats.aio.msg import Msg
from pydantic import BaseModel, Field

from broker_agents import codec
from broker_agents.agent import Agent, AgentSettings
from broker_agents.coord.admission import Admission, RequesterQuota
from broker_agents.coord.barrier import BarrierDriver, open_barriers
from broker_agents.coord.drivers import (
    CoordEnv,
    run_auto,
    run_ensemble,
    run_hierarchical,
    run_vote,
)
from broker_agents.coord.lease import LeaseStore
from broker_agents.coord.locks import handle_leader, handle_lock
from broker_agents.coord.metrics import COORD_DURATION, COORD_TOTAL
from broker_agents.coord.models import (
    AutoResult,
    LockResult,
)
from broker_agents.coord.pbft_client import PbftDriver
from broker_agents.coord.schema import PROTOCOLS, REQUEST_MODELS
from broker_agents.coord.summary import run_summary
from broker_agents.core.coord.bounds import Bounds
from broker_agents.core.coord.models import (
    EnsembleResult,
    HierarchicalResult,
    VoteResult,
    parse_request,
)
from broker_agents.core.coord.quota import Quotas
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Principal
from broker_agents.discovery import Discovery, registry_finder
from broker_agents.kv import open_bucket
from broker_agents.logging import get_logger
from broker_agents.messages import new_message_id
from broker_agents.metrics import MALFORMED
from broker_agents.ratelog import RateLimitedLog
from broker_agents.reply import respond

MAX_PAYLOAD = 1024 * 1024
STOP_GRACE_S = 5.0
_intake_log = RateLimitedLog(get_logger(component="coordinator"))


def outcome_of(result: BaseModel) -> str:
    """A bounded label for ``ba_coord_total``."""
    if isinstance(result, AutoResult):
        return "decided" if result.result.get("decision") is not None or result.result.get(
            "decided") else "no_decision"
    if isinstance(result, VoteResult | HierarchicalResult):
        return "decided" if result.rule_met else "no_decision"
    if isinstance(result, EnsembleResult):
        return "decided" if result.result is not None else "no_decision"
    if isinstance(result, LockResult):
        return "granted" if result.granted else "denied"
    return "ok"


class CoordinatorSettings(AgentSettings):
    foreign: list[str] = Field(
        default_factory=lambda: ["auction"],
        description="protocol names other services answer under <p>.coord.; the catch-all "
                    "stays silent for them instead of answering unknown_protocol")
    discovery_ms: float = Field(150.0, gt=0, description="how long a capability discovery "
                                "broadcast collects answers")
    pbft_tick_ms: float = Field(10.0, ge=1.0, description="the PBFT logical tick the "
                                "coordinator's groups run with (at least 1 ms)")
    max_inflight: int = Field(1024, ge=1, description="requests served at once, whoever "
                              "asks (the last resort behind the per-requester quotas); "
                              "beyond it a request is answered 'unavailable, retry'")
    quota: RequesterQuota = Field(default_factory=RequesterQuota, description="each "
                                  "requester's in-flight and rate quota, per protocol")
    quotas: dict[str, RequesterQuota] = Field(default_factory=dict, description="protocol "
                                              "-> its own quota instead of 'quota'")
    max_requesters: int = Field(10_000, ge=1, description="requester/protocol pairs whose "
                                "quota state is kept (idle ones are forgotten beyond it)")
    max_participants: int = Field(1000, ge=1, description="participants per request, named "
                                  "or found by capability")
    max_barrier_timeout_ms: int = Field(600_000, ge=1, description="a barrier's longest "
                                        "deadline")
    max_lease_ttl_ms: int = Field(600_000, ge=10, description="the longest lock or leader "
                                  "lease")
    max_lock_wait_ms: int = Field(60_000, ge=0, description="the longest an acquire may "
                                  "wait for a lock")
    max_pbft_timeout_ms: int = Field(60_000, ge=1, description="a PBFT request's longest "
                                     "deadline (its group's lifetime)")
    max_pbft_groups: int = Field(16, ge=1, description="PBFT groups this coordinator runs "
                                 "at once; beyond it: rate_limited (pbft_groups)")

    def bounds(self) -> Bounds:
        return Bounds(max_participants=self.max_participants,
                      max_barrier_timeout_ms=self.max_barrier_timeout_ms,
                      max_lease_ttl_ms=self.max_lease_ttl_ms,
                      max_lock_wait_ms=self.max_lock_wait_ms,
                      max_pbft_timeout_ms=self.max_pbft_timeout_ms)


class CoordinatorAgent(Agent):
    capabilities: ClassVar[list[str]] = ["coordinator"]
    Settings = CoordinatorSettings

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        self.settings = CoordinatorSettings.model_validate(config)

    async def on_start(self) -> None:
        ctx, cfg = self.ctx, self.settings
        self._foreign = set(cfg.foreign)
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving = 0  # admitted requests not yet answered (refusals do not count)
        bounds = cfg.bounds()
        self.admission = Admission(
            ctx.nc, Quotas(cfg.quota.core(), {p: q.core() for p, q in cfg.quotas.items()},
                           cfg.max_requesters), bounds, cfg.max_inflight)
        discovery = Discovery(ctx.nc, ctx.subjects.vote, registry_finder(ctx.services),
                              cfg.discovery_ms / 1000)
        self.pbft = PbftDriver(ctx.nc, ctx.subjects, discovery, f"{self.agent_id}-client",
                               tick_ms=cfg.pbft_tick_ms, max_groups=cfg.max_pbft_groups,
                               bounds=bounds)
        self.env = CoordEnv(ctx.nc, ctx.subjects, discovery, ctx.node_id,
                            random.Random(os.urandom(8)), pbft=self.pbft.run, bounds=bounds)
        self.leases = LeaseStore(await open_bucket(ctx.js, ctx.subjects.bucket("leases")))
        self.barriers = BarrierDriver(
            ctx.nc, ctx.subjects, await open_barriers(ctx.js, ctx.subjects.bucket("barriers")))
        bind = self.admission.bind
        self._runners: dict[str, Callable[[Any, Principal | None], Awaitable[BaseModel]]] = {
            "vote": lambda r, _: run_vote(self.env, r),
            "hierarchical": lambda r, _: run_hierarchical(self.env, r),
            "ensemble": lambda r, _: run_ensemble(self.env, r),
            "auto": lambda r, _: run_auto(self.env, r),
            "pbft": lambda r, _: self.pbft.run(r),
            "barrier": lambda r, p: self.barriers.arrive(r.model_copy(update={
                "participant": bind(p, r.participant, "participant")})),
            "lock": lambda r, p: handle_lock(self.leases, r, bind(p, r.holder, "holder")),
            "leader": lambda r, p: handle_leader(self.leases, r,
                                                 bind(p, r.candidate, "candidate")),
        }
        # One queue group per subject: the server picks one member per group *name* among
        # all matching subscriptions, so sharing a name would let the catch-all steal.
        queue = f"{ctx.subjects.prefix}-coord"
        self._subs = []
        for protocol in PROTOCOLS:
            self._subs.append(await ctx.nc.subscribe(
                ctx.subjects.coord(protocol), queue=f"{queue}-{protocol}",
                cb=self._callback(protocol), pending_msgs_limit=65536))
        self._subs.append(await ctx.nc.subscribe(ctx.subjects.coord(">"), queue=f"{queue}-any",
                                                 cb=self._catch_all))
        await ctx.nc.flush()

    async def on_stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)

    # -- intake ---------------------------------------------------------------------

    def _callback(self, protocol: str) -> Callable[[Msg], Awaitable[None]]:
        async def on_request(msg: Msg) -> None:
            # Admitted here, in arrival order, before any task runs: a burst cannot slip
            # past a quota while its tasks are still being scheduled.
            try:
                principal, requester = self.admission.enter(
                    protocol, msg.subject, msg.data, msg.headers, self._serving)
            except BrokerError as exc:
                COORD_TOTAL.labels(protocol, exc.code).inc()
                self._spawn(self._reply(msg, exc.to_payload(),
                                        codec.is_json(msg.data, msg.headers)))
                return
            self._serving += 1
            self._spawn(self._serve(protocol, msg, principal, requester))

        return on_request

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_all(self, msg: Msg) -> None:
        protocol = msg.subject[len(self.ctx.subjects.coord("")):]
        if protocol in PROTOCOLS or protocol.split(".")[0] in self._foreign:
            return
        err = BrokerError(
            ErrorCode.UNKNOWN_PROTOCOL, f"unknown coordination protocol {protocol!r}",
            {"protocol": protocol, "known": list(PROTOCOLS)})
        COORD_TOTAL.labels("unknown", err.code).inc()
        await self._reply(msg, err.to_payload(), codec.is_json(msg.data, msg.headers))

    async def _reply(self, msg: Msg, body: Any, as_json: bool) -> None:
        await respond(self.ctx.nc, msg.reply, body, as_json, component=self.agent_id)

    def _intake(self, protocol: str, msg: Msg) -> BaseModel:
        """The typed request, or a counted refusal (too large, too deep, bad header,
        undecodable, invalid)."""
        try:
            return parse_request(REQUEST_MODELS[protocol],
                                 codec.decode(msg.data, msg.headers, max_size=MAX_PAYLOAD))
        except BrokerError as exc:
            MALFORMED.labels(self.agent_id, exc.code).inc()
            _intake_log.info((protocol, exc.code), "coordination request refused",
                             protocol=protocol, code=exc.code, error=exc.message[:200])
            raise

    # -- one request ------------------------------------------------------------------

    async def _serve(self, protocol: str, msg: Msg, principal: Principal | None,
                     requester: str) -> None:
        started = time.perf_counter()
        as_json = codec.is_json(msg.data, msg.headers)
        coord_id = new_message_id()
        began = False
        outcome = "ok"
        body: Any
        req: BaseModel | None = None
        result: BaseModel | None = None
        try:
            req = self._intake(protocol, msg)
            self.admission.check_bounds(protocol, req)
            began = True
            await self._event(protocol, "started", coord_id=coord_id)
            result = await self._runners[protocol](req, principal)
            outcome = outcome_of(result)
            body = result
        except BrokerError as exc:
            outcome = exc.code
            body = exc.to_payload()
        except asyncio.CancelledError:
            outcome = ErrorCode.UNAVAILABLE.value
            body = BrokerError(ErrorCode.UNAVAILABLE, "coordinator stopping").to_payload()
            await self._reply(msg, body, as_json)
            raise
        except Exception as exc:
            self.ctx.log.error("coordination failed", protocol=protocol, error=repr(exc),
                               exc_info=exc)
            outcome = ErrorCode.INTERNAL.value
            body = BrokerError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}",
                               {"protocol": protocol}).to_payload()
        finally:
            self._serving -= 1
            self.admission.leave(protocol, requester)
        await self._reply(msg, body, as_json)
        elapsed = time.perf_counter() - started
        COORD_DURATION.labels(protocol).observe(elapsed)
        COORD_TOTAL.labels(protocol, outcome).inc()
        if began:
            await self._event(protocol, "finished", coord_id=coord_id, outcome=outcome,
                              duration_ms=round(elapsed * 1000, 3), **run_summary(req, result))

    async def _event(self, protocol: str, what: str, **fields: Any) -> None:
        payload = {"protocol": protocol, "node_id": self.ctx.node_id,
                   "coordinator": self.agent_id, **fields}
        with contextlib.suppress(Exception):
            await self.ctx.nc.publish(self.ctx.subjects.events("coord", protocol, what),
                                      codec.encode(payload))
