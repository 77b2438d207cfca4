"""Consensus groups as a node service: this node's member of each configured group.

    [services.consensus]
    groups = [{ name = "config", members = ["node-1", "node-2", "node-3"] }]

Members are node ids; a node hosts the member named after itself. ``members`` is the
group's first configuration; afterwards the log's own (``broker-agents raft add|remove``,
served on ``<p>.admin.membership.<group>``: ``broker_agents/raft/admin.py``). A node not
among ``members`` hosts a member when the group says ``join = true`` (it waits, not
voting, to be added) or when it holds the group's log already (it was added before). A
planned stop hands each leadership over first. The log lives in
``<data_dir>/raft/<group>``. Agents reach a group as ``ctx.services["consensus"].group(
"config")`` (propose / read); other clients use ``RaftClient`` or
``ba.raft.<group>.propose|read`` directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from broker_agents.core.raft.statemachine import StateMachine
from broker_agents.importer import ImportFromStringError, import_from_string
from broker_agents.raft.admin import MembershipService
from broker_agents.raft.driver import RaftMember
from broker_agents.raft.storage import FileStorage
from node.config import ConfigError
from node.service_settings import ConsensusGroup, ConsensusSettings
from node.services import BaseService

if TYPE_CHECKING:
    from node.daemon import Node


def build_state_machine(group: ConsensusGroup, where: str) -> StateMachine:
    """A fresh state machine for ``group`` (``where`` names its config field)."""
    try:
        factory = import_from_string(group.state_machine_path())
    except ImportFromStringError as exc:
        raise ConfigError(f"{where}: state machine {group.state_machine!r}: {exc}") from exc
    machine: StateMachine = factory()
    return machine


class ConsensusNodeService(BaseService):
    name = "consensus"
    Settings = ConsensusSettings

    def __init__(self, groups: Sequence[ConsensusGroup | Mapping[str, Any]] | None = None) -> None:
        """``groups``: the ``[services.consensus]`` groups (a ``ValueError`` names a bad one)."""
        self.groups = ConsensusSettings.model_validate({"groups": list(groups or [])}).groups
        self.members: dict[str, RaftMember] = {}
        self.admins: list[MembershipService] = []

    async def start(self, node: Node) -> None:
        assert node.nc is not None
        for index, group in enumerate(self.groups):
            log_dir = node.config.node.data_dir / "raft" / group.name
            joining = node.id not in group.members
            if joining and not (group.join or log_dir.exists()):
                continue  # not ours: neither a first member, nor joining, nor added before
            machine = build_state_machine(group, f"services.consensus.groups.{index}")
            bind = getattr(machine, "bind_connection", None)
            if bind is not None:  # it verifies signed acts (variables): trust as we do
                bind(node.nc, group.name)
            member = RaftMember(
                node.nc, group.name, node.id, group.members,
                FileStorage(log_dir, fsync=group.fsync),
                machine, node.subjects, tick_ms=group.tick_ms,
                election_ticks=group.election_ticks, heartbeat_ticks=group.heartbeat_ticks,
                snapshot_threshold=group.snapshot_threshold,
                snapshot_trail=group.snapshot_trail,
                max_command_bytes=group.max_command_bytes, max_term_jump=group.max_term_jump,
                join=joining)
            await member.start()
            self.members[group.name] = member
            admin = MembershipService(member)
            await admin.start()
            self.admins.append(admin)

    def unready(self) -> dict[str, str]:
        """Members that fail-stopped (``node.http.ReadinessSource``): the node is not ready
        while one of its groups has lost its member here."""
        return {f"consensus.{name}": member.failed
                for name, member in self.members.items() if member.failed is not None}

    def group(self, name: str) -> RaftMember:
        try:
            return self.members[name]
        except KeyError:
            raise KeyError(f"this node is not a member of consensus group {name!r}") from None

    async def stop(self) -> None:
        """A planned stop: each member this node leads hands its leadership over first,
        so a rolling restart costs no election and no failed commit."""
        admins, self.admins = self.admins, []
        for admin in admins:
            await admin.stop()
        members, self.members = self.members, {}
        await asyncio.gather(*(member.stop(handover=True) for member in members.values()))
