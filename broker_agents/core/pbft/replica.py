"""A PBFT replica: normal-case ordering (pre-prepare, prepare, commit) and execution.

Pure and tick-driven: ``receive(msg)`` and ``tick()`` return effects (``Broadcast``,
``Send``, ``Decide``, ``ViewEntered``). Every input is signature-checked first; forged,
replayed, equivocating, stale and invalid inputs are dropped and counted in
``counters``. A sequence is decided once it has prepared (pre-prepare + 2f prepares) and
2f+1 matching commits; decisions are executed in sequence order. View change lives in
``ViewChangeMixin`` (viewchange.py). Undecided work is re-sent every
``retransmit_every`` ticks and laggards catch up with commit certificates (``Fetch`` /
``CatchUp``), because the network may drop anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker_agents.core.pbft.config import (
    Broadcast,
    Counters,
    Decide,
    Effect,
    PbftConfig,
    Send,
)
from broker_agents.core.pbft.messages import (
    CatchUp,
    Commit,
    CommitCert,
    Fetch,
    NewView,
    PbftMessage,
    Prepare,
    PreparedCert,
    PrePrepare,
    Reply,
    Request,
    ViewChange,
    digest,
    signable,
)
from broker_agents.core.pbft.signing import Signer, Verifier
from broker_agents.core.pbft.validate import check_message
from broker_agents.core.pbft.viewchange import ViewChangeMixin

MAX_BUFFERED = 4096


@dataclass
class Slot:
    pp: PrePrepare | None = None
    prepares: dict[str, Prepare] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    prepared: bool = False


class Replica(ViewChangeMixin):
    """One replica of a PBFT group. Feed it messages and ticks; act on its effects."""

    def __init__(self, cfg: PbftConfig, signer: Signer, verifier: Verifier) -> None:
        if signer.identity != cfg.replica_id:
            raise ValueError("signer identity must be the replica id")
        self.cfg = cfg
        self.me = cfg.replica_id
        self.signer = signer
        self.verifier = verifier
        self.counters = Counters()
        self.now = 0
        self.view = 0
        self.active = True
        self.slots: dict[tuple[int, int], Slot] = {}
        self.prepared_certs: dict[int, PreparedCert] = {}
        self.decided: dict[int, CommitCert] = {}
        self.last_executed = 0
        self.executed: dict[tuple[str, str], Reply] = {}
        self.pending: dict[str, Request] = {}
        self.assigned: set[str] = set()
        self.next_seq = 0
        self.timer_start: int | None = None
        self.vc_start: int | None = None
        self.vc_attempts = 0
        self.view_changes: dict[int, dict[str, ViewChange]] = {}
        self.my_view_changes: dict[int, ViewChange] = {}
        self.new_views: dict[int, NewView] = {}
        self.buffer: dict[int, list[PbftMessage]] = {}
        self._seen: dict[tuple[object, ...], bytes] = {}

    # -- inputs ---------------------------------------------------------------------

    @property
    def primary(self) -> str:
        return self.cfg.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.me

    def receive(self, msg: PbftMessage) -> list[Effect]:
        """Handle one message from the network (any sender, any state of mind)."""
        verdict = check_message(msg, self.cfg, self.verifier)
        if verdict != "ok":
            if verdict == "forged":
                self.counters.forged += 1
            else:
                self.counters.invalid += 1
            return []
        return self._accept(msg)

    def _accept(self, msg: PbftMessage) -> list[Effect]:
        if isinstance(msg, PrePrepare | Prepare | Commit):
            if msg.view < self.view:
                self.counters.stale += 1
                return []
            if msg.view > self.view or not self.active:
                return self._hold(msg, msg.view)
        fresh = self._first_time(msg)
        out: list[Effect] = []
        if fresh is None:
            if isinstance(msg, PrePrepare) and msg.view == self.view:
                self._start_view_change(self.view + 1, out)  # the primary is provably faulty
            return out
        if isinstance(msg, Request):
            self._on_request(msg, out)
        elif not fresh:
            if isinstance(msg, ViewChange | Fetch):
                self._dispatch(msg, out)  # retransmission from a laggard: help it
        else:
            self._dispatch(msg, out)
        return out

    def _dispatch(self, msg: PbftMessage, out: list[Effect]) -> None:
        if isinstance(msg, PrePrepare):
            self._on_pre_prepare(msg, out)
        elif isinstance(msg, Prepare):
            self._on_prepare(msg, out)
        elif isinstance(msg, Commit):
            self._on_commit(msg, out)
        elif isinstance(msg, ViewChange):
            self._on_view_change(msg, out)
        elif isinstance(msg, NewView):
            self._on_new_view(msg, out)
        elif isinstance(msg, Fetch):
            self._on_fetch(msg, out)
        elif isinstance(msg, CatchUp):
            self._on_catch_up(msg, out)

    def _hold(self, msg: PbftMessage, view: int) -> list[Effect]:
        if sum(len(b) for b in self.buffer.values()) >= MAX_BUFFERED:
            self.counters.extra["buffer_full"] = self.counters.extra.get("buffer_full", 0) + 1
            return []
        self.buffer.setdefault(view, []).append(msg)
        self.counters.buffered += 1
        return []

    def _first_time(self, msg: PbftMessage) -> bool | None:
        """True first time, False for an exact replay, None for an equivocation."""
        key: tuple[object, ...]
        if isinstance(msg, PrePrepare | Prepare | Commit):
            key = (msg.type, msg.sender, msg.view, msg.seq)
        elif isinstance(msg, Request):
            key = (msg.type, msg.client, msg.request_id)
        elif isinstance(msg, ViewChange):
            key = (msg.type, msg.sender, msg.new_view)
        elif isinstance(msg, NewView):
            key = (msg.type, msg.view)
        else:
            return True
        body = signable(msg)
        prior = self._seen.setdefault(key, body)
        if prior == body:
            if prior is not body:
                self.counters.replayed += 1
                return False
            return True
        self.counters.equivocations += 1
        return None

    def tick(self) -> list[Effect]:
        """Advance logical time by one: timers and retransmission."""
        self.now += 1
        out: list[Effect] = []
        if self.active:
            if self.timer_start is not None and self.now - self.timer_start >= (
                self.cfg.view_timeout
            ):
                self._start_view_change(self.view + 1, out)
        elif self.vc_start is not None:
            backoff = 2 ** min(self.vc_attempts, self.cfg.max_backoff)
            if self.now - self.vc_start >= self.cfg.view_timeout * backoff:
                self.vc_attempts += 1
                self._start_view_change(self.view + 1, out)
        if self.now % self.cfg.retransmit_every == 0:
            self._retransmit(out)
        return out

    # -- normal case ----------------------------------------------------------------

    def _slot(self, view: int, seq: int) -> Slot:
        return self.slots.setdefault((view, seq), Slot())

    def _want(self, req: Request) -> None:
        if (req.client, req.request_id) in self.executed:
            return
        self.pending.setdefault(digest(req), req)
        if self.timer_start is None:
            self.timer_start = self.now

    def _on_request(self, req: Request, out: list[Effect]) -> None:
        done = self.executed.get((req.client, req.request_id))
        if done is not None:
            out.append(Send(req.client, done))
            return
        self._want(req)
        self._propose(out)

    def _propose(self, out: list[Effect]) -> None:
        if not (self.active and self.is_primary):
            return
        for d, req in list(self.pending.items()):
            if d in self.assigned:
                continue
            if self.next_seq + 1 > self.last_executed + self.cfg.window:
                return
            self.next_seq += 1
            pp = self._sign(PrePrepare(
                view=self.view, seq=self.next_seq, digest=d, request=req, sender=self.me
            ))
            self.assigned.add(d)
            self._slot(self.view, pp.seq).pp = pp
            out.append(Broadcast(pp))

    def _on_pre_prepare(self, pp: PrePrepare, out: list[Effect]) -> None:
        if pp.seq > self.last_executed + self.cfg.window:
            self.counters.invalid += 1
            return
        slot = self._slot(pp.view, pp.seq)
        if slot.pp is not None:
            if slot.pp.digest != pp.digest:
                self.counters.equivocations += 1
                self._start_view_change(self.view + 1, out)  # the primary is provably faulty
            return
        self._install(pp, out)

    def _install(self, pp: PrePrepare, out: list[Effect]) -> None:
        """Accept a pre-prepare for the current view and prepare it (backups)."""
        slot = self._slot(pp.view, pp.seq)
        slot.pp = pp
        if pp.request is not None:
            self._want(pp.request)
        if pp.sender != self.me:
            prep = self._sign(Prepare(view=pp.view, seq=pp.seq, digest=pp.digest, sender=self.me))
            slot.prepares[self.me] = prep
            out.append(Broadcast(prep))
        self._check_prepared(pp.view, pp.seq, out)

    def _on_prepare(self, p: Prepare, out: list[Effect]) -> None:
        if p.sender == self.cfg.primary(p.view):
            self.counters.invalid += 1
            return
        self._slot(p.view, p.seq).prepares.setdefault(p.sender, p)
        self._check_prepared(p.view, p.seq, out)

    def _on_commit(self, c: Commit, out: list[Effect]) -> None:
        self._slot(c.view, c.seq).commits.setdefault(c.sender, c)
        self._check_committed(c.view, c.seq, out)

    def _check_prepared(self, view: int, seq: int, out: list[Effect]) -> None:
        slot = self._slot(view, seq)
        if slot.pp is None or slot.prepared:
            return
        match = sorted(
            (p for p in slot.prepares.values() if p.digest == slot.pp.digest),
            key=lambda p: p.sender,
        )
        if len(match) < 2 * self.cfg.faults:
            return
        slot.prepared = True
        old = self.prepared_certs.get(seq)
        if old is None or old.pre_prepare.view < view:
            self.prepared_certs[seq] = PreparedCert(
                pre_prepare=slot.pp, prepares=tuple(match[: 2 * self.cfg.faults])
            )
        commit = self._sign(Commit(view=view, seq=seq, digest=slot.pp.digest, sender=self.me))
        slot.commits[self.me] = commit
        out.append(Broadcast(commit))
        self._check_committed(view, seq, out)

    def _check_committed(self, view: int, seq: int, out: list[Effect]) -> None:
        slot = self._slot(view, seq)
        if slot.pp is None or not slot.prepared or seq in self.decided:
            return
        match = sorted(
            (c for c in slot.commits.values() if c.digest == slot.pp.digest),
            key=lambda c: c.sender,
        )
        if len(match) >= self.cfg.quorum:
            self._decide(CommitCert(pre_prepare=slot.pp, commits=tuple(match[: self.cfg.quorum])),
                         out)

    def _decide(self, cert: CommitCert, out: list[Effect]) -> None:
        seq = cert.pre_prepare.seq
        known = self.decided.get(seq)
        if known is not None:
            if known.pre_prepare.digest != cert.pre_prepare.digest:
                self.counters.extra["conflict"] = self.counters.extra.get("conflict", 0) + 1
            return
        self.decided[seq] = cert
        self._execute(out)

    def _execute(self, out: list[Effect]) -> None:
        progressed = False
        while self.last_executed + 1 in self.decided:
            cert = self.decided[self.last_executed + 1]
            pp = cert.pre_prepare
            self.last_executed = pp.seq
            progressed = True
            out.append(Decide(pp.seq, pp.view, pp.digest, pp.request))
            req = pp.request
            if req is None:
                continue
            self.pending.pop(pp.digest, None)
            key = (req.client, req.request_id)
            if key not in self.executed:
                reply = self._sign(Reply(
                    view=pp.view, seq=pp.seq, client=req.client, request_id=req.request_id,
                    operation=req.operation, sender=self.me,
                ))
                self.executed[key] = reply
                out.append(Send(req.client, reply))
        if progressed:
            self.timer_start = self.now if self.pending else None
            self._propose(out)

    # -- catching up ------------------------------------------------------------------

    def _on_fetch(self, f: Fetch, out: list[Effect]) -> None:
        self._help(f.sender, f.view, f.last_executed, out)

    def _help(self, who: str, their_view: int, their_executed: int, out: list[Effect]) -> None:
        """Send a laggard commit certificates it lacks and our view's proof."""
        if who == self.me:
            return
        if their_executed < self.last_executed:
            certs = [
                self.decided[s]
                for s in range(their_executed + 1, self.last_executed + 1)
                if s in self.decided
            ][: self.cfg.catch_up_batch]
            out.append(Send(who, self._sign(CatchUp(certs=tuple(certs), sender=self.me))))
        if their_view < self.view and self.active and self.view in self.new_views:
            out.append(Send(who, self.new_views[self.view]))

    def _on_catch_up(self, cu: CatchUp, out: list[Effect]) -> None:
        for cert in cu.certs:
            self._decide(cert, out)

    def _retransmit(self, out: list[Effect]) -> None:
        if self.active:
            for (view, seq), slot in sorted(self.slots.items()):
                if view != self.view or seq in self.decided:
                    continue
                for msg in (slot.pp if slot.pp and slot.pp.sender == self.me else None,
                            slot.prepares.get(self.me), slot.commits.get(self.me)):
                    if msg is not None:
                        out.append(Broadcast(msg))
        elif self.view in self.my_view_changes:
            out.append(Broadcast(self.my_view_changes[self.view]))
        undecided = any(s not in self.decided for (_, s) in self.slots)
        if self.pending or undecided:
            out.append(Broadcast(self._sign(
                Fetch(view=self.view, last_executed=self.last_executed, sender=self.me)
            )))
