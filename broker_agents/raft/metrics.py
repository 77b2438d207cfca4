"""Prometheus metrics of Raft groups, labelled by group and member (both bounded sets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from broker_agents.core.raft import RaftCore, Role

_LABELS = ["group", "member"]
TERM = Gauge("ba_raft_term", "Current Raft term", _LABELS)
IS_LEADER = Gauge("ba_raft_is_leader", "1 while this member is the leader", _LABELS)
COMMIT_INDEX = Gauge("ba_raft_commit_index", "Highest index known committed", _LABELS)
APPLIED_INDEX = Gauge("ba_raft_applied_index", "Highest index applied", _LABELS)
LOG_ENTRIES = Gauge("ba_raft_log_entries",
                    "Entries held in the log (after the last compaction)", _LABELS)
SNAPSHOT_INDEX = Gauge("ba_raft_snapshot_index",
                       "Last index this member's latest snapshot covers", _LABELS)
SNAPSHOTS_SENT = Counter("ba_raft_snapshots_sent_total",
                         "Snapshots sent to followers the log no longer reached", _LABELS)
SNAPSHOTS_INSTALLED = Counter("ba_raft_snapshots_installed_total",
                              "Snapshots from a leader that replaced this member's log",
                              _LABELS)
ELECTIONS = Counter("ba_raft_elections_total", "Elections this member started", _LABELS)
PROPOSALS = Counter("ba_raft_proposals_total", "Client proposals received", _LABELS)
PROPOSAL_REQUESTS = Counter("ba_raft_proposal_requests_total",
                            "Client proposal requests (a batch of proposals counts once)",
                            _LABELS)
MALFORMED = Counter("ba_raft_malformed_total", "Peer or client payloads rejected", _LABELS)
REJECTED = Counter("ba_raft_rejected_messages_total",
                   "Peer messages refused (forged, confused or garbage), by reason",
                   ["group", "reason"])
REFUSED_PROPOSALS = Counter("ba_raft_refused_proposals_total",
                            "Client requests refused before reaching the log, by error code",
                            ["group", "code"])
FAIL_STOPS = Counter("ba_raft_fail_stops_total",
                     "Members that stopped on an internal error instead of living on", _LABELS)
HANDOVERS = Counter("ba_raft_handovers_total",
                    "Planned stops of a leader that handed leadership over first", _LABELS)
VOTERS = Gauge("ba_raft_voters", "Voters in this member's active configuration", _LABELS)
LEARNERS = Gauge("ba_raft_learners",
                 "Learners (catching up, not yet voting) in this member's active configuration",
                 _LABELS)
MEMBERSHIP_REQUESTS = Counter(
    "ba_raft_membership_requests_total",
    "Admin membership requests (members, add, remove, transfer) by outcome",
    ["group", "op", "outcome"])


@dataclass
class MemberMetrics:
    """Children bound once, so updating them on the hot path is a cheap set()."""

    term: Any
    is_leader: Any
    commit: Any
    applied: Any
    log_entries: Any
    elections: Any
    proposals: Any
    malformed: Any
    fail_stops: Any
    handovers: Any
    voters: Any
    learners: Any
    proposal_requests: Any
    snapshot_index: Any
    snapshots_sent: Any
    snapshots_installed: Any

    @classmethod
    def bind(cls, group: str, member: str) -> MemberMetrics:
        lv = (group, member)
        return cls(
            TERM.labels(*lv), IS_LEADER.labels(*lv), COMMIT_INDEX.labels(*lv),
            APPLIED_INDEX.labels(*lv), LOG_ENTRIES.labels(*lv), ELECTIONS.labels(*lv),
            PROPOSALS.labels(*lv), MALFORMED.labels(*lv), FAIL_STOPS.labels(*lv),
            HANDOVERS.labels(*lv), VOTERS.labels(*lv), LEARNERS.labels(*lv),
            PROPOSAL_REQUESTS.labels(*lv), SNAPSHOT_INDEX.labels(*lv),
            SNAPSHOTS_SENT.labels(*lv),
            SNAPSHOTS_INSTALLED.labels(*lv),
        )


class RoleObserver:
    """Turns a member's role, term and leader changes into logs and metrics."""

    def __init__(self, metrics: MemberMetrics, log: Any) -> None:
        self.metrics = metrics
        self.log = log
        self._seen: tuple[Role, int, str | None] = (Role.FOLLOWER, 0, None)
        self._elections = 0
        self._snapshots = (0, 0)  # (sent, installed) already counted

    def observe(self, core: RaftCore) -> None:
        seen = (core.role, core.term, core.leader)
        if seen == self._seen:
            return
        was_role = self._seen[0]
        self._seen = seen
        if core.elections > self._elections:
            self.metrics.elections.inc(core.elections - self._elections)
            self._elections = core.elections
        if core.role == Role.LEADER and was_role != Role.LEADER:
            self.log.info("raft.elected", term=core.term, commit=core.commit)
        elif was_role == Role.LEADER and core.role != Role.LEADER:
            self.log.info("raft.stepped_down", term=core.term, leader=core.leader)
        elif core.role == Role.FOLLOWER:
            self.log.debug("raft.leader_changed", term=core.term, leader=core.leader)
        self.update_metrics(core)

    def update_metrics(self, core: RaftCore) -> None:
        m = self.metrics
        m.term.set(core.term)
        m.is_leader.set(1 if core.role == Role.LEADER else 0)
        m.commit.set(core.commit)
        m.applied.set(core.applied)
        m.log_entries.set(len(core.log.entries))
        m.snapshot_index.set(core.snapshot_index)
        sent, installed = self._snapshots
        if core.snapshots_sent > sent or core.snapshots_installed > installed:
            m.snapshots_sent.inc(core.snapshots_sent - sent)
            m.snapshots_installed.inc(core.snapshots_installed - installed)
            self._snapshots = (core.snapshots_sent, core.snapshots_installed)
        m.voters.set(len(core.voters))
        m.learners.set(len(core.learners))

