"""Who may change variables (``core.variables.acts``): the actor is the signer, and
freeze, unfreeze and redefinition are privileged; command ids are remembered per actor."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.identity import Principal, Role, SignedAct, Unauthorized
from broker_agents.core.variables import VariableSpace, VariableStateMachine
from broker_agents.core.variables.acts import act_subject, authorize, check_subject
from broker_agents.core.variables.commands import (
    Command,
    DefineSpace,
    Freeze,
    SetValues,
    Unfreeze,
)

SPACE = VariableSpace.parse({"name": "llm", "variables": [
    {"kind": "float", "name": "t", "min": 0.0, "max": 2.0, "default": 0.7},
    {"kind": "integer", "name": "b", "min": 1, "max": 64, "default": 8}]})
NARROWER = VariableSpace.parse({"name": "llm", "variables": [
    {"kind": "integer", "name": "b", "min": 1, "max": 64, "default": 8}]})
names = st.sampled_from(["alice", "mallory", "operator", "node", "var-engine-1"])
principals = st.builds(Principal, names, st.sampled_from(list(Role)), st.just("UKEY"),
                       st.none() | names)
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(lambda a: SetValues(space="llm", values={"t": 1.0}, actor=a), st.none() | names),
    st.builds(lambda a: Freeze(space="llm", variable="t", actor=a), st.none() | names),
    st.builds(lambda a: Unfreeze(space="llm", variable="t", actor=a), st.none() | names),
    st.builds(lambda a: DefineSpace(space=NARROWER, actor=a), st.none() | names),
)


@given(commands, principals, st.booleans(), st.booleans())
def test_an_authorized_command_names_its_signer_and_privilege_is_enforced(
        cmd: Command, principal: Principal, required: bool, privileged: bool) -> None:
    try:
        out = authorize(cmd, principal, required=required, privileged=privileged)
    except Unauthorized as exc:
        mismatch = cmd.actor is not None and cmd.actor != principal.identity
        assert exc.reason == ("identity_mismatch" if mismatch else "not_privileged")
        assert mismatch or (privileged and not principal.privileged)
        return
    assert out.actor == principal.identity
    assert not privileged or principal.role in (Role.NODE, Role.ADMIN)
    assert out.model_copy(update={"actor": cmd.actor}) == cmd  # nothing else changed


@given(commands, st.booleans())
def test_unsigned_commands_are_refused_when_signatures_are_required(
        cmd: Command, privileged: bool) -> None:
    with pytest.raises(Unauthorized) as err:
        authorize(cmd, None, required=True, privileged=privileged)
    assert err.value.reason == "unsigned"
    assert authorize(cmd, None, required=False, privileged=privileged) == cmd  # --insecure


@pytest.mark.parametrize("group,space", [("variables", "other"), ("config", "llm")])
def test_an_act_signed_for_another_space_or_group_is_not_this_command(
        group: str, space: str) -> None:
    cmd = SetValues(space="llm", values={"t": 1.0})
    check_subject(SignedAct(subject=act_subject("variables", "llm"), data=b"", headers={}),
                  "variables", cmd)
    with pytest.raises(Unauthorized) as err:
        check_subject(SignedAct(subject=act_subject(group, space), data=b"", headers={}),
                      "variables", cmd)
    assert err.value.reason == "wrong_subject"


def test_freeze_unfreeze_and_real_redefinitions_need_privilege() -> None:
    sm = VariableStateMachine()
    assert not sm.needs_privilege(DefineSpace(space=SPACE))  # a new space: anyone's
    sm.apply(DefineSpace(space=SPACE))
    assert not sm.needs_privilege(DefineSpace(space=SPACE))  # the same again: a no-op
    assert sm.needs_privilege(DefineSpace(space=NARROWER))
    assert sm.needs_privilege(Freeze(space="llm", variable="t"))
    assert sm.needs_privilege(Unfreeze(space="llm", variable="t"))
    assert not sm.needs_privilege(SetValues(space="llm", values={"t": 1.0}))


@given(st.lists(st.tuples(names, st.sampled_from(["c1", "c2"]),
                          st.floats(0, 2, allow_nan=False)), max_size=12))
def test_command_ids_are_remembered_per_actor(sets: list[tuple[str, str, float]]) -> None:
    sm = VariableStateMachine()
    sm.apply(DefineSpace(space=SPACE))
    seen: dict[tuple[str, str], Any] = {}
    for actor, cid, t in sets:
        result = sm.apply(SetValues(space="llm", values={"t": t}, actor=actor,
                                    command_id=cid))
        assert result.duplicate == ((actor, cid) in seen)
        seen.setdefault((actor, cid), result.version)
