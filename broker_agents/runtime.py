"""Runs one agent on a NATS connection: subscriptions, dispatch, replies, owned tasks.

Life of an agent: subscribe (inbox + one queue-grouped subject per capability) -> on_start
-> *ready* (only now may the node advertise it) -> handle messages -> on stop: drain the
subscriptions (no new work, in-flight handlers finish), wait for owned tasks, on_stop.
Stopped for a handover, it parks instead: the subscriptions stay and hold what arrives for
the new host (``broker_agents.handoff``).
A fatal handler error or a failed owned task crashes the agent to its supervisor.

Every request gets one reply, in the caller's encoding, through ``broker_agents.reply``:
the handler's result or a structured error; input refused before any handler runs (too
large, too deep, a bad header, not an envelope, invalid) is counted per agent and reason
in ``ba_agent_malformed_messages_total``.

Before even that, each delivered message passes the agent's quota (``broker_agents.quota``:
rate and backlog), so a flood on one agent is refused cheaply (``rate_limited``) instead of
starving the node's other agents. What hostile input can repeat (refusals, handler
failures) is logged once per window, never once per message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from broker_agents import batching, codec, fanout, identity
from broker_agents.agent import Agent, HandlerSpec
from broker_agents.context import AgentContext, Incoming
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import HEADER_JWT, Unauthorized
from broker_agents.fastmetrics import CounterCell
from broker_agents.handoff import DROPPED, ArrivalDedup, Parking
from broker_agents.logging import get_logger
from broker_agents.messages import open_envelope
from broker_agents.metrics import (
    DUPLICATES,
    HANDLER_ERRORS,
    HANDLER_SECONDS,
    MALFORMED,
    MESSAGES_IN,
    MESSAGES_OUT,
)
from broker_agents.quota import AgentAdmission, AgentQuota, Refusal
from broker_agents.ratelog import RateLimitedLog
from broker_agents.reply import Publish, respond
from broker_agents.replycache import ReplyCache, key_of
from broker_agents.subjects import Subjects, check_token

DEFAULT_MAX_PAYLOAD = 1024 * 1024
YIELD_EVERY = 32


class AgentRunner:
    """Owns one agent instance and every task it starts."""

    def __init__(self, agent: Agent, nc: NATS, *, node_id: str, subjects: Subjects,
                 services: dict[str, Any] | None = None, max_payload: int = DEFAULT_MAX_PAYLOAD,
                 pending_msgs_limit: int = 65536, quota: AgentQuota | None = None,
                 fanout: bool = False, handed_over: bool = False) -> None:
        """``fanout``: also take asks for this agent from the node fan-out subject
        (``broker_agents.fanout``; a node's connection only: nobody else may subscribe).
        ``handed_over``: started by a handover, so a message may come twice for a while
        (``broker_agents.handoff``)."""
        check_token(agent.agent_id, "agent id")
        self.fanout = fanout
        self.agent = agent
        self.nc = nc
        self.subjects = subjects
        self.max_payload = max_payload
        self.pending_msgs_limit = pending_msgs_limit
        self.ctx = AgentContext(agent.agent_id, node_id, nc, subjects, services or {},
                                spawner=self.spawn)
        agent.bind(self.ctx)
        self.log = self.ctx.log
        self._log_once = RateLimitedLog(get_logger(agent_id=agent.agent_id, node_id=node_id))
        self.admission = AgentAdmission(agent.agent_id, quota or AgentQuota())
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._crash: BaseException | None = None
        self._semaphore = asyncio.Semaphore(max(1, agent.max_concurrency))
        self._parking: Parking | None = None
        self._dedup = ArrivalDedup() if handed_over else None
        self._replies = ReplyCache()  # what a redelivered request is answered from
        aid = agent.agent_id
        self._reply_count = MESSAGES_OUT.labels(aid, "reply")
        self._hist = {name: HANDLER_SECONDS.labels(aid, name) for name in agent._handler_specs}
        self._specs = agent._handler_specs
        self._methods = {name: getattr(agent, spec.method) for name, spec in self._specs.items()}
        self._concurrent = agent.max_concurrency > 1
        quota = self.admission.quota
        # A quota with every check off (an operator's choice) admits everything: skip it.
        self._quota_on = bool(quota.rate or quota.max_pending_msgs or quota.max_pending_bytes)
        self._seen = 0

    # -- lifecycle -------------------------------------------------------------------

    async def run(self, ready: Callable[[], None]) -> None:
        """Run until stopped (returns) or crashed (raises). Call ``ready`` once live."""
        try:
            await self._subscribe()
            await self.agent.on_start()
        except BaseException:
            await self._unsubscribe(drain=False)
            raise
        ready()
        await self._stop.wait()
        if self._crash is not None:
            await self._unsubscribe(drain=False)
            self._cancel_tasks()
            raise self._crash
        await self._graceful_stop()

    def stop(self) -> None:
        self._stop.set()

    def park(self) -> Parking:
        """Stop for a handover: like ``stop``, but the subscriptions stay and hold what
        arrives, for the caller to release once the new host is live."""
        if self._parking is None:
            if self.fanout:
                fanout.host(self.nc, self.subjects).remove(self.agent.agent_id)
                self.fanout = False
            self._parking = Parking(self.nc, self.agent.agent_id, self.ctx.node_id,
                                    self._subs, self.pending_msgs_limit)
            self._subs = []
        self.stop()
        return self._parking

    def crash(self, exc: BaseException) -> None:
        if self._crash is None:
            self._crash = exc
        self._stop.set()

    async def _graceful_stop(self) -> None:
        await self._unsubscribe(drain=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.agent.on_stop()

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Start a task the agent owns: awaited at stop, and its failure crashes the agent."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self.log.error("agent task failed", error=repr(exc))
            self.crash(exc)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # -- subscriptions ---------------------------------------------------------------

    async def _subscribe(self) -> None:
        aid = self.agent.agent_id
        await self._subscribe_one(self.subjects.agent(aid), "inbox")
        for cap in self.agent.all_capabilities():
            check_token(cap, "capability")
            await self._subscribe_one(self.subjects.cap(cap), "capability",
                                      self.subjects.cap_queue(cap))
        if self.fanout:  # the same callback as the inbox's, counted as kind "fanout"
            await fanout.host(self.nc, self.subjects).add(aid, partial(
                self._on_message, MESSAGES_IN.labels(aid, "fanout")))
        # The server has our interest once a round trip after SUB completes.
        await self.nc.flush()

    async def _subscribe_one(self, subject: str, kind: str, queue: str = "") -> None:
        """One subscription whose messages pass the agent's quota before anything else."""
        holder: list[Subscription] = []
        callback = partial(self._on_message, MESSAGES_IN.labels(self.agent.agent_id, kind),
                           holder)
        sub = await self.nc.subscribe(subject, queue=queue, cb=callback,
                                      pending_msgs_limit=self.pending_msgs_limit)
        holder.append(sub)
        self._subs.append(sub)

    async def _unsubscribe(self, drain: bool) -> None:
        if self.fanout:
            fanout.host(self.nc, self.subjects).remove(self.agent.agent_id)
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                if drain:
                    await sub.drain()  # type: ignore[no-untyped-call]
                else:
                    await sub.unsubscribe()
            except Exception as exc:  # connection already gone: nothing left to drain
                self.log.debug("unsubscribe failed", error=repr(exc))

    # -- dispatch --------------------------------------------------------------------

    async def _refuse(self, msg: Msg, refusal: Refusal, publish: Publish | None) -> None:
        """Over quota (already counted): answer ``rate_limited`` without decoding anything;
        a one-way message is dropped."""
        aid = self.agent.agent_id
        self._log_once.warning(("quota", refusal.reason), "over quota: refused",
                               reason=refusal.reason, retry_after_ms=refusal.retry_after_ms)
        if msg.reply:
            await self._reply(msg.reply, refusal.error(aid).to_payload(),
                              codec.is_json(msg.data, msg.headers), publish=publish)

    async def _on_message(self, counter: CounterCell, holder: list[Subscription],
                          msg: Msg, publish: Publish | None = None) -> None:
        """Every delivered message: counted, through the quota, then opened and handled.
        ``publish``: how answers made before this returns go out (a fan-out ask's batch).

        One coroutine from delivery to the handler's call for a sequential handler (this
        is the per-message floor beside a raw subscription): no wrapper per step. A batch
        frame (``broker_agents.batching``) comes back here once per entry."""
        if self._parking is not None:
            await self._parking.take(msg)
            return
        if self._dedup is not None:
            if self._dedup.expired():
                self._dedup = None
            elif self._dedup.second_copy(msg):
                DROPPED.labels(self.agent.agent_id).inc()
                return
        if msg.headers and batching.HEADER in msg.headers:
            await batching.deliver(msg, holder, partial(self._on_message, counter),
                                   self._frame_refused)
            return
        counter.inc()
        try:
            if self._quota_on and (refusal := self.admission.admit(
                    holder[0] if holder else None)) is not None:
                await self._refuse(msg, refusal, publish)
            else:
                data, headers, reply = msg.data, msg.headers, msg.reply
                as_json = codec.is_json(data, headers)
                try:
                    type_name, body, msg_id = open_envelope(
                        codec.decode(data, headers, as_json, max_size=self.max_payload))
                except BrokerError as exc:  # too large, too deep, a bad header, not an envelope
                    self._malformed(exc.code)
                    await self._reply(reply, exc.to_payload(), as_json, publish=publish)
                    return
                principal = None
                if headers and HEADER_JWT in headers:  # signed: verified before anything runs
                    try:
                        principal = identity.authenticate(self.nc, msg.subject, data, headers,
                                                          component=self.agent.agent_id)
                    except Unauthorized as exc:
                        self._malformed(exc.code)
                        await self._reply(reply, exc.to_payload(), as_json,
                                          publish=publish)
                        return
                spec = self._specs.get(type_name)
                if msg_id is not None and (reply or principal is not None) and (
                        sent := self._replies.get(key_of(principal, reply, msg_id))
                ) is not None:
                    DUPLICATES.labels(self.agent.agent_id).inc()
                    await self._resend(reply, sent, signed=spec is not None and spec.signed,
                                       publish=publish)
                    return
                incoming = Incoming(msg.subject, reply, msg_id, type_name, as_json, headers,
                                    principal)
                if spec is not None and (spec.concurrent or self._concurrent):
                    await self._semaphore.acquire()
                    self.spawn(self._run_concurrent(spec, body, incoming))
                else:
                    await self._handle(spec, body, incoming, publish)
        finally:  # refused, malformed and duplicate messages count too
            self._seen += 1
            if self._seen % YIELD_EVERY == 0:
                # nats-py hands a backlog over without suspending: let the node's other
                # agents (and its Raft members) run between slices of this one's
                await asyncio.sleep(0)

    async def _frame_refused(self, msg: Msg, exc: BrokerError) -> None:
        self._malformed(batching.REASON)
        await self._reply(msg.reply, exc.to_payload(), codec.is_json(msg.data, None))

    async def _run_concurrent(self, spec: HandlerSpec, body: Any, incoming: Incoming) -> None:
        try:
            await self._handle(spec, body, incoming)
        finally:
            self._semaphore.release()

    async def _handle(self, spec: HandlerSpec | None, body: Any, incoming: Incoming,
                      publish: Publish | None = None) -> None:
        started = time.perf_counter()
        try:
            payload = await self._call(spec, body, incoming)
        except Exception as exc:
            if isinstance(exc, self.agent.fatal_errors):  # FatalAgentError is a BrokerError too
                await self._fail(exc, incoming)
                return
            if isinstance(exc, BrokerError):
                self._count_error(incoming.type_name, exc.code)
                payload = exc.to_payload()
            else:
                payload = self._handler_failed(exc, incoming)
        hist = self._hist.get(incoming.type_name)
        if hist is not None:
            hist.observe(time.perf_counter() - started)
        if not incoming.reply:  # one-way message: nothing to answer or remember
            return
        encoded = await self._reply(incoming.reply, payload, incoming.is_json,
                                    signed=spec is not None and spec.signed, publish=publish)
        if incoming.msg_id is not None and encoded is not None:
            self._replies.remember(key_of(incoming.principal, incoming.reply, incoming.msg_id),
                                   encoded)

    def _handler_failed(self, exc: Exception, incoming: Incoming) -> dict[str, Any]:
        """Count and log a handler's unexpected exception; the error reply it gets."""
        self._count_error(incoming.type_name, ErrorCode.HANDLER_ERROR)
        self._log_once.error(("handler", incoming.type_name, type(exc).__name__),
                             "handler failed", type=incoming.type_name,
                             msg_id=incoming.msg_id, error=repr(exc), exc_info=exc)
        return BrokerError(ErrorCode.HANDLER_ERROR, f"{type(exc).__name__}: {exc}",
                           {"type": incoming.type_name}).to_payload()

    async def _fail(self, exc: Exception, incoming: Incoming) -> None:
        """A fatal error: answer like any handler failure, then crash to the supervisor."""
        await self._reply(incoming.reply, self._handler_failed(exc, incoming), incoming.is_json)
        self.crash(exc)

    def _call(self, spec: HandlerSpec | None, body: Any,
              incoming: Incoming) -> Coroutine[Any, Any, Any]:
        """Validate the body and return the handler's coroutine (awaited by the caller:
        one coroutine frame less per message than an async wrapper)."""
        if spec is None:
            return self.agent.handle_unknown(incoming.type_name, body, incoming)
        arg = body
        if spec.model is not None:
            try:  # the model's validator itself: model_validate is a wrapper around it
                arg = spec.model.__pydantic_validator__.validate_python(body)
            except ValidationError as exc:
                self._malformed("validation")
                raise BrokerError(ErrorCode.VALIDATION, _describe(exc, spec.type_name), {
                    "type": spec.type_name,
                    "errors": exc.errors(include_url=False, include_context=False,
                                         include_input=False)}) from exc
        method = self._methods[spec.type_name]
        if spec.wants_incoming:
            return method(arg, incoming)  # type: ignore[no-any-return]
        return method(arg)  # type: ignore[no-any-return]

    async def _reply(self, reply: str | None, payload: Any, as_json: bool,
                     signed: bool = False, publish: Publish | None = None) -> bytes | None:
        """Answer through the one reply path (too_large / internal guards; never raises);
        ``signed``: as an act of this agent's; ``publish``: see ``_on_message``."""
        aid = self.agent.agent_id
        data = await respond(self.nc, reply, payload, as_json, component=aid,
                             signed_as=aid if signed else None, publish=publish)
        if data is not None:
            self._reply_count.inc()
        return data

    async def _resend(self, reply: str | None, data: bytes, signed: bool,
                      publish: Publish | None = None) -> None:
        """A redelivered request: the reply already sent, from the cache (signed anew: a
        signature covers the reply subject)."""
        if not reply:
            return
        headers = (identity.act_headers(self.nc, reply, data, self.agent.agent_id)
                   if signed else None)
        try:
            await (publish or self.nc.publish)(reply, data, headers=headers)
        except Exception as exc:  # connection gone: the caller will ask again
            self._log_once.warning("resend", "cached reply not sent", error=repr(exc))
            return
        self._reply_count.inc()

    def _malformed(self, reason: str) -> None:
        MALFORMED.labels(self.agent.agent_id, reason).inc()
        self._log_once.info(("malformed", reason), "message refused", reason=reason)

    def _count_error(self, type_name: str, code: str) -> None:
        HANDLER_ERRORS.labels(self.agent.agent_id, type_name, code).inc()


def _describe(exc: ValidationError, type_name: str) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
             for e in exc.errors()]
    return f"invalid {type_name}: " + "; ".join(parts)
