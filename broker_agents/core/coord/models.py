"""Request and result models of every coordination protocol the core decides (exported as
JSON Schema): vote, hierarchical, barrier, ensemble, PBFT and the ``auto`` selector.

The cores compute these response models directly, so what the driver replies is what the
core decided. Every field has a description and constraints; a validation error names
the field (see ``parse_request``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from broker_agents.core.coord.answers import Answer, AnswerStatus, ParticipantAnswer
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.versioning import (
    OpenModel,
    StrictVersionedModel,
    VersionedModel,
    refusal,
)

__all__ = [
    "Aggregation",
    "Answer",
    "AnswerStatus",
    "AutoRequest",
    "BarrierRequest",
    "BarrierResult",
    "ClusterReport",
    "EnsembleRequest",
    "EnsembleResult",
    "FaultModel",
    "HierarchicalRequest",
    "HierarchicalResult",
    "LevelReport",
    "Member",
    "ParticipantAnswer",
    "ParticipantSelection",
    "Partition",
    "PbftReplicaResult",
    "PbftRequest",
    "PbftResult",
    "Prediction",
    "Selection",
    "VoteRequest",
    "VoteResult",
    "VoteRule",
    "VoteSpec",
    "WeightSource",
    "parse_request",
]

_ID = Field(min_length=1, max_length=256)


class VoteRule(StrEnum):
    MAJORITY = "majority"
    UNANIMOUS = "unanimous"
    QUORUM = "quorum"
    WEIGHTED = "weighted"


class WeightSource(StrEnum):
    EXPLICIT = "explicit"
    REPUTATION = "reputation"


class VoteSpec(StrictVersionedModel):
    """How answers become a decision.

    - majority: the winner holds more than half of the votes cast.
    - unanimous: every participant voted, all for the same option.
    - quorum: at least ``quorum`` of the participants (a fraction, or ``quorum_count``)
      cast a vote, and the winner holds more than half of the votes cast.
    - weighted: the winner holds more than ``threshold`` of the weight cast; weights are
      explicit (``weights``) or reputation scores the driver looks up (``weight_source``).
    """

    rule: VoteRule = Field(default=VoteRule.MAJORITY, description="decision rule")
    quorum: float = Field(
        default=2 / 3, gt=0, le=1,
        description="quorum rule: fraction of participants that must cast a vote",
    )
    quorum_count: int | None = Field(
        default=None, ge=1,
        description="quorum rule: absolute number of votes needed (overrides quorum)",
    )
    threshold: float = Field(
        default=0.5, ge=0.5, lt=1,
        description="weighted rule: the winner needs more than this share of weight cast",
    )
    weight_source: WeightSource = Field(
        default=WeightSource.EXPLICIT,
        description="weighted rule: explicit weights, or reputation scores from the registry",
    )
    weights: dict[str, float] | None = Field(
        default=None, description="weighted rule: participant id -> weight (>= 0)"
    )
    default_weight: float = Field(
        default=1.0, ge=0, description="weight of a participant missing from weights"
    )

    @model_validator(mode="after")
    def _weights_non_negative(self) -> VoteSpec:
        for pid, w in (self.weights or {}).items():
            if not w >= 0:
                raise ValueError(f"weights[{pid!r}] must be >= 0, got {w}")
        return self


class ParticipantSelection(StrictVersionedModel):
    """Who takes part: an explicit list, or every agent with a capability."""

    participants: list[str] | None = Field(
        default=None, min_length=1, max_length=10_000,
        description="agent ids to ask (or use capability)",
    )
    capability: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="ask every agent advertising this capability (or use participants)",
    )
    timeout_ms: int = Field(
        default=2000, ge=1, le=600_000, description="deadline for each participant's answer"
    )

    @model_validator(mode="after")
    def _one_selector(self) -> ParticipantSelection:
        if (self.participants is None) == (self.capability is None):
            raise ValueError("give exactly one of participants or capability")
        if self.participants is not None and len(set(self.participants)) != len(
            self.participants
        ):
            raise ValueError("participants must be distinct")
        return self


class VoteRequest(VoteSpec, ParticipantSelection):
    """``ba.coord.vote``: ask every participant to choose among options."""

    proposal: str = Field(min_length=1, max_length=4096, description="the question asked")
    options: list[str] | None = Field(
        default=None, min_length=1, max_length=256,
        description="allowed choices; an answer outside them is reported as an error",
    )


class VoteResult(VersionedModel):
    """The decision, and the work shown: tally, per-participant answers, rule outcome."""

    rule: VoteRule = Field(description="the rule applied")
    decision: str | None = Field(description="the winning option, or null if the rule failed")
    leading: str | None = Field(description="the option with most votes/weight (may not win)")
    rule_met: bool = Field(description="whether the rule's condition was satisfied")
    reason: str | None = Field(description="why the rule was not met, if it was not")
    tally: dict[str, float] = Field(description="option -> votes (or weight) received")
    confidence: float = Field(ge=0, le=1, description="winning (leading) share of votes cast")
    participants: int = Field(ge=0, description="number of participants asked")
    votes_cast: int = Field(ge=0, description="number of participants who chose an option")
    answers: list[ParticipantAnswer] = Field(description="every participant's answer")
    abstained: list[str] = Field(description="participants who abstained")
    timed_out: list[str] = Field(description="participants who did not answer in time")
    errored: list[str] = Field(description="participants whose answer was an error")


class Partition(StrEnum):
    RANDOM = "random"
    NODE = "node"
    CAPABILITY = "capability"


class Member(OpenModel):
    """A participant with what partitioning may group by."""

    model_config = ConfigDict(frozen=True)

    id: str = _ID
    node: str | None = Field(default=None, description="node hosting the agent")
    capabilities: tuple[str, ...] = Field(default=(), description="agent capabilities")


class HierarchicalRequest(VoteSpec, ParticipantSelection):
    """``ba.coord.hierarchical``: clusters decide, delegates carry results upward."""

    proposal: str = Field(min_length=1, max_length=4096, description="the question asked")
    options: list[str] | None = Field(
        default=None, min_length=1, max_length=256, description="allowed choices"
    )
    cluster_size: int = Field(default=5, ge=2, le=1000, description="members per cluster")
    max_depth: int = Field(default=3, ge=1, le=16, description="maximum number of levels")
    partition: Partition = Field(default=Partition.RANDOM, description="how to form clusters")


class ClusterReport(OpenModel):
    cluster_id: str = Field(description="'L<level>C<index>'")
    members: list[str] = Field(description="who was in the cluster")
    delegate: str | None = Field(description="member carrying the decision upward")
    decision: str | None = Field(description="the cluster's decision")
    result: VoteResult = Field(description="the cluster's full vote result")


class LevelReport(OpenModel):
    level: int = Field(ge=0)
    clusters: list[ClusterReport]


class HierarchicalResult(VersionedModel):
    decision: str | None = Field(description="the top cluster's decision")
    rule_met: bool = Field(description="whether the top cluster met the rule")
    reason: str | None = Field(description="why there is no decision, if there is none")
    depth: int = Field(ge=1, description="number of levels used")
    levels: list[LevelReport] = Field(description="the tree, bottom level first")


class BarrierRequest(StrictVersionedModel):
    """``ba.coord.barrier``: wait until every named participant has arrived."""

    barrier_id: str = Field(min_length=1, max_length=256, description="barrier name")
    participants: list[str] = Field(
        min_length=1, max_length=10_000, description="who must arrive before release"
    )
    timeout_ms: int = Field(default=10_000, ge=1, le=3_600_000, description="release deadline")


class BarrierResult(VersionedModel):
    barrier_id: str
    released: bool = Field(description="true when everyone arrived before the deadline")
    arrived: list[str] = Field(description="participants that arrived, in arrival order")
    missing: list[str] = Field(description="participants that never arrived")
    error: dict[str, object] | None = Field(
        default=None, description="the timeout error payload when not everyone arrived"
    )


class Aggregation(StrEnum):
    MAJORITY = "majority"
    MEAN = "mean"
    WEIGHTED_MEAN = "weighted_mean"


class EnsembleRequest(ParticipantSelection):
    """``ba.coord.ensemble``: ask each participant for a prediction and aggregate."""

    question: str = Field(min_length=1, max_length=4096, description="what to predict")
    aggregation: Aggregation = Field(
        default=Aggregation.MAJORITY, description="majority (labels), mean or weighted_mean"
    )
    weight_source: WeightSource = Field(
        default=WeightSource.EXPLICIT, description="weighted_mean: explicit or reputation"
    )
    weights: dict[str, float] | None = Field(
        default=None, description="weighted_mean: participant id -> weight (>= 0)"
    )
    outlier_threshold: float = Field(
        default=3.5, gt=0, description="modified z-score above which a value is an outlier"
    )
    exclude_outliers: bool = Field(
        default=False, description="aggregate numbers without the outliers"
    )


class Prediction(OpenModel):
    """One participant's prediction: a label or a number, or why there is none."""

    participant: str
    label: str | None = Field(default=None, max_length=256)
    value: float | None = Field(default=None, allow_inf_nan=False)
    status: str = Field(default="ok", description="ok, abstain, timeout or error")
    error: str | None = None


class EnsembleResult(VersionedModel):
    aggregation: Aggregation
    result: str | float | None = Field(description="the aggregate label or number")
    agreement: float = Field(
        ge=0, le=1, description="labels: winning share; numbers: share of non-outliers"
    )
    outliers: list[str] = Field(description="participants whose prediction is an outlier")
    used: int = Field(ge=0, description="predictions aggregated")
    predictions: list[Prediction] = Field(description="every participant's prediction")
    missing: list[str] = Field(description="participants without a usable prediction")
    reason: str | None = Field(default=None, description="why there is no result, if none")


class FaultModel(StrEnum):
    CRASH = "crash"
    BYZANTINE = "byzantine"


class PbftRequest(ParticipantSelection):
    """``ba.coord.pbft``: order one value among replicas, tolerating f Byzantine ones."""

    operation: str = Field(min_length=1, max_length=65_536, description="the value to agree on")
    f: int | None = Field(
        default=None, ge=1, le=100, description="faults tolerated (default: (n - 1) // 3)"
    )


class PbftReplicaResult(OpenModel):
    replica: str
    decided: bool
    seq: int | None = None
    operation: str | None = None


class PbftResult(VersionedModel):
    decided: bool = Field(description="f+1 matching replies were received")
    seq: int | None = Field(description="sequence the value was decided at")
    operation: str | None = Field(description="the decided value")
    f: int = Field(ge=1)
    n: int = Field(ge=4)
    view: int = Field(ge=0, description="highest view reported")
    replicas: list[PbftReplicaResult] = Field(description="each replica's decided value")


class AutoRequest(ParticipantSelection):
    """``ba.coord.auto``: let the selector pick the protocol."""

    proposal: str = Field(min_length=1, max_length=4096, description="the question asked")
    options: list[str] | None = Field(default=None, min_length=1, max_length=256)
    fault_model: FaultModel = Field(default=FaultModel.CRASH, description="crash or byzantine")
    group_size: int | None = Field(
        default=None, ge=1, description="participants (defaults to len(participants))"
    )
    latency_budget_ms: float | None = Field(
        default=None, gt=0, description="how long the caller can wait"
    )
    rule: VoteRule = Field(default=VoteRule.MAJORITY, description="rule for voting protocols")

    @model_validator(mode="after")
    def _size_known(self) -> AutoRequest:
        if self.group_size is None and self.participants is None:
            raise ValueError("group_size is required when selecting by capability")
        return self


class Selection(VersionedModel):
    protocol: str = Field(description="vote, hierarchical or pbft")
    reason: str = Field(description="why this protocol was picked")
    params: dict[str, object] = Field(default_factory=dict, description="chosen settings")


M = TypeVar("M", bound=BaseModel)


def parse_request(model: type[M], payload: Any) -> M:
    """Validate a decoded request; a failure is a ``validation_error`` naming each field."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        newer = refusal(exc)
        if newer is not None:
            raise newer from None
        fields = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "<request>"
            fields.append({"field": loc, "message": err["msg"]})
        names = ", ".join(f["field"] for f in fields)
        raise BrokerError(
            ErrorCode.VALIDATION, f"invalid {model.__name__}: {names}", {"fields": fields}
        ) from None
