"""Cost optimisation: spend as little as possible without letting the reward collapse.

Score = ``-cost - penalty * max(0, reward_floor - reward)``. Without a floor only cost
matters; with one, dropping below the floor costs ``penalty`` per unit of shortfall, so the
optimiser trades cost down until the floor binds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from broker_agents.core.variables.adaptation.feedback import Feedback, require


class CostObjective(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["cost"] = "cost"
    reward_floor: float | None = None
    penalty: float = Field(default=10.0, ge=0)

    def score(self, fb: Feedback) -> float:
        cost = require(fb, "cost", self.kind)
        if self.reward_floor is None:
            return -cost
        shortfall = max(0.0, self.reward_floor - require(fb, "reward", self.kind))
        return -cost - self.penalty * shortfall
