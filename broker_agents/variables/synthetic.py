"""An agent that runs with a space's current values and reports a synthetic objective.

For demos, tests and the benchmark: whenever its read model learns a new version of the
space it computes ``reward = -sum(weight * (value - optimum) ** 2) + gauss(0, noise)``
(numbers only; seeded noise) and reports it as feedback for that version, so the engine
can find the optimum end-to-end over NATS. ``latency``/``cost``/``quality`` can be derived
the same way for the other objectives (``metric`` picks which field carries the score;
``latency`` and ``cost`` report ``-score`` so that lower is better).

    kwargs = { space = "q", optimum = { x = 0.7, y = -0.3 }, noise = 0.02, seed = 1 }
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Literal

from pydantic import Field

from broker_agents.agent import Agent, AgentSettings
from broker_agents.core.errors import BrokerError
from broker_agents.variables.client import Variables
from broker_agents.variables.models import VariableChange
from broker_agents.variables.readmodel import ReadModel
from broker_agents.variables.tasks import cancel_all, own


class SyntheticObjectiveSettings(AgentSettings):
    space: str
    optimum: dict[str, float] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict, description="default 1.0 each")
    noise: float = Field(0.0, ge=0, description="standard deviation of the gaussian noise")
    metric: Literal["reward", "latency", "cost", "quality"] = "reward"
    max_reports: int | None = Field(None, ge=0)
    seed: int | None = None
    group: str = "variables"


class SyntheticObjectiveAgent(Agent):
    Settings = SyntheticObjectiveSettings

    def __init__(self, agent_id: str, **config: Any) -> None:
        super().__init__(agent_id, **config)
        settings = SyntheticObjectiveSettings.model_validate(config)
        self.space = settings.space
        self.optimum = settings.optimum
        self.weights = settings.weights
        self.noise = settings.noise
        self.metric = settings.metric
        self.max_reports = settings.max_reports
        self.group = settings.group
        self.rng = random.Random(settings.seed)
        self.reports = 0
        self._versions: asyncio.Queue[int] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.rm: ReadModel | None = None

    def score(self, values: dict[str, Any]) -> float:
        loss = sum(self.weights.get(n, 1.0) * (float(values[n]) - opt) ** 2
                   for n, opt in self.optimum.items())
        return -loss + self.rng.gauss(0.0, self.noise)

    async def on_start(self) -> None:
        self.vars = Variables(self.ctx.nc, self.group, self.ctx.subjects)
        self.rm = self.vars.read_model(spaces=[self.space])
        await self.rm.start()
        self.rm.listen(self._on_change)
        if self.space in self.rm.spaces():
            self._versions.put_nowait(self.rm.version(self.space))
        own(self.ctx, self._tasks, asyncio.get_running_loop().create_task(
            self._report(), name=f"synthetic-{self.agent_id}"))

    async def on_stop(self) -> None:
        await cancel_all(self._tasks)
        if self.rm is not None:
            await self.rm.stop()

    def _on_change(self, change: VariableChange) -> None:
        if change.space == self.space:
            self._versions.put_nowait(change.version)

    async def _report(self) -> None:
        assert self.rm is not None
        while self.max_reports is None or self.reports < self.max_reports:
            version = await self._versions.get()
            if version < self.rm.version(self.space):
                continue  # superseded before we ran with it
            again = True
            while again and (self.max_reports is None or self.reports < self.max_reports):
                held = self.rm.snapshot(self.space)
                score = self.score(held.values)
                metric: dict[str, Any] = {
                    self.metric: -score if self.metric in ("latency", "cost") else score}
                self.reports += 1
                try:
                    ack = await self.vars.feedback(self.space, version=held.version,
                                                   source=self.agent_id, **metric)
                except BrokerError as exc:  # no engine right now: the next version retries
                    self.ctx.log.info("variables.synthetic_feedback_failed", code=exc.code)
                    break
                again = ack is not None and ack.action == "collected"
