"""Hypothesis strategies and settings shared by the registry core tests."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from broker_agents.core.registry.record import AgentRecord, Health, Lifecycle

# The machine is shared with other test runs: no deadlines, no too_slow health check.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

CAPS = ["inference", "training", "vision", "search", "plan"]
NODES = ["n1", "n2", "n3"]
RESOURCES = ["memory_available", "cpu_usage", "gpus"]
ZONES = ["eu", "us", "ap"]

small_numbers = st.one_of(
    st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0, 2.0, -1.0]),
    st.floats(min_value=-5, max_value=5, allow_nan=False),
    st.integers(min_value=-3, max_value=3),
)


@st.composite
def agent_records(draw: st.DrawFn, agent_id: str | None = None) -> AgentRecord:
    metadata: dict[str, Any] = {}
    if draw(st.booleans()):
        metadata["zone"] = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):
        metadata["rack"] = {"row": draw(st.integers(0, 3))}
    if draw(st.booleans()):
        metadata["flag"] = draw(st.sampled_from([True, False, 1, 0, None]))
    return AgentRecord(
        agent_id=agent_id or draw(st.text("abcdef", min_size=1, max_size=4)),
        name="agent",
        node_id=draw(st.sampled_from(NODES)),
        capabilities=draw(st.lists(st.sampled_from(CAPS), max_size=3, unique=True)),
        health=draw(st.sampled_from(list(Health))),
        state=draw(st.sampled_from(list(Lifecycle))),
        resources=draw(st.dictionaries(st.sampled_from(RESOURCES), small_numbers, max_size=3)),
        metadata=metadata,
    )


def _values_for(field: str) -> st.SearchStrategy[Any]:
    if field == "capabilities":
        return st.sampled_from([*CAPS, "nope", 1, True])
    if field == "node_id":
        return st.sampled_from([*NODES, "n9"])
    if field == "health":
        return st.sampled_from([*(h.value for h in Health), "sick", 0])
    if field == "state":
        return st.sampled_from([s.value for s in Lifecycle])
    if field == "metadata.zone":
        return st.sampled_from([*ZONES, "xx"])
    if field == "metadata.flag":
        return st.sampled_from([True, False, 1, 0, None])
    return st.one_of(small_numbers, st.sampled_from(["x", True]))


FIELDS = ["capabilities", "node_id", "health", "state", "metadata.zone", "metadata.flag",
          "metadata.rack.row", "agent_id", *(f"resources.{r}" for r in RESOURCES)]


@st.composite
def criteria(draw: st.DrawFn) -> dict[str, Any]:
    field = draw(st.sampled_from(FIELDS))
    op = draw(st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in"]))
    if op in ("in", "not_in"):
        value: Any = draw(st.lists(_values_for(field), max_size=3))
    elif op in ("gt", "gte", "lt", "lte"):
        value = draw(small_numbers)
    elif field == "agent_id":
        value = draw(st.text("abcdef", min_size=1, max_size=4))
    else:
        value = draw(_values_for(field))
    return {"field": field, "op": op, "value": value}
