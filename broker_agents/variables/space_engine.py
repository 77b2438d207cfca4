"""One space's adaptation on the leader: the pure engine plus committing what it proposes.

The engine (``core.variables.adaptation``) decides; this class does the IO around it:
reads the committed values through the group when it becomes active, turns a proposal into
a ``SetValues`` with compare-and-set on the space version (so a stale proposal can never
overwrite an operator's newer change or a freeze), maps feedback to the engine's trial by
the space version the reporter ran with, takes in changes others commit, and logs, counts
and publishes every step's explanation.

State lives only in memory: a new leader rebuilds the engine from the committed values
(momentum and bandit statistics start afresh), which is safe because everything that
matters -- the values, their history, freezes -- is in the replicated state.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any, Protocol

from broker_agents.codec import encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.variables.adaptation import AdaptationEngine, EngineConfig, Feedback
from broker_agents.core.variables.adaptation.records import EngineOutput, Proposal
from broker_agents.core.variables.commands import SetValues
from broker_agents.core.variables.space import VariableSpace
from broker_agents.logging import get_logger
from broker_agents.subjects import Subjects
from broker_agents.variables import acts, metrics
from broker_agents.variables.models import FeedbackAck, FeedbackReport, SpaceValues, VariableChange

MAX_COMMIT_ATTEMPTS = 4
TRIALS_KEPT = 256


class Group(Protocol):
    """What a ``RaftMember`` offers (propose/read); a fake in tests."""

    async def propose(self, command: Any, request_id: str | None = None,
                      timeout: float = 5.0) -> Any: ...

    async def read(self, query: Any, timeout: float = 5.0) -> Any: ...


class SpaceEngine:
    def __init__(self, name: str, config: EngineConfig, rng: random.Random, *, nc: Any,
                 subjects: Subjects, actor: str, group: str = "variables",
                 propose_timeout: float = 2.0) -> None:
        """``actor``: the engine agent's id; its node signs the engine's proposals acting
        for it (``variables.acts``), so the history names the agent."""
        self.name, self.config, self.rng = name, config, rng
        self.nc, self.subjects, self.actor, self.group = nc, subjects, actor, group
        self.propose_timeout = propose_timeout
        self.engine: AdaptationEngine | None = None
        self.state: SpaceValues | None = None
        self.trials: dict[int, int] = {}  # space version -> the engine trial it runs
        self.log = get_logger(component="variables.engine", space=name, actor=actor)
        self._prefix = ""
        self._term = 0
        self._active = metrics.ENGINE_ACTIVE.labels(name)

    @property
    def active(self) -> bool:
        return self.engine is not None

    # -- activation ----------------------------------------------------------------------

    async def activate(self, group: Group, term: int) -> None:
        """Build the engine from the committed state and start it (no-op until defined)."""
        self._term = term
        self._prefix = f"{self.actor}:{term}:{uuid.uuid4().hex[:8]}:"
        try:
            definition = await group.read({"op": "space", "space": self.name})
            values = await group.read({"op": "values", "space": self.name})
        except BrokerError as exc:
            if exc.code != ErrorCode.NOT_FOUND:
                raise
            self.log.info("variables.engine_waiting", reason="space not defined yet")
            return
        self._build(VariableSpace.model_validate(definition["space"]),
                    SpaceValues.model_validate(values))
        await self._handle(group, self._engine().start())

    def _build(self, space: VariableSpace, state: SpaceValues) -> None:
        self.state = state
        self.trials = {}
        self.engine = AdaptationEngine(space, state.values, self.rng, self.config,
                                       frozen=state.frozen)
        self._active.set(1)
        self.log.info("variables.engine_active", version=state.version, values=state.values,
                      frozen=state.frozen)

    def deactivate(self) -> None:
        if self.engine is not None:
            self.log.info("variables.engine_standby")
        self.engine = None
        self.state = None
        self._active.set(0)

    def _engine(self) -> AdaptationEngine:
        if self.engine is None:
            raise BrokerError(ErrorCode.UNAVAILABLE, f"engine for {self.name!r} not active")
        return self.engine

    # -- inputs --------------------------------------------------------------------------

    async def feedback(self, group: Group, report: FeedbackReport) -> FeedbackAck:
        if self.engine is None:
            return FeedbackAck(space=self.name, action="ignored", reason="engine not active")
        started = time.perf_counter()
        trial = None if report.version is None else self.trials.get(report.version, -1)
        fb = Feedback(space=report.space, trial=trial, reward=report.reward,
                      latency=report.latency, cost=report.cost, quality=report.quality,
                      source=report.source)
        out = self.engine.observe(fb, now=time.monotonic())
        version = await self._handle(group, out)
        metrics.ENGINE_STEP.labels(self.name).observe(time.perf_counter() - started)
        ex = out.explanation
        return FeedbackAck(space=self.name, action=ex.action, reason=ex.reason,
                           trial=out.proposal.trial if out.proposal else ex.trial,
                           proposed=out.proposal.values if out.proposal else {},
                           version=version)

    def owns(self, change: VariableChange) -> bool:
        return bool(self._prefix) and (change.command_id or "").startswith(self._prefix)

    async def change(self, group: Group, change: VariableChange) -> None:
        """A change this member applied that this engine did not make."""
        if self.owns(change):
            return
        if change.op == "define_space":  # (re)defined: rebuild from the committed state
            await self.activate(group, self._term)
            return
        if self.engine is None or self.state is None or change.version <= self.state.version:
            return
        await self._take(group, change.as_values(), set(change.changed))

    async def _take(self, group: Group, new: SpaceValues, operator: set[str]) -> None:
        """Sync the engine with committed values someone else set."""
        out = self._sync(new, operator)
        if out is not None:
            await self._handle(group, out)

    def _sync(self, new: SpaceValues, operator: set[str] | None = None) -> EngineOutput | None:
        """Hand the engine committed values; ``operator``: the names someone else set (by
        default those that moved), which the engine holds (``operator_hold_s``)."""
        assert self.engine is not None and self.state is not None
        adapted = set(self.engine.proposal.values) if self.engine.proposal else set()
        moved = {n for n, v in new.values.items() if self.state.values.get(n) != v}
        self.state = new
        return self.engine.sync(new.values, new.frozen, reset=bool(moved & adapted),
                                operator=moved if operator is None else operator | moved,
                                now=time.monotonic())

    # -- outputs -------------------------------------------------------------------------

    async def _handle(self, group: Group, out: EngineOutput) -> int | None:
        """Record the step; commit its proposal. Returns the version it committed at."""
        await self._record(out)
        if out.proposal is None:
            return None
        return await self._commit(group, out.proposal)

    async def _record(self, out: EngineOutput) -> None:
        ex = out.explanation
        metrics.ADAPTATIONS.labels(self.name, ex.action).inc()
        self.log.info("variables.adaptation", action=ex.action, reason=ex.reason, step=ex.step,
                      iteration=ex.iteration, trial=ex.trial, score=ex.score,
                      scores=ex.scores, gradient=ex.gradient, centre=ex.centre_after,
                      bounds=ex.bounds, arms=ex.arms, frozen=ex.frozen,
                      proposal=out.proposal.values if out.proposal else None)
        if self.nc is not None:
            await self.nc.publish(self.subjects.adaptation_steps(self.name), encode(ex))

    async def _commit(self, group: Group, proposal: Proposal) -> int | None:
        for _ in range(MAX_COMMIT_ATTEMPTS):
            if self.engine is None or self.state is None:
                return None
            cmd = SetValues(
                space=self.name, values=proposal.values, expected_version=self.state.version,
                actor=self.actor, reason=f"adapt iteration {proposal.iteration} trial "
                f"{proposal.trial} ({proposal.phase})",
                command_id=f"{self._prefix}{proposal.trial}:{self.state.version}")
            try:
                res = await group.propose(acts.proposal(self.nc, self.group, cmd, self.actor),
                                          request_id=cmd.command_id,
                                          timeout=self.propose_timeout)
            except BrokerError as exc:
                if exc.code not in (ErrorCode.CONFLICT, ErrorCode.VALIDATION):
                    metrics.ENGINE_PROPOSALS.labels(self.name, exc.code).inc()
                    raise
                metrics.ENGINE_PROPOSALS.labels(self.name, exc.code).inc()
                self.log.info("variables.engine_proposal_refused", code=exc.code,
                              message=exc.message)
                current = SpaceValues.model_validate(
                    await group.read({"op": "values", "space": self.name}))
                out = self._sync(current)
                if out is not None:  # frozen set or adapted values moved: a new trial
                    await self._record(out)
                    if out.proposal is None:
                        return None
                    proposal = out.proposal
                continue
            metrics.ENGINE_PROPOSALS.labels(self.name, "committed").inc()
            self.state = SpaceValues(space=self.name, version=res["space_version"],
                                     values=res["values"], frozen=res["frozen"])
            self.trials[self.state.version] = proposal.trial
            while len(self.trials) > TRIALS_KEPT:
                del self.trials[next(iter(self.trials))]
            return self.state.version
        self.log.warning("variables.engine_gave_up", trial=proposal.trial)
        return None
