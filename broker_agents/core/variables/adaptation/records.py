"""The engine's configuration and the records it hands out: proposals and explanations.

Every adaptation step produces an ``Explanation`` (the driver logs it and counts it by
``action``) and, when there is something new to run, a ``Proposal`` (the driver turns it into
a consensus ``SetValues`` command with ``proposal.command()``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from broker_agents.core.variables.adaptation.bandit import ArmStats, BanditAlgorithm
from broker_agents.core.variables.adaptation.bounds import BoundsMode
from broker_agents.core.variables.adaptation.cost import CostObjective
from broker_agents.core.variables.adaptation.feedback import PerformanceObjective
from broker_agents.core.variables.adaptation.load import LoadObjective
from broker_agents.core.variables.adaptation.quality import QualityObjective
from broker_agents.core.variables.commands import SetValues
from broker_agents.core.variables.functions import Scalar

Objective = Annotated[
    PerformanceObjective | CostObjective | LoadObjective | QualityObjective,
    Field(discriminator="kind"),
]
Action = Literal["start", "ignored", "collected", "probe", "update", "restart"]
Phase = Literal["plus", "minus", "single"]


class EngineConfig(BaseModel):
    """Serializable so an operator can send it; defaults suit unit-scaled variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: Objective = Field(default_factory=PerformanceObjective)
    learning_rate: float = Field(default=0.01, gt=0)
    momentum: float = Field(default=0.5, ge=0, lt=1)
    perturbation: float = Field(default=0.1, gt=0, le=0.5)  # SPSA half-width, unit coords
    bounds: BoundsMode = "clamp"
    samples_per_trial: int = Field(default=1, ge=1)  # feedback records averaged per trial
    bandit: BanditAlgorithm = "thompson"
    exploration: float = Field(default=1.4142, ge=0)  # UCB1's c
    variables: list[str] | None = None  # which free variables adapt; None = all
    max_probe_attempts: int = Field(default=8, ge=1)
    # an operator's set wins: the engine leaves each variable it set alone this long (in
    # the driver's seconds); 0: the engine adapts it again at once, and its explanation
    # says so
    operator_hold_s: float = Field(default=300.0, ge=0)


class Proposal(BaseModel):
    """Values to run next. ``values`` holds only the variables the engine adapts (frozen
    ones never appear); ``config`` is the whole validated configuration they produce."""

    space: str
    trial: int
    iteration: int
    phase: Phase
    values: dict[str, Scalar]
    config: dict[str, Scalar]

    def command(
        self, expected_version: int | None = None, actor: str = "adaptation-engine"
    ) -> SetValues:
        return SetValues(
            space=self.space, values=self.values, expected_version=expected_version,
            actor=actor, reason=f"adapt iteration {self.iteration} trial {self.trial} "
            f"({self.phase})", command_id=f"adapt:{self.space}:{self.trial}",
        )


class Explanation(BaseModel):
    """Why the engine did what it did at one step."""

    space: str
    step: int  # feedback records seen so far (the engine's clock)
    iteration: int
    trial: int | None
    action: Action
    reason: str
    objective: str
    score: float | None = None
    scores: dict[str, float] = Field(default_factory=dict)  # plus/minus/single averages
    gradient: dict[str, float] = Field(default_factory=dict)
    g: dict[str, float] = Field(default_factory=dict)
    v: dict[str, float] = Field(default_factory=dict)
    learning_rate: float
    momentum: float
    bounds: dict[str, str] = Field(default_factory=dict)
    centre_before: dict[str, Scalar] = Field(default_factory=dict)
    centre_after: dict[str, Scalar] = Field(default_factory=dict)
    arms: dict[str, Scalar] = Field(default_factory=dict)  # choice values this iteration
    bandits: dict[str, list[ArmStats]] = Field(default_factory=dict)
    frozen: list[str] = Field(default_factory=list)
    held: dict[str, float] = Field(default_factory=dict)  # operator-set variable -> until


class EngineOutput(BaseModel):
    proposal: Proposal | None
    explanation: Explanation
