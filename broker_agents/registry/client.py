"""The registry as agents and nodes use it: durable writes, reads from the local view.

    registry = await Registry.connect(nc, node_id="n1")
    await registry.register({"agent_id": "a1", "name": "alpha", "node_id": "n1"})
    registry.find_by_capability("inference")      # local, no round trip
    async with registry.watch() as changes: ...

Writes go to the bucket (``create`` / CAS); reads are answered by the ``LocalView`` and
are as fresh as the watch. ``await registry.sync()`` waits for the view to catch up with
the writes this client made (read-your-writes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from broker_agents.core.registry.index import Change
from broker_agents.core.registry.query import Criterion
from broker_agents.core.registry.record import AgentRecord, Health
from broker_agents.core.registry.validation import validate_agent
from broker_agents.registry.store import Mutation, RegistryStore
from broker_agents.registry.view import ChangeStream, LocalView
from broker_agents.subjects import Subjects

CriteriaLike = Iterable[Criterion | Mapping[str, Any]] | None


class Registry:
    def __init__(self, store: RegistryStore, view: LocalView) -> None:
        self.store = store
        self.view = view
        self._written = 0

    @classmethod
    async def connect(cls, nc: Any, subjects: Subjects | None = None,
                      replicas: int | None = None,
                      js_timeout: float = 5.0, **view_options: Any) -> Registry:
        subjects = subjects or Subjects()
        store = await RegistryStore.open(nc, subjects, replicas, js_timeout=js_timeout)
        view = LocalView(store.agents, subjects.bucket("agents"), **view_options)
        await view.start()
        return cls(store, view)

    async def close(self) -> None:
        await self.view.stop()

    # -- writes -----------------------------------------------------------------------

    async def register(self, record: AgentRecord | Mapping[str, Any]) -> AgentRecord:
        """Validate and create; ``registered_at``/``last_heartbeat`` default to now."""
        validated = stamped(record)
        self._note(await self.store.register(validated))
        return validated

    async def advertise(self, record: AgentRecord | Mapping[str, Any],
                        attempts: int = 8) -> AgentRecord:
        """Register or overwrite (a node advertising an agent it hosts): the bucket ends
        up holding exactly this record, retrying through transient failures; raises
        ``unavailable`` when it could not."""
        validated = stamped(record)
        self._note(await self.store.put_record(validated, attempts))
        return validated

    async def update(self, agent_id: str,
                     change: Mutation | Mapping[str, Any]) -> AgentRecord:
        """CAS update: a mutation function (re-applied on conflict) or fields to set."""
        if callable(change):
            record, revision = await self.store.update(agent_id, change)
        else:
            record, revision = await self.store.patch(agent_id, dict(change))
        self._note(revision)
        return record

    async def set_health(self, agent_id: str, health: Health | str) -> AgentRecord:
        return await self.update(agent_id, {"health": Health(health), "reaped": None})

    async def unregister(self, agent_id: str) -> None:
        await self.store.unregister(agent_id)

    def _note(self, revision: int) -> None:
        self._written = max(self._written, revision)

    async def sync(self, timeout: float = 5.0) -> None:
        """Wait until the view has applied every write made through this client."""
        await self.view.wait_revision(self._written, timeout)

    # -- reads (local) ----------------------------------------------------------------

    def lookup(self, agent_id: str) -> AgentRecord | None:
        return self.view.get(agent_id)

    def count(self, criteria: CriteriaLike = None) -> int:
        return self.view.count(criteria)

    def find_by_capability(self, capability: str) -> list[AgentRecord]:
        return self.view.find_by_capability(capability)

    def find_by_node(self, node_id: str) -> list[AgentRecord]:
        return self.view.find_by_node(node_id)

    def find_by_health(self, health: Health | str) -> list[AgentRecord]:
        return self.view.find_by_health(health)

    def query(self, criteria: CriteriaLike) -> list[AgentRecord]:
        return self.view.query(criteria)

    def watch(self) -> ChangeStream:
        return self.view.watch()

    def subscribe(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        return self.view.subscribe(listener)

    # defined last: the name shadows the builtin in annotations of the class body
    def list(self) -> list[AgentRecord]:
        """Every agent in the local view, sorted by id."""
        return self.view.all_agents()


def stamped(record: AgentRecord | Mapping[str, Any]) -> AgentRecord:
    """Validated, with ``registered_at``/``last_heartbeat`` defaulting to now."""
    data: dict[str, Any] = record.model_dump() if isinstance(record, AgentRecord) \
        else dict(record)
    now = time.time()
    if not data.get("registered_at"):
        data["registered_at"] = now
    if not data.get("last_heartbeat"):
        data["last_heartbeat"] = now
    return validate_agent(data)
