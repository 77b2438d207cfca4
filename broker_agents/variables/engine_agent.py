"""AdaptationEngineAgent: adapts spaces where the variables group's leader is.

Deploy one instance on every member node of the group (a standby on each follower). Only
the instance whose node's member leads acts: it reads the committed values, runs the
engine, and commits proposals; the others stand by and take over on failover, rebuilding
the engine from the committed values. Every instance also publishes its member's applied
changes (``ChangePublisher``), so change events keep flowing whichever member survives.

    [[agents]]
    class = "broker_agents.variables.engine_agent:AdaptationEngineAgent"
    id = "var-engine-1"            # unique per node
    kwargs = { group = "variables", seed = 7,
               spaces = { llm = { learning_rate = 0.01, samples_per_trial = 2 } } }

Feedback arrives on ``<p>.variables.<space>.feedback`` (a ``FeedbackReport``; request/reply
gets a ``FeedbackAck`` from the active engine -- standbys stay silent -- or plain publish).
Everything the agent does to one space happens on one worker task, in arrival order.

An operator's set wins: the engine leaves each variable someone else set alone for
``operator_hold_s`` (per space in its config, or for all spaces in the agent's kwargs;
0 adapts it again at once), decided by the pure engine (``AdaptationEngine.sync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any, NamedTuple

from pydantic import Field, ValidationError

from broker_agents import identity
from broker_agents.agent import Agent, AgentSettings
from broker_agents.codec import decode, is_json
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.identity import Unauthorized, bind
from broker_agents.core.variables.adaptation import EngineConfig
from broker_agents.logging import get_logger
from broker_agents.metrics import MALFORMED
from broker_agents.raft.driver import RaftMember
from broker_agents.ratelog import RateLimitedLog
from broker_agents.reply import respond
from broker_agents.variables.models import FeedbackReport, VariableChange
from broker_agents.variables.publisher import ChangePublisher
from broker_agents.variables.raft_adapter import VariablesRaftAdapter
from broker_agents.variables.space_engine import SpaceEngine
from broker_agents.variables.tasks import cancel_all, own

Work = tuple[str, Any, Any]
FEEDBACK = "variables.feedback"  # the component refusals of feedback are counted under
_refusals = RateLimitedLog(get_logger(component="variables.engine_agent"))


class Asker(NamedTuple):
    """Where a feedback request wants its answer, and in which encoding."""

    reply: str | None
    as_json: bool


def _feedback_report(payload: Any) -> FeedbackReport:
    try:
        return FeedbackReport.model_validate(payload)
    except ValidationError as exc:
        fields = [".".join(str(p) for p in e["loc"]) or "<request>" for e in exc.errors()]
        raise BrokerError(ErrorCode.VALIDATION, f"invalid feedback: {', '.join(fields)}", {
            "errors": exc.errors(include_url=False, include_context=False,
                                 include_input=False)}) from None


def _with_hold(config: EngineConfig, hold_s: float | None) -> EngineConfig:
    """The agent's ``operator_hold_s`` for a space whose own config does not set one."""
    if hold_s is None or "operator_hold_s" in config.model_fields_set:
        return config
    return config.model_copy(update={"operator_hold_s": hold_s})


class AdaptationEngineSettings(AgentSettings):
    group: str = Field("variables", description="the consensus group running the variables")
    spaces: dict[str, EngineConfig | None] | list[str] = Field(
        default_factory=dict, description="space -> engine config (a list: defaults)")
    seed: int | None = None
    publish_changes: bool = True
    leader_check_ms: float = Field(10.0, gt=0)
    operator_hold_s: float | None = Field(
        None, ge=0, description="seconds the engine leaves a variable an operator set alone, "
        "for every space whose config does not say (default: EngineConfig's)")


class AdaptationEngineAgent(Agent):
    capabilities = ["variables-engine"]
    Settings = AdaptationEngineSettings

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        settings = AdaptationEngineSettings.model_validate(config)
        self.group_name = settings.group
        spaces = settings.spaces
        if isinstance(spaces, list):
            spaces = dict.fromkeys(spaces)
        self.engine_configs = {n: _with_hold(c or EngineConfig(), settings.operator_hold_s)
                               for n, c in spaces.items()}
        self.seed = settings.seed
        self.publish_changes = settings.publish_changes
        self.leader_check_s = settings.leader_check_ms / 1000.0
        self.engines: dict[str, SpaceEngine] = {}
        self.leading = False
        self._queue: asyncio.Queue[Work] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self.publisher: ChangePublisher | None = None
        self.member: RaftMember | None = None
        self.sm: VariablesRaftAdapter | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def on_start(self) -> None:
        consensus = self.ctx.services.get("consensus")
        if consensus is None:
            raise RuntimeError("AdaptationEngineAgent needs the consensus node service")
        member = consensus.group(self.group_name)
        if not isinstance(member.sm, VariablesRaftAdapter):
            raise RuntimeError(f"group {self.group_name!r} does not run the variables "
                               f"state machine (state_machine = \"variables\")")
        self.member = member
        self.sm = member.sm
        nc, s = self.ctx.nc, self.ctx.subjects
        if self.publish_changes:
            self.publisher = ChangePublisher(nc, member.sm, s, member_id=member.id)
            await self.publisher.start()
            self._own(self.publisher.task)
        rng = random.Random(self.seed)
        for name, cfg in self.engine_configs.items():
            self.engines[name] = SpaceEngine(
                name, cfg, random.Random(rng.random()), nc=nc, subjects=s,
                actor=self.agent_id, group=self.group_name)
            self._subs.append(await nc.subscribe(s.variable_feedback(name), cb=self._on_feedback))
        member.sm.add_listener(self._on_change)
        self._own(asyncio.get_running_loop().create_task(self._work(), name="var-engine-work"))
        self._own(asyncio.get_running_loop().create_task(self._watch_leader(),
                                                         name="var-engine-leader"))
        self.ctx.log.info("variables.engine_agent_started", group=self.group_name,
                          spaces=sorted(self.engines), member=member.id)

    async def on_stop(self) -> None:
        if self.sm is not None:
            self.sm.remove_listener(self._on_change)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await cancel_all(self._tasks)
        if self.publisher is not None:
            await self.publisher.stop()
        for engine in self.engines.values():
            engine.deactivate()

    def _own(self, task: asyncio.Task[None] | None) -> None:
        own(self.ctx, self._tasks, task)

    # -- inputs (NATS callbacks and the state machine's listener only queue work) ---------

    def _on_change(self, change: VariableChange) -> None:
        if self.leading and change.space in self.engines:
            self._queue.put_nowait(("change", change, None))

    async def _on_feedback(self, msg: Any) -> None:
        if not self.leading:
            return  # standbys stay silent: the active engine answers
        asker = Asker(msg.reply, is_json(msg.data, msg.headers))
        try:
            report = _feedback_report(decode(msg.data, msg.headers))
        except BrokerError as exc:  # too deep, a bad header, undecodable, invalid
            MALFORMED.labels(self.agent_id, exc.code).inc()
            _refusals.info((self.agent_id, exc.code), "variables.feedback_refused",
                           agent=self.agent_id, code=exc.code, error=exc.message[:200])
            await self._answer(asker, exc.to_payload())
            return
        try:
            report = self._sourced(report, msg)
        except Unauthorized as exc:  # counted and logged by identity.refused
            await self._answer(asker, exc.to_payload())
            return
        self._queue.put_nowait(("feedback", report, asker))

    def _sourced(self, report: FeedbackReport, msg: Any) -> FeedbackReport:
        """The report with its ``source`` bound to its signer. Unsigned reports are
        anonymous (anyone may report feedback); naming a source takes a signature,
        except on ``--insecure`` connections, where the claim is kept."""
        nc = self.ctx.nc
        principal = identity.authenticate(nc, msg.subject, msg.data, msg.headers,
                                          component=FEEDBACK)
        required = identity.identity_of(nc).authenticator.required
        try:
            source = bind(principal, report.source, "source",
                          required=required and report.source is not None)
        except Unauthorized as exc:
            identity.refused(FEEDBACK, exc, subject=msg.subject)
            raise
        return report if source == report.source else report.model_copy(
            update={"source": source})

    async def _answer(self, asker: Asker, payload: Any) -> None:
        await respond(self.ctx.nc, asker.reply, payload, asker.as_json, component=self.agent_id)

    async def _watch_leader(self) -> None:
        assert self.member is not None
        while True:
            try:
                leading = self.member.is_leader
            except BrokerError:
                leading = False
            if leading != self.leading:
                self.leading = leading
                self._queue.put_nowait(("leader", leading, self.member.term))
            await asyncio.sleep(self.leader_check_s)  # sleep-ok: the member has no role callback

    # -- the worker ----------------------------------------------------------------------

    async def _work(self) -> None:
        assert self.member is not None
        member = self.member
        while True:
            kind, item, extra = await self._queue.get()
            try:
                if kind == "leader":
                    await self._leadership(bool(item), int(extra))
                elif kind == "change":
                    await self.engines[item.space].change(member, item)
                elif kind == "feedback":
                    await self._feedback(item, extra)
            except BrokerError as exc:  # lost leadership mid-commit, timeouts: keep going
                self.ctx.log.warning("variables.engine_step_failed", kind=kind,
                                     code=exc.code, error=exc.message)
                if kind == "feedback":
                    await self._answer(extra, exc.to_payload())

    async def _leadership(self, leading: bool, term: int) -> None:
        assert self.member is not None
        for engine in self.engines.values():
            if leading and self.leading:
                await engine.activate(self.member, term)
            else:
                engine.deactivate()
        self.ctx.log.info("variables.engine_role", leading=leading, term=term)

    async def _feedback(self, report: FeedbackReport, asker: Asker) -> None:
        assert self.member is not None
        engine = self.engines.get(report.space)
        if engine is None:
            raise BrokerError(ErrorCode.NOT_FOUND, f"no engine adapts space {report.space!r} "
                              f"here", {"space": report.space, "known": sorted(self.engines)})
        if not self.leading:
            raise BrokerError(ErrorCode.NOT_LEADER, "this engine stopped adapting (its member "
                              "no longer leads); retry", {"space": report.space})
        await self._answer(asker, await engine.feedback(self.member, report))
