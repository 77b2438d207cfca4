"""Cluster-wide adaptive variables: pure cores (types, spaces, state machine, adaptation).

The IO driver runs ``VariableStateMachine`` inside a consensus group and an
``AdaptationEngine`` next to the group's leader; nothing in this package does IO.
"""

from broker_agents.core.variables.commands import (
    ApplyResult,
    Command,
    DefineSpace,
    Freeze,
    HistoryEntry,
    SetValues,
    Unfreeze,
    VariableView,
)
from broker_agents.core.variables.constraints import Constraint
from broker_agents.core.variables.functions import FunctionRegistry, Scalar
from broker_agents.core.variables.space import Dimensions, VariableSpace
from broker_agents.core.variables.statemachine import VariableStateMachine
from broker_agents.core.variables.types import (
    ChoiceVariable,
    CompositeVariable,
    FloatVariable,
    IntegerVariable,
    Variable,
)

__all__ = [
    "ApplyResult", "ChoiceVariable", "Command", "CompositeVariable", "Constraint", "DefineSpace",
    "Dimensions", "FloatVariable", "Freeze", "FunctionRegistry", "HistoryEntry",
    "IntegerVariable", "Scalar", "SetValues", "Unfreeze", "Variable", "VariableSpace",
    "VariableStateMachine", "VariableView",
]
