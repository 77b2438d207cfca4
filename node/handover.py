"""Agent handover between nodes: the wire, the asking side and the accepting side.

A draining node (``node/drain.py``) asks another node to host one of its agents on
``<p>.handover.<target>`` (node-only: ``NODE_ONLY`` in ``node/auth/roles.py``; and a signed
act of a node). The request is ``{"phase": "check" | "start", "from_node": <id>, "spec":
HandoverSpec}``. ``check`` has no side effect: the target says whether it would host the
agent. ``start`` (sent once the source has stopped the agent, its in-flight work done):
the target claims the id in the registry from the draining node (``claims.claim(...,
handover_from=...)``), starts the agent under its supervisor as a dynamic child and
answers once its subscriptions are live (its registry record then names the target).

The target checks the spec exactly as its own config (``node.hosting.handover_child``:
``[hosting]`` allows the class, it imports and is an ``Agent``, the id is a token, the
kwargs pass the class's ``Settings``), refuses an id it already runs, takes over only
from a node whose heartbeat says it is draining, and refuses while it drains itself.
Every refusal is a structured error in the caller's encoding, counted in
``ba_handover_total{outcome="refused"}`` and ``ba_handover_refusals_total{reason}``;
the target keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from broker_agents import identity, transport
from broker_agents.codec import encode, is_json
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Role, Unauthorized
from broker_agents.core.tokens import TOKEN
from broker_agents.logging import get_logger
from broker_agents.ratelog import RateLimitedLog
from broker_agents.registry.claims import claim, release
from broker_agents.reply import respond
from broker_agents.requests import parse_body
from node.config import ConfigError
from node.hosting import HandoverSpec, handover_child
from node.supervisor import ChildStartError

M = TypeVar("M", bound=BaseModel)

if TYPE_CHECKING:
    from node.daemon import Node

COMPONENT = "handover"
MAX_REQUEST_BYTES = 256 * 1024
DRAINING_KEY = "draining"  # NodeRecord.metadata key a draining node's heartbeat carries

HANDOVERS = Counter("ba_handover_total", "Agent handovers, by outcome: moved / not_moved "
                    "(the draining node's side), accepted / refused (the new host's)",
                    ["outcome"])
REFUSALS = Counter("ba_handover_refusals_total", "Handover requests refused by this node, "
                   "by reason (error code)", ["reason"])
_log = RateLimitedLog(get_logger(component=COMPONENT))


class HandoverRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    phase: Literal["check", "start"]
    from_node: str = Field(pattern=TOKEN.pattern, max_length=128)
    spec: HandoverSpec


def parse(data: bytes, headers: Any, as_json: bool, model: type[M]) -> M:
    """A request body as ``model``, at most ``MAX_REQUEST_BYTES``; a structured error
    naming the first fault otherwise (``broker_agents.requests``)."""
    return parse_body(data, headers, as_json, model, MAX_REQUEST_BYTES)


def require_role(nc: Any, msg: Any, role: Role, what: str, component: str) -> None:
    """``msg`` is a signed act of ``role`` in its own name (unsigned passes only on an
    ``--insecure`` connection); refusals counted in ``ba_unauthorized_total``."""
    principal = identity.authenticate(nc, msg.subject, msg.data, msg.headers,
                                      component=component)
    if principal is None:
        if not identity.identity_of(nc).authenticator.required:
            return
        exc = Unauthorized("unsigned", f"{what} must be a signed act")
    elif principal.role is not role or principal.acting_for is not None:
        exc = Unauthorized(f"not_{role.value}", f"{what} is for the {role.value} role, not "
                           f"{principal.identity!r} ({principal.role})",
                           {"signer": principal.identity})
    else:
        return
    identity.refused(component, exc, what=what)
    raise exc


async def ask(nc: Any, subject: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """A signed request (``transport.request``); the answer, or its structured error raised."""
    try:
        return await transport.call(nc, subject, encode(body), timeout, what=subject)
    except BrokerError:
        raise
    except Exception as exc:  # no responders, a timeout
        raise BrokerError(ErrorCode.UNAVAILABLE, f"{subject}: no answer "
                          f"({type(exc).__name__})", {"subject": subject}) from None


class HandoverTarget:
    """Serves ``<p>.handover.<this node>``: takes agents over from draining nodes."""

    def __init__(self, node: Node, specs: dict[str, HandoverSpec],
                 draining: Any) -> None:
        self.node = node
        self.specs = specs  # shared with the drain service: what this node hosts
        self.draining = draining  # () -> bool
        self._lock = asyncio.Lock()
        self._sub: Any = None

    async def start(self) -> None:
        assert self.node.nc is not None
        self._sub = await self.node.nc.subscribe(self.node.subjects.handover(self.node.id),
                                                 cb=self._on_request)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_request(self, msg: Any) -> None:
        nc = self.node.nc
        as_json = is_json(msg.data, msg.headers)
        try:
            require_role(nc, msg, Role.NODE, "a handover request", COMPONENT)
            req: HandoverRequest = parse(msg.data, msg.headers, as_json, HandoverRequest)
            async with self._lock:
                reply = await self._serve(req)
            if req.phase == "start":
                HANDOVERS.labels("accepted").inc()
        except BrokerError as exc:
            HANDOVERS.labels("refused").inc()
            REFUSALS.labels(exc.code.value).inc()
            _log.warning(("refused", exc.code), "handover refused", code=exc.code.value,
                         error=exc.message[:200])
            reply = exc.to_payload()
        except Exception as exc:  # a bug or NATS trouble: answered, never a crash
            HANDOVERS.labels("refused").inc()
            REFUSALS.labels(ErrorCode.INTERNAL.value).inc()
            _log.error("internal", "handover failed", error=repr(exc)[:300])
            reply = BrokerError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"[:300]
                                ).to_payload()
        if msg.reply:
            await respond(nc, msg.reply, reply, as_json, component=COMPONENT)

    async def _serve(self, req: HandoverRequest) -> dict[str, Any]:
        node, spec = self.node, req.spec
        hosting = node.config.hosting
        if self.draining():
            raise BrokerError(ErrorCode.UNAVAILABLE, f"node {node.id} is draining")
        if not hosting.accept_handover:
            raise BrokerError(ErrorCode.REJECTED, f"node {node.id} takes no handover "
                              "([hosting] accept_handover = false)")
        sup = node.supervisor
        if sup is None:
            raise BrokerError(ErrorCode.UNAVAILABLE, f"node {node.id} is starting")
        if spec.agent_id in node.agents or sup.spec(spec.agent_id) is not None:
            raise BrokerError(ErrorCode.ALREADY_EXISTS, f"agent {spec.agent_id!r} runs on "
                              f"node {node.id} already", {"agent_id": spec.agent_id})
        if hosting.max_agents is not None and len(sup.specs) >= hosting.max_agents:
            raise BrokerError(ErrorCode.UNAVAILABLE, f"node {node.id} hosts "
                              f"{len(sup.specs)} agents ([hosting] max_agents)")
        try:
            child = handover_child(node.config, node.nc, node.service_map,  # type: ignore[arg-type]
                                   spec)
        except ConfigError as exc:
            raise BrokerError(ErrorCode.VALIDATION, exc.message, exc.details) from None
        registry = node.service_map.get("registry")
        if registry is None or getattr(registry, "registry", None) is None:
            raise BrokerError(ErrorCode.UNAVAILABLE, "no registry service on this node")
        store = registry.registry.store
        await _check_draining(store, req.from_node)
        if req.phase == "check":
            return {"node": node.id, "agent_id": spec.agent_id, "ok": True}
        won = await claim(store, spec.agent_id, spec.cls.rsplit(":", 1)[-1], node.id,
                          window=registry.settings.window, handover_from=req.from_node)
        if not won.won:
            raise won.error()
        try:
            await sup.add_child(child)
        except ChildStartError as exc:
            with contextlib.suppress(Exception):
                await release(store, won)
            raise BrokerError(ErrorCode.START_FAILED, exc.message, exc.details) from None
        self.specs[spec.agent_id] = spec
        await node.publish_event("handed_over", spec.agent_id, kind="agent",
                                 from_node=req.from_node, to_node=node.id)
        return {"node": node.id, "agent_id": spec.agent_id, "claim": won.outcome.value,
                "accepts_forwarded": True}  # drops second copies (broker_agents.handoff)


async def _check_draining(store: Any, from_node: str) -> None:
    """Agents are taken over only from a node whose heartbeat says it is draining."""
    try:
        found = await store.get_node(from_node)
    except BrokerError:
        found = None
    record = found[0] if found else None
    if record is None or not record.metadata.get(DRAINING_KEY):
        raise BrokerError(ErrorCode.REJECTED, f"node {from_node!r} is not draining",
                          {"from_node": from_node})
