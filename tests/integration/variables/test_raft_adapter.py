"""The Raft adapter of the variable state machine: deterministic, snapshot-exact, events."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.raft.statemachine import StateMachine
from broker_agents.identity import Authenticator
from broker_agents.variables.models import VariableChange
from broker_agents.variables.raft_adapter import VariablesRaftAdapter, factory
from tests.integration.variables.helpers import TEMPERATURE_SPACE

DEFINE = {"op": "define_space", "space": TEMPERATURE_SPACE}
commands = st.one_of(
    st.builds(lambda t: {"op": "set", "space": "llm", "values": {"temperature": t}},
              st.floats(-1, 3, allow_nan=False)),
    st.builds(lambda b, v: {"op": "set", "space": "llm", "values": {"batch": b},
                            "expected_version": v}, st.integers(0, 70), st.integers(0, 6)),
    st.builds(lambda n: {"op": "freeze", "space": "llm", "variable": n},
              st.sampled_from(["temperature", "batch", "nope"])),
    st.builds(lambda n: {"op": "unfreeze", "space": "llm", "variable": n},
              st.sampled_from(["temperature", "batch"])),
    st.just({"op": "set", "space": "missing", "values": {"a": 1}}),
    st.just({"op": "bogus"}),
)


def _open() -> VariablesRaftAdapter:
    """An adapter as an ``--insecure`` member binds it: nothing needs a signature."""
    return VariablesRaftAdapter(authenticator=Authenticator.open())


def test_factory_builds_a_raft_state_machine() -> None:
    assert isinstance(factory(), StateMachine)


def test_an_unbound_adapter_refuses_every_write_but_answers_reads() -> None:
    sm = factory()  # the node binds it to its connection before the member starts
    refused = sm.apply(DEFINE)
    assert refused["error"]["code"] == "unauthorized"
    assert refused["error"]["details"]["reason"] == "unbound"
    assert sm.query({"op": "spaces"}) == {"spaces": []}


def test_insecure_commands_keep_their_claimed_actor_and_secured_ones_need_a_signer() -> None:
    insecure = _open()
    insecure.apply(DEFINE)
    insecure.apply({"op": "freeze", "space": "llm", "variable": "batch", "actor": "op"})
    insecure.apply({"op": "set", "space": "llm", "values": {"temperature": 1.0},
                    "actor": "op"})
    assert insecure.query({"op": "history", "space": "llm", "name": "temperature"}
                          )["history"][-1]["actor"] == "op"
    secured = VariablesRaftAdapter(authenticator=Authenticator(frozenset({"ATRUSTED"})))
    refused = secured.apply({**DEFINE, "actor": "operator"})
    assert refused["error"]["details"]["reason"] == "unsigned"
    malformed = secured.apply({"op": "signed", "act": {"subject": "x"}})
    assert malformed["error"]["code"] == "malformed"
    assert secured.query({"op": "spaces"}) == {"spaces": []}


@settings(max_examples=150, deadline=None)
@given(st.lists(commands, max_size=25))
def test_replicas_agree_snapshots_restore_exactly_and_events_follow_versions(
    cmds: list[dict[str, Any]],
) -> None:
    a, b = _open(), _open()
    events: list[VariableChange] = []
    a.add_listener(events.append)
    results_a = [a.apply(c) for c in [DEFINE, *cmds]]
    results_b = [b.apply(c) for c in [DEFINE, *cmds]]
    assert results_a == results_b
    assert a.snapshot() == b.snapshot()
    c = _open()
    c.restore(a.snapshot())
    assert c.query({"op": "state"}) == a.query({"op": "state"})
    versions = [e.version for e in events]
    assert versions == sorted(set(versions))  # one event per change, versions increase
    ok = [r for r in results_a if set(r) != {"error"}]
    assert len(events) == len([r for r, prev in zip(ok, [None, *ok], strict=False)
                               if prev is None or r["space_version"] != prev["space_version"]])
    if events:
        assert events[-1].values == a.query({"op": "values", "space": "llm"})["values"]
    for r in results_a:
        assert r["error"]["code"] if set(r) == {"error"} else r["ok"] and r["error"] is None


def test_rejections_and_bad_queries_are_error_payloads_naming_the_constraint() -> None:
    sm = _open()
    sm.apply(DEFINE)
    bad = sm.apply({"op": "set", "space": "llm", "values": {"temperature": 3.0}})
    assert bad["error"]["code"] == "validation_error"
    assert bad["error"]["details"]["constraint"] == "range"
    assert sm.query({"op": "get", "space": "llm", "name": "x"})["error"]["code"] == "not_found"
    assert sm.query({"op": "nope"})["error"]["code"] == "bad_request"
    assert sm.query("garbage")["error"]["code"] == "bad_request"
    assert sm.query({"op": "history", "space": "llm", "name": "batch"})["history"][0]["value"] == 8
