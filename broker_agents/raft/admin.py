"""The admin face of a consensus group: read its members, add or remove one, move its
leadership. Served by every member, next to its peer and client subjects:

    <p>.admin.membership.<group>            any member (queue group)
    <p>.admin.membership.<group>.<member>   that member (changes need the leader)

A request is ``{"op": "members" | "add" | "remove" | "transfer", "member": "<id>",
"timeout": <s>}`` (JSON or msgpack; ``member`` names the one to add or remove, or the
transfer's target, optional there). It must be a signed act of an admin or a node
(``broker_agents.identity``), and only those roles may publish here (``node/auth/roles.py``
``admin.membership.>``). ``members`` is answered by whichever member gets it, from its
own view; the others by the leader: a member that is not answers ``not_leader`` with its
hint, and ``MembershipClient`` follows it. Every request is counted in
``ba_raft_membership_requests_total{group,op,outcome}``; a refused one is answered with a
structured error in the caller's encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from broker_agents import identity
from broker_agents.codec import decode, encode, is_json
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Unauthorized
from broker_agents.core.tokens import TOKEN
from broker_agents.logging import get_logger
from broker_agents.raft.metrics import MEMBERSHIP_REQUESTS
from broker_agents.ratelog import RateLimitedLog
from broker_agents.reply import respond
from broker_agents.requests import parse_body
from broker_agents.subjects import Subjects

if TYPE_CHECKING:
    from broker_agents.raft.driver import RaftMember

COMPONENT = "raft_admin"
MAX_TIMEOUT_S = 120.0
RETRY_PAUSE_S = 0.05
MAX_IN_FLIGHT = 32  # requests served at once per member (privileged, and rare)
# What a client retries until its deadline: another member leads (its hint is followed),
# or the leader cannot take a change yet (one is in flight, or it has not committed in
# its term: it just took over).
RETRIED = (ErrorCode.NOT_LEADER, ErrorCode.CONFLICT)
_log = RateLimitedLog(get_logger(component=COMPONENT))


class MembershipOp(StrEnum):
    MEMBERS = "members"
    ADD = "add"
    REMOVE = "remove"
    TRANSFER = "transfer"


class MembershipRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    op: MembershipOp
    member: str | None = Field(None, pattern=TOKEN.pattern, max_length=128)
    timeout: float = Field(10.0, gt=0, le=MAX_TIMEOUT_S)

    def checked(self) -> MembershipRequest:
        if self.op in (MembershipOp.ADD, MembershipOp.REMOVE) and self.member is None:
            raise BrokerError(ErrorCode.BAD_REQUEST, f"{self.op.value} needs a 'member'",
                              {"field": "member"})
        return self


def membership_subject(subjects: Subjects, group: str, member: str | None = None) -> str:
    parts = ("membership", group) if member is None else ("membership", group, member)
    return subjects.admin(*parts)


class MembershipService:
    """Serves one member's admin subjects (started and stopped with the member)."""

    def __init__(self, member: RaftMember) -> None:
        self.member = member
        self._subs: list[Any] = []
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        m, nc = self.member, self.member.nc
        self._subs = [
            await nc.subscribe(membership_subject(m.subjects, m.group), queue=f"admin-{m.group}",
                               cb=self._on_request),
            await nc.subscribe(membership_subject(m.subjects, m.group, m.id),
                               cb=self._on_request),
        ]

    async def stop(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        running, self._running = self._running, set()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _on_request(self, msg: Any) -> None:
        """Each request runs on its own task: an add waits for a catch-up, and nats-py
        hands a subscription's messages over one at a time, so a waiting change would hold
        up every request behind it (a ``members`` read included)."""
        if len(self._running) >= MAX_IN_FLIGHT:
            MEMBERSHIP_REQUESTS.labels(self.member.group, "unknown",
                                       ErrorCode.RATE_LIMITED.value).inc()
            if msg.reply:
                await respond(self.member.nc, msg.reply, BrokerError(
                    ErrorCode.RATE_LIMITED, "too many membership requests in flight",
                    {"max": MAX_IN_FLIGHT}).to_payload(), is_json(msg.data, msg.headers),
                    component=COMPONENT)
            return
        task = asyncio.create_task(self._handle(msg))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _handle(self, msg: Any) -> None:
        as_json = is_json(msg.data, msg.headers)
        group = self.member.group
        op = "unknown"
        try:
            self._authorize(msg)
            req = _parse(msg.data, msg.headers, as_json)
            op = req.op.value
            reply: dict[str, Any] = await self._serve(req)
            MEMBERSHIP_REQUESTS.labels(group, op, "ok").inc()
        except BrokerError as exc:
            MEMBERSHIP_REQUESTS.labels(group, op, exc.code.value).inc()
            if not isinstance(exc, Unauthorized) and exc.code != ErrorCode.NOT_LEADER:
                _log.warning((op, exc.code), "raft_admin.refused", group=group, op=op,
                             code=exc.code.value, error=exc.message[:200])
            reply = exc.to_payload()
        except Exception as exc:  # a bug or NATS trouble: answered, never a crash
            MEMBERSHIP_REQUESTS.labels(group, op, ErrorCode.INTERNAL.value).inc()
            _log.error((op, "internal"), "raft_admin.failed", group=group, op=op,
                       error=repr(exc)[:300])
            reply = BrokerError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"[:300]
                                ).to_payload()
        if msg.reply:
            await respond(self.member.nc, msg.reply, reply, as_json, component=COMPONENT)

    def _authorize(self, msg: Any) -> None:
        nc = self.member.nc
        principal = identity.authenticate(nc, msg.subject, msg.data, msg.headers,
                                          component=COMPONENT)
        identity.require_privileged(nc, principal, "a membership request",
                                    component=COMPONENT, reason="not_admin", own_name=True)

    async def _serve(self, req: MembershipRequest) -> dict[str, Any]:
        member = self.member
        if req.op is MembershipOp.MEMBERS:
            return member.membership()
        if req.op is MembershipOp.TRANSFER:
            leader = await member.transfer_leadership(req.member, req.timeout)
            return {**member.membership(), "leader": leader}
        assert req.member is not None
        changed = await member.change_members(req.op.value, req.member, req.timeout)
        return {**member.membership(), **changed}


def _parse(data: bytes, headers: Any, as_json: bool) -> MembershipRequest:
    return parse_body(data, headers, as_json, MembershipRequest).checked()


class MembershipClient:
    """Sends membership requests as signed acts; retries what ``RETRIED`` names until
    the deadline, following a leader hint."""

    def __init__(self, nc: Any, group: str, subjects: Subjects = Subjects(),  # noqa: B008
                 ) -> None:
        self.nc, self.group, self.subjects = nc, group, subjects

    async def call(self, op: str, member: str | None = None, *, timeout: float = 10.0,
                   at: str | None = None) -> dict[str, Any]:
        """``op`` on the group (``at``: on that member only, no hint followed)."""
        body: dict[str, Any] = {"op": op, "timeout": timeout}
        if member is not None:
            body["member"] = member
        payload = encode(body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout + 2.0
        target: str | None = at
        last: BrokerError | None = None
        while True:
            subject = membership_subject(self.subjects, self.group, target)
            headers = identity.act_headers(self.nc, subject, payload)
            left = deadline - loop.time()
            if left <= 0:
                raise last or BrokerError(ErrorCode.TIMEOUT,
                                          f"membership {op}: no leader answered")
            try:
                msg = await self.nc.request(subject, payload, timeout=left, headers=headers)
            except Exception as exc:  # no responders, a timeout: the member may be gone
                who = f"member {target}" if target else "no member"
                last = BrokerError(ErrorCode.UNAVAILABLE,
                                   f"membership {op}: {who} of {self.group!r} answered "
                                   f"({type(exc).__name__})",
                                   {"group": self.group, "member": target})
                if at is not None:
                    raise last from None
                target = None  # ask the group again: someone else leads by now
                await asyncio.sleep(RETRY_PAUSE_S)  # sleep-ok: retry backoff
                continue
            reply = decode(msg.data, msg.headers)
            err = BrokerError.from_payload(reply)
            if err is None:
                return dict(reply)
            if err.code not in RETRIED or at is not None:
                raise err
            last = err
            if err.code == ErrorCode.NOT_LEADER:
                hint = err.details.get("leader")
                target = hint if isinstance(hint, str) else None
            await asyncio.sleep(RETRY_PAUSE_S)  # sleep-ok: retry backoff (see RETRIED)
