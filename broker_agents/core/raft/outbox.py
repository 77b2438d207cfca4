"""What a member produced since its last ``Ready``, and how it becomes the next one.

New log entries collect as *unstable* and become one ``AppendOp``, ahead of any write
that follows them. Term and vote must be durable before anything is sent, so a change to
either adds a ``HardStateOp``; the commit index is only a restart optimisation (it is
re-learned from the leader), so it rides along with other writes instead of costing an
fsync of its own on the commit path.
"""

from __future__ import annotations

from broker_agents.core.raft.effects import (
    AppendOp,
    Applied,
    HardStateOp,
    PersistOp,
    Ready,
    RefusalReason,
    Refused,
    Reply,
)
from broker_agents.core.raft.events import Persisted
from broker_agents.core.raft.messages import Entry, HardState, Message


class Outbox:
    __slots__ = ("applied", "hard_state", "messages", "persist", "refused", "replies",
                 "unstable")

    def __init__(self, hard_state: HardState) -> None:
        self.persist: list[PersistOp] = []
        self.unstable: list[Entry] = []
        self.messages: list[Message] = []
        self.replies: list[Reply] = []
        self.applied: list[Applied] = []
        self.refused: list[Refused] = []
        self.hard_state = hard_state  # the last one handed out to persist

    def send(self, msg: Message) -> None:
        self.messages.append(msg)

    def reply(self, reply: Reply) -> None:
        self.replies.append(reply)

    def refuse(self, msg: Message, reason: RefusalReason) -> None:
        """Note a peer message we will not act on (the driver counts and logs it)."""
        self.refused.append(Refused(msg.src, reason, msg.term))

    def write(self, op: PersistOp) -> None:
        """Persist ``op`` after the entries appended so far."""
        self.flush_unstable()
        self.persist.append(op)

    def flush_unstable(self) -> None:
        if self.unstable:
            self.persist.append(AppendOp(tuple(self.unstable)))
            self.unstable = []

    def take(self, term: int, vote: str | None, commit: int, early: bool,
             last_index: int) -> Ready:
        """Everything so far as one Ready; an ``early`` one that writes carries the mark to
        step back once the write is durable."""
        self.flush_unstable()
        persist, old = self.persist, self.hard_state
        if term != old.term or vote != old.vote or (commit != old.commit and persist):
            self.hard_state = HardState(term, vote, commit)
            persist.append(HardStateOp(self.hard_state))
        ready = Ready(persist, self.messages, self.replies, self.applied, early)
        if early and persist:
            ready.mark = Persisted(term, last_index)
        if self.refused:
            ready.refused, self.refused = self.refused, []
        self.persist, self.messages, self.replies, self.applied = [], [], [], []
        return ready
