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
A client request is ``{"command": ..., "request_id": "..."}`` or ``{"query": ...}`` (JSON or
msgpack); the reply is ``{"result", "index", "leader"}`` or the standard error payload.
The core decides what becomes of a proposal to a member that is not the leader; when it
answers ``Redirect``, the driver relays the request to the leader's subject with the
original reply subject (so the leader answers the client directly) and the relay count in
the ``ba-raft-hops`` header, which it hands back to the core with the request.

This module passes 400 lines on purpose: the pump, the NATS callbacks that feed it and the
client waiters it completes are one loop, and splitting them would scatter its ordering
rules across files.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import structlog

from broker_agents.codec import decode, encode, is_json
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft import (
    Answer,
    Forget,
    Persisted,
    Propose,
    RaftConfig,
    RaftCore,
    Read,
    Ready,
    Redirect,
    Reply,
    Role,
    StateMachine,
    Tick,
)
from broker_agents.core.raft.wire import decode_message, encode_message
from broker_agents.raft.memstore import Storage
from broker_agents.raft.metrics import MemberMetrics, RoleObserver
from broker_agents.raft.replies import Remote, Waiter, reply_payload, result_or_raise
from broker_agents.raft.writer import LogWriter
from broker_agents.subjects import Subjects, check_token

HOPS = "ba-raft-hops"
RESERVED = frozenset({"propose", "read"})
_TICK = Tick()  # Raft counts ticks: one record serves them all
_log = structlog.get_logger()


def _hops(headers: dict[str, str] | None) -> int:
    """How often a request was relayed already (``HOPS``); garbage counts as none."""
    raw = headers.get(HOPS) if headers else None
    if raw is None:
        return 0
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


class RaftMember:
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
        max_append_entries: int = 512,
        max_inflight: int = 32,
        request_ttl: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        check_token(group, "group")
        for m in (member_id, *peers):
            check_token(m, "member")
            if m in RESERVED:
                raise ValueError(f"member id {m!r} is reserved")
        members = tuple(dict.fromkeys([*peers, member_id]))
        self.nc, self.group, self.id, self.subjects = nc, group, member_id, subjects
        self.storage = storage
        self.sm = state_machine
        self.tick_s = tick_ms / 1000.0
        self.request_ttl = request_ttl
        self.config = RaftConfig(
            member_id=member_id, members=members, election_ticks=election_ticks,
            heartbeat_ticks=heartbeat_ticks, snapshot_threshold=snapshot_threshold,
            max_append_entries=max_append_entries, max_inflight=max_inflight,
        )
        self.rng = rng or random.Random()
        self.core: RaftCore | None = None
        self.metrics = MemberMetrics.bind(group, member_id)
        self.log = _log.bind(group=group, member=member_id)
        self._waiters: dict[str, list[Waiter]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self._running = False
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
        self._running = True
        self._tasks = [
            asyncio.create_task(self._pump(), name=f"raft-pump-{g}-{me}"),
            asyncio.create_task(self._ticker(), name=f"raft-tick-{g}-{me}"),
        ]
        self._wake.set()
        self.log.info("raft.started", members=list(self.config.members),
                      term=self.core.term, commit=self.core.commit)

    async def stop(self) -> None:
        """Stop at once (like a crash, minus the lost fsyncs): no leadership hand-over."""
        if not self._running:
            return
        self._running = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []
        for waiters in self._waiters.values():
            for w in waiters:
                if isinstance(w, asyncio.Future) and not w.done():
                    w.set_exception(BrokerError(ErrorCode.UNAVAILABLE, "member stopped"))
        self._waiters.clear()
        await self._writer.close()
        self.storage.close()
        self.metrics.is_leader.set(0)
        self.log.info("raft.stopped")

    # -- properties ----------------------------------------------------------------------

    def _core(self) -> RaftCore:
        if self.core is None:
            raise BrokerError(ErrorCode.UNAVAILABLE, "member not started")
        return self.core

    @property
    def leader(self) -> str | None:
        return self._core().leader

    @property
    def is_leader(self) -> bool:
        return self._core().role == Role.LEADER

    @property
    def term(self) -> int:
        return self._core().term

    @property
    def commit_index(self) -> int:
        return self._core().commit

    @property
    def applied_index(self) -> int:
        return self._core().applied

    # -- local API -----------------------------------------------------------------------

    async def propose(self, command: Any, request_id: str | None = None,
                      timeout: float = 5.0) -> Any:
        """Commit ``command`` and return what the state machine's apply returned."""
        rid = request_id or uuid.uuid4().hex
        reply = await self._call(rid, timeout, Propose(command, rid))
        return self._result(reply)

    async def read(self, query: Any, timeout: float = 5.0) -> Any:
        """A linearizable read (read-index): reflects every write acknowledged before it."""
        rid = uuid.uuid4().hex
        reply = await self._call(rid, timeout, Read(query, rid))
        return self._result(reply)

    async def _call(self, rid: str, timeout: float, request: Propose | Read) -> Answer:
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(rid, []).append(fut)
        self._core().step(request)
        self._wake.set()
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._drop_waiter(rid, fut)
            raise BrokerError(ErrorCode.TIMEOUT, "no commit before the timeout",
                              {"request_id": rid, "leader": self.leader}) from None

    def _drop_waiter(self, rid: str, waiter: Waiter) -> None:
        waiters = self._waiters.get(rid)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[rid]
                if self.core is not None:
                    self.core.step(Forget(rid))

    @staticmethod
    def _result(reply: Answer) -> Any:
        return result_or_raise(reply)

    # -- NATS callbacks ------------------------------------------------------------------

    async def _on_peer(self, msg: Any) -> None:
        core = self.core
        if core is None:
            return
        try:
            batch = decode(msg.data)
            if not isinstance(batch, list):
                raise BrokerError(ErrorCode.MALFORMED, "peer payload must be a list")
            for item in batch:
                core.step(decode_message(item))
        except BrokerError as exc:
            self.metrics.malformed.inc()
            self.log.warning("raft.malformed_peer_message", error=exc.message)
        self._wake.set()

    def _parse(self, msg: Any, field: str) -> tuple[Any, str | None, bool] | None:
        as_json = is_json(msg.data, msg.headers)
        try:
            body = decode(msg.data, msg.headers)
            if not isinstance(body, dict) or field not in body:
                raise BrokerError(ErrorCode.BAD_REQUEST, f"request needs a {field!r} field")
            rid = body.get("request_id")
            if rid is not None and not isinstance(rid, str):
                raise BrokerError(ErrorCode.BAD_REQUEST, "request_id must be a string")
            return body[field], rid, as_json
        except BrokerError as exc:
            self.metrics.malformed.inc()
            if msg.reply:
                self._spawn_publish(msg.reply, encode(exc.to_payload(), as_json=as_json))
            return None

    async def _on_propose(self, msg: Any) -> None:
        core = self.core
        parsed = self._parse(msg, "command")
        if core is None or parsed is None:
            return
        command, rid, as_json = parsed
        self.metrics.proposals.inc()
        rid = rid or uuid.uuid4().hex
        if msg.reply:
            self._waiters.setdefault(rid, []).append(Remote(msg.reply, as_json, msg))
        core.step(Propose(command, rid, True, _hops(msg.headers)))
        self._wake.set()

    async def _on_read(self, msg: Any) -> None:
        core = self.core
        parsed = self._parse(msg, "query")
        if core is None or parsed is None:
            return
        query, _rid, as_json = parsed
        rid = uuid.uuid4().hex  # reads are not deduplicated: each one is fresh
        if msg.reply:
            self._waiters.setdefault(rid, []).append(Remote(msg.reply, as_json))
        core.step(Read(query, rid))
        self._wake.set()

    def _spawn_publish(self, subject: str, data: bytes) -> None:
        task = asyncio.ensure_future(self.nc.publish(subject, data))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    # -- the owner tasks -----------------------------------------------------------------

    def _on_durable(self, mark: Persisted) -> None:
        if self.core is not None and self._running:
            self.core.step(mark)
            self._wake.set()

    def _on_write_failed(self, exc: BaseException) -> None:
        self._wake.set()  # the pump sees writer.failed and stops

    async def _pump(self) -> None:
        while self._running:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self._writer.failed is not None:
                    raise self._writer.failed
                ready = self._core().ready()
                await self._persist(ready)
            except OSError:
                # Fail-stop: the core already believes this Ready is durable, so going on
                # could acknowledge entries that are not on disk. Stop like a crash.
                self.log.exception("raft.persist_failed")
                self._running = False
                for sub in self._subs:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                return
            try:
                await self._send_and_reply(ready)
            except asyncio.CancelledError:
                raise
            except Exception:  # a send failure is like a lost message; Raft retries
                self.log.exception("raft.pump_error")

    async def _persist(self, ready: Ready) -> None:
        """Queue the write; unless the Ready is early, wait until it (and every earlier
        write) is durable before anything is sent."""
        if ready.persist:
            durable = self._writer.submit(ready.persist, ready.mark)
            if not ready.early:
                await durable
        elif not ready.early:
            await self._writer.barrier()

    async def _send_and_reply(self, ready: Ready) -> None:
        if ready.messages:
            batches: dict[str, list[Any]] = {}
            for m in ready.messages:
                batches.setdefault(m.dst, []).append(encode_message(m))
            for dst, batch in batches.items():
                await self.nc.publish(self.subjects.raft(self.group, dst), encode(batch))
        for reply in ready.replies:
            await self._deliver(reply)
        self._observer.observe(self._core())

    async def _deliver(self, reply: Reply) -> None:
        waiters = self._waiters.pop(reply.request_id, None)
        if not waiters:
            return
        if isinstance(reply, Redirect):
            await self._relay(reply, waiters)
            return
        leader = self.core.leader if self.core else None
        for w in waiters:
            if isinstance(w, asyncio.Future):
                if not w.done():
                    w.set_result(reply)
            else:
                payload = reply_payload(reply, leader)
                await self.nc.publish(w.subject, encode(payload, as_json=w.as_json))

    async def _relay(self, redirect: Redirect, waiters: list[Waiter]) -> None:
        """Carry out a Redirect: each NATS requester's message goes to the leader as is,
        with its reply subject and the relay count; in-process callers keep waiting."""
        kept: list[Waiter] = [w for w in waiters if not isinstance(w, Remote)]
        if kept:
            self._waiters[redirect.request_id] = kept
        subject = self.subjects.raft(self.group, redirect.leader, "propose")
        for w in waiters:
            if isinstance(w, Remote) and w.request is not None:
                msg = w.request
                headers = {**(msg.headers or {}), HOPS: str(redirect.hops)}
                await self.nc.publish(subject, msg.data, reply=msg.reply, headers=headers)

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
            self._core().step(_TICK)
            self._wake.set()
            ticks += 1
            if ticks % 10 == 0:
                self._observer.update_metrics(self._core())
            if ticks % 100 == 0:
                self._expire_waiters()

    def _expire_waiters(self) -> None:
        cutoff = time.monotonic() - self.request_ttl
        for rid, waiters in list(self._waiters.items()):
            for w in list(waiters):
                if isinstance(w, Remote) and w.created < cutoff:
                    self._drop_waiter(rid, w)
