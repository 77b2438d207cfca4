"""The replicated KV state machine against a plain-dict model (hypothesis)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.raft.kvstore import KVStateMachine
from broker_agents.core.raft.statemachine import Applier, StateMachine

keys = st.sampled_from(["a", "b", "c"])
values = st.integers(0, 5)
commands = st.one_of(
    st.builds(lambda k, v: {"op": "put", "key": k, "value": v}, keys, values),
    st.builds(lambda k: {"op": "delete", "key": k}, keys),
    st.builds(lambda k, e, v: {"op": "cas", "key": k, "expected": e, "value": v},
              keys, st.one_of(st.none(), values), values),
)


@settings(max_examples=200)
@given(st.lists(commands, max_size=40))
def test_kv_matches_a_dict_model_and_cas_only_swaps_on_match(cmds: list[dict[str, Any]]) -> None:
    kv, model = KVStateMachine(), {}
    for cmd in cmds:
        key = cmd["key"]
        result = kv.apply(cmd)
        if cmd["op"] == "put":
            model[key] = cmd["value"]
        elif cmd["op"] == "delete":
            assert result["ok"] == (key in model)
            model.pop(key, None)
        else:
            ok = model.get(key) == cmd["expected"]
            assert result["ok"] == ok
            if ok:
                model[key] = cmd["value"]
        assert kv.query({"op": "get", "key": key})["value"] == model.get(key)
    assert {k: v for k, (v, _ver) in kv.data.items()} == model


@settings(max_examples=100)
@given(st.lists(commands, max_size=30))
def test_snapshot_restore_round_trips(cmds: list[dict[str, Any]]) -> None:
    kv = KVStateMachine()
    for cmd in cmds:
        kv.apply(cmd)
    copy = KVStateMachine()
    copy.restore(kv.snapshot())
    assert copy.data == kv.data and copy.revision == kv.revision
    assert copy.snapshot() == kv.snapshot()  # deterministic bytes


def test_cas_with_version_requires_the_key_version_too() -> None:
    kv = KVStateMachine()
    v1 = kv.apply({"op": "put", "key": "a", "value": 1})["version"]
    kv.apply({"op": "put", "key": "b", "value": 1})
    assert not kv.apply({"op": "cas", "key": "a", "expected": 1, "version": v1 + 1,
                         "value": 2})["ok"]
    assert kv.apply({"op": "cas", "key": "a", "expected": 1, "version": v1, "value": 2})["ok"]


@pytest.mark.parametrize("bad", [None, 3, {"op": "put"}, {"op": "put", "key": ""},
                                 {"op": "nope", "key": "a"}, {"op": "put", "key": "a"}])
def test_invalid_commands_are_rejected_deterministically(bad: Any) -> None:
    applier = Applier(KVStateMachine())
    result, dup = applier.apply(1, bad, "r1")
    assert result["error"]["code"] == "rejected" and not dup
    assert applier.apply(2, bad, "r1") == (result, True)


def test_kv_implements_the_state_machine_protocol() -> None:
    assert isinstance(KVStateMachine(), StateMachine)


def test_dedup_table_travels_in_the_snapshot_and_is_bounded() -> None:
    applier = Applier(KVStateMachine(), capacity=3)
    for i in range(5):
        applier.apply(i + 1, {"op": "put", "key": "k", "value": i}, f"r{i}")
    assert list(applier.dedup) == ["r2", "r3", "r4"]  # oldest evicted first
    other = Applier(KVStateMachine(), capacity=3)
    other.restore(applier.snapshot())
    assert other.lookup("r4") == applier.lookup("r4")
    assert other.apply(9, {"op": "put", "key": "k", "value": 99}, "r4")[1] is True


def test_dedup_rows_expire_after_the_window_and_a_late_retry_applies_again() -> None:
    applier = Applier(KVStateMachine(), capacity=100, window=10)
    applier.apply(1, {"op": "put", "key": "k", "value": 1}, "r1")
    assert applier.apply(10, {"op": "put", "key": "k", "value": 1}, "r1")[1] is True
    applier.apply(11, {"op": "put", "key": "j", "value": 2}, "r2")  # r1 is 10 entries old
    assert applier.lookup("r1") is None
    result, dup = applier.apply(12, {"op": "put", "key": "k", "value": 1}, "r1")
    assert dup is False and result["version"] == 3  # outside the window: applied again


def test_snapshot_restores_the_same_table_and_reads_the_older_format() -> None:
    import msgpack

    applier = Applier(KVStateMachine(), capacity=50, window=0)
    for i in range(80):
        applier.apply(i + 1, {"op": "put", "key": f"k{i % 7}", "value": i}, f"r{i}")
    other = Applier(KVStateMachine(), capacity=50)
    other.restore(applier.snapshot())
    assert other.dedup == applier.dedup and len(other.dedup) == 50
    assert other.snapshot() == applier.snapshot()
    old = msgpack.packb({"sm": applier.sm.snapshot(),
                         "dedup": [[r, i, res] for r, (i, res) in applier.dedup.items()]},
                        use_bin_type=True)
    third = Applier(KVStateMachine(), capacity=50)
    third.restore(old)
    assert third.dedup == applier.dedup
    assert third.apply(99, {"op": "put", "key": "z", "value": 0}, "r79")[1] is True


def test_the_dedup_table_leaves_nothing_for_the_garbage_collector_to_scan() -> None:
    """Rows of live objects stayed tracked: 100k of them made full collections of a node
    pause 200-600 ms under load, long enough to lose the leadership."""
    applier = Applier(KVStateMachine())
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5_000):
        applier.apply(i + 1, {"op": "put", "key": f"k{i % 8}", "value": i}, f"r{i}")
    gc.collect()
    assert len(gc.get_objects()) - before < 500
    assert applier.lookup("r7") == (8, applier.dedup["r7"][1])
    assert applier.apply(9_999, {"op": "put", "key": "k7", "value": 0}, "r7")[1] is True
