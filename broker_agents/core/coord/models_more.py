"""Request/response models for barrier, ensemble, PBFT and the ``auto`` selector."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from broker_agents.core.coord.models import ParticipantSelection, VoteRule, WeightSource


class BarrierRequest(BaseModel):
    """``ba.coord.barrier``: wait until every named participant has arrived."""

    barrier_id: str = Field(min_length=1, max_length=256, description="barrier name")
    participants: list[str] = Field(
        min_length=1, max_length=10_000, description="who must arrive before release"
    )
    timeout_ms: int = Field(default=10_000, ge=1, le=3_600_000, description="release deadline")


class BarrierResult(BaseModel):
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


class Prediction(BaseModel):
    """One participant's prediction: a label or a number, or why there is none."""

    participant: str
    label: str | None = Field(default=None, max_length=256)
    value: float | None = Field(default=None, allow_inf_nan=False)
    status: str = Field(default="ok", description="ok, abstain, timeout or error")
    error: str | None = None


class EnsembleResult(BaseModel):
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


class PbftReplicaResult(BaseModel):
    replica: str
    decided: bool
    seq: int | None = None
    operation: str | None = None


class PbftResult(BaseModel):
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


class Selection(BaseModel):
    protocol: str = Field(description="vote, hierarchical or pbft")
    reason: str = Field(description="why this protocol was picked")
    params: dict[str, object] = Field(default_factory=dict, description="chosen settings")
