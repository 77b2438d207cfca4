"""The adaptation engine: feedback in, proposed values and an explanation out.

Pure and single-threaded; its clock is the number of feedback records seen. One
*iteration* runs the current centre perturbed both ways (two trials, see ``gradient.py``)
with the choice variables fixed to what their bandits picked for the iteration; when both
trials have ``samples_per_trial`` scores the engine takes one momentum step for the numeric
variables, credits the bandits with the iteration's mean score, and proposes the first
trial of the next iteration. A space without numeric variables runs one trial per
iteration. Trial points that would break a cross-variable constraint are redrawn (bounded);
a centre update that would break one is refused (momentum zeroed) and logged as
``bounds[name] = "rejected"``.

Frozen variables never change: they are left out of every proposal (``Proposal.values``) and
their committed value is used in every configuration the engine validates. The driver feeds
freezes and operator changes in with ``sync``.

An operator's set wins: a variable an operator set is *held*, treated as frozen, for
``operator_hold_s`` of the driver's clock (``now``, handed in); the first ``observe`` after
the hold ends restarts the iteration with it adapting again. With ``operator_hold_s = 0``
the engine adapts it again at once, and its explanation says why it overrides.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.variables.adaptation.bandit import Bandit
from broker_agents.core.variables.adaptation.feedback import Feedback
from broker_agents.core.variables.adaptation.gradient import GradientStep, SpsaOptimizer
from broker_agents.core.variables.adaptation.records import (
    Action,
    EngineConfig,
    EngineOutput,
    Explanation,
    Phase,
    Proposal,
)
from broker_agents.core.variables.errors import invalid
from broker_agents.core.variables.functions import DEFAULT_REGISTRY, FunctionRegistry, Scalar
from broker_agents.core.variables.space import Config, VariableSpace
from broker_agents.core.variables.types import (
    ChoiceVariable,
    FloatVariable,
    IntegerVariable,
)

Numeric = FloatVariable | IntegerVariable


class AdaptationEngine:
    def __init__(
        self, space: VariableSpace, current: Mapping[str, Scalar], rng: random.Random,
        config: EngineConfig | None = None, *, registry: FunctionRegistry = DEFAULT_REGISTRY,
        frozen: Iterable[str] = (),
    ) -> None:
        self.space = space
        self.config = config or EngineConfig()
        self.registry = registry
        self.rng = rng
        free = {v.name: v for v in space.free_variables}
        self.values: Config = space.validate_config(
            {n: v for n, v in current.items() if n in free}, registry
        )
        names = self.config.variables if self.config.variables is not None else list(free)
        for n in names:
            if n not in free:
                raise invalid(n, None, "adaptable",
                              f"{n}: not a free variable of space {space.name!r}")
        self._numeric: dict[str, Numeric] = {
            n: v for n in names if isinstance(v := free[n], FloatVariable | IntegerVariable)
            and v.max > v.min
        }
        self._choices: dict[str, ChoiceVariable] = {
            n: v for n in names if isinstance(v := free[n], ChoiceVariable) and len(v.options) > 1
        }
        self._bandits = {
            n: Bandit(len(v.options), self.config.bandit, exploration=self.config.exploration)
            for n, v in self._choices.items()
        }
        self.frozen: set[str] = set(frozen)
        self.holds: dict[str, float] = {}  # operator-set variable -> until (driver's clock)
        self.step = 0
        self.iteration = 0
        self.trial = 0
        self._opt = self._optimizer({})
        self._phase: Phase = "single"
        self._arms: dict[str, int] = {}
        self._probes: tuple[dict[str, float], dict[str, float]] = ({}, {})
        self._samples: list[float] = []
        self._scores: dict[str, float] = {}
        self._proposal: Proposal | None = None

    # -- public API ------------------------------------------------------------------------

    @property
    def proposal(self) -> Proposal | None:
        """The trial currently being measured."""
        return self._proposal

    def start(self) -> EngineOutput:
        """Begin adapting: the first trial to run."""
        return self._next_iteration("start", "first trial", {}, None)

    def observe(self, feedback: Feedback, *, now: float | None = None) -> EngineOutput:
        """Take one feedback record; maybe move on to a new trial. ``now`` (the driver's
        clock) ends operator holds that are over: the record then only restarts the
        iteration, with those variables adapting again (it measured a trial without them)."""
        self.step += 1
        ended = self._end_holds(now)
        if ended:
            return self._next_iteration("restart", f"operator hold on {', '.join(ended)} "
                                        "ended: adapting again", {}, None)
        if feedback.space != self.space.name:
            return self._ignore(f"feedback for space {feedback.space!r}")
        if self._proposal is None:
            held = f"; held for the operator: {', '.join(sorted(self.holds))}" \
                if self.holds else ""
            return self._ignore(f"no trial running (not started, or nothing to adapt){held}")
        if feedback.trial is not None and feedback.trial != self.trial:
            return self._ignore(f"stale: trial {feedback.trial}, current {self.trial}")
        try:
            score = self.config.objective.score(feedback)
        except BrokerError as exc:
            return self._ignore(exc.message)
        self._samples.append(score)
        if len(self._samples) < self.config.samples_per_trial:
            n, k = len(self._samples), self.config.samples_per_trial
            return EngineOutput(proposal=None, explanation=self._explain(
                "collected", f"{n} of {k} samples", score=score))
        y = sum(self._samples) / len(self._samples)
        self._samples = []
        self._scores[self._phase] = y
        if self._phase == "plus":
            self._phase = "minus"
            return EngineOutput(proposal=self._propose(self._probes[1]), explanation=self._explain(
                "probe", "plus trial measured; running minus trial", score=score))
        step = self._update()
        return self._next_iteration("update", "iteration complete", self._scores, step, score)

    def sync(
        self, values: Mapping[str, Scalar], frozen: Iterable[str], *, reset: bool = False,
        operator: Iterable[str] = (), now: float | None = None,
    ) -> EngineOutput | None:
        """Take in committed changes the engine did not make.

        Values of variables the engine does not currently adapt are always taken; with
        ``reset`` (an operator override) the adapted ones are too and momentum is forgotten.
        ``operator``: the variables an operator set; with ``now`` and a hold time each one
        the engine adapts is held until ``now + operator_hold_s`` (its value taken, the
        others keeping their momentum). A change of the frozen or held set or a reset
        restarts the iteration with a new trial.
        """
        frozen = set(frozen)
        held = self._hold(operator, now)
        reset = reset and not held
        adapted = self._active_numeric() | self._active_choices()
        for var in self.space.free_variables:
            n = var.name
            if n in values and (reset or n not in adapted or n in frozen or n in held):
                self.values[n] = values[n]
        self.values = self.space.validate_config(
            {v.name: self.values[v.name] for v in self.space.free_variables}, self.registry
        )
        if frozen == self.frozen and not reset and not held:
            return None
        self.frozen = frozen
        carry = {} if reset else dict(self._opt.centre)
        self._opt = self._optimizer(carry, keep=None if reset else self._opt)
        if held:
            until = max(self.holds[n] for n in held)
            reason = f"operator set {', '.join(held)}: held until {until:g}"
        elif reset and self.config.operator_hold_s == 0 and set(operator) & adapted:
            reason = "operator set adapted values; operator_hold_s = 0: adapting them again"
        else:
            reason = "frozen set or values changed"
        return self._next_iteration("restart", reason, {}, None)

    def _hold(self, operator: Iterable[str], now: float | None) -> list[str]:
        """Hold the adaptable variables in ``operator`` (a new set re-arms a hold)."""
        if now is None or self.config.operator_hold_s <= 0:
            return []
        adaptable = set(self._numeric) | set(self._choices)
        held = sorted(set(operator) & adaptable)
        for n in held:
            self.holds[n] = now + self.config.operator_hold_s
        return held

    def _end_holds(self, now: float | None) -> list[str]:
        """Drop the holds that are over at ``now``; the variables they released."""
        if now is None:
            return []
        ended = sorted(n for n, until in self.holds.items() if until <= now)
        for n in ended:
            del self.holds[n]
        if ended:
            carry = dict(self._opt.centre)
            self._opt = self._optimizer(carry, keep=self._opt)
        return ended

    def centre(self) -> Config:
        """The engine's current best configuration: the centre and each bandit's best arm."""
        return self._config(self._opt.centre, {n: b.best() for n, b in self._bandits.items()
                                               if n not in self._paused()}, check=False)

    # -- internals -------------------------------------------------------------------------

    def _paused(self) -> set[str]:
        """Variables the engine leaves alone now: frozen ones and operator-held ones."""
        return self.frozen | set(self.holds)

    def _active_numeric(self) -> set[str]:
        return {n for n in self._numeric if n not in self._paused()}

    def _active_choices(self) -> set[str]:
        return {n for n in self._choices if n not in self._paused()}

    def _optimizer(
        self, carry: Mapping[str, float], keep: SpsaOptimizer | None = None
    ) -> SpsaOptimizer:
        def snapper(var: Numeric) -> Any:
            return lambda u: var.to_unit(var.from_unit(u))

        active = {n: self._numeric[n] for n in sorted(self._active_numeric())}
        centre = {n: carry.get(n, v.to_unit(float(self.values[n]))) for n, v in active.items()}
        cfg = self.config
        opt = SpsaOptimizer(
            centre, learning_rate=cfg.learning_rate, momentum=cfg.momentum,
            perturbation=cfg.perturbation, bounds=cfg.bounds,
            snap={n: snapper(v) for n, v in active.items()},
            min_perturbation={n: v.unit_step() for n, v in active.items()},
        )
        if keep is not None:
            for n in centre:
                opt.g[n] = keep.g.get(n, 0.0)
                opt.v[n] = keep.v.get(n, 0.0)
        return opt

    def _config(
        self, units: Mapping[str, float], arms: Mapping[str, int], *, check: bool = True
    ) -> Config:
        values: dict[str, Scalar] = {v.name: self.values[v.name] for v in self.space.free_variables}
        for n, u in units.items():
            values[n] = self._numeric[n].from_unit(u)
        for n, i in arms.items():
            values[n] = self._choices[n].options[i]
        if not check:
            try:
                return self.space.validate_config(values, self.registry)
            except BrokerError:
                return values
        return self.space.validate_config(values, self.registry)

    def _valid(self, units: Mapping[str, float]) -> bool:
        try:
            self._config(units, self._arms)
        except BrokerError as exc:
            if exc.code != ErrorCode.VALIDATION:
                raise
            return False
        return True

    def _propose(self, units: Mapping[str, float]) -> Proposal:
        self.trial += 1
        config = self._config(units, self._arms)
        adapted = self._active_numeric() | set(self._arms)
        self._proposal = Proposal(
            space=self.space.name, trial=self.trial, iteration=self.iteration,
            phase=self._phase, values={n: config[n] for n in sorted(adapted)}, config=config,
        )
        return self._proposal

    def _pick_probes(self) -> tuple[dict[str, float], dict[str, float]]:
        centre = {n: self._opt.snap(n, u) for n, u in self._opt.centre.items()}
        for _ in range(self.config.max_probe_attempts):
            plus, minus = self._opt.probes(self._opt.draw(self.rng))
            if self._valid(plus) and self._valid(minus):
                return plus, minus
        return centre, centre  # no valid pair: both trials at the centre, gradient 0

    def _next_iteration(
        self, action: Action, reason: str, scores: Mapping[str, float],
        step: GradientStep | None, score: float | None = None,
    ) -> EngineOutput:
        # explain the iteration that just ended (the proposal names the one that starts)
        explanation = self._explain(action, reason, score=score, scores=dict(scores), step=step)
        explanation.centre_before = self._explain_centre(step.before if step else None)
        self.iteration += 1
        self._samples = []
        self._scores = {}
        self._arms = {n: self._bandits[n].select(self.rng) for n in sorted(self._active_choices())}
        if self._opt.centre:
            self._probes = self._pick_probes()
            self._phase = "plus"
            units = self._probes[0]
        else:
            self._phase = "single"
            units = {}
        if units or self._arms:
            proposal: Proposal | None = self._propose(units)
        else:  # everything frozen or fixed: nothing to try until ``sync`` changes that
            proposal = self._proposal = None
            explanation.reason = f"{reason}; nothing to adapt"
        return EngineOutput(proposal=proposal, explanation=explanation)

    def _update(self) -> GradientStep | None:
        mean = sum(self._scores.values()) / len(self._scores)
        for n, arm in self._arms.items():
            self._bandits[n].update(arm, mean)
        if not self._opt.centre:
            return None
        plus, minus = self._probes
        grad = self._opt.estimate(plus, minus, self._scores["plus"], self._scores["minus"])
        step = self._opt.step(grad)
        if not self._valid(step.after):  # the move breaks a cross-variable constraint
            self._opt.centre = dict(step.before)
            self._opt.v = dict.fromkeys(self._opt.v, 0.0)
            step = step.model_copy(update={
                "after": dict(step.before), "v": dict(self._opt.v),
                "bounds": {**step.bounds, **dict.fromkeys(step.before, "rejected")},
            })
        return step

    def _explain_centre(self, units: Mapping[str, float] | None) -> dict[str, Scalar]:
        units = self._opt.centre if units is None else units
        return {n: self._numeric[n].from_unit(u) for n, u in units.items()}

    def _explain(
        self, action: Action, reason: str, *, score: float | None = None,
        scores: dict[str, float] | None = None, step: GradientStep | None = None,
    ) -> Explanation:
        return Explanation(
            space=self.space.name, step=self.step, iteration=self.iteration,
            trial=self._proposal.trial if self._proposal else None, action=action,
            reason=reason, objective=self.config.objective.kind, score=score,
            scores=scores or {}, gradient=step.gradient if step else {},
            g=dict(self._opt.g), v=dict(self._opt.v),
            learning_rate=self.config.learning_rate, momentum=self.config.momentum,
            bounds=step.bounds if step else {},
            centre_before=self._explain_centre(None), centre_after=self._explain_centre(None),
            arms={n: self._choices[n].options[i] for n, i in self._arms.items()},
            bandits={n: b.stats() for n, b in self._bandits.items()},
            frozen=sorted(self.frozen), held=dict(sorted(self.holds.items())),
        )

    def _ignore(self, reason: str) -> EngineOutput:
        return EngineOutput(proposal=None, explanation=self._explain("ignored", reason))
