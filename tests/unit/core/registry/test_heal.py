"""What a live node heals: damaged records of its agents, and records falsely claiming it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.registry.heal import HealReason, damage, heal_plan, orphans
from broker_agents.core.registry.record import AgentRecord, Health, ReapMark
from tests.unit.core.registry.strategies import NODES, RELAXED, agent_records

IDS = ["a", "b", "c", "d"]
UNUSABLE = st.sampled_from([None, HealReason.CORRUPT, HealReason.FOREIGN])


def _marked(record: AgentRecord) -> AgentRecord:
    mark = ReapMark(by="n9", at=1.0, prior_health=record.health)
    return record.model_copy(update={"health": Health.UNHEALTHY, "reaped": mark})


def test_each_kind_of_damage_is_named() -> None:
    ours = AgentRecord(agent_id="a", name="x", node_id="n1", capabilities=["vote"])
    assert damage(ours, ours) is None
    assert damage(ours, None) is HealReason.DELETED
    assert damage(ours, None, HealReason.CORRUPT) is HealReason.CORRUPT
    assert damage(ours, None, HealReason.FOREIGN) is HealReason.FOREIGN
    assert damage(ours, ours.model_copy(update={"node_id": "n2"})) is HealReason.FOREIGN
    assert damage(ours, ours.model_copy(update={"capabilities": []})) is HealReason.OVERWRITTEN
    assert damage(ours, ours.model_copy(update={"health": Health.UNHEALTHY})) \
        is HealReason.OVERWRITTEN


def test_a_reaper_mark_is_left_to_the_restorations() -> None:
    ours = AgentRecord(agent_id="a", name="x", node_id="n1")
    assert damage(ours, _marked(ours)) is None
    tampered = _marked(ours.model_copy(update={"capabilities": ["vote"]}))
    assert damage(ours, tampered) is HealReason.OVERWRITTEN


@RELAXED
@given(agent_records(agent_id="a"), st.one_of(st.none(), agent_records(agent_id="a")),
       UNUSABLE)
def test_damage_is_none_exactly_when_the_record_is_ours(
        expected: AgentRecord, current: AgentRecord | None,
        unusable: HealReason | None) -> None:
    reason = damage(expected, current, unusable)
    if current is None:
        assert reason is (unusable or HealReason.DELETED)
    elif current == expected or (current.reaped is not None and current.model_copy(
            update={"health": current.reaped.prior_health, "reaped": None}) == expected):
        assert reason is None
    else:
        assert reason in (HealReason.FOREIGN, HealReason.OVERWRITTEN)
        assert (reason is HealReason.FOREIGN) == (current.node_id != expected.node_id)
    assert damage(expected, expected) is None  # a healed record needs nothing more


@RELAXED
@given(st.data())
def test_a_plan_heals_everything_in_one_pass(data: st.DataObject) -> None:
    hosted = data.draw(st.lists(st.sampled_from(IDS), unique=True))
    expected = {a: data.draw(agent_records(agent_id=a)) for a in hosted}
    current = {a: data.draw(agent_records(agent_id=a))
               for a in data.draw(st.lists(st.sampled_from(IDS), unique=True))}
    for a in data.draw(st.lists(st.sampled_from(hosted), unique=True)) if hosted else []:
        current[a] = expected[a]
    unusable = {a: data.draw(st.sampled_from([HealReason.CORRUPT, HealReason.FOREIGN]))
                for a in IDS if a not in current and data.draw(st.booleans())}
    plan = heal_plan(expected, current, unusable)
    planned = [a for a, _ in plan]
    assert planned == sorted(planned) and set(planned) <= set(hosted)
    assert all(current.get(a) != expected[a] for a in planned)
    for a in set(hosted) - set(planned):  # left alone: ours, or only a reaper's mark on it
        now = current[a]
        assert now == expected[a] or (now.reaped is not None and now.model_copy(
            update={"health": now.reaped.prior_health, "reaped": None}) == expected[a])
    healed = {**current, **{a: expected[a] for a, _ in plan}}
    assert heal_plan(expected, healed, {}) == []


@RELAXED
@given(st.data())
def test_orphans_are_removed_only_when_seen_twice_at_the_same_revision(
        data: st.DataObject) -> None:
    running = set(data.draw(st.lists(st.sampled_from(IDS), unique=True)))
    agents = [(data.draw(agent_records(agent_id=a)), data.draw(st.integers(1, 3)))
              for a in data.draw(st.lists(st.sampled_from(IDS), unique=True))]
    suspects = data.draw(st.dictionaries(st.sampled_from(IDS), st.integers(1, 3)))
    remove, seen = orphans("n1", running, agents, suspects)
    claimed = {r.agent_id: rev for r, rev in agents
               if r.node_id == "n1" and r.agent_id not in running}
    assert seen == claimed
    assert remove == sorted((a, rev) for a, rev in claimed.items() if suspects.get(a) == rev)
    assert all(a not in running for a, _ in remove)  # never what the node runs
    again, _ = orphans("n1", running, agents, seen)  # a second pass, nothing changed
    assert again == sorted(claimed.items())


def test_a_record_in_flight_is_not_an_orphan_yet() -> None:
    """Seen once (an advertisement racing the pass) is only a suspect; a new revision
    starts over."""
    record = AgentRecord(agent_id="a", name="x", node_id=NODES[0])
    remove, seen = orphans(NODES[0], set(), [(record, 5)], {})
    assert remove == [] and seen == {"a": 5}
    remove, seen = orphans(NODES[0], set(), [(record, 6)], seen)
    assert remove == [] and seen == {"a": 6}
    remove, _ = orphans(NODES[0], {"a"}, [(record, 6)], seen)
    assert remove == []
