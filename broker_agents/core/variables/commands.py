"""Commands the variable state machine applies, and what applying one returns.

Commands travel through the consensus log, so they are pydantic models discriminated by
``op``. ``command_id`` (optional, recommended) makes a retried proposal harmless: the state
machine remembers the result of recent ids and returns it again instead of re-applying.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from broker_agents.core.variables.functions import Scalar
from broker_agents.core.variables.space import VariableSpace
from broker_agents.core.versioning import StrictVersionedModel


class _Command(StrictVersionedModel):
    """A client's command, replicated through Raft: an unknown field is refused (every
    replica refuses alike; a new field is used only behind a cluster-wide feature flag)."""

    model_config = ConfigDict(frozen=True)

    command_id: str | None = None
    actor: str | None = None  # who asked (operator, engine, agent id), kept in history


class DefineSpace(_Command):
    """Create a space, or redefine it keeping every current value the new definition accepts."""

    op: Literal["define_space"] = "define_space"
    space: VariableSpace


class SetValues(_Command):
    """Set free variables of a space; the merged configuration must validate as a whole.

    ``expected_version``, when given, must equal the space's current version (compare-and-set,
    so a stale adaptation proposal cannot overwrite a newer operator change).
    """

    op: Literal["set"] = "set"
    space: str
    values: dict[str, Scalar] = Field(min_length=1)
    expected_version: int | None = None
    reason: str = ""


class Freeze(_Command):
    op: Literal["freeze"] = "freeze"
    space: str
    variable: str


class Unfreeze(_Command):
    op: Literal["unfreeze"] = "unfreeze"
    space: str
    variable: str


Command = Annotated[DefineSpace | SetValues | Freeze | Unfreeze, Field(discriminator="op")]


class ApplyResult(BaseModel):
    """The outcome of one command. A rejected command changes nothing and carries ``error``
    (the ``{"code","message","details"}`` of a BrokerError), identically on every replica."""

    ok: bool
    version: int  # the state machine's version after the command
    space: str | None = None
    space_version: int | None = None
    changed: dict[str, Scalar] = Field(default_factory=dict)
    values: dict[str, Scalar] = Field(default_factory=dict)
    frozen: list[str] = Field(default_factory=list)
    error: dict[str, Any] | None = None
    duplicate: bool = False


class HistoryEntry(BaseModel):
    """One committed change of one variable."""

    version: int
    value: Scalar
    actor: str | None = None
    reason: str = ""


class VariableView(BaseModel):
    """What a reader sees for one variable."""

    space: str
    name: str
    value: Scalar
    version: int  # the state-machine version at which this value was set
    frozen: bool
