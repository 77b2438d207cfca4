"""``broker-agents node drain <id>``: move a node's work away so it can stop with nothing lost.

The admin request ``<p>.admin.drain.<node>`` (``ADMIN_OPERATIONS`` in ``node/auth/roles.py``;
a signed act of an admin) is ``{"op": "drain" | "undrain" | "status", "timeout": <s>}``.
A drain, in this order:

1. **Stops new work.** The node is draining: ``/readyz`` says not ready with the reason
   ``draining``, its heartbeat record carries ``metadata.draining = true`` (written at
   once, so other nodes see it), it refuses agents handed over to it, and no other node
   picks it as a target. ``ba_node_draining`` is 1.
2. **Hands its agents over**, one at a time, each to a live, non-draining node that can
   host it (its ``[hosting]`` section; ``node/handover.py``), fewest agents first. The
   runtime subscribes an agent's inbox without a queue group, so two instances would
   both answer: the agent never runs in two places. The target is asked first whether it
   would host the spec (``check``); then the agent stops here, *parked*: in-flight
   requests finish and are answered, and its subscriptions stay, holding what arrives
   (so no server ever routes a request to a subscription that is gone, which would lose
   it). The target claims its id from this node and starts it (``start``); then this
   node forwards what it held, and for half a second what still arrives, and
   unsubscribes; the new host drops the second copy of a message that reached it both
   ways (``broker_agents.handoff``). A client sees a longer answer, never a lost or a
   doubled one; the time held is measured per agent in the report (``gaps_ms``). A
   target that fails the start: the agent starts here again, gets what was held, and is
   reported not moved, with why. The new host issues the agent's keys and certificates
   itself (agents get them from the node that runs them).
3. **Moves Raft leadership away**: each consensus group this node leads transfers it
   (``RaftMember.transfer_leadership``, TimeoutNow).

It answers a report: ``moved`` (id -> node), ``not_moved`` (id -> why), ``gaps_ms``,
``handoff`` (id -> ``forwarded``, or ``refused``: the new host, of an older version, does
not drop second copies, so what was held was answered ``unavailable``),
``leadership`` (group -> new leader), ``leadership_not_moved`` (group -> why) and
``ready_to_stop`` (nothing left here). ``undrain`` takes the node back into service: it
is ready again and takes handovers; agents already moved stay where they are.
Handed-over agents live on their new node until it stops (they are not written to its
config). Requests are counted in ``ba_drain_requests_total{op,outcome}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field

from broker_agents.codec import is_json
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Role, Unauthorized
from broker_agents.handoff import Parking
from broker_agents.logging import get_logger
from broker_agents.metrics import AGENTS_RUNNING
from broker_agents.ratelog import RateLimitedLog
from broker_agents.reply import respond
from node.handover import (
    DRAINING_KEY,
    HANDOVERS,
    HandoverTarget,
    ask,
    parse,
    require_role,
)
from node.hosting import AgentChild, HandoverSpec, handover_child, own_specs
from node.services import BaseService

if TYPE_CHECKING:
    from node.daemon import Node

COMPONENT = "drain"
MAX_TIMEOUT_S = 600.0
STEP_TIMEOUT_S = 10.0  # one handover check, at most
# A start is answered once the agent is live there, or failed after the target's own start
# timeout (ChildSpec.start_timeout, 10 s): wait longer than that, so a slow start is not
# taken for a failed one (the agent would then run on both nodes).
START_TIMEOUT_S = 15.0

DRAINING = Gauge("ba_node_draining", "1 while this node is draining (node drain)")
DRAIN_REQUESTS = Counter("ba_drain_requests_total", "Drain requests this node answered, by "
                         "op and outcome (ok or an error code)", ["op", "outcome"])
_log = RateLimitedLog(get_logger(component=COMPONENT))


class DrainRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Literal["drain", "undrain", "status"] = "drain"
    timeout: float = Field(60.0, gt=0, le=MAX_TIMEOUT_S)


class DrainService(BaseService):
    """The node's drain: answers ``<p>.admin.drain.<node>``, serves handovers to it."""

    name = "drain"

    def __init__(self) -> None:
        self.draining = False
        self.specs: dict[str, HandoverSpec] = {}  # what this node hosts, handed-over too
        self._lock = asyncio.Lock()
        self._sub: Any = None
        self.target: HandoverTarget | None = None

    async def start(self, node: Node) -> None:
        assert node.nc is not None
        self.node = node
        self.log = get_logger(node_id=node.id, component=COMPONENT)
        self.specs = own_specs(node.config)
        self.target = HandoverTarget(node, self.specs, lambda: self.draining)
        await self.target.start()
        self._sub = await node.nc.subscribe(node.subjects.admin("drain", node.id),
                                            cb=self._on_request)
        DRAINING.set(0)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self.target is not None:
            await self.target.stop()

    def unready(self) -> dict[str, str]:
        """``node.http.ReadinessSource``: a draining node takes no new work."""
        if not self.draining:
            return {}
        return {"draining": "the node is draining: its agents move to other nodes"}

    # -- the admin request -------------------------------------------------------------

    async def _on_request(self, msg: Any) -> None:
        nc = self.node.nc
        as_json = is_json(msg.data, msg.headers)
        op = "unknown"
        try:
            require_role(nc, msg, Role.ADMIN, "a drain request", COMPONENT)
            req: DrainRequest = parse(msg.data, msg.headers, as_json, DrainRequest)
            op = req.op
            async with self._lock:
                reply = await self._serve(req)
            DRAIN_REQUESTS.labels(op, "ok").inc()
        except BrokerError as exc:
            DRAIN_REQUESTS.labels(op, exc.code.value).inc()
            if not isinstance(exc, Unauthorized):
                _log.warning((op, exc.code), "drain request refused", op=op,
                             code=exc.code.value, error=exc.message[:200])
            reply = exc.to_payload()
        except Exception as exc:  # a bug or NATS trouble: answered, never a crash
            DRAIN_REQUESTS.labels(op, ErrorCode.INTERNAL.value).inc()
            _log.error((op, "internal"), "drain failed", op=op, error=repr(exc)[:300])
            reply = BrokerError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"[:300]
                                ).to_payload()
        if msg.reply:
            await respond(nc, msg.reply, reply, as_json, component=COMPONENT)

    async def _serve(self, req: DrainRequest) -> dict[str, Any]:
        if req.op == "undrain":
            await self._mark(False)
            return self._status()
        if req.op == "status":
            return self._status()
        return await self.drain(req.timeout)

    def _status(self) -> dict[str, Any]:
        sup = self.node.supervisor
        return {"node": self.node.id, "draining": self.draining,
                "agents": sup.order if sup else [],
                "leading": sorted(name for name, m in self._members().items()
                                  if getattr(m, "is_leader", False))}

    # -- the drain ---------------------------------------------------------------------

    async def drain(self, timeout: float) -> dict[str, Any]:
        """Stop new work, hand every agent over, move leadership away; the report."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        started = time.monotonic()
        await self._mark(True)
        moved: dict[str, str] = {}
        not_moved: dict[str, str] = {}
        gaps: dict[str, float] = {}
        handoff: dict[str, str] = {}  # what became of the messages each agent held
        given: dict[str, int] = {}
        releases: list[asyncio.Task[int]] = []  # parked agents forwarding to their new host
        sup = self.node.supervisor
        for agent_id in list(sup.order if sup else []):
            if loop.time() >= deadline:
                not_moved[agent_id] = f"the drain's timeout ({timeout}s) passed"
                continue
            target, why, gap, forward = await self._move(agent_id, deadline, given,
                                                          releases)
            if target is None:
                not_moved[agent_id] = why
                HANDOVERS.labels("not_moved").inc()
            else:
                moved[agent_id], gaps[agent_id] = target, round(gap * 1000, 2)
                handoff[agent_id] = "forwarded" if forward else "refused"
                given[target] = given.get(target, 0) + 1
                HANDOVERS.labels("moved").inc()
        for outcome in await asyncio.gather(*releases, return_exceptions=True):
            if isinstance(outcome, BaseException):  # each ends with its unsubscription
                self.log.error("forwarding held messages failed", error=repr(outcome))
        leaders, not_led = await self._move_leadership(deadline)
        report = {"node": self.node.id, "draining": True, "moved": moved,
                  "not_moved": not_moved, "gaps_ms": gaps, "handoff": handoff,
                  "leadership": leaders,
                  "leadership_not_moved": not_led,
                  "ready_to_stop": not not_moved and not not_led,
                  "elapsed_s": round(time.monotonic() - started, 3)}
        self.log.info("drained", moved=len(moved), not_moved=sorted(not_moved),
                      leadership=leaders, ready_to_stop=report["ready_to_stop"])
        return report

    async def _mark(self, draining: bool) -> None:
        """Say it (readiness, gauge) and write it in our heartbeat record now."""
        self.draining = draining
        DRAINING.set(1 if draining else 0)
        registry = self.node.service_map.get("registry")
        beater = getattr(registry, "heartbeater", None)
        if beater is None:
            return
        if draining:
            beater.metadata[DRAINING_KEY] = True
        else:
            beater.metadata.pop(DRAINING_KEY, None)
        await beater.beat()

    def _candidates(self, given: dict[str, int]) -> list[str]:
        """Live, non-draining other nodes, fewest agents first (counting those this drain
        gave them already: their heartbeats may not say so yet)."""
        registry = self.node.service_map.get("registry")
        nodes = getattr(registry, "nodes", None)
        if nodes is None:
            return []
        window = registry.settings.window  # type: ignore[union-attr]
        now = time.time()
        live = [(rec.agent_count + given.get(node_id, 0), node_id)
                for node_id, (rec, _) in nodes.nodes.items()
                if rec is not None and node_id != self.node.id and not rec.stopping
                and now - rec.last_heartbeat <= window and not rec.metadata.get(DRAINING_KEY)]
        return [node_id for _, node_id in sorted(live)]

    async def _move(self, agent_id: str, deadline: float, given: dict[str, int],
                    releases: list[asyncio.Task[int]]
                    ) -> tuple[str | None, str, float, bool]:
        """Hand one agent over: (target, "", gap, forwarded) or (None, why, 0, _). Its
        parked subscriptions' release (forwarding for a grace, or refusing what it held
        when the target does not drop second copies) is left running in ``releases``."""
        spec = self.specs.get(agent_id)
        if spec is None:
            return None, "no spec to hand over (not from the config nor a handover)", 0.0, False
        loop = asyncio.get_running_loop()
        refusals: dict[str, str] = {}
        body = {"from_node": self.node.id, "spec": spec.model_dump(by_alias=True,
                                                                   mode="json")}
        for target in self._candidates(given):
            step = min(STEP_TIMEOUT_S, deadline - loop.time())
            if step <= 0:
                break
            subject = self.node.subjects.handover(target)
            try:
                await ask(self.node.nc, subject, {"phase": "check", **body}, step)
            except BrokerError as exc:
                refusals[target] = f"{exc.code.value}: {exc.message}"
                continue
            began = time.monotonic()
            parking = await self._release_here(agent_id)
            forward = False  # a new host of an older version would handle both copies
            try:
                try:
                    started = await ask(self.node.nc, subject, {"phase": "start", **body},
                                        START_TIMEOUT_S)
                    forward = started.get("accepts_forwarded") is True
                except BrokerError as exc:
                    if await self._holder(agent_id) != target:  # it did not start there
                        refusals[target] = f"{exc.code.value}: {exc.message}"
                        forward = await self._restart_here(spec)
                        break
                    self.log.warning("handover answer lost; the registry names the target",
                                     agent_id=agent_id, target=target, error=exc.message)
                gap = time.monotonic() - began
            finally:  # the new host (or this one again) is live: what arrived goes to it
                if parking is not None:
                    releases.append(asyncio.create_task(parking.release(forward=forward)))
            self.specs.pop(agent_id, None)
            self.log.info("agent handed over", agent_id=agent_id, target=target,
                          gap_ms=round(gap * 1000, 2), held=parking.held if parking else 0,
                          forwarded=forward)
            return target, "", gap, forward
        why = "; ".join(f"{t}: {r}" for t, r in refusals.items()) or \
            "no live, non-draining node to host it"
        return None, why, 0.0, False

    async def _holder(self, agent_id: str) -> str | None:
        """The node the agents bucket names for ``agent_id`` now (a fresh read)."""
        registry = self.node.service_map.get("registry")
        with contextlib.suppress(Exception):
            found = await registry.registry.store.stored(agent_id)  # type: ignore[union-attr]
            if found is not None and found[0] is not None:
                return str(found[0].node_id)
        return None

    async def _release_here(self, agent_id: str) -> Parking | None:
        """Stop the agent here, parked: in-flight work finishes, its subscriptions stay and
        hold what arrives until the new host is live (``broker_agents.handoff``). Its
        registry record stays (the new host takes it over by compare-and-set)."""
        node, sup = self.node, self.node.supervisor
        assert sup is not None
        child = sup.child(agent_id)
        parking = child.park() if isinstance(child, AgentChild) else None
        if node.agents.pop(agent_id, None) is not None:
            AGENTS_RUNNING.dec()  # what hooks.stopping does; the record is not deleted
        await sup.remove_child(agent_id, notify=False)
        return parking

    async def _restart_here(self, spec: HandoverSpec) -> bool:
        """The target failed the start: run the agent here again (True if it runs)."""
        node, sup = self.node, self.node.supervisor
        assert sup is not None and node.nc is not None
        try:
            await sup.add_child(handover_child(node.config, node.nc, node.service_map,
                                               spec, check_class=False))
        except BrokerError as exc:
            self.specs.pop(spec.agent_id, None)
            self.log.error("agent could not start here again", agent_id=spec.agent_id,
                           error=exc.message)
            return False
        return True

    def _members(self) -> dict[str, Any]:
        consensus = self.node.service_map.get("consensus")
        return dict(getattr(consensus, "members", {}) or {})

    async def _move_leadership(self, deadline: float
                               ) -> tuple[dict[str, str], dict[str, str]]:
        loop = asyncio.get_running_loop()
        moved: dict[str, str] = {}
        failed: dict[str, str] = {}
        for group, member in self._members().items():
            if not getattr(member, "is_leader", False):
                continue
            left = deadline - loop.time()
            if left <= 0:
                failed[group] = "the drain's timeout passed"
                continue
            transfer = getattr(member, "transfer_leadership", None)
            if transfer is None:
                failed[group] = "this build's RaftMember cannot transfer leadership"
                continue
            try:
                moved[group] = await transfer(timeout=min(left, 5.0))
            except BrokerError as exc:
                failed[group] = f"{exc.code.value}: {exc.message}"
        return moved, failed


async def request_drain(nc: Any, subjects: Any, node_id: str, op: str = "drain",
                        timeout: float = 60.0) -> dict[str, Any]:
    """Send a drain request (a signed act on ``nc``: an admin's) and return the report;
    a refusal is raised as its structured error."""
    return await ask(nc, subjects.admin("drain", node_id), {"op": op, "timeout": timeout},
                     timeout + 5.0)
