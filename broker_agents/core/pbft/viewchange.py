"""PBFT view change: the view-change messages a replica has seen, the new views it
entered, and what follows from them alone.

A backup whose oldest pending request has waited ``view_timeout`` ticks (or that caught
the primary equivocating) moves to view v+1 and broadcasts a signed ``ViewChange`` with
every prepared certificate it holds. The primary of v+1, with 2f+1 of them, broadcasts a
``NewView`` re-issuing, for each sequence up to the highest prepared one, the request
prepared in the highest view (else a null request); backups re-derive that plan from the
enclosed view changes and reject a new view that differs (validate.py). If the new view
does not come within ``view_timeout * 2**attempts`` ticks of 2f+1 view changes being seen,
the replica moves on to the next view. A replica that sees f+1 replicas ahead of it joins
the smallest of their views.

``ViewChanges`` only keeps and judges these messages; ``Replica`` moves views (it owns
the normal-case state a view change resets) and signs what it sends.
"""

from __future__ import annotations

from broker_agents.core.pbft.config import PbftConfig
from broker_agents.core.pbft.messages import NewView, ViewChange

MAX_VIEW_JUMP = 1000
"""View changes further ahead than this are ignored (bounds memory under spam)."""


class ViewChanges:
    def __init__(self, cfg: PbftConfig) -> None:
        self._cfg = cfg
        self.by_view: dict[int, dict[str, ViewChange]] = {}
        self.mine: dict[int, ViewChange] = {}  # ours, by the view it moves to (re-sent)
        self.new_views: dict[int, NewView] = {}  # entered, as proof for laggards
        self.started: int | None = None  # when 2f+1 view changes for our view were seen
        self.attempts = 0  # failed view changes in a row (the timeout backs off)

    def record(self, vc: ViewChange) -> None:
        self.by_view.setdefault(vc.new_view, {})[vc.sender] = vc

    def own(self, vc: ViewChange) -> None:
        """We move to ``vc.new_view``: remember our message; drop older views' ones."""
        self.mine[vc.new_view] = vc
        self.record(vc)
        self.by_view = {v: m for v, m in self.by_view.items() if v >= vc.new_view}
        self.started = None

    def entered(self, nv: NewView) -> None:
        self.new_views[nv.view] = nv
        self.by_view = {v: m for v, m in self.by_view.items() if v > nv.view}
        self.started = None
        self.attempts = 0

    def timed_out(self, now: int) -> bool:
        """The new view we wait for is overdue (the wait doubles per failed attempt)."""
        cfg = self._cfg
        backoff = 2 ** min(self.attempts, cfg.max_backoff)
        return self.started is not None and now - self.started >= cfg.view_timeout * backoff

    def join_target(self, view: int, me: str) -> int | None:
        """f+1 replicas ahead of us cannot all be faulty: the highest view that at least
        f+1 of them have reached (so an honest replica is there too), if any."""
        ahead: dict[str, int] = {}
        for v, by_sender in self.by_view.items():
            if v <= view:
                continue
            for sender in by_sender:
                if sender != me:
                    ahead[sender] = min(ahead.get(sender, v), v)
        need = self._cfg.faults + 1
        return sorted(ahead.values())[-need] if len(ahead) >= need else None

    def new_view_basis(self, view: int, me: str, now: int) -> list[ViewChange] | None:
        """Once 2f+1 view changes for ``view`` are in (the wait for a new view starts
        then): the 2f+1 a new primary's ``NewView`` rests on, ours among them, when we are
        that primary and have not issued it yet."""
        collected = self.by_view.get(view, {})
        quorum = self._cfg.quorum
        if len(collected) < quorum:
            return None
        if self.started is None:
            self.started = now
        if self._cfg.primary(view) != me or view in self.new_views or me not in collected:
            return None
        others = [collected[s] for s in sorted(collected) if s != me]
        chosen = [collected[me], *others[: quorum - 1]]
        chosen.sort(key=lambda vc: vc.sender)
        return chosen
