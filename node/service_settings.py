"""Settings of the services a node hosts (``[services.<name>]``), validated with the config.

Each built-in service has a model here, so a bad value fails when the config loads and
names its field (``services.consensus.groups.0.members: ...``). The names a config may use
(services, consensus state machines) are registered here too: they are config vocabulary,
and this module imports no driver, so loading a config starts nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from broker_agents.core.raft.config import DEFAULT_MAX_TERM_JUMP, DEFAULT_SNAPSHOT_TRAIL
from broker_agents.importer import ImportFromStringError, parse_import_path
from broker_agents.raft.commands import DEFAULT_MAX_COMMAND_BYTES
from broker_agents.subjects import check_token
from node.auth.roles import RAFT_CLIENT_VERBS

# name -> "module:factory"; the factory takes the service's settings fields as kwargs.
KNOWN_SERVICES: dict[str, str] = {
    "registry": "node.registry:RegistryNodeService",
    "consensus": "node.consensus:ConsensusNodeService",
}

# ``state_machine = "<name>"`` of a consensus group -> "module:factory" (no arguments).
STATE_MACHINES: dict[str, str] = {
    "kv": "broker_agents.core.raft.kvstore:KVStateMachine",
    "variables": "broker_agents.variables.raft_adapter:factory",
}


def register_service(name: str, factory_path: str) -> None:
    """Make ``[services.<name>]`` start ``factory_path`` (call before loading the config).
    A factory with a ``Settings`` model (a ``ServiceSettings``) gets its table checked."""
    KNOWN_SERVICES[name] = factory_path


def register_state_machine(name: str, factory_path: str) -> None:
    STATE_MACHINES[name] = factory_path


class ServiceSettings(BaseModel):
    """What every ``[services.<name>]`` table may say; each service adds its own fields."""

    model_config = {"extra": "forbid"}

    enabled: bool = True

    def options(self) -> dict[str, Any]:
        """The factory's keyword arguments: every field but ``enabled`` (nested models kept)."""
        return {name: value for name, value in self if name != "enabled"}


class RegistrySettings(ServiceSettings):
    heartbeat_interval: float = Field(1.0, gt=0, description="seconds between node heartbeats")
    window: float = Field(5.0, gt=0, description="a node silent this long is unhealthy (s)")
    grace: float = Field(5.0, ge=0, description="then its agents are removed after this (s)")
    reap_interval: float = Field(1.0, gt=0, description="seconds between reaper sweeps")
    replicas: int | None = Field(None, ge=1, le=5, description="replicas of the registry "
                                 "buckets (default: [nats] bucket_replicas)")
    on_duplicate_id: Literal["refuse", "fail"] = Field(
        "refuse", description="an agent id a live node holds: refuse (skip that agent) "
        "or fail (the node does not start, exit 2)")

    @model_validator(mode="after")
    def _beat_within_window(self) -> RegistrySettings:
        if not self.heartbeat_interval < self.window:
            raise ValueError("heartbeat_interval must be positive and below window")
        return self


class ConsensusGroup(BaseModel):
    model_config = {"extra": "forbid"}

    name: str
    members: list[str] = Field(
        min_length=1, description="node ids; each hosts one member. The group's FIRST "
        "configuration only: once its log holds a membership change, the log counts "
        "(broker-agents raft add|remove)")
    join: bool = Field(
        False, description="host a member of this group here although this node is not "
        "among `members`: it waits, not voting, until an admin adds it")
    state_machine: str = Field("kv", description="a registered name or module:factory")
    tick_ms: float = Field(20.0, gt=0)
    election_ticks: int = Field(10, ge=2)
    heartbeat_ticks: int = Field(2, ge=1)
    snapshot_threshold: int = Field(10_000, ge=1)
    snapshot_trail: int = Field(
        DEFAULT_SNAPSHOT_TRAIL, ge=0,
        description="entries a member keeps after a snapshot, so that a follower "
                    "trailing by fewer catches up with appends, not a whole snapshot")
    fsync: bool = True
    max_command_bytes: int = Field(
        DEFAULT_MAX_COMMAND_BYTES, ge=64, le=512 * 1024,
        description="largest command a proposal may carry (encoded); larger: too_large")
    max_term_jump: int = Field(
        DEFAULT_MAX_TERM_JUMP, ge=16,
        description="how far ahead of ours a peer's term may be before it is refused "
                    "(a forged huge term can then never be adopted)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_token(value, "group name")

    @field_validator("members")
    @classmethod
    def _members(cls, members: list[str]) -> list[str]:
        if len(set(members)) != len(members):
            raise ValueError("members must be distinct")
        reserved = sorted(set(members) & set(RAFT_CLIENT_VERBS))
        if reserved:
            raise ValueError(f"member names {reserved} are reserved: clients may publish "
                             f"to ba.raft.<group>.{{{','.join(RAFT_CLIENT_VERBS)}}}, so a "
                             "member with such a name would take peer messages from them")
        return [check_token(m, "member") for m in members]

    @field_validator("state_machine")
    @classmethod
    def _state_machine(cls, value: str) -> str:
        if value in STATE_MACHINES:
            return value
        try:
            parse_import_path(value)
        except ImportFromStringError:
            raise ValueError(f"unknown state machine {value!r} (registered: "
                             f"{', '.join(sorted(STATE_MACHINES))}; or module:factory)") from None
        return value

    def state_machine_path(self) -> str:
        return STATE_MACHINES.get(self.state_machine, self.state_machine)


class ConsensusSettings(ServiceSettings):
    groups: list[ConsensusGroup] = Field(default_factory=list)


class ServicesSection(BaseModel):
    """``[services]``: the built-in services typed (the registry runs unless its table says
    ``enabled = false``); a registered service's table is kept as given and checked against
    its factory's ``Settings`` when the node builds it."""

    model_config = {"extra": "allow"}

    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    consensus: ConsensusSettings | None = None

    @model_validator(mode="after")
    def _known(self) -> ServicesSection:
        for name, table in (self.model_extra or {}).items():
            if name not in KNOWN_SERVICES:
                raise ValueError(f"unknown service {name!r} "
                                 f"(known: {', '.join(sorted(KNOWN_SERVICES))})")
            if not isinstance(table, dict):
                raise ValueError(f"[services.{name}] must be a table")
        return self

    def tables(self) -> list[tuple[str, ServiceSettings | dict[str, Any]]]:
        """Every configured service in start order: built-ins first, then registered ones."""
        found: list[tuple[str, ServiceSettings | dict[str, Any]]] = [("registry", self.registry)]
        if self.consensus is not None:
            found.append(("consensus", self.consensus))
        found.extend((self.model_extra or {}).items())
        return found
