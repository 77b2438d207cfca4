"""PBFT view change and new view, as a mixin of ``Replica``.

A backup whose oldest pending request has waited ``view_timeout`` ticks (or that caught
the primary equivocating) moves to view v+1 and broadcasts a signed ``ViewChange`` with
every prepared certificate it holds. The primary of v+1, with 2f+1 of them, broadcasts a
``NewView`` re-issuing, for each sequence up to the highest prepared one, the request
prepared in the highest view (else a null request); backups re-derive that plan from the
enclosed view changes and reject a new view that differs. If the new view does not come
within ``view_timeout * 2**attempts`` ticks of 2f+1 view changes being seen, the replica
moves on to the next view. A replica that sees f+1 replicas ahead of it joins the
smallest of their views. Replicas in a view answer a laggard's view change with the
view's ``NewView`` and commit certificates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from broker_agents.core.pbft.config import Broadcast, Counters, Effect, PbftConfig, ViewEntered
from broker_agents.core.pbft.messages import (
    NewView,
    PbftMessage,
    PreparedCert,
    PrePrepare,
    Reply,
    Request,
    ViewChange,
)
from broker_agents.core.pbft.signing import Signer, sign_message
from broker_agents.core.pbft.validate import new_view_plan

if TYPE_CHECKING:
    from broker_agents.core.pbft.replica import Slot

M = TypeVar("M", bound=BaseModel)

MAX_VIEW_JUMP = 1000
"""View changes further ahead than this are ignored (bounds memory under spam)."""


class ViewChangeMixin:
    cfg: PbftConfig
    me: str
    signer: Signer
    counters: Counters
    now: int
    view: int
    active: bool
    slots: dict[tuple[int, int], Slot]
    prepared_certs: dict[int, PreparedCert]
    last_executed: int
    executed: dict[tuple[str, str], Reply]
    pending: dict[str, Request]
    assigned: set[str]
    next_seq: int
    timer_start: int | None
    vc_start: int | None
    vc_attempts: int
    view_changes: dict[int, dict[str, ViewChange]]
    my_view_changes: dict[int, ViewChange]
    new_views: dict[int, NewView]
    buffer: dict[int, list[PbftMessage]]

    def _sign(self, msg: M) -> M:
        return sign_message(msg, self.signer)

    # hooks implemented by Replica
    def _accept(self, msg: PbftMessage) -> list[Effect]:
        raise NotImplementedError

    def _install(self, pp: PrePrepare, out: list[Effect]) -> None:
        raise NotImplementedError

    def _propose(self, out: list[Effect]) -> None:
        raise NotImplementedError

    def _want(self, req: Request) -> None:
        raise NotImplementedError

    def _help(self, who: str, their_view: int, their_executed: int, out: list[Effect]) -> None:
        raise NotImplementedError

    # -- moving views -------------------------------------------------------------------

    def _start_view_change(self, new_view: int, out: list[Effect]) -> None:
        if new_view <= self.view:
            return
        self.view = new_view
        self.active = False
        self.vc_start = None
        self.timer_start = None
        self.slots = {k: s for k, s in self.slots.items() if k[0] >= new_view}
        vc = self._sign(ViewChange(
            new_view=new_view, last_executed=self.last_executed,
            prepared=tuple(self.prepared_certs[s] for s in sorted(self.prepared_certs)),
            sender=self.me,
        ))
        self.my_view_changes[new_view] = vc
        self.view_changes.setdefault(new_view, {})[self.me] = vc
        self.view_changes = {v: m for v, m in self.view_changes.items() if v >= new_view}
        out.append(Broadcast(vc))
        self._view_change_progress(out)

    def _on_view_change(self, vc: ViewChange, out: list[Effect]) -> None:
        v = vc.new_view
        if v < self.view or (v == self.view and self.active):
            if v < self.view:
                self.counters.stale += 1
            self._help(vc.sender, v if v < self.view else v - 1, vc.last_executed, out)
            return
        if v > self.view + MAX_VIEW_JUMP:
            self.counters.invalid += 1
            return
        self.view_changes.setdefault(v, {})[vc.sender] = vc
        self._join_if_behind(out)
        self._view_change_progress(out)

    def _join_if_behind(self, out: list[Effect]) -> None:
        """f+1 replicas ahead of us cannot all be faulty: join the highest view that at least
        f+1 of them have reached (so an honest replica is there too)."""
        ahead: dict[str, int] = {}
        for v, by_sender in self.view_changes.items():
            if v <= self.view:
                continue
            for sender in by_sender:
                if sender != self.me:
                    ahead[sender] = min(ahead.get(sender, v), v)
        if len(ahead) >= self.cfg.faults + 1:
            target = sorted(ahead.values())[-(self.cfg.faults + 1)]
            self._start_view_change(target, out)

    def _view_change_progress(self, out: list[Effect]) -> None:
        if self.active:
            return
        collected = self.view_changes.get(self.view, {})
        if len(collected) < self.cfg.quorum:
            return
        if self.vc_start is None:
            self.vc_start = self.now
        if self.cfg.primary(self.view) != self.me or self.view in self.new_views:
            return
        if self.me not in collected:
            return
        others = [collected[s] for s in sorted(collected) if s != self.me]
        chosen = [collected[self.me], *others[: self.cfg.quorum - 1]]
        chosen.sort(key=lambda vc: vc.sender)
        pps = tuple(
            self._sign(PrePrepare(view=self.view, seq=s, digest=d, request=r, sender=self.me))
            for s, d, r in new_view_plan(chosen)
        )
        nv = self._sign(NewView(
            view=self.view, view_changes=tuple(chosen), pre_prepares=pps, sender=self.me
        ))
        out.append(Broadcast(nv))
        self._enter_view(nv, out)

    def _on_new_view(self, nv: NewView, out: list[Effect]) -> None:
        if nv.view < self.view or (nv.view == self.view and self.active):
            self.counters.stale += 1
            return
        self._enter_view(nv, out)

    def _enter_view(self, nv: NewView, out: list[Effect]) -> None:
        self.view = nv.view
        self.active = True
        self.vc_start = None
        self.vc_attempts = 0
        self.new_views[nv.view] = nv
        self.slots = {k: s for k, s in self.slots.items() if k[0] == nv.view}
        self.view_changes = {v: m for v, m in self.view_changes.items() if v > nv.view}
        self.assigned = {pp.digest for pp in nv.pre_prepares}
        self.next_seq = max((pp.seq for pp in nv.pre_prepares), default=0)
        self.next_seq = max(self.next_seq, self.last_executed)
        out.append(ViewEntered(nv.view, self.cfg.primary(nv.view)))
        for pp in nv.pre_prepares:
            self._install(pp, out)
        self.timer_start = self.now if self.pending else None
        for v in [v for v in self.buffer if v <= nv.view]:
            held = self.buffer.pop(v)
            if v == nv.view:
                for msg in held:
                    out.extend(self._accept(msg))
        self._propose(out)

