"""What an agent gets to talk to the world: every message crosses NATS, even locally.

The context is the seam where the registry, coordination and auctions plug in: they are
reached through ``ctx.services`` (filled by the node) rather than by importing the node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from broker_agents import codec, identity, transport
from broker_agents.batching import Outbox
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Principal
from broker_agents.kv import open_bucket
from broker_agents.logging import get_logger
from broker_agents.messages import envelope_bytes
from broker_agents.metrics import MESSAGES_OUT
from broker_agents.subjects import Subjects

R = TypeVar("R", bound=BaseModel)
# How many inbox subjects a context remembers (see ``AgentContext._inbox``).
INBOX_CACHE = 1024


class Incoming(NamedTuple):
    """Metadata of the message being handled (a tuple: built once per message)."""

    subject: str
    reply: str | None
    msg_id: str | None
    type_name: str
    is_json: bool
    headers: dict[str, str] | None
    # The verified signer of a signed message (``broker_agents.identity``); None: unsigned.
    principal: Principal | None = None


def reply_or_raise(data: bytes, headers: dict[str, str] | None, reply_model: type[R] | None,
                   target: str) -> Any:
    payload = codec.decode(data, headers)
    err = BrokerError.from_payload(payload)
    if err is not None:
        raise err
    if reply_model is None:
        return payload
    try:
        return reply_model.model_validate(payload)
    except ValidationError as exc:
        raise BrokerError(
            ErrorCode.MALFORMED, f"reply from {target} is not a valid {reply_model.__name__}",
            {"errors": exc.errors(include_url=False, include_context=False)},
        ) from exc


@dataclass
class AgentContext:
    agent_id: str
    node_id: str
    nc: NATS
    subjects: Subjects
    services: dict[str, Any] = field(default_factory=dict)
    spawner: Callable[[Coroutine[Any, Any, Any], str | None], asyncio.Task[Any]] | None = None
    _kv: dict[str, KeyValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log = get_logger(node_id=self.node_id, agent_id=self.agent_id)
        self._out = {k: MESSAGES_OUT.labels(self.agent_id, k)
                     for k in ("send", "request", "publish", "reply")}
        self._sent = self._out["send"]
        self._inboxes: dict[str, str] = {}
        self._outbox = Outbox(self.nc, self.agent_id)

    def _inbox(self, agent_id: str) -> str:
        """An agent's inbox subject, remembered for the agents this one talks to (a
        bounded number: the cache starts over past ``INBOX_CACHE``)."""
        subject = self._inboxes.get(agent_id)
        if subject is None:
            if len(self._inboxes) >= INBOX_CACHE:
                self._inboxes.clear()
            subject = self._inboxes[agent_id] = self.subjects.agent(agent_id)
        return subject

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Start a task the agent owns (awaited at stop; its failure crashes the agent)."""
        if self.spawner is None:
            raise RuntimeError("this context cannot start tasks")
        return self.spawner(coro, name)

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()

    async def send(self, agent_id: str, msg: BaseModel, *, type_name: str | None = None,
                   signed: bool = False) -> None:
        """One-way message to an agent's inbox (at most once, like core NATS);
        ``signed``: an act of this agent's (see ``broker_agents.identity``).

        A burst of sends to one inbox within a loop turn travels as one batch frame
        (``broker_agents.batching``): the first is published at once, the rest by the
        end of the turn, before anything else this context sends; ``flush`` hands them
        to the connection now (e.g. before using ``nc`` directly)."""
        subject = self._inbox(agent_id)
        data = envelope_bytes(msg, type_name)
        if signed:  # a signature covers one message: signed sends travel singly
            if self._outbox.pending:
                await self._outbox.flush()
            await self.nc.publish(subject, data, headers=self._signed(subject, data, True))
        else:
            await self._outbox.send(subject, data)
        self._sent.inc()

    async def flush(self) -> None:
        """Publish the one-way sends still queued in this loop turn (see ``send``)."""
        await self._outbox.flush()

    def _signed(self, subject: str, data: bytes, signed: bool) -> dict[str, str] | None:
        """The signature headers of an act by this agent (its node speaks for it)."""
        return identity.act_headers(self.nc, subject, data, self.agent_id) if signed else None

    async def send_capability(self, capability: str, msg: BaseModel) -> None:
        if self._outbox.pending:  # queued sends go first: the context's order is kept
            await self._outbox.flush()
        await self.nc.publish(self.subjects.cap(capability), envelope_bytes(msg))
        self._sent.inc()

    async def request(self, agent_id: str, msg: BaseModel, *, timeout: float = 5.0,
                      reply_model: type[R] | None = None, msg_id: str | None = None,
                      signed: bool = False) -> Any:
        """Ask an agent and wait for its reply; an error reply is raised as BrokerError.
        ``signed``: an act of this agent's, and a retry with the same ``msg_id`` is
        answered from the callee's cache (which is scoped per signer)."""
        return await self._request(self._inbox(agent_id), msg, timeout, reply_model,
                                   msg_id, agent_id, signed)

    async def request_capability(self, capability: str, msg: BaseModel, *,
                                 timeout: float = 5.0, reply_model: type[R] | None = None,
                                 msg_id: str | None = None, signed: bool = False) -> Any:
        """Ask any one agent that has the capability (NATS queue group picks it)."""
        return await self._request(self.subjects.cap(capability), msg, timeout, reply_model,
                                   msg_id, f"capability {capability}", signed)

    async def _request(self, subject: str, msg: BaseModel, timeout: float,
                       reply_model: type[R] | None, msg_id: str | None, target: str,
                       signed: bool) -> Any:
        data = envelope_bytes(msg, msg_id=msg_id)
        if self._outbox.pending:  # a request must not overtake queued one-way sends
            await self._outbox.flush()
        self._out["request"].inc()
        try:
            reply = await transport.request(self.nc, subject, data, timeout,
                                            headers=self._signed(subject, data, signed))
        except nats.errors.NoRespondersError as exc:
            raise BrokerError(ErrorCode.UNAVAILABLE, f"no agent is listening for {target}",
                              {"subject": subject}) from exc
        except nats.errors.TimeoutError as exc:
            raise BrokerError(ErrorCode.TIMEOUT, f"{target} did not answer within {timeout}s",
                              {"subject": subject, "timeout": timeout}) from exc
        return reply_or_raise(reply.data, reply.headers, reply_model, target)

    async def publish(self, subject: str, payload: Any) -> None:
        """Raw publish of any payload (msgpack-encoded) to any subject."""
        if self._outbox.pending:
            await self._outbox.flush()
        await self.nc.publish(subject, codec.encode(payload))
        self._out["publish"].inc()

    async def kv(self, bucket: str, *, create: bool = True) -> KeyValue:
        """A JetStream KV bucket handle, created on first use when allowed."""
        if bucket not in self._kv:
            self._kv[bucket] = (await open_bucket(self.js, bucket) if create
                                else await self.js.key_value(bucket))
        return self._kv[bucket]
