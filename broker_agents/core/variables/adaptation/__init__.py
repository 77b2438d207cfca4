"""Adaptation: feedback -> objective score -> SPSA/momentum for numbers, bandits for choices."""

from broker_agents.core.variables.adaptation.bandit import Bandit
from broker_agents.core.variables.adaptation.cost import CostObjective
from broker_agents.core.variables.adaptation.engine import AdaptationEngine
from broker_agents.core.variables.adaptation.feedback import Feedback, PerformanceObjective
from broker_agents.core.variables.adaptation.load import LoadObjective
from broker_agents.core.variables.adaptation.quality import QualityObjective
from broker_agents.core.variables.adaptation.records import (
    EngineConfig,
    EngineOutput,
    Explanation,
    Objective,
    Proposal,
)

__all__ = [
    "AdaptationEngine", "Bandit", "CostObjective", "EngineConfig", "EngineOutput",
    "Explanation", "Feedback", "LoadObjective", "Objective", "PerformanceObjective",
    "Proposal", "QualityObjective",
]
