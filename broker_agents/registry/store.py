"""Durable registry writes on JetStream KV: create, compare-and-set update, delete.

Decisions are made with CAS, never with a read: a read may be stale (direct gets can be
served by followers), but an update carrying the revision it was computed from fails if
anyone wrote in between, and we re-read and re-apply the mutation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nats.errors
import nats.js.errors as jse
import structlog
from nats.js.kv import KeyValue

from broker_agents.codec import STORED_MAX_DEPTH, decode, encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.registry.record import AgentRecord, NodeRecord
from broker_agents.core.registry.validation import validate_agent, validate_node
from broker_agents.kv import is_cas_conflict, open_bucket
from broker_agents.registry import metrics
from broker_agents.subjects import Subjects

log = structlog.get_logger()

Mutation = Callable[[AgentRecord], AgentRecord | None]


def decode_agent(data: bytes) -> AgentRecord:
    return validate_agent(decode(data, max_depth=STORED_MAX_DEPTH))


def decode_node(data: bytes) -> NodeRecord:
    return validate_node(decode(data, max_depth=STORED_MAX_DEPTH))


class RegistryStore:
    """The agents and nodes buckets of one prefix."""

    def __init__(self, agents: KeyValue, nodes: KeyValue, max_attempts: int = 16) -> None:
        self.agents = agents
        self.nodes = nodes
        self.max_attempts = max_attempts

    @classmethod
    async def open(cls, nc: Any, subjects: Subjects | None = None, replicas: int | None = None,
                   max_attempts: int = 16, js_timeout: float = 5.0) -> RegistryStore:
        """``js_timeout`` bounds each KV write: a heartbeat stuck behind a partition must
        give up in time for the next one, not block the loop for nats-py's default 5 s."""
        subjects = subjects or Subjects()
        js = nc.jetstream(timeout=js_timeout)
        agents = await open_bucket(js, subjects.bucket("agents"), replicas=replicas)
        nodes = await open_bucket(js, subjects.bucket("nodes"), replicas=replicas)
        return cls(agents, nodes, max_attempts)

    # -- agents -----------------------------------------------------------------------

    async def register(self, record: AgentRecord, attempts: int = 3) -> int:
        """Create the record; ``already_exists`` if the id is taken. Returns the revision.

        A timed-out create is retried; if the retry finds exactly our record, the first
        attempt landed (its ack was lost) and that counts as success.
        """
        timed_out = False
        for _ in range(attempts):
            try:
                revision = await self.agents.create(record.agent_id, encode(record))
            except nats.errors.TimeoutError:
                timed_out = True
                continue
            except jse.KeyWrongLastSequenceError:
                if timed_out and (current := await self.get(record.agent_id)) is not None \
                        and current[0] == record:
                    break
                metrics.WRITES.labels("register", "already_exists").inc()
                raise BrokerError(ErrorCode.ALREADY_EXISTS,
                                  f"agent {record.agent_id!r} is already registered",
                                  {"agent_id": record.agent_id}) from None
            metrics.WRITES.labels("register", "ok").inc()
            return int(revision)
        else:
            metrics.WRITES.labels("register", "timeout").inc()
            raise BrokerError(ErrorCode.TIMEOUT, f"registering {record.agent_id!r} timed out",
                              {"agent_id": record.agent_id, "attempts": attempts})
        metrics.WRITES.labels("register", "ok").inc()
        return current[1]

    async def put_record(self, record: AgentRecord, attempts: int = 8,
                         backoff: float = 0.05) -> int:
        """Make the bucket hold ``record`` whatever it holds now: create it when absent,
        CAS-overwrite it when present. Returns the revision.

        For a node (re-)advertising an agent it hosts (a corrupt or foreign value under
        the key is overwritten like any other). Right after a partition heals, a
        create can find the key taken while the read that follows finds it gone (a reaper
        raced us, or a server that just rejoined answered from its stale state), and
        JetStream calls fail for a moment (no responders, no stream response, timeouts):
        each of these goes round again after a growing pause, ``attempts`` times in all.
        A write that timed out but landed is recognised on the next round by its value.
        """
        delay = backoff
        failure: BaseException | None = None
        for _ in range(attempts):
            try:
                current = await self.stored(record.agent_id)
                if current is not None and current[0] == record:
                    revision = current[1]
                elif current is None:
                    revision = await self.agents.create(record.agent_id, encode(record))
                else:
                    revision = await self.agents.update(record.agent_id, encode(record),
                                                        last=current[1])
            except jse.KeyWrongLastSequenceError as exc:
                metrics.CAS_CONFLICTS.labels("put_record").inc()
                failure = exc
            except (nats.errors.Error, TimeoutError) as exc:
                failure = exc
            else:
                metrics.WRITES.labels("put_record", "ok").inc()
                return int(revision)
            log.debug("registry.put_record.retry", agent_id=record.agent_id,
                      error=repr(failure))
            await asyncio.sleep(delay)  # sleep-ok: backoff while the cluster settles
            delay = min(delay * 2, 0.5)
        metrics.WRITES.labels("put_record", "unavailable").inc()
        raise BrokerError(ErrorCode.UNAVAILABLE,
                          f"could not write {record.agent_id!r} in {attempts} attempts",
                          {"agent_id": record.agent_id, "attempts": attempts,
                           "last_error": repr(failure)})

    async def stored(self, agent_id: str) -> tuple[AgentRecord | None, int] | None:
        """Like ``get``, but a value that is not a record of ``agent_id`` (corrupt, or
        another agent's) is ``(None, revision)``: something to overwrite, not an error."""
        try:
            entry = await self.agents.get(agent_id)
        except jse.KeyNotFoundError:
            return None
        assert entry.value is not None and entry.revision is not None
        try:
            record: AgentRecord | None = decode_agent(entry.value)
        except BrokerError:
            record = None
        if record is not None and record.agent_id != agent_id:
            record = None
        return record, int(entry.revision)

    async def get(self, agent_id: str) -> tuple[AgentRecord, int] | None:
        """The record and its revision, read from the bucket (not the local view)."""
        try:
            entry = await self.agents.get(agent_id)
        except jse.KeyNotFoundError:
            return None
        assert entry.value is not None and entry.revision is not None
        return decode_agent(entry.value), int(entry.revision)

    async def update(self, agent_id: str, mutate: Mutation) -> tuple[AgentRecord, int]:
        """Re-read and re-apply ``mutate`` until the CAS wins (bounded).

        ``mutate`` returns the new record, or None (or the same record) to write nothing.
        """
        for attempt in range(self.max_attempts):
            current = await self.get(agent_id)
            if current is None:
                metrics.WRITES.labels("update", "not_found").inc()
                raise BrokerError(ErrorCode.NOT_FOUND, f"agent {agent_id!r} is not registered",
                                  {"agent_id": agent_id})
            record, revision = current
            new = mutate(record)
            if new is None or new == record:
                return record, revision
            if new.agent_id != agent_id:
                raise BrokerError(ErrorCode.VALIDATION, "an update cannot change agent_id",
                                  {"agent_id": agent_id, "value": new.agent_id})
            try:
                written = await self.agents.update(agent_id, encode(new), last=revision)
            except jse.KeyWrongLastSequenceError:
                metrics.CAS_CONFLICTS.labels("update").inc()
                log.debug("registry.update.conflict", agent_id=agent_id, attempt=attempt)
                continue
            metrics.WRITES.labels("update", "ok").inc()
            return new, int(written)
        metrics.WRITES.labels("update", "conflict").inc()
        raise BrokerError(ErrorCode.CONFLICT,
                          f"update of {agent_id!r} lost {self.max_attempts} races in a row",
                          {"agent_id": agent_id, "attempts": self.max_attempts})

    async def patch(self, agent_id: str, changes: dict[str, Any]) -> tuple[AgentRecord, int]:
        """Update fields by name; the merged record is validated like a new one."""
        def merge(record: AgentRecord) -> AgentRecord:
            return validate_agent({**record.model_dump(), **changes})
        return await self.update(agent_id, merge)

    async def cas_put(self, agent_id: str, record: AgentRecord, revision: int) -> int | None:
        """Write over exactly ``revision``; None if someone else wrote first."""
        try:
            return int(await self.agents.update(agent_id, encode(record), last=revision))
        except jse.KeyWrongLastSequenceError:
            metrics.CAS_CONFLICTS.labels("cas_put").inc()
            return None

    async def cas_delete(self, agent_id: str, revision: int) -> bool:
        """Delete exactly ``revision``; False if someone else wrote first."""
        return await _cas_delete(self.agents, agent_id, revision)

    async def unregister(self, agent_id: str) -> None:
        """Delete the record (idempotent: deleting an absent agent is not an error)."""
        await self.agents.delete(agent_id)
        metrics.WRITES.labels("unregister", "ok").inc()

    # -- nodes ------------------------------------------------------------------------

    async def heartbeat(self, record: NodeRecord) -> int:
        """A node's heartbeat: only that node writes its key, so a plain put."""
        return int(await self.nodes.put(record.node_id, encode(record)))

    async def get_node(self, node_id: str) -> tuple[NodeRecord, int] | None:
        try:
            entry = await self.nodes.get(node_id)
        except jse.KeyNotFoundError:
            return None
        assert entry.value is not None and entry.revision is not None
        return decode_node(entry.value), int(entry.revision)

    async def remove_node(self, node_id: str, revision: int | None = None) -> bool:
        if revision is None:
            await self.nodes.delete(node_id)
            return True
        return await _cas_delete(self.nodes, node_id, revision)


async def _cas_delete(kv: KeyValue, key: str, revision: int) -> bool:
    try:
        await kv.delete(key, last=revision)
    except jse.APIError as exc:
        if is_cas_conflict(exc):
            metrics.CAS_CONFLICTS.labels("cas_delete").inc()
            return False
        raise
    return True
