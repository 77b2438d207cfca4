"""Feedback that agents report about a variable space, and the objectives that score it.

An objective turns one feedback record into a single number to *maximise*; the numeric
optimiser (``gradient.py``) and the bandits (``bandit.py``) only ever see that number. The
four documented strategies are four objectives:

- ``performance`` (here): maximise ``reward`` (optionally minus a latency penalty);
- ``cost`` (``cost.py``): minimise ``cost``, keeping ``reward`` above an optional floor;
- ``load`` (``load.py``): steer ``latency`` (the load signal) to a target;
- ``quality`` (``quality.py``): maximise ``quality`` within an optional latency budget.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from broker_agents.core.errors import BrokerError, ErrorCode

Metric = Literal["reward", "latency", "cost", "quality"]


class Feedback(BaseModel):
    """What one agent observed while running with a proposal's values.

    ``trial`` is the proposal's trial number; feedback for another trial is ignored as stale.
    ``None`` attributes the feedback to the current trial (only safe when the driver knows
    the reporter ran with the current values).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    space: str
    trial: int | None = None
    reward: float | None = Field(default=None, allow_inf_nan=False)
    latency: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    quality: float | None = Field(default=None, allow_inf_nan=False)
    source: str | None = None  # the reporting agent, for the log


def require(feedback: Feedback, metric: Metric, objective: str) -> float:
    """The metric's value, or a VALIDATION error naming what the objective needs."""
    value = getattr(feedback, metric)
    if value is None or not math.isfinite(value):
        raise BrokerError(
            ErrorCode.VALIDATION,
            f"the {objective} objective needs feedback field {metric!r}",
            {"variable": metric, "value": value, "constraint": f"required by {objective}"},
        )
    return float(value)


class PerformanceObjective(BaseModel):
    """Maximise ``reward - latency_weight * latency`` (latency only read when weighted)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["performance"] = "performance"
    latency_weight: float = Field(default=0.0, ge=0)

    def score(self, fb: Feedback) -> float:
        reward = require(fb, "reward", self.kind)
        if self.latency_weight == 0:
            return reward
        return reward - self.latency_weight * require(fb, "latency", self.kind)
