"""What callers ask of a Raft member in-process: propose, read, its view of the group,
membership changes and leadership transfer, and the planned stop's hand-over.

A mixin of ``RaftMember`` (driver.py): each request is one event stepped into the core
and one waiter the pump answers (``_call``); the loop itself stays in the driver.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft import (
    Answer,
    ChangeMembers,
    Propose,
    RaftCore,
    RaftEvent,
    Read,
    Role,
    TransferLeadership,
)
from broker_agents.raft.commands import CommandCheck
from broker_agents.raft.metrics import MemberMetrics
from broker_agents.raft.replies import Waiters, result_or_raise
from broker_agents.subjects import check_token

RESERVED = frozenset({"propose", "read"})
"""Client verbs on a group's subjects: no member may be named after one."""


class MemberRequests:
    """The request side of ``RaftMember``; it provides the attributes declared here."""

    core: RaftCore | None
    id: str
    group: str
    nc: Any
    failed: str | None
    metrics: MemberMetrics
    log: Any
    _running: bool
    _check: CommandCheck
    _waiters: Waiters

    def _core(self) -> RaftCore:
        if self.core is None:
            raise BrokerError(ErrorCode.UNAVAILABLE, "member not started")
        return self.core

    def _step(self, event: RaftEvent) -> bool:
        raise NotImplementedError  # the driver's: it wakes the pump

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
        """Commit ``command`` and return what the state machine's apply returned.
        Raises ``validation_error`` (``too_large``) for a command the log cannot store;
        what is proposed is the command as the log will read it back."""
        rid = request_id or uuid.uuid4().hex
        self._check.request_id(rid)
        stored = self._check.native(command)
        return result_or_raise(await self._call(rid, timeout, Propose(stored, rid)))

    async def read(self, query: Any, timeout: float = 5.0) -> Any:
        """A linearizable read (read-index): reflects every write acknowledged before it."""
        rid = uuid.uuid4().hex
        return result_or_raise(await self._call(rid, timeout, Read(query, rid)))

    async def _call(self, rid: str, timeout: float,
                    request: Propose | Read | ChangeMembers | TransferLeadership) -> Answer:
        self._core()
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiters.add(rid, fut)
        if not self._step(request):
            self._waiters.drop(rid, fut)
            raise BrokerError(ErrorCode.UNAVAILABLE, "raft member is not running",
                              {"member": self.id, "reason": self.failed})
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._waiters.drop(rid, fut)
            raise BrokerError(ErrorCode.TIMEOUT, "no commit before the timeout",
                              {"request_id": rid, "leader": self.leader}) from None

    # -- membership and leadership (the admin face: admin.py) ---------------------------

    def membership(self) -> dict[str, Any]:
        """This member's view of the group: its active configuration and leader."""
        core = self._core()
        return {"group": self.group, "member": self.id, "voters": sorted(core.voters),
                "learners": sorted(core.learners), "leader": core.leader,
                "term": core.term, "commit": core.commit, "applied": core.applied,
                "transferring": core.transferring}

    async def change_members(self, action: str, member: str,
                             timeout: float = 10.0) -> dict[str, Any]:
        """``add`` (as a learner, promoted to voter once caught up) or ``remove`` one
        member, on the leader; the committed configuration comes back."""
        check_token(member, "member")
        if member in RESERVED:
            raise BrokerError(ErrorCode.BAD_REQUEST, f"member id {member!r} is reserved")
        rid = uuid.uuid4().hex
        result = result_or_raise(await self._call(rid, timeout,
                                                  ChangeMembers(rid, action, member)))
        return dict(result)

    async def transfer_leadership(self, target: str | None = None,
                                  timeout: float = 2.0) -> str:
        """Hand leadership to ``target`` (default: the most caught-up voter); the new
        leader's id comes back."""
        if target is not None:
            check_token(target, "member")
        rid = uuid.uuid4().hex
        result = result_or_raise(await self._call(rid, timeout,
                                                  TransferLeadership(rid, target)))
        return str(result["leader"])

    async def _hand_over(self, timeout: float) -> None:
        """Leadership to the most caught-up voter (TimeoutNow), then wait, within
        ``timeout``, until the requests this member holds are answered: the entries they
        wait for are in the new leader's log, and its commit reaches us by heartbeat."""
        core = self.core
        if not self._running or core is None or core.role != Role.LEADER:
            return
        if not getattr(self.nc, "is_connected", True):
            return  # off NATS: nobody would hear the TimeoutNow
        if len(core.voters - {self.id}) == 0:
            return  # nobody to hand over to
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            leader = await self.transfer_leadership(None, timeout)
        except BrokerError as exc:
            self.log.warning("raft.handover_failed", error=exc.message, code=exc.code.value)
            return
        self.metrics.handovers.inc()
        self.log.info("raft.handed_over", to=leader)
        await self._waiters.wait_empty(max(0.0, deadline - loop.time()))
