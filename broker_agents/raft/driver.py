"""RaftMember: runs a RaftCore over NATS (asyncio + nats-py).

One owner task (the pump) turns the core's Ready into IO in the order persist (fsync) ->
send -> reply, except that a leader's own appends (``Ready.early``) are written while its
appends travel (the core counts the leader only once ``persisted`` says so); one ticker
task drives logical time. NATS callbacks only step the core and wake the pump, so
everything that arrives in one event-loop turn is batched into one Ready, and everything
that arrives during one fsync into the next: one fsync and one publish per peer carry many
entries. Writes go through ``LogWriter`` (one thread, in order).

Subjects (``s = Subjects(prefix)``):
    s.raft(group, member)             peer traffic (a msgpack list of wire messages)
    s.raft(group, "propose" | "read") client requests, any member (queue group)
    s.raft(group, member, "propose" | "read")   client requests to one member
A client request is ``{"command": ..., "request_id": "..."}`` (or a batch of them:
``batch.py``) or ``{"query": ...}`` (JSON or msgpack); the reply is ``{"result", "index",
"leader"}`` or the standard error payload, in the request's encoding (``inbound.py``;
``broker_agents/reply.py`` sends it). A command is checked before the core sees it
(``commands.py``): one the log could not store is refused with ``validation_error``.
The core decides what becomes of a proposal to a member that is not the leader; when it
answers ``Redirect``, the driver relays the request (a batch once) to the leader's subject
with the original reply subject and the relay count in the ``ba-raft-hops`` header.

Peers speak msgpack only. A peer message that does not decode, or that the core refuses
(``Ready.refused``: not from a member, an implausible term...), is counted and logged at
a bounded rate (``refusals.py``). An internal error -- the log cannot be written, the
core raises -- fail-stops the member loudly (``failed`` says why; the node's readiness
reports it) instead of leaving a zombie that takes requests it can never commit.

The pump, the peer callbacks, the waiters it completes and the fail-stop are one loop and
stay here; what it applies lives beside it: parsing (``inbound.py``), proposal intake
and relaying, batches included (``proposing.py``, ``batch.py``), command checks
(``commands.py``), payload cutting (``outgoing.py``), refusal counting (``refusals.py``),
waiters (``replies.py``), and what callers ask of a member (``requests.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Sequence
from typing import Any

import structlog

from broker_agents.codec import is_json
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft import (
    Forget,
    Persisted,
    RaftConfig,
    RaftCore,
    RaftEvent,
    Read,
    Ready,
    Redirect,
    RefusalReason,
    Reply,
    StateMachine,
    Tick,
)
from broker_agents.core.raft.config import DEFAULT_MAX_TERM_JUMP, DEFAULT_SNAPSHOT_TRAIL
from broker_agents.raft.commands import DEFAULT_MAX_COMMAND_BYTES, CommandCheck
from broker_agents.raft.inbound import decode_peer_payload, parse_request
from broker_agents.raft.memstore import Storage
from broker_agents.raft.metrics import MemberMetrics, RoleObserver
from broker_agents.raft.outgoing import peer_payloads
from broker_agents.raft.proposing import MemberProposing
from broker_agents.raft.refusals import LogThrottle, Refusals
from broker_agents.raft.replies import Remote, Waiters
from broker_agents.raft.requests import RESERVED, MemberRequests
from broker_agents.raft.writer import LogWriter
from broker_agents.reply import max_payload_of, respond
from broker_agents.subjects import Subjects, check_token

_TICK = Tick()  # Raft counts ticks: one record serves them all
_log = structlog.get_logger()


class RaftMember(MemberRequests, MemberProposing):
    def __init__(
        self,
        nc: Any,
        group: str,
        member_id: str,
        peers: Sequence[str],
        storage: Storage,
        state_machine: StateMachine,
        subjects: Subjects = Subjects(),  # noqa: B008 - immutable dataclass
        *,
        tick_ms: float = 20.0,
        election_ticks: int = 10,
        heartbeat_ticks: int = 2,
        snapshot_threshold: int = 10_000,
        snapshot_trail: int = DEFAULT_SNAPSHOT_TRAIL,
        max_append_entries: int = 512,
        max_inflight: int = 4,  # under load: fewer, larger appends, less CPU per commit
        request_ttl: float = 30.0,
        max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES,
        max_term_jump: int = DEFAULT_MAX_TERM_JUMP,
        dedup_capacity: int = 100_000,
        dedup_window: int = 0,
        rng: random.Random | None = None,
        join: bool = False,
    ) -> None:
        """``peers``: the group's bootstrap members (this one among them unless ``join``:
        a member that waits to be added, ``ChangeMembers``). Once the log holds a
        configuration, that one counts (see core/raft/membership.py)."""
        check_token(group, "group")
        for m in (member_id, *peers):
            check_token(m, "member")
            if m in RESERVED:
                raise ValueError(f"member id {m!r} is reserved")
        bootstrap = [p for p in peers if p != member_id] if join else [*peers, member_id]
        members = tuple(dict.fromkeys(bootstrap))
        self.nc, self.group, self.id, self.subjects = nc, group, member_id, subjects
        self.storage = storage
        self.sm = state_machine
        self.tick_s = tick_ms / 1000.0
        self.request_ttl = request_ttl
        self.config = RaftConfig(
            member_id=member_id, members=members, election_ticks=election_ticks,
            heartbeat_ticks=heartbeat_ticks, snapshot_threshold=snapshot_threshold,
            snapshot_trail=snapshot_trail,
            max_append_entries=max_append_entries, max_inflight=max_inflight,
            max_term_jump=max_term_jump, dedup_capacity=dedup_capacity,
            dedup_window=dedup_window,
        )
        self.rng = rng or random.Random()
        self.core: RaftCore | None = None
        self.metrics = MemberMetrics.bind(group, member_id)
        self.log = _log.bind(group=group, member=member_id)
        self.failed: str | None = None  # why this member fail-stopped
        self._check = CommandCheck(max_command_bytes)
        self._refusals = Refusals(group, self.log)
        self._quiet = LogThrottle()  # send failures repeat every Ready until they stop
        self._waiters = Waiters(self._respond, lambda rid: self._step(Forget(rid)))
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self._running = False
        self._stopped = False
        self._observer = RoleObserver(self.metrics, self.log)
        self._writer = LogWriter(storage, self._on_durable, self._on_write_failed)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.core = RaftCore(self.config, self.rng, self.sm, self.storage.load())
        s, g, me = self.subjects, self.group, self.id
        queue = f"raft-{g}"
        self._subs = [
            await self.nc.subscribe(s.raft(g, me), cb=self._on_peer),
            await self.nc.subscribe(s.raft(g, me, "propose"), cb=self._on_propose),
            await self.nc.subscribe(s.raft(g, me, "read"), cb=self._on_read),
            await self.nc.subscribe(s.raft(g, "propose"), queue=queue, cb=self._on_propose),
            await self.nc.subscribe(s.raft(g, "read"), queue=queue, cb=self._on_read),
        ]
        await self.nc.flush()
        if self._check.max_bytes > max_payload_of(self.nc) // 2:
            self.log.warning("raft.command_bound_near_max_payload",
                             max_command_bytes=self._check.max_bytes,
                             max_payload=max_payload_of(self.nc))
        self._running = True
        self._tasks = [
            asyncio.create_task(self._pump(), name=f"raft-pump-{g}-{me}"),
            asyncio.create_task(self._ticker(), name=f"raft-tick-{g}-{me}"),
        ]
        self._wake.set()
        self.log.info("raft.started", members=list(self.config.members),
                      term=self.core.term, commit=self.core.commit)

    async def stop(self, *, handover: bool = False, handover_timeout: float = 2.0) -> None:
        """Stop. ``handover`` (a planned stop): a leader first hands leadership to a
        caught-up voter and answers the requests it holds (``_hand_over``); otherwise at
        once, like a crash minus the lost fsyncs. Also releases what a fail-stopped member
        still holds (its writer, its file)."""
        if self._stopped:
            return
        if handover:
            await self._hand_over(handover_timeout)
        self._stopped = True
        self._running = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._unsubscribe()
        await self._waiters.fail_all(BrokerError(ErrorCode.UNAVAILABLE, "member stopped"))
        await self._writer.close()
        self.storage.close()
        self.metrics.is_leader.set(0)
        self.log.info("raft.stopped")

    async def _unsubscribe(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _fail_stop(self, where: str, exc: BaseException) -> None:
        """An internal error: stop participating, loudly, instead of living on.

        The core may already believe a write is durable, or hold a half-applied step;
        going on could acknowledge what is not on disk. Like a crash, minus the silence:
        logged, counted, and ``failed`` says why (the node's readiness reports it).
        """
        if self.failed is not None:
            return
        self.failed = f"{where}: {type(exc).__name__}: {exc}"
        self._running = False
        self._wake.set()  # the pump and the ticker see it and end
        self.metrics.fail_stops.inc()
        self.metrics.is_leader.set(0)
        self.log.error("raft.fail_stop", where=where, error=repr(exc),
                       exc_info=(type(exc), exc, exc.__traceback__))
        if not self._stopped:
            self._tasks.append(asyncio.ensure_future(self._after_fail_stop()))

    async def _after_fail_stop(self) -> None:
        await self._unsubscribe()
        await self._waiters.fail_all(BrokerError(
            ErrorCode.UNAVAILABLE, "raft member fail-stopped",
            {"member": self.id, "reason": self.failed}))

    # -- properties ----------------------------------------------------------------------

    def _step(self, event: RaftEvent) -> bool:
        """Step the core; an exception from it is internal: fail-stop. False once
        this member no longer takes events."""
        if not self._running or self.core is None:
            return False
        try:
            self.core.step(event)
        except Exception as exc:
            self._fail_stop("step", exc)
            return False
        self._wake.set()
        return True

    # -- NATS callbacks ------------------------------------------------------------------

    async def _on_peer(self, msg: Any) -> None:
        if not self._running:
            return
        try:
            messages, dropped = decode_peer_payload(msg.data, self._check)
        except BrokerError as exc:
            self.metrics.malformed.inc()
            self._refusals.peer(str(exc.details.get("reason")), error=exc.message,
                                size=len(msg.data))
            if msg.reply:  # peers never ask; an outsider that does still gets an answer
                await self._respond(msg.reply, exc.to_payload(),
                                    is_json(msg.data, msg.headers))
            return
        for src in dropped:
            self._refusals.peer(RefusalReason.INVALID_COMMAND.value, src=src)
        core = self.core
        assert core is not None
        try:
            for m in messages:
                core.step(m)
        except Exception as exc:
            self._fail_stop("step", exc)
            return
        self._wake.set()

    async def _respond(self, subject: str, payload: Any, as_json: bool) -> None:
        await respond(self.nc, subject, payload, as_json, component="raft")

    async def _refuse_request(self, msg: Any, exc: BrokerError, as_json: bool) -> None:
        if exc.code in (ErrorCode.MALFORMED, ErrorCode.BAD_REQUEST):
            self.metrics.malformed.inc()
        self._refusals.request(exc.code.value, error=exc.message,
                               reason=exc.details.get("reason"))
        if msg.reply:
            await self._respond(msg.reply, exc.to_payload(), as_json)

    async def _on_read(self, msg: Any) -> None:
        if not self._running:
            return
        as_json = is_json(msg.data, msg.headers)
        try:
            query, _rid = parse_request(msg.data, as_json, "query", msg.headers)
        except BrokerError as exc:
            await self._refuse_request(msg, exc, as_json)
            return
        rid = uuid.uuid4().hex  # reads are not deduplicated: each one is fresh
        if msg.reply:
            self._waiters.add(rid, Remote(msg.reply, as_json))
        self._step(Read(query, rid))

    # -- the owner tasks -----------------------------------------------------------------

    def _on_durable(self, mark: Persisted) -> None:
        self._step(mark)

    def _on_write_failed(self, exc: BaseException) -> None:
        # The core already believes the write durable: going on could acknowledge
        # entries that are not on disk (whatever the error: a full disk, or an entry
        # that would not encode).
        self._fail_stop("persist", exc)

    async def _pump(self) -> None:
        while self._running:
            await self._wake.wait()
            self._wake.clear()
            if not self._running:
                return
            try:
                if self._writer.failed is not None:
                    raise self._writer.failed
                ready = self._core().ready()
                await self._persist(ready)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._fail_stop("persist", exc)
                return
            if ready.refused:
                self._log_refused(ready)
            try:
                await self._send_and_reply(ready)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # our own log or state would not encode
                self._fail_stop("send", exc)
                return

    def _log_refused(self, ready: Ready) -> None:
        for r in ready.refused:
            self._refusals.peer(r.reason.value, src=r.src, term=r.term)

    async def _persist(self, ready: Ready) -> None:
        """Queue the write; unless the Ready is early, wait until it (and every earlier
        write) is durable before anything is sent."""
        if ready.persist:
            durable = self._writer.submit(ready.persist, ready.mark, now=not ready.early)
            if not ready.early:
                await durable
        elif not ready.early:
            await self._writer.barrier()

    async def _send_and_reply(self, ready: Ready) -> None:
        """Encoding our own messages is internal (it raises); a publish that fails is
        like a lost message (logged; Raft retries)."""
        if ready.messages:
            limit = max_payload_of(self.nc)
            payloads, unsendable = peer_payloads(ready.messages, limit)
            for m in unsendable:
                suppressed = self._quiet.admit("message_too_large")
                if suppressed is not None:
                    self.log.error("raft.message_too_large", kind=type(m).__name__,
                                   dst=m.dst, max_payload=limit, suppressed=suppressed)
            for dst, data in payloads:
                await self._publish(self.subjects.raft(self.group, dst), data)
        for reply in ready.replies:
            await self._deliver(reply)
        self._observer.observe(self._core())

    async def _publish(self, subject: str, data: bytes, **kw: Any) -> None:
        try:
            await self.nc.publish(subject, data, **kw)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # like a lost message: Raft retries
            suppressed = self._quiet.admit("publish_failed")
            if suppressed is not None:
                self.log.warning("raft.publish_failed", subject=subject, error=repr(exc),
                                 suppressed=suppressed)

    async def _deliver(self, reply: Reply) -> None:
        waiters = self._waiters.pop(reply.request_id)
        if not waiters:
            return
        if isinstance(reply, Redirect):
            await self._relay(reply, waiters)
        else:
            await self._waiters.answer(waiters, reply, self.core.leader if self.core else None)

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        ticks = 0
        while self._running:
            deadline += self.tick_s
            now = loop.time()
            if now - deadline > self.tick_s:  # we fell behind: do not burst-tick
                deadline = now
            await asyncio.sleep(max(0.0, deadline - now))  # sleep-ok: the tick clock
            if not self._step(_TICK):
                return
            ticks += 1
            if ticks % 10 == 0:
                self._observer.update_metrics(self._core())
            if ticks % 100 == 0:
                self._waiters.expire(self.request_ttl)
