"""Ensemble: label majority, means, agreement and MAD outliers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.coord.ensemble import aggregate, mad_outliers
from broker_agents.core.coord.models import Aggregation, EnsembleRequest, Prediction


def req(**kw: object) -> EnsembleRequest:
    return EnsembleRequest(question="q", participants=["a", "b", "c", "d"], **kw)  # type: ignore[arg-type]


def num(p: str, v: float) -> Prediction:
    return Prediction(participant=p, value=v)


def test_majority_of_labels_with_agreement_and_dissenters_as_outliers() -> None:
    preds = {p: Prediction(participant=p, label=lbl)
             for p, lbl in zip("abc", ["cat", "cat", "dog"], strict=True)}
    r = aggregate(req(), list("abcd"), preds)
    assert r.result == "cat" and r.agreement == pytest.approx(2 / 3)
    assert r.outliers == ["c"] and r.missing == ["d"]


def test_label_tie_has_no_result() -> None:
    preds = {p: Prediction(participant=p, label=lbl) for p, lbl in [("a", "x"), ("b", "y")]}
    r = aggregate(req(), ["a", "b"], preds)
    assert r.result is None and "tie" in (r.reason or "")


def test_mean_flags_the_far_value_as_outlier() -> None:
    preds = {"a": num("a", 10), "b": num("b", 11), "c": num("c", 9), "d": num("d", 100)}
    r = aggregate(req(aggregation=Aggregation.MEAN), list("abcd"), preds)
    assert r.result == pytest.approx(32.5)
    assert r.outliers == ["d"] and r.agreement == pytest.approx(0.75)
    r = aggregate(req(aggregation=Aggregation.MEAN, exclude_outliers=True), list("abcd"), preds)
    assert r.result == pytest.approx(10)


def test_weighted_mean_uses_reputation_scores() -> None:
    preds = {"a": num("a", 0), "b": num("b", 10)}
    r = aggregate(req(aggregation=Aggregation.WEIGHTED_MEAN, weights={"a": 1, "b": 1}),
                  ["a", "b"], preds, scores={"a": 3, "b": 1})
    assert r.result == pytest.approx(2.5)


def test_nothing_usable_is_reported() -> None:
    r = aggregate(req(aggregation=Aggregation.MEAN), ["a"], {})
    assert r.result is None and r.missing == ["a"]


@given(st.dictionaries(st.text(min_size=1, max_size=4),
                       st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=20))
def test_median_is_never_an_outlier_and_outliers_are_a_minority(vals: dict[str, float]) -> None:
    out = mad_outliers(vals)
    assert len(out) * 2 < len(vals) + 1
