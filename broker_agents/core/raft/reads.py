"""Read-index plumbing: local reads at the leader, and reads forwarded by followers.

See ``readindex.py`` for why this is read-index and not a lease.
"""

from __future__ import annotations

from typing import Any

from broker_agents.core.raft.effects import NotLeader
from broker_agents.core.raft.messages import (
    Heartbeat,
    ReadIndexRequest,
    ReadIndexResponse,
)
from broker_agents.core.raft.readindex import ReadRequest, ReadyRead
from broker_agents.core.raft.replication import Replication
from broker_agents.core.raft.state import Role


class Reads(Replication):
    def leader_read(self, request: ReadRequest) -> None:
        if self.log.term_at(self.commit) != self.term:
            # Until its no-op commits, a new leader's commit index may be behind what an
            # older leader already acknowledged; wait for it.
            self.reads_before_commit.append(request)
            return
        self.reads.add(self.commit, request)
        if self.quorum == 1:
            self.confirm_reads()
        else:
            self.heartbeat_due = True

    def on_commit_in_term(self) -> None:
        if self.reads_before_commit:
            waiting, self.reads_before_commit = self.reads_before_commit, []
            for request in waiting:
                self.leader_read(request)

    def acked_read_seq(self) -> int:
        """The highest heartbeat ctx a quorum (counting the leader) has answered."""
        acks = sorted((pr.read_ack for pr in self.progress.values()), reverse=True)
        need = self.quorum - 1  # the leader acknowledges itself
        if need == 0:
            return self.reads.seq + 1
        return acks[need - 1]

    def confirm_reads(self) -> None:
        if self.role != Role.LEADER or not self.reads.pending:
            return
        remote: dict[str, tuple[int, list[str]]] = {}
        for group in self.reads.confirm(self.acked_read_seq()):
            for request in group.requests:
                if request.origin is None:
                    self.ready_reads.append(
                        ReadyRead(group.index, request.request_id, request.query)
                    )
                else:
                    entry = remote.setdefault(request.origin, (group.index, []))
                    entry[1].append(request.request_id)
                    remote[request.origin] = (max(entry[0], group.index), entry[1])
        for origin, (index, rids) in remote.items():
            self.send(ReadIndexResponse(self.term, self.id, origin, tuple(rids), index))
        self.serve_reads()

    def send_heartbeats(self) -> None:
        ctx = self.reads.seal()
        for peer in self.peers:
            pr = self.progress[peer]
            commit = min(pr.match, self.commit)
            pr.commit_sent = max(pr.commit_sent, commit)
            self.send(Heartbeat(self.term, self.id, peer, commit, ctx))

    def fail_leader_reads(self) -> None:
        """A deposed leader can no longer confirm anything: fail its unconfirmed reads."""
        for group in self.reads.drain():
            for request in group.requests:
                if request.origin is None:
                    self.reply(NotLeader(request.request_id, self.leader))
        for request in self.reads_before_commit:
            if request.origin is None:
                self.reply(NotLeader(request.request_id, self.leader))
        self.reads_before_commit = []

    # -- follower side -------------------------------------------------------------------

    def follower_read(self, request_id: str, query: Any) -> None:
        self.forwarded_reads[request_id] = query
        self.read_index_buf.append(request_id)

    def handle_read_index_request(self, m: ReadIndexRequest) -> None:
        if self.role != Role.LEADER:
            self.send(ReadIndexResponse(self.term, self.id, m.src, m.request_ids, 0))
            return
        for rid in m.request_ids:
            self.leader_read(ReadRequest(rid, None, m.src))

    def handle_read_index_response(self, m: ReadIndexResponse) -> None:
        for rid in m.request_ids:
            if rid not in self.forwarded_reads:
                continue  # a duplicate, or a read we already gave up on
            query = self.forwarded_reads.pop(rid)
            if m.index == 0:
                self.reply(NotLeader(rid, self.leader))
            else:
                self.ready_reads.append(ReadyRead(m.index, rid, query))
        self.serve_reads()
