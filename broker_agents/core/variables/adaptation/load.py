"""Load balancing: hold the load signal (reported ``latency``) at a target.

Too little load wastes capacity, too much queues work, so the score peaks at the target:
``-((latency - target) / target) ** 2``. A variable such as a batch size or a concurrency
limit then settles where the observed latency matches ``target_latency``; a choice variable
(e.g. which pool to route to) settles on the option whose latency is closest to it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from broker_agents.core.variables.adaptation.feedback import Feedback, require


class LoadObjective(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["load"] = "load"
    target_latency: float = Field(gt=0, allow_inf_nan=False)

    def score(self, fb: Feedback) -> float:
        latency = require(fb, "latency", self.kind)
        return -(((latency - self.target_latency) / self.target_latency) ** 2)
