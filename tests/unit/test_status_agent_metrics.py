"""The status event's per-agent figures, read from the metric cells, equal what the
Prometheus exposition of the same metrics says (the slower way they were read before)."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents import metrics as m
from node.status import agent_metrics

TYPES = ("ask", "award", "result")


def _from_exposition(agent: str) -> dict[str, object]:
    """The figures as a scrape would show them: summed over kinds and types."""
    def total(family_collector: object, name: str) -> float:
        return sum(s.value for f in family_collector.collect()  # type: ignore[attr-defined]
                   for s in f.samples
                   if s.name == name and s.labels.get("agent") == agent)
    buckets: dict[float, float] = {}
    for family in m.HANDLER_SECONDS.collect():
        for s in family.samples:
            if s.name.endswith("_bucket") and s.labels["agent"] == agent:
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
    bounds = sorted(buckets)
    return {"in": total(m.MESSAGES_IN, "ba_agent_messages_in_total"),
            "out": total(m.MESSAGES_OUT, "ba_agent_messages_out_total"),
            "errors": total(m.HANDLER_ERRORS, "ba_agent_handler_errors_total"),
            "restarts": total(m.RESTARTS, "ba_agent_restarts_total"),
            "le": [b if b != float("inf") else None for b in bounds],
            "counts": [buckets[b] for b in bounds]}


@settings(max_examples=40, deadline=None)
@given(ins=st.lists(st.integers(0, 5), min_size=3, max_size=3),
       latencies=st.lists(st.tuples(st.sampled_from(TYPES),
                                    st.floats(0, 20, allow_nan=False)), max_size=30),
       errors=st.integers(0, 3), restarts=st.integers(0, 2))
def test_cells_read_as_the_exposition_says(ins: list[int],
                                           latencies: list[tuple[str, float]],
                                           errors: int, restarts: int) -> None:
    agent, other = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    for kind, n in zip(("inbox", "fanout", "capability"), ins, strict=True):
        m.MESSAGES_IN.labels(agent, kind).inc(n)
        m.MESSAGES_IN.labels(other, kind).inc(7)  # not asked for: must not leak in
    m.MESSAGES_OUT.labels(agent, "reply").inc(sum(ins))
    for type_name, seconds in latencies:
        m.HANDLER_SECONDS.labels(agent, type_name).observe(seconds)
    for _ in range(errors):
        m.HANDLER_ERRORS.labels(agent, "ask", "timeout").inc()
    for _ in range(restarts):
        m.RESTARTS.labels(agent).inc()
    got = agent_metrics([agent])
    assert set(got) == {agent}
    assert got[agent] == _from_exposition(agent)
    if latencies:  # cumulative, ending with every observation
        assert got[agent]["counts"][-1] == len(latencies)
        assert all(a <= b for a, b in itertools.pairwise(got[agent]["counts"]))


def test_an_agent_without_figures_reads_zero() -> None:
    fresh = f"none-{uuid.uuid4().hex[:8]}"
    assert agent_metrics([fresh]) == {fresh: {"in": 0.0, "out": 0.0, "errors": 0.0,
                                              "restarts": 0.0, "le": [], "counts": []}}
