"""The registry as a node service: every hosted agent is registered once it is live.

Health follows the supervisor (a restart marks the agent ``degraded`` until it runs
again), nodes heartbeat and reap each other's silent agents, and a graceful stop
deregisters this node's agents at once. Agents reach it as ``ctx.services["registry"]``.

The node heals its own agents' records (``core/registry/heal.py``): a write to a hosted
agent's key that is not what it advertised (a delete, a corrupt value, another node's or
agent's record, an overwrite) is written back at once (at most once per heartbeat interval
per agent, so two nodes that both claim an agent cannot storm the bucket), and after every
beat whatever is still damaged; records claiming this node for agents it does not run are
removed. Each is ``ba_registry_healed_total{reason}`` and a rate-limited log line.

Before any agent starts, the node claims every id its config hosts
(``broker_agents/registry/claims.py``): an id a live node holds is refused
(``already_exists``, ``ba_registry_claims_total{outcome="refused"}``, a warning naming the
holder). ``on_duplicate_id = "refuse"`` (the default) skips that agent (``/readyz`` lists
it in ``agents_failed``); ``"fail"`` releases this start's claims and fails the start
(``DuplicateAgentId``, a ``ConfigError``: exit 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broker_agents.agent import Agent
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.heal import HealReason, damage, heal_plan, orphans
from broker_agents.core.registry.index import Change
from broker_agents.core.registry.record import AgentRecord
from broker_agents.kvskip import FOREIGN
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog
from broker_agents.registry import metrics
from broker_agents.registry.claims import Claim, claim, release
from broker_agents.registry.client import Registry, stamped
from broker_agents.registry.liveness import Heartbeater, Reaper, deregister_node
from broker_agents.registry.service import RegistryService
from broker_agents.registry.view import NodeView
from node.config import ConfigError
from node.hosting import planned_agents
from node.service_settings import RegistrySettings
from node.services import BaseService

if TYPE_CHECKING:
    from node.daemon import Node


class DuplicateAgentId(ConfigError):
    """The config hosts an agent id that a live node holds (``on_duplicate_id = "fail"``)."""

    CODE = ErrorCode.ALREADY_EXISTS


class _NodeHeartbeater(Heartbeater):
    """A heartbeat that also keeps this node's own agents in the bucket.

    While a node is cut off, other nodes may reap its agents; its heartbeat alone only
    undoes reaper *marks*, so after every beat we heal hosted agents' records (the bucket
    lost them, or holds something else). A beat that fails means we may be the one cut
    off: once beats succeed again the reaper forgets what it saw meanwhile instead of
    judging others from a stale view.
    """

    def __init__(self, service: RegistryNodeService, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = service
        self.failing = False

    async def beat(self) -> int:
        try:
            revision = await super().beat()
        except Exception:
            self.failing = True
            raise
        if self.failing:
            self.failing = False
            self.service.reaper.forget()
        await self.service.heal()
        return revision


class RegistryNodeService(BaseService):
    name = "registry"
    Settings = RegistrySettings

    def __init__(self, **options: Any) -> None:
        """``options``: the ``[services.registry]`` fields (a ``ValueError`` names a bad one)."""
        self.settings = RegistrySettings.model_validate(options)
        self.registry: Registry | None = None
        self._parts: list[Any] = []
        self._advertised: dict[str, AgentRecord] = {}  # hosted agent -> what we wrote
        self._advertising: set[str] = set()  # a write of ours in flight
        self._restarting: set[str] = set()  # exited, the supervisor restarts them
        self._suspects: dict[str, int] = {}  # orphan records seen at the last pass
        self._healing: dict[str, asyncio.Task[None]] = {}
        self._healed_at: dict[str, float] = {}
        self._unsubscribe: Any = None
        self._heal_log: RateLimitedLog | None = None
        self.refused: dict[str, str] = {}
        """Agent ids a live node holds (id -> why): not hosted here."""

    async def start(self, node: Node) -> None:
        assert node.nc is not None
        self.node_id = node.id
        self.log = get_logger(node_id=node.id, service="registry")
        self.registry = registry = await Registry.connect(
            node.nc, node.subjects, self.settings.replicas,
            js_timeout=max(0.5, 2 * self.settings.heartbeat_interval))
        self.nodes = await NodeView.open(node.nc, node.subjects)
        node.on_reconnect(registry.view.on_reconnected)
        self._unsubscribe = registry.view.subscribe(self._on_change)
        node.on_reconnect(self._nodes_reconnected)
        self.service = RegistryService(node.nc, registry.view, node.subjects)
        await self.service.start()
        self.hosted = node.agents
        self.reaper = Reaper(registry.store, registry.view, self.nodes, reaper_id=node.id,
                             window=self.settings.window, grace=self.settings.grace,
                             interval=self.settings.reap_interval, own_node=node.id)
        self.heartbeater = _NodeHeartbeater(self, registry.store, node.id,
                                            self.settings.heartbeat_interval,
                                            view=registry.view)
        await self.heartbeater.beat()  # before claiming: a claimer must see us live
        config = getattr(node, "config", None)  # a host without one claims nothing
        await self._claim(planned_agents(config) if config is not None else [])
        self.heartbeater.start()
        self.reaper.start()

    async def _claim(self, planned: list[tuple[str, str]]) -> None:
        """Claim every planned id (see the module docstring). Won ids count as restarting
        until their agent runs, so the heal does not remove them as orphans."""
        assert self.registry is not None
        won: list[Claim] = []
        self.refused = {}
        for agent_id, name in planned:
            outcome = await claim(self.registry.store, agent_id, name, self.node_id,
                                  window=self.settings.window)
            if outcome.won:
                won.append(outcome)
                self._restarting.add(agent_id)
                continue
            err = outcome.error()
            self.refused[agent_id] = f"{err.code}: {err.message}"
            self._warn(("duplicate", agent_id), "registry: agent id held by a live node; "
                       "not hosting it", agent_id=agent_id, holder=outcome.holder,
                       code=err.code, policy=self.settings.on_duplicate_id)
            if self.settings.on_duplicate_id == "fail":
                for done in won:
                    with contextlib.suppress(Exception):
                        await release(self.registry.store, done)
                raise DuplicateAgentId(
                    f"{err.message} (services.registry.on_duplicate_id = \"fail\")",
                    err.details)

    async def _nodes_reconnected(self) -> None:
        self.nodes.notify_reconnected()
        self.reaper.forget()

    # -- healing ----------------------------------------------------------------------

    def _unusable(self, agent_id: str) -> HealReason | None:
        """Why the view skipped the key's value (None: it did not)."""
        assert self.registry is not None
        skipped = self.registry.view.skipped.get(agent_id)
        if skipped is None:
            return None
        return HealReason.FOREIGN if skipped.reason == FOREIGN else HealReason.CORRUPT

    def _damage(self, agent_id: str) -> HealReason | None:
        """Why the view's record of a hosted agent is not what we advertised, or None."""
        assert self.registry is not None
        return damage(self._advertised[agent_id], self.registry.view.get(agent_id),
                      self._unusable(agent_id))

    def _healable(self, agent_id: str) -> bool:
        return (agent_id in self._advertised and agent_id in self.hosted
                and agent_id not in self._advertising and agent_id not in self._healing)

    def _on_change(self, change: Change) -> None:
        """A write reached a key: heal it now if it damaged a hosted agent's record, unless
        this agent was healed within a heartbeat interval (the next beat does it then)."""
        agent_id = change.agent_id
        if self.registry is None or not self._healable(agent_id):
            return
        reason = self._damage(agent_id)
        last = self._healed_at.get(agent_id)
        if reason is None or (last is not None and time.monotonic() - last
                              < self.settings.heartbeat_interval):
            return
        task = asyncio.get_running_loop().create_task(self._heal(agent_id, reason),
                                                      name=f"registry-heal-{agent_id}")
        self._healing[agent_id] = task
        task.add_done_callback(lambda done: self._healed(agent_id, done))

    def _healed(self, agent_id: str, task: asyncio.Task[None]) -> None:
        self._healing.pop(agent_id, None)
        if not task.cancelled() and task.exception() is not None:
            self._warn(("heal_failed", agent_id), "registry: healing a record failed",
                       agent_id=agent_id, error=repr(task.exception()))

    async def heal(self) -> None:
        """After each beat: rewrite every hosted agent's damaged record (one never written
        too: the bucket was unavailable when it started), and remove records that claim
        this node for agents it does not run (seen so at two passes in a row)."""
        registry = self.registry
        assert registry is not None
        hosted: Mapping[str, Agent] = dict(self.hosted)
        for agent_id, agent in hosted.items():
            if agent_id not in self._advertised:
                self._advertised[agent_id] = self._record_of(agent)
        expected = {a: self._advertised[a] for a in hosted if self._healable(a)}
        current = {a: r for a in expected if (r := registry.lookup(a)) is not None}
        unusable = {a: why for a in expected if (why := self._unusable(a)) is not None}
        plan = heal_plan(expected, current, unusable)
        view = registry.view
        claimed = [(r, view.index.revisions[r.agent_id]) for r in view.find_by_node(self.node_id)]
        remove, self._suspects = orphans(self.node_id, set(hosted) | self._restarting,
                                         claimed, self._suspects)
        # together and with few attempts: beats must not stall, and the next one retries
        outcomes = await asyncio.gather(*(self._heal(a, why) for a, why in plan),
                                        *(self._remove_orphan(a, rev) for a, rev in remove),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                self._warn("heal_failed", "registry: healing a record failed",
                           error=repr(outcome))

    async def _heal(self, agent_id: str, reason: HealReason) -> None:
        """Write back what we advertised for a hosted agent."""
        registry, record = self.registry, self._advertised.get(agent_id)
        if registry is None or record is None or agent_id not in self.hosted:
            return
        self._healed_at[agent_id] = time.monotonic()
        await registry.advertise(record, attempts=2)
        if agent_id not in self.hosted:
            # it stopped while we wrote: take back what we advertised
            with contextlib.suppress(Exception):
                await registry.unregister(agent_id)
            return
        metrics.HEALED.labels(reason.value).inc()
        self._warn((agent_id, reason), "registry: healed a hosted agent's record",
                   agent_id=agent_id, reason=reason.value)

    async def _remove_orphan(self, agent_id: str, revision: int) -> None:
        assert self.registry is not None
        if await self.registry.store.cas_delete(agent_id, revision):
            metrics.HEALED.labels(HealReason.ORPHAN.value).inc()
            self._warn(("orphan", agent_id), "registry: removed a record claiming this node "
                       "for an agent it does not run", agent_id=agent_id, revision=revision)

    def _warn(self, key: Any, event: str, **fields: Any) -> None:
        if self._heal_log is None:
            self._heal_log = RateLimitedLog(self.log)
        self._heal_log.warning(key, event, **fields)

    # -- what agents use --------------------------------------------------------------

    @property
    def view(self) -> Any:
        assert self.registry is not None
        return self.registry.view

    def find_by_capability(self, capability: str) -> list[AgentRecord]:
        assert self.registry is not None
        return self.registry.find_by_capability(capability)

    def __getattr__(self, name: str) -> Any:
        """Everything else of the Registry facade (lookup, query, watch, ...)."""
        registry = self.__dict__.get("registry")
        if registry is None:
            raise AttributeError(name)
        return getattr(registry, name)

    # -- agent lifecycle --------------------------------------------------------------

    def _record_of(self, agent: Agent) -> AgentRecord:
        """What this node advertises for a live agent (times: now)."""
        return stamped({
            "agent_id": agent.agent_id, "name": type(agent).__name__, "node_id": self.node_id,
            "capabilities": agent.all_capabilities(), "health": "healthy", "state": "running",
            "resources": dict(agent.config.get("resources", {})),
            "metadata": dict(agent.config.get("metadata", {})),
            "public_key": getattr(agent, "public_key", None),
        })

    async def agent_started(self, agent: Agent, restarts: int, attempts: int = 8) -> None:
        """Advertise a live agent (create, or overwrite a stale or reaper-marked record).

        A registry write that still fails after its retries is logged, not raised: the
        agent runs, and the heartbeat re-registers hosted agents the bucket lacks. Raising
        here failed the whole node start whenever a node came up next to a server that had
        just rejoined the cluster (no responders / a create and a read that disagree).
        """
        assert self.registry is not None
        agent_id = agent.agent_id
        record = self._advertised[agent_id] = self._record_of(agent)
        self._restarting.discard(agent_id)
        self._advertising.add(agent_id)
        try:
            await self.registry.advertise(record, attempts)
        except BrokerError as exc:
            if exc.code != ErrorCode.UNAVAILABLE:
                raise
            self.log.warning("registry: agent not advertised yet; the heartbeat retries",
                             agent_id=agent_id, error=exc.details.get("last_error"))
        finally:
            self._advertising.discard(agent_id)

    async def update(self, agent_id: str, change: Any) -> AgentRecord:
        """``Registry.update``; for a hosted agent the result is what we advertise now."""
        assert self.registry is not None
        record = await self.registry.update(agent_id, change)
        if agent_id in self._advertised:
            self._advertised[agent_id] = record
        return record

    async def set_health(self, agent_id: str, health: Any) -> AgentRecord:
        return await self.update(agent_id, {"health": health, "reaped": None})

    async def agent_exited(self, agent_id: str, error: BaseException | None,
                           restarting: bool) -> None:
        assert self.registry is not None
        self._forget(agent_id)
        if restarting:
            self._restarting.add(agent_id)
        try:
            if restarting:
                await self.registry.update(agent_id, {"health": "degraded", "state": "failed"})
            else:
                await self.registry.unregister(agent_id)
        except BrokerError as exc:
            self.log.warning("registry write failed", agent_id=agent_id, error=exc.message)

    def _forget(self, agent_id: str) -> None:
        self._advertised.pop(agent_id, None)
        self._restarting.discard(agent_id)
        self._healed_at.pop(agent_id, None)

    async def agent_stopping(self, agent_id: str) -> None:
        assert self.registry is not None
        self._forget(agent_id)
        with contextlib.suppress(BrokerError):
            await self.registry.unregister(agent_id)

    async def stop(self) -> None:
        """Also undoes a partial start: each part stops only if it was started."""
        registry, self.registry = self.registry, None
        if registry is None:
            return
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in list(self._healing.values()):
            task.cancel()
        parts = self.__dict__
        if "reaper" in parts:
            await self.reaper.stop()
        with contextlib.suppress(Exception):
            await deregister_node(registry.store, registry.view, self.node_id)
        if "heartbeater" in parts:
            await self.heartbeater.stop(graceful=True)
        if "service" in parts:
            await self.service.stop()
        if "nodes" in parts:
            await self.nodes.stop()
        await registry.close()
        for name in ("reaper", "heartbeater", "service", "nodes"):
            parts.pop(name, None)
