"""Agents that hold leases: a candidate for a named role, and a lock holder.

``RoleCandidateAgent(role="auctioneer", ttl_ms=1000)`` campaigns for the role for as long
as it runs and resigns on graceful stop; ``LockHolderAgent(lock="db", ttl_ms=1000)``
acquires a lock on start, keeps renewing it and releases it on graceful stop. Both answer
``leader_status`` (whether they believe they hold it, and the fencing token) and announce
every change on ``<p>.events.coord.lease.<leader|lock>``.
A holder killed with ``kill -9`` stops renewing; its lease lapses after ``ttl_ms``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from broker_agents.agent import Agent, AgentSettings, handler
from broker_agents.coord.keeper import LeaseKeeper
from broker_agents.coord.lease import LeaseStore, leader_key, lock_key
from broker_agents.coord.wire import LeaderStatusAsk
from broker_agents.core.tokens import TOKEN_PATTERN
from broker_agents.kv import open_bucket


def _lease_name(default: str, description: str) -> Any:
    """A role or lock name: it becomes part of a KV key, so one subject token."""
    return Field(default, min_length=1, max_length=128, pattern=TOKEN_PATTERN,
                 description=description)


class LeaseHolderSettings(AgentSettings):
    """What a lease-holding agent understands; the subclass names the lease."""

    ttl_ms: int = Field(2000, gt=0, description="lease length; a holder that stops renewing "
                        "loses it this long after its last renewal")

    def lease_key(self) -> str:
        raise NotImplementedError


class RoleCandidateSettings(LeaseHolderSettings):
    role: str = _lease_name("leader", "the role to campaign for")

    def lease_key(self) -> str:
        return leader_key(self.role)


class LockHolderSettings(LeaseHolderSettings):
    lock: str = _lease_name("lock", "the lock to hold")

    def lease_key(self) -> str:
        return lock_key(self.lock)


class RoleCandidateAgent(Agent):
    capabilities: ClassVar[list[str]] = ["candidate"]
    Settings: ClassVar[type[LeaseHolderSettings]] = RoleCandidateSettings

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        self.settings = self.Settings.model_validate(config)

    def key(self) -> str:
        return self.settings.lease_key()

    async def on_start(self) -> None:
        kv = await open_bucket(self.ctx.js, self.ctx.subjects.bucket("leases"))
        self.keeper = LeaseKeeper(LeaseStore(kv), self.key(), self.agent_id,
                                  self.settings.ttl_ms, self._changed)
        self.keeper.start()

    async def _changed(self, held: bool, token: int) -> None:
        """Log and announce on ``<p>.events.coord.lease.<key kind>`` (watchers, tests)."""
        self.ctx.log.info("lease changed", key=self.keeper.key, held=held, token=token)
        kind = self.keeper.key.split(".", 1)[0]
        await self.ctx.publish(self.ctx.subjects.events("coord", "lease", kind), {
            "agent_id": self.agent_id, "key": self.keeper.key, "held": held, "token": token,
            "node_id": self.ctx.node_id})

    async def on_stop(self) -> None:
        await self.keeper.stop(release=True)

    @handler(LeaderStatusAsk)
    async def leader_status(self, msg: LeaderStatusAsk) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "key": self.keeper.key, "held": self.keeper.held,
                "token": self.keeper.token, "grants": self.keeper.grants}


class LockHolderAgent(RoleCandidateAgent):
    capabilities: ClassVar[list[str]] = ["lock-holder"]
    Settings: ClassVar[type[LeaseHolderSettings]] = LockHolderSettings
