"""A PBFT replica (Castro & Liskov), with the one core face of ``core/machine.py``:

    effects = replica.step(event)   # any PbftMessage from the network, or a Tick

Effects are ``Broadcast``, ``Send``, ``Decide`` and ``ViewEntered`` (config.py); time is
the number of ``Tick`` events (``Tick.now`` is ignored). Every message is signature-checked
first; forged, replayed, equivocating, stale and invalid inputs are dropped and counted in
``counters``. A sequence is decided once it has prepared (pre-prepare + 2f prepares) and
2f+1 matching commits; decisions execute in sequence order. Undecided work is re-sent
every ``retransmit_every`` ticks and laggards catch up with commit certificates
(``Fetch`` / ``CatchUp``), because the network may drop anything.

One struct drives plain helpers: ``MessageLog`` (log.py: slots, certificates,
decisions), ``ViewChanges`` (viewchange.py: view-change bookkeeping and the rules that
follow from it) and ``ReplayGuard`` (replay.py); moving views is the replica's, since it
resets the normal-case state.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from broker_agents.core.machine import Tick
from broker_agents.core.pbft.config import (
    Broadcast,
    Counters,
    Decide,
    Effect,
    PbftConfig,
    Send,
    ViewEntered,
)
from broker_agents.core.pbft.log import MessageLog, Slot
from broker_agents.core.pbft.messages import (
    CatchUp,
    Commit,
    CommitCert,
    Fetch,
    NewView,
    PbftMessage,
    Prepare,
    PrePrepare,
    Reply,
    Request,
    ViewChange,
    digest,
)
from broker_agents.core.pbft.replay import ReplayGuard
from broker_agents.core.pbft.signing import Signer, Verifier, sign_message
from broker_agents.core.pbft.validate import check_message, new_view_plan
from broker_agents.core.pbft.viewchange import MAX_VIEW_JUMP, ViewChanges

M = TypeVar("M", bound=BaseModel)

MAX_BUFFERED = 4096
"""Messages held for views not reached yet, at most (bounds memory under spam)."""


class Replica:
    """One replica of a PBFT group. Step it with messages and ticks; act on its effects."""

    def __init__(self, cfg: PbftConfig, signer: Signer, verifier: Verifier) -> None:
        if signer.identity != cfg.replica_id:
            raise ValueError("signer identity must be the replica id")
        self._cfg = cfg
        self._me = cfg.replica_id
        self._signer = signer
        self._verifier = verifier
        self._counters = Counters()
        self._now = 0
        self._view = 0
        self._active = True  # in a view (not between views)
        self._log = MessageLog(cfg)
        self._vcs = ViewChanges(cfg)
        self._executed: dict[tuple[str, str], Reply] = {}
        self._pending: dict[str, Request] = {}  # by digest: requests not executed yet
        self._assigned: set[str] = set()  # digests the primary gave a sequence in this view
        self._next_seq = 0
        self._timer_start: int | None = None  # oldest pending request waiting since
        self._buffer: dict[int, list[PbftMessage]] = {}
        self._guard = ReplayGuard(self._counters)

    # -- the public face ---------------------------------------------------------------

    def step(self, event: PbftMessage | Tick) -> list[Effect]:
        """Take one message from the network (any sender, any state of mind) or a tick."""
        if isinstance(event, Tick):
            return self._tick()
        verdict = check_message(event, self._cfg, self._verifier)
        if verdict != "ok":
            if verdict == "forged":
                self._counters.forged += 1
            else:
                self._counters.invalid += 1
            return []
        return self._accept(event)

    @property
    def me(self) -> str:
        return self._me

    @property
    def cfg(self) -> PbftConfig:
        return self._cfg

    @property
    def view(self) -> int:
        return self._view

    @property
    def active(self) -> bool:
        """In a view; False while changing views."""
        return self._active

    @property
    def counters(self) -> Counters:
        """Rejected or notable inputs so far (read-only)."""
        return self._counters

    @property
    def slots(self) -> dict[tuple[int, int], Slot]:
        """The message log by (view, seq) (read-only: for tests and checkers)."""
        return self._log.slots

    # -- intake ------------------------------------------------------------------------

    def _accept(self, msg: PbftMessage) -> list[Effect]:
        if isinstance(msg, PrePrepare | Prepare | Commit):
            if msg.view < self._view:
                self._counters.stale += 1
                return []
            if msg.view > self._view or not self._active:
                return self._hold(msg, msg.view)
        fresh = self._guard.first_time(msg)
        out: list[Effect] = []
        if fresh is None:
            if isinstance(msg, PrePrepare) and msg.view == self._view:
                self._start_view_change(self._view + 1, out)  # the primary is provably faulty
            return out
        if isinstance(msg, Request):
            self._on_request(msg, out)
        elif fresh or isinstance(msg, ViewChange | Fetch):
            self._dispatch(msg, out)  # a replayed view change or fetch: a laggard, help it
        return out

    def _dispatch(self, msg: PbftMessage, out: list[Effect]) -> None:
        if isinstance(msg, PrePrepare):
            self._on_pre_prepare(msg, out)
        elif isinstance(msg, Prepare):
            self._on_prepare(msg, out)
        elif isinstance(msg, Commit):
            self._log.slot(msg.view, msg.seq).commits.setdefault(msg.sender, msg)
            self._check_committed(msg.view, msg.seq, out)
        elif isinstance(msg, ViewChange):
            self._on_view_change(msg, out)
        elif isinstance(msg, NewView):
            if msg.view < self._view or (msg.view == self._view and self._active):
                self._counters.stale += 1
            else:
                self._enter_view(msg, out)
        elif isinstance(msg, Fetch):
            self._help(msg.sender, msg.view, msg.last_executed, out)
        elif isinstance(msg, CatchUp):
            for cert in msg.certs:
                self._decide(cert, out)

    def _hold(self, msg: PbftMessage, view: int) -> list[Effect]:
        if sum(len(b) for b in self._buffer.values()) >= MAX_BUFFERED:
            extra = self._counters.extra
            extra["buffer_full"] = extra.get("buffer_full", 0) + 1
            return []
        self._buffer.setdefault(view, []).append(msg)
        self._counters.buffered += 1
        return []

    def _tick(self) -> list[Effect]:
        """Logical time advanced by one: timers and retransmission."""
        self._now += 1
        out: list[Effect] = []
        waited = None if self._timer_start is None else self._now - self._timer_start
        if self._active:
            if waited is not None and waited >= self._cfg.view_timeout:
                self._start_view_change(self._view + 1, out)
        elif self._vcs.timed_out(self._now):
            self._vcs.attempts += 1
            self._start_view_change(self._view + 1, out)
        if self._now % self._cfg.retransmit_every == 0:
            self._retransmit(out)
        return out

    def _sign(self, msg: M) -> M:
        return sign_message(msg, self._signer)

    # -- normal case -------------------------------------------------------------------

    def _want(self, req: Request) -> None:
        if (req.client, req.request_id) in self._executed:
            return
        self._pending.setdefault(digest(req), req)
        if self._timer_start is None:
            self._timer_start = self._now

    def _on_request(self, req: Request, out: list[Effect]) -> None:
        done = self._executed.get((req.client, req.request_id))
        if done is not None:
            out.append(Send(req.client, done))
            return
        self._want(req)
        self._propose(out)

    def _propose(self, out: list[Effect]) -> None:
        if not (self._active and self._cfg.primary(self._view) == self._me):
            return
        for d, req in list(self._pending.items()):
            if d in self._assigned:
                continue
            if self._next_seq + 1 > self._log.last_executed + self._cfg.window:
                return
            self._next_seq += 1
            pp = self._sign(PrePrepare(
                view=self._view, seq=self._next_seq, digest=d, request=req, sender=self._me
            ))
            self._assigned.add(d)
            self._log.slot(self._view, pp.seq).pp = pp
            out.append(Broadcast(pp))

    def _on_pre_prepare(self, pp: PrePrepare, out: list[Effect]) -> None:
        if pp.seq > self._log.last_executed + self._cfg.window:
            self._counters.invalid += 1
            return
        slot = self._log.slot(pp.view, pp.seq)
        if slot.pp is not None:
            if slot.pp.digest != pp.digest:
                self._counters.equivocations += 1
                self._start_view_change(self._view + 1, out)  # the primary is provably faulty
            return
        self._install(pp, out)

    def _install(self, pp: PrePrepare, out: list[Effect]) -> None:
        """Accept a pre-prepare for the current view and prepare it (backups)."""
        slot = self._log.slot(pp.view, pp.seq)
        slot.pp = pp
        if pp.request is not None:
            self._want(pp.request)
        if pp.sender != self._me:
            prep = self._sign(Prepare(view=pp.view, seq=pp.seq, digest=pp.digest, sender=self._me))
            slot.prepares[self._me] = prep
            out.append(Broadcast(prep))
        self._check_prepared(pp.view, pp.seq, out)

    def _on_prepare(self, p: Prepare, out: list[Effect]) -> None:
        if p.sender == self._cfg.primary(p.view):
            self._counters.invalid += 1
            return
        self._log.slot(p.view, p.seq).prepares.setdefault(p.sender, p)
        self._check_prepared(p.view, p.seq, out)

    def _check_prepared(self, view: int, seq: int, out: list[Effect]) -> None:
        prepared = self._log.prepare(view, seq)
        if prepared is None:
            return
        commit = self._sign(Commit(view=view, seq=seq, digest=prepared, sender=self._me))
        self._log.slot(view, seq).commits[self._me] = commit
        out.append(Broadcast(commit))
        self._check_committed(view, seq, out)

    def _check_committed(self, view: int, seq: int, out: list[Effect]) -> None:
        cert = self._log.commit_cert(view, seq)
        if cert is not None:
            self._decide(cert, out)

    def _decide(self, cert: CommitCert, out: list[Effect]) -> None:
        seq = cert.pre_prepare.seq
        known = self._log.decided.get(seq)
        if known is not None:
            if known.pre_prepare.digest != cert.pre_prepare.digest:
                extra = self._counters.extra
                extra["conflict"] = extra.get("conflict", 0) + 1
            return
        self._log.decided[seq] = cert
        self._execute(out)

    def _execute(self, out: list[Effect]) -> None:
        progressed = False
        while (cert := self._log.next_to_execute()) is not None:
            pp = cert.pre_prepare
            progressed = True
            out.append(Decide(pp.seq, pp.view, pp.digest, pp.request))
            req = pp.request
            if req is None:
                continue
            self._pending.pop(pp.digest, None)
            key = (req.client, req.request_id)
            if key not in self._executed:
                reply = self._sign(Reply(
                    view=pp.view, seq=pp.seq, client=req.client, request_id=req.request_id,
                    operation=req.operation, sender=self._me,
                ))
                self._executed[key] = reply
                out.append(Send(req.client, reply))
        if progressed:
            self._timer_start = self._now if self._pending else None
            self._propose(out)

    # -- catching up -------------------------------------------------------------------

    def _help(self, who: str, their_view: int, their_executed: int, out: list[Effect]) -> None:
        """Send a laggard commit certificates it lacks and our view's proof."""
        if who == self._me:
            return
        if their_executed < self._log.last_executed:
            certs = self._log.certs_after(their_executed, self._cfg.catch_up_batch)
            out.append(Send(who, self._sign(CatchUp(certs=certs, sender=self._me))))
        proof = self._vcs.new_views.get(self._view)
        if their_view < self._view and self._active and proof is not None:
            out.append(Send(who, proof))

    def _retransmit(self, out: list[Effect]) -> None:
        log = self._log
        if self._active:
            out.extend(Broadcast(msg) for msg in log.own_undecided(self._view, self._me))
        elif self._view in self._vcs.mine:
            out.append(Broadcast(self._vcs.mine[self._view]))
        if self._pending or log.undecided():
            out.append(Broadcast(self._sign(
                Fetch(view=self._view, last_executed=log.last_executed, sender=self._me)
            )))

    # -- moving views ------------------------------------------------------------------

    def _start_view_change(self, new_view: int, out: list[Effect]) -> None:
        if new_view <= self._view:
            return
        self._view = new_view
        self._active = False
        self._timer_start = None
        self._log.keep_views(new_view)
        vc = self._sign(ViewChange(new_view=new_view, last_executed=self._log.last_executed,
                                   prepared=self._log.prepared(), sender=self._me))
        self._vcs.own(vc)
        out.append(Broadcast(vc))
        self._view_change_progress(out)

    def _on_view_change(self, vc: ViewChange, out: list[Effect]) -> None:
        v = vc.new_view
        if v < self._view or (v == self._view and self._active):
            if v < self._view:
                self._counters.stale += 1
            self._help(vc.sender, v if v < self._view else v - 1, vc.last_executed, out)
            return
        if v > self._view + MAX_VIEW_JUMP:
            self._counters.invalid += 1
            return
        self._vcs.record(vc)
        target = self._vcs.join_target(self._view, self._me)
        if target is not None:
            self._start_view_change(target, out)
        self._view_change_progress(out)

    def _view_change_progress(self, out: list[Effect]) -> None:
        """Between views: as the new primary with 2f+1 view changes, issue the new view."""
        if self._active:
            return
        basis = self._vcs.new_view_basis(self._view, self._me, self._now)
        if basis is None:
            return
        pps = tuple(
            self._sign(PrePrepare(view=self._view, seq=s, digest=d, request=r, sender=self._me))
            for s, d, r in new_view_plan(basis)
        )
        nv = self._sign(NewView(
            view=self._view, view_changes=tuple(basis), pre_prepares=pps, sender=self._me
        ))
        out.append(Broadcast(nv))
        self._enter_view(nv, out)

    def _enter_view(self, nv: NewView, out: list[Effect]) -> None:
        self._view = nv.view
        self._active = True
        self._vcs.entered(nv)
        self._log.keep_views(nv.view, nv.view)
        self._assigned = {pp.digest for pp in nv.pre_prepares}
        self._next_seq = max(max((pp.seq for pp in nv.pre_prepares), default=0),
                             self._log.last_executed)
        out.append(ViewEntered(nv.view, self._cfg.primary(nv.view)))
        for pp in nv.pre_prepares:
            self._install(pp, out)
        self._timer_start = self._now if self._pending else None
        for v in [v for v in self._buffer if v <= nv.view]:
            held = self._buffer.pop(v)
            if v == nv.view:
                for msg in held:
                    out.extend(self._accept(msg))
        self._propose(out)
