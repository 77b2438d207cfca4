"""Registry records: what the agents and nodes buckets hold, one record per key.

Times are float epoch seconds handed in by the IO layer; nothing here reads a clock.
Identifiers double as KV keys and subject tokens (``ba.agent.<agent_id>``), so they are
restricted to letters, digits, ``_`` and ``-``.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from broker_agents.core.tokens import TOKEN
from broker_agents.core.versioning import OpenModel, VersionedModel


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class Lifecycle(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


def _token(value: str, what: str) -> str:
    if not TOKEN.match(value):
        raise ValueError(f"{what} {value!r} must be letters, digits, '_' or '-'")
    return value


class ReapMark(OpenModel):
    """Set by a reaper that found the agent's node silent; the owner clears it on return."""

    model_config = ConfigDict(frozen=True)

    by: str
    at: float
    prior_health: Health


class AgentRecord(VersionedModel):
    """One agent as advertised in the ``agents`` bucket under key ``agent_id``."""

    model_config = ConfigDict(frozen=True)

    agent_id: str
    name: str
    node_id: str
    capabilities: list[str] = Field(default_factory=list)
    health: Health = Health.HEALTHY
    state: Lifecycle = Lifecycle.STARTING
    resources: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    registered_at: float = 0.0
    last_heartbeat: float = 0.0
    public_key: str | None = None
    reaped: ReapMark | None = None

    @field_validator("agent_id")
    @classmethod
    def _agent_id_token(cls, value: str) -> str:
        return _token(value, "agent_id")

    @field_validator("node_id")
    @classmethod
    def _node_id_token(cls, value: str) -> str:
        return _token(value, "node_id")

    @field_validator("name")
    @classmethod
    def _name_nonempty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be empty")
        return value

    @field_validator("capabilities")
    @classmethod
    def _capabilities_tokens(cls, value: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        for cap in value:
            seen[_token(cap, "capability")] = None
        return list(seen)

    @field_validator("resources", mode="before")
    @classmethod
    def _resources_finite(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, num in value.items():
                if not isinstance(key, str) or not key or "." in key:
                    raise ValueError(f"resource name {key!r} must be non-empty, without '.'")
                if isinstance(num, bool) or not isinstance(num, int | float):
                    raise ValueError(f"resource {key!r} must be a number, got {num!r}")
                if not math.isfinite(num):
                    raise ValueError(f"resource {key!r} must be finite, got {num!r}")
        return value

    @field_validator("registered_at", "last_heartbeat")
    @classmethod
    def _time_finite(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"time must be a finite number of epoch seconds >= 0, got {value!r}")
        return value


class NodeRecord(VersionedModel):
    """A node's heartbeat in the ``nodes`` bucket under key ``node_id``.

    It announces the node's build: ``version`` (package version), ``schema`` (the schema
    version it writes, ``core.versioning.SCHEMA_VERSION``) and ``features`` (sorted names
    of the features it supports, ``core.features``). A record without them was written by
    a build before announcements: schema 1, no features."""

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    node_id: str
    last_heartbeat: float
    started_at: float = 0.0
    beat: int = 0
    agent_count: int = 0
    stopping: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: str | None = None
    schema_version: int = Field(default=1, alias="schema", ge=1)
    features: tuple[str, ...] = ()

    @field_validator("node_id")
    @classmethod
    def _node_id_token(cls, value: str) -> str:
        return _token(value, "node_id")


AGENT_REQUIRED: tuple[str, ...] = tuple(
    name for name, info in AgentRecord.model_fields.items() if info.is_required()
)
NODE_REQUIRED: tuple[str, ...] = tuple(
    name for name, info in NodeRecord.model_fields.items() if info.is_required()
)
