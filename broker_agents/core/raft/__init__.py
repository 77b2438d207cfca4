"""Pure Raft core: ``RaftCore`` plus its messages, effects and state-machine contract."""

from broker_agents.core.raft.config import InitialState, RaftConfig
from broker_agents.core.raft.effects import (
    AppendOp,
    Applied,
    Failed,
    HardStateOp,
    NotLeader,
    PersistOp,
    ProposalResult,
    ReadResult,
    Ready,
    Reply,
    SnapshotOp,
    TruncateOp,
)
from broker_agents.core.raft.messages import Entry, EntryKind, HardState, Message, Snapshot
from broker_agents.core.raft.node import RaftCore
from broker_agents.core.raft.state import Role
from broker_agents.core.raft.statemachine import StateMachine

__all__ = [
    "AppendOp",
    "Applied",
    "Entry",
    "EntryKind",
    "Failed",
    "HardState",
    "HardStateOp",
    "InitialState",
    "Message",
    "NotLeader",
    "PersistOp",
    "ProposalResult",
    "RaftConfig",
    "RaftCore",
    "ReadResult",
    "Ready",
    "Reply",
    "Role",
    "Snapshot",
    "SnapshotOp",
    "StateMachine",
    "TruncateOp",
]
