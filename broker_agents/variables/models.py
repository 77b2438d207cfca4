"""Wire models of the variables IO layer: change events, space values, feedback.

A ``VariableChange`` carries the *whole* committed configuration of its space at
``version`` (the space's version), not a delta, so a reader that missed events is repaired
by the next one it sees, and applying an event is idempotent: keep it if its version is
newer than what you hold, drop it otherwise.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from broker_agents.core.variables.functions import Scalar
from broker_agents.core.versioning import StrictVersionedModel, VersionedModel

ChangeOp = Literal["define_space", "set", "freeze", "unfreeze", "snapshot"]


class SpaceValues(VersionedModel):
    """A space's committed values at one version."""

    space: str
    version: int
    values: dict[str, Scalar]
    frozen: list[str] = Field(default_factory=list)


class VariableChange(SpaceValues):
    """Published on ``<p>.events.variables.<space>`` by every member after applying."""

    message_type: ClassVar[str] = "variable_change"

    op: ChangeOp
    sm_version: int
    changed: dict[str, Scalar] = Field(default_factory=dict)
    actor: str | None = None
    reason: str = ""
    command_id: str | None = None
    member: str | None = None  # the member that published it (set by the publisher)

    def as_values(self) -> SpaceValues:
        return SpaceValues(space=self.space, version=self.version, values=self.values,
                           frozen=self.frozen)


class FeedbackReport(StrictVersionedModel):
    """What an agent observed while running with a space's values.

    ``version`` is the space version whose values the reporter ran with (from its read
    model); the engine maps it to its trial and ignores feedback for superseded versions.
    Without a version the feedback counts for the trial running now.
    """

    message_type: ClassVar[str] = "variable_feedback"

    space: str
    version: int | None = None
    reward: float | None = Field(default=None, allow_inf_nan=False)
    latency: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    quality: float | None = Field(default=None, allow_inf_nan=False)
    source: str | None = None


class FeedbackAck(VersionedModel):
    """The engine's answer to a feedback request (only the active engine answers)."""

    space: str
    action: str  # the Explanation's action: collected, probe, update, ignored, ...
    reason: str = ""
    trial: int | None = None
    proposed: dict[str, Scalar] = Field(default_factory=dict)
    version: int | None = None  # the space version the proposal committed at

