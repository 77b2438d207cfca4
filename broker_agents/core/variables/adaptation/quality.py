"""Quality improvement: maximise ``quality``, optionally within a latency budget.

Score = ``quality - penalty * max(0, latency - latency_budget)``: better answers are worth
having only while they arrive in time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from broker_agents.core.variables.adaptation.feedback import Feedback, require


class QualityObjective(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["quality"] = "quality"
    latency_budget: float | None = Field(default=None, gt=0)
    penalty: float = Field(default=1.0, ge=0)

    def score(self, fb: Feedback) -> float:
        quality = require(fb, "quality", self.kind)
        if self.latency_budget is None:
            return quality
        over = max(0.0, require(fb, "latency", self.kind) - self.latency_budget)
        return quality - self.penalty * over
