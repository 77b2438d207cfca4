"""Pure Raft core: ``RaftCore`` (step events in, take ``Ready`` out), its events, effects,
messages and state-machine contract. Everything else in this package is internal."""

from broker_agents.core.machine import Tick
from broker_agents.core.raft.config import InitialState, RaftConfig
from broker_agents.core.raft.effects import (
    Answer,
    AppendOp,
    Applied,
    Failed,
    HardStateOp,
    NotLeader,
    PersistOp,
    ProposalResult,
    ReadResult,
    Ready,
    Redirect,
    RefusalReason,
    Refused,
    Reply,
    SnapshotOp,
    TruncateOp,
)
from broker_agents.core.raft.election import Role
from broker_agents.core.raft.events import (
    ChangeMembers,
    Forget,
    Persisted,
    Propose,
    Read,
    TransferLeadership,
)
from broker_agents.core.raft.membership import Membership
from broker_agents.core.raft.messages import (
    Entry,
    EntryKind,
    HardState,
    Message,
    Snapshot,
    TimeoutNow,
)
from broker_agents.core.raft.node import RaftCore, RaftEvent
from broker_agents.core.raft.statemachine import StateMachine

__all__ = [
    "Answer",
    "AppendOp",
    "Applied",
    "ChangeMembers",
    "Entry",
    "EntryKind",
    "Failed",
    "Forget",
    "HardState",
    "HardStateOp",
    "InitialState",
    "Membership",
    "Message",
    "NotLeader",
    "PersistOp",
    "Persisted",
    "ProposalResult",
    "Propose",
    "RaftConfig",
    "RaftCore",
    "RaftEvent",
    "Read",
    "ReadResult",
    "Ready",
    "Redirect",
    "RefusalReason",
    "Refused",
    "Reply",
    "Role",
    "Snapshot",
    "SnapshotOp",
    "StateMachine",
    "Tick",
    "TimeoutNow",
    "TransferLeadership",
    "TruncateOp",
]
