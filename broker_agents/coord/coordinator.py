"""``CoordinatorAgent``: serves ``<p>.coord.<protocol>`` for every coordination protocol.

Host one (or more, on several nodes: they share a queue group per subject) with
``{"class": "broker_agents.coord.coordinator:CoordinatorAgent", "id": "coordinator"}``.
Requests are JSON or msgpack (the reply uses the same encoding); every request gets a
reply: the protocol's result model, or ``{"error": {"code", "message", "details"}}``
(``validation_error`` naming the fields, ``unknown_protocol``, ``too_few_participants``,
``no_agents``, ``deadline_exceeded``, ...). Each request runs in its own task, so a slow
barrier never holds up a vote; nothing a client sends can crash the agent.

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
from broker_agents.core.coord.models import (
    EnsembleResult,
    HierarchicalResult,
    VoteResult,
    parse_request,
)
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.discovery import Discovery, registry_finder
from broker_agents.kv import open_bucket
from broker_agents.messages import new_message_id
from broker_agents.metrics import MALFORMED
from broker_agents.reply import respond

MAX_PAYLOAD = 1024 * 1024
STOP_GRACE_S = 5.0


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
    pbft_tick_ms: float = Field(10.0, gt=0, description="the PBFT client's logical tick")
    max_inflight: int = Field(1024, ge=1, description="requests served at once; beyond it a "
                              "request is answered 'unavailable, retry'")


class CoordinatorAgent(Agent):
    capabilities: ClassVar[list[str]] = ["coordinator"]
    Settings = CoordinatorSettings

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        self.settings = CoordinatorSettings.model_validate(config)

    async def on_start(self) -> None:
        ctx = self.ctx
        self._foreign = set(self.settings.foreign)
        self._max_inflight = self.settings.max_inflight
        self._tasks: set[asyncio.Task[None]] = set()
        discovery = Discovery(ctx.nc, ctx.subjects.vote, registry_finder(ctx.services),
                              self.settings.discovery_ms / 1000)
        self.pbft = PbftDriver(ctx.nc, ctx.subjects, discovery, f"{self.agent_id}-client",
                               tick_ms=self.settings.pbft_tick_ms)
        self.env = CoordEnv(ctx.nc, ctx.subjects, discovery, ctx.node_id,
                            random.Random(os.urandom(8)), pbft=self.pbft.run)
        self.leases = LeaseStore(await open_bucket(ctx.js, ctx.subjects.bucket("leases")))
        self.barriers = BarrierDriver(
            ctx.nc, ctx.subjects, await open_barriers(ctx.js, ctx.subjects.bucket("barriers")))
        self._runners: dict[str, Callable[[Any], Awaitable[BaseModel]]] = {
            "vote": lambda r: run_vote(self.env, r),
            "hierarchical": lambda r: run_hierarchical(self.env, r),
            "ensemble": lambda r: run_ensemble(self.env, r),
            "auto": lambda r: run_auto(self.env, r),
            "pbft": self.pbft.run,
            "barrier": self.barriers.arrive,
            "lock": lambda r: handle_lock(self.leases, r),
            "leader": lambda r: handle_leader(self.leases, r),
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
            self._spawn(self._serve(protocol, msg))

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
            self.ctx.log.info("coordination request refused", protocol=protocol,
                              code=exc.code, error=exc.message[:200])
            raise

    # -- one request ------------------------------------------------------------------

    async def _serve(self, protocol: str, msg: Msg) -> None:
        started = time.perf_counter()
        as_json = codec.is_json(msg.data, msg.headers)
        coord_id = new_message_id()
        began = False
        outcome = "ok"
        body: Any
        try:
            if len(self._tasks) > self._max_inflight:
                raise BrokerError(ErrorCode.UNAVAILABLE, "coordinator is busy, retry",
                                  {"inflight": len(self._tasks)})
            req = self._intake(protocol, msg)
            began = True
            await self._event(protocol, "started", coord_id=coord_id)
            result = await self._runners[protocol](req)
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
        await self._reply(msg, body, as_json)
        elapsed = time.perf_counter() - started
        COORD_DURATION.labels(protocol).observe(elapsed)
        COORD_TOTAL.labels(protocol, outcome).inc()
        if began:
            await self._event(protocol, "finished", coord_id=coord_id, outcome=outcome,
                              duration_ms=round(elapsed * 1000, 3))

    async def _event(self, protocol: str, what: str, **fields: Any) -> None:
        payload = {"protocol": protocol, "node_id": self.ctx.node_id,
                   "coordinator": self.agent_id, **fields}
        with contextlib.suppress(Exception):
            await self.ctx.nc.publish(self.ctx.subjects.events("coord", protocol, what),
                                      codec.encode(payload))
