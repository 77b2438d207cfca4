"""A PBFT replica's message log: per (view, seq) the pre-prepare and votes it holds, the
certificates they form, and the decisions waiting to execute in sequence order.

A sequence *prepares* with its pre-prepare and 2f matching prepares from backups, and
*commits* once prepared with 2f+1 matching commits; the log builds the certificates
(``PreparedCert``, ``CommitCert``) that prove it to others: prepared ones travel in view
changes, committed ones in catch-ups. The log judges nothing about senders or views;
``Replica`` does, and only then records here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker_agents.core.pbft.config import PbftConfig
from broker_agents.core.pbft.messages import (
    Commit,
    CommitCert,
    PbftMessage,
    Prepare,
    PreparedCert,
    PrePrepare,
)


@dataclass
class Slot:
    pp: PrePrepare | None = None
    prepares: dict[str, Prepare] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    prepared: bool = False


class MessageLog:
    def __init__(self, cfg: PbftConfig) -> None:
        self._faults = cfg.faults
        self._quorum = cfg.quorum
        self.slots: dict[tuple[int, int], Slot] = {}
        self.prepared_certs: dict[int, PreparedCert] = {}  # by seq, the newest view's
        self.decided: dict[int, CommitCert] = {}
        self.last_executed = 0

    def slot(self, view: int, seq: int) -> Slot:
        return self.slots.setdefault((view, seq), Slot())

    def prepare(self, view: int, seq: int) -> str | None:
        """Mark (view, seq) prepared if it now is, keeping its certificate; the digest
        that prepared, the first time only."""
        slot = self.slot(view, seq)
        if slot.pp is None or slot.prepared:
            return None
        need = 2 * self._faults
        match = sorted(
            (p for p in slot.prepares.values() if p.digest == slot.pp.digest),
            key=lambda p: p.sender,
        )
        if len(match) < need:
            return None
        slot.prepared = True
        old = self.prepared_certs.get(seq)
        if old is None or old.pre_prepare.view < view:
            cert = PreparedCert(pre_prepare=slot.pp, prepares=tuple(match[:need]))
            self.prepared_certs[seq] = cert
        return slot.pp.digest

    def commit_cert(self, view: int, seq: int) -> CommitCert | None:
        """The certificate for (view, seq) once it has prepared and 2f+1 matching commits
        (None before, or when the sequence is decided already)."""
        slot = self.slot(view, seq)
        if slot.pp is None or not slot.prepared or seq in self.decided:
            return None
        match = sorted(
            (c for c in slot.commits.values() if c.digest == slot.pp.digest),
            key=lambda c: c.sender,
        )
        if len(match) < self._quorum:
            return None
        return CommitCert(pre_prepare=slot.pp, commits=tuple(match[: self._quorum]))

    def next_to_execute(self) -> CommitCert | None:
        """The decision right after the last executed one, now counted as executed."""
        cert = self.decided.get(self.last_executed + 1)
        if cert is not None:
            self.last_executed += 1
        return cert

    def certs_after(self, executed: int, batch: int) -> tuple[CommitCert, ...]:
        """Up to ``batch`` commit certificates a replica that executed ``executed`` lacks."""
        seqs = range(executed + 1, self.last_executed + 1)
        return tuple([self.decided[s] for s in seqs if s in self.decided][:batch])

    def prepared(self) -> tuple[PreparedCert, ...]:
        """Every prepared certificate, by sequence (what a view change reports)."""
        return tuple(self.prepared_certs[s] for s in sorted(self.prepared_certs))

    def keep_views(self, lowest: int, highest: int | None = None) -> None:
        """Forget the slots of views outside [lowest, highest]."""
        self.slots = {k: s for k, s in self.slots.items()
                      if k[0] >= lowest and (highest is None or k[0] <= highest)}

    def own_undecided(self, view: int, me: str) -> list[PbftMessage]:
        """What ``me`` sent for sequences of ``view`` not yet decided (to send again)."""
        out: list[PbftMessage] = []
        for (v, seq), slot in sorted(self.slots.items()):
            if v != view or seq in self.decided:
                continue
            for msg in (slot.pp if slot.pp and slot.pp.sender == me else None,
                        slot.prepares.get(me), slot.commits.get(me)):
                if msg is not None:
                    out.append(msg)
        return out

    def undecided(self) -> bool:
        return any(seq not in self.decided for (_view, seq) in self.slots)
