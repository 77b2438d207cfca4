"""Peer messages a member must not act on: from outside the group, from itself, with an
implausible term, or acknowledging what was never sent. Each is refused (``Ready.refused``
says why) and changes nothing; the group goes on committing."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.errors import RemoteProtocolError
from broker_agents.core.raft import RaftCore, RefusalReason, Role
from broker_agents.core.raft.config import DEFAULT_MAX_TERM_JUMP
from broker_agents.core.raft.messages import (
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    Message,
    VoteRequest,
)
from broker_agents.core.raft.wire import MAX_WIRE_INT, decode_message
from tests.unit.core.raft.cluster import Cluster


def elected(seed: int = 1) -> tuple[Cluster, str]:
    c = Cluster(3, seed)
    c.settle()
    lead = c.leader()
    assert lead is not None
    return c, lead


def state(core: RaftCore) -> tuple[Any, ...]:
    return core.term, core.role, core.leader, core.commit, core.log.last_index


def refused(c: Cluster, member: str, msg: Message) -> list[RefusalReason]:
    """Step ``msg`` into ``member`` and take the refusals of the Ready it produced."""
    core = c.node(member)
    core.step(msg)
    ready = core.ready()
    assert not ready.messages and not ready.persist and not ready.replies
    return [r.reason for r in ready.refused]


def still_commits(c: Cluster, lead: str) -> None:
    c.settle()
    leader = c.leader()
    assert leader is not None
    rid = c.write(leader, {"op": "put", "key": "after", "value": 1})
    c.run(5)
    assert rid in c.check.acked


def test_messages_from_outside_the_group_or_from_ourselves_are_refused() -> None:
    c, lead = elected()
    follower = next(m for m in c.ids if m != lead)
    before = state(c.node(follower))
    term = c.node(follower).term
    for src in ("mallory", follower):
        assert refused(c, follower, Heartbeat(term + 1, src, follower, 0)) == [
            RefusalReason.NOT_MEMBER]
    assert refused(c, follower, Heartbeat(term + 1, lead, "elsewhere", 0)) == [
        RefusalReason.WRONG_DESTINATION]
    assert state(c.node(follower)) == before
    still_commits(c, lead)


def test_a_term_beyond_the_plausible_jump_is_not_adopted() -> None:
    c, lead = elected()
    follower = next(m for m in c.ids if m != lead)
    term = c.node(follower).term
    before = state(c.node(follower))
    for msg in (Heartbeat(term + DEFAULT_MAX_TERM_JUMP + 1, lead, follower, 0),
                VoteRequest(MAX_WIRE_INT, lead, follower, 10**9, MAX_WIRE_INT)):
        assert refused(c, follower, msg) == [RefusalReason.TERM_JUMP]
    assert state(c.node(follower)) == before
    # within the jump, a higher term is still adopted (a member that missed elections)
    core = c.node(follower)
    core.step(Heartbeat(term + DEFAULT_MAX_TERM_JUMP, lead, follower, 0))
    core.ready()
    assert core.term == term + DEFAULT_MAX_TERM_JUMP


def test_acks_for_what_the_leader_never_sent_are_refused() -> None:
    c, lead = elected()
    follower = next(m for m in c.ids if m != lead)
    core = c.node(lead)
    before = state(core)
    last = core.log.last_index
    assert refused(c, lead, AppendResponse(core.term, follower, lead, True, last + 5)) == [
        RefusalReason.BEYOND_LOG]
    assert refused(c, lead, HeartbeatResponse(core.term, follower, lead, 10**6)) == [
        RefusalReason.BEYOND_LOG]
    assert state(core) == before and core.role == Role.LEADER
    still_commits(c, lead)


# -- property: forged wire messages ------------------------------------------------------

KINDS = {1: 7, 2: 6, 3: 8, 4: 8, 5: 6, 6: 5, 7: 7, 8: 5, 9: 5, 10: 6, 11: 4}
numbers = st.one_of(st.integers(0, 50), st.integers(MAX_WIRE_INT - 3, 2**64 + 5),
                    st.integers(-3, -1))


@st.composite
def forged_wire(draw: st.DrawFn, ids: tuple[str, ...], lead: str, term: int) -> list[Any]:
    """A wire message that a member would have to refuse: its sender is not a member (or
    is the receiver), or its term is past the plausible jump, or a number is past the
    wire's bound."""
    kind = draw(st.sampled_from(sorted(KINDS)))
    dst = draw(st.sampled_from(ids))
    how = draw(st.sampled_from(["outsider", "self", "jump", "huge"]))
    src = {"outsider": "mallory", "self": dst}.get(how, draw(st.sampled_from(ids)))
    if how == "jump":
        msg_term = draw(st.integers(term + DEFAULT_MAX_TERM_JUMP + 1, MAX_WIRE_INT))
    elif how == "huge":
        msg_term = draw(st.integers(MAX_WIRE_INT + 1, 2**64 - 1))
    else:
        msg_term = draw(st.integers(0, term + 3))
    rest = [draw(numbers) for _ in range(KINDS[kind] - 4)]
    if kind == 3:
        rest[-1] = []
    elif kind == 7:
        rest[-1] = b"snap"
    elif kind == 8:
        rest[-1] = [[{"op": "put", "key": "f", "value": 1}, "forged"]]
    elif kind in (9, 10):
        rest[0] = ["forged"]
    return [kind, msg_term, src, dst, *rest]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_forged_peer_messages_change_no_term_and_the_group_commits(data: st.DataObject) -> None:
    c, lead = elected(seed=data.draw(st.integers(1, 5)))
    term = c.node(lead).term
    before = {m: c.node(m).term for m in c.ids}
    for _ in range(data.draw(st.integers(1, 6))):
        wire = data.draw(forged_wire(c.ids, lead, term))
        try:
            msg = decode_message(wire)
        except RemoteProtocolError as exc:
            assert exc.details["reason"] in (RefusalReason.MALFORMED,
                                              RefusalReason.NUMBER_OUT_OF_RANGE)
            continue
        core = c.node(msg.dst)
        core.step(msg)
        ready = core.ready()
        if isinstance(msg, VoteRequest) and msg.src == "mallory":
            # thesis 4.2.3: a vote request from outside the configuration is heard (it may
            # come from a voter we have not heard of yet); the lease keeps it harmless
            assert [r.reason for r in ready.refused] in ([], [RefusalReason.TERM_JUMP])
            assert not ready.persist
            assert not any(getattr(m, "granted", False) for m in ready.messages)
            continue
        assert [r.reason for r in ready.refused] in (
            [RefusalReason.NOT_MEMBER], [RefusalReason.TERM_JUMP])
        assert not ready.persist and not ready.messages
    assert {m: c.node(m).term for m in c.ids} == before
    still_commits(c, lead)
