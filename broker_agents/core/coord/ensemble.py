"""Ensemble aggregation of participants' predictions, with agreement and outliers.

Labels aggregate by plurality (a tie has no result); numbers by mean or weighted mean
(explicit weights or reputation scores). Outlier rule for numbers (Iglewicz-Hoaglin
modified z-score): with median m and MAD = median(|x - m|), x is an outlier when
0.6745 * |x - m| / MAD > ``outlier_threshold`` (3.5 by default); when MAD is 0 (most
predictions identical) any value different from m is an outlier. For labels, an outlier
is a participant whose label differs from the winning one. Agreement is the winning
label's share, or for numbers the share of predictions that are not outliers.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from broker_agents.core.coord.models import (
    Aggregation,
    EnsembleRequest,
    EnsembleResult,
    Prediction,
    WeightSource,
)


def uses_reputation(spec: EnsembleRequest) -> bool:
    """Whether the weights are reputation scores the driver must look up."""
    return (spec.aggregation is Aggregation.WEIGHTED_MEAN
            and spec.weight_source is WeightSource.REPUTATION)


def mad_outliers(values: Mapping[str, float], threshold: float = 3.5) -> list[str]:
    """Participants whose value is an outlier by the modified z-score rule."""
    if len(values) < 3:
        return []
    med = statistics.median(values.values())
    mad = statistics.median(abs(v - med) for v in values.values())
    if mad == 0:
        return sorted(p for p, v in values.items() if v != med)
    return sorted(p for p, v in values.items() if 0.6745 * abs(v - med) / mad > threshold)


def aggregate(
    spec: EnsembleRequest,
    participants: Sequence[str],
    predictions: Mapping[str, Prediction],
    *,
    scores: Mapping[str, float] | None = None,
) -> EnsembleResult:
    """Aggregate the usable predictions; missing participants are reported, not guessed."""
    preds = [
        predictions.get(p) or Prediction(participant=p, status="timeout") for p in participants
    ]
    labels = spec.aggregation is Aggregation.MAJORITY
    usable = [
        p for p in preds
        if p.status == "ok" and (p.label is not None if labels else p.value is not None)
    ]
    missing = [p.participant for p in preds if p not in usable]
    base = {"aggregation": spec.aggregation, "predictions": preds, "missing": missing}
    if not usable:
        return EnsembleResult(**base, result=None, agreement=0, outliers=[], used=0,
                              reason="no usable prediction")
    if labels:
        counts: dict[str, int] = {}
        for p in usable:
            assert p.label is not None
            counts[p.label] = counts.get(p.label, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        top, n = ranked[0]
        tie = len(ranked) > 1 and ranked[1][1] == n
        return EnsembleResult(
            **base, result=None if tie else top, agreement=n / len(usable),
            outliers=[] if tie else sorted(p.participant for p in usable if p.label != top),
            used=len(usable), reason=f"tie between {ranked[0][0]!r} and {ranked[1][0]!r}"
            if tie else None,
        )
    values = {p.participant: float(p.value) for p in usable if p.value is not None}
    outliers = mad_outliers(values, spec.outlier_threshold)
    kept = {k: v for k, v in values.items() if not (spec.exclude_outliers and k in outliers)}
    if spec.aggregation is Aggregation.WEIGHTED_MEAN:
        source = (scores if scores is not None else spec.weights) or {}
        w = {k: max(0.0, float(source.get(k, 1.0))) for k in kept}
        total = sum(w.values())
        if total <= 0:
            return EnsembleResult(**base, result=None, agreement=0, outliers=outliers,
                                  used=len(kept), reason="total weight is zero")
        result = sum(kept[k] * w[k] for k in kept) / total
    else:
        result = statistics.fmean(kept.values())
    return EnsembleResult(
        **base, result=result, agreement=1 - len(outliers) / len(values), outliers=outliers,
        used=len(kept),
    )
