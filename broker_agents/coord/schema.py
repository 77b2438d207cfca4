"""JSON Schema of every coordination request and response (``broker-agents schema``).

``schemas()`` maps each protocol to its subject, request schema, response schema and the
error envelope every protocol may answer with instead, so ``nats req`` users and other
languages can build requests without reading Python.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from broker_agents.coord.models import (
    AutoResult,
    BarrierArrival,
    ErrorReply,
    LeaderRequest,
    LeaderResult,
    LockRequest,
    LockResult,
)
from broker_agents.core.coord.models import (
    AutoRequest,
    BarrierResult,
    EnsembleRequest,
    EnsembleResult,
    HierarchicalRequest,
    HierarchicalResult,
    PbftRequest,
    PbftResult,
    VoteRequest,
    VoteResult,
)
from broker_agents.subjects import Subjects

PROTOCOLS = ("vote", "hierarchical", "pbft", "barrier", "lock", "leader", "ensemble", "auto")
REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "vote": VoteRequest, "hierarchical": HierarchicalRequest, "pbft": PbftRequest,
    "barrier": BarrierArrival, "lock": LockRequest, "leader": LeaderRequest,
    "ensemble": EnsembleRequest, "auto": AutoRequest,
}
RESPONSE_MODELS: dict[str, type[BaseModel]] = {
    "vote": VoteResult, "hierarchical": HierarchicalResult, "pbft": PbftResult,
    "barrier": BarrierResult, "lock": LockResult, "leader": LeaderResult,
    "ensemble": EnsembleResult, "auto": AutoResult,
}


def schemas(subjects: Subjects | None = None) -> dict[str, dict[str, Any]]:
    """protocol -> {"subject", "request", "response", "error"} (JSON Schema dicts)."""
    subjects = subjects or Subjects()
    error = ErrorReply.model_json_schema()
    return {
        p: {
            "subject": subjects.coord(p),
            "request": REQUEST_MODELS[p].model_json_schema(mode="validation"),
            "response": RESPONSE_MODELS[p].model_json_schema(mode="serialization"),
            "error": error,
        }
        for p in PROTOCOLS
    }
