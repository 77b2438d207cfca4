"""Pure registry core: records, validation, the query engine, the read-model index, reaping."""

from broker_agents.core.registry.index import AgentIndex, Change, ChangeKind, Delete, Put
from broker_agents.core.registry.query import Criterion, Op, matches, parse_criteria
from broker_agents.core.registry.reaper import (
    MarkUnhealthy,
    ReaperCore,
    RemoveAgent,
    RemoveNode,
    Restore,
    Scan,
    ViewLost,
    restorations,
)
from broker_agents.core.registry.record import AgentRecord, Health, Lifecycle, NodeRecord, ReapMark
from broker_agents.core.registry.validation import validate_agent, validate_node

__all__ = [
    "AgentIndex", "AgentRecord", "Change", "ChangeKind", "Criterion", "Delete", "Health",
    "Lifecycle", "MarkUnhealthy", "NodeRecord", "Op", "Put", "ReapMark", "ReaperCore",
    "RemoveAgent", "RemoveNode", "Restore", "Scan", "ViewLost", "matches", "parse_criteria",
    "restorations", "validate_agent", "validate_node",
]
