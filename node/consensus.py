"""Consensus groups as a node service: this node's member of each configured group.

    [services.consensus]
    groups = [{ name = "config", members = ["node-1", "node-2", "node-3"] }]

Members are node ids; a node hosts the member named after itself. The log lives in
``<data_dir>/raft/<group>``. Agents reach a group as
``ctx.services["consensus"].group("config")`` (propose / read); other clients use
``RaftClient`` or ``ba.raft.<group>.propose|read`` directly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, field_validator

from broker_agents.core.raft.statemachine import StateMachine
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.storage import FileStorage
from broker_agents.subjects import check_token
from node.services import BaseService

if TYPE_CHECKING:
    from node.daemon import Node

STATE_MACHINES = {
    "kv": "broker_agents.core.kvsm:KVStateMachine",
    "variables": "broker_agents.variables.raft_adapter:factory",
}


def register_state_machine(name: str, factory_path: str) -> None:
    STATE_MACHINES[name] = factory_path


class GroupConfig(BaseModel):
    model_config = {"extra": "forbid"}

    name: str
    members: list[str] = Field(min_length=1)
    state_machine: str = Field("kv", description="a registered name or module:factory")
    tick_ms: float = Field(20.0, gt=0)
    election_ticks: int = Field(10, ge=2)
    heartbeat_ticks: int = Field(2, ge=1)
    snapshot_threshold: int = Field(10_000, ge=1)
    fsync: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_token(value, "group name")

    @field_validator("members")
    @classmethod
    def _members(cls, members: list[str]) -> list[str]:
        if len(set(members)) != len(members):
            raise ValueError("members must be distinct")
        return [check_token(m, "member") for m in members]

    def build_state_machine(self) -> StateMachine:
        path = STATE_MACHINES.get(self.state_machine, self.state_machine)
        module_name, _, attr = path.partition(":")
        if not attr:
            raise ValueError(f"unknown state machine {self.state_machine!r}")
        factory = getattr(importlib.import_module(module_name), attr)
        machine: StateMachine = factory()
        return machine


class ConsensusNodeService(BaseService):
    name = "consensus"

    def __init__(self, groups: list[dict[str, Any]] | None = None) -> None:
        self.groups = [GroupConfig.model_validate(g) for g in groups or []]
        self.members: dict[str, RaftMember] = {}

    async def start(self, node: Node) -> None:
        assert node.nc is not None
        for group in self.groups:
            if node.id not in group.members:
                continue
            member = RaftMember(
                node.nc, group.name, node.id, group.members,
                FileStorage(node.config.node.data_dir / "raft" / group.name, fsync=group.fsync),
                group.build_state_machine(), node.subjects, tick_ms=group.tick_ms,
                election_ticks=group.election_ticks, heartbeat_ticks=group.heartbeat_ticks,
                snapshot_threshold=group.snapshot_threshold)
            await member.start()
            self.members[group.name] = member

    def group(self, name: str) -> RaftMember:
        try:
            return self.members[name]
        except KeyError:
            raise KeyError(f"this node is not a member of consensus group {name!r}") from None

    async def stop(self) -> None:
        members, self.members = self.members, {}
        for member in members.values():
            await member.stop()
