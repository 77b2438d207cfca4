"""Raft wire format: every message round-trips; garbage is a RemoteProtocolError."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.errors import RemoteProtocolError
from broker_agents.core.raft.effects import RefusalReason
from broker_agents.core.raft.membership import Membership
from broker_agents.core.raft.messages import (
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    ForwardProposals,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    ReadIndexRequest,
    ReadIndexResponse,
    Snapshot,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from broker_agents.core.raft.wire import (
    MAX_WIRE_INT,
    decode_message,
    encode_message,
    split_message,
)

ids = st.sampled_from(["a", "b", "c"])
n = st.integers(0, 2**40)
plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6,
)


memberships = st.builds(
    Membership.of, st.sets(st.sampled_from(["a", "b", "c"]), min_size=1),
    st.sets(st.sampled_from(["d", "e"])))


@st.composite
def entry(draw: st.DrawFn, index: int) -> Entry:
    kind = draw(st.sampled_from(list(EntryKind)))
    command = (draw(memberships).to_command() if kind == EntryKind.CONFIG else draw(plain))
    return Entry(draw(n), index, command, draw(st.none() | st.text(max_size=6)), kind)


@st.composite
def appends(draw: st.DrawFn) -> AppendRequest:
    prev = draw(st.integers(0, 1000))
    k = draw(st.integers(0, 4))
    entries = tuple(draw(entry(prev + 1 + i)) for i in range(k))
    return AppendRequest(draw(n), draw(ids), draw(ids), prev, draw(n), entries, draw(n))


messages = st.one_of(
    st.builds(VoteRequest, n, ids, ids, n, n, st.booleans(), st.booleans()),
    st.builds(VoteResponse, n, ids, ids, st.booleans(), st.booleans()),
    appends(),
    st.builds(AppendResponse, n, ids, ids, st.booleans(), n, n, n),
    st.builds(Heartbeat, n, ids, ids, n, n),
    st.builds(HeartbeatResponse, n, ids, ids, n),
    st.builds(InstallSnapshot, n, ids, ids,
              st.builds(Snapshot, n, n, st.binary(), st.none() | memberships)),
    st.builds(TimeoutNow, n, ids, ids),
    st.builds(ForwardProposals, n, ids, ids,
              st.lists(st.tuples(plain, st.text(max_size=5)), max_size=3).map(tuple)),
    st.builds(ReadIndexRequest, n, ids, ids, st.lists(st.text(), max_size=3).map(tuple)),
    st.builds(ReadIndexResponse, n, ids, ids, st.lists(st.text(), max_size=3).map(tuple), n),
)


@given(messages)
def test_every_message_round_trips_through_msgpack(msg: Any) -> None:
    wire = msgpack.unpackb(msgpack.packb(encode_message(msg), use_bin_type=True), raw=False,
                           strict_map_key=False)
    assert decode_message(wire) == msg


@given(st.one_of(plain, st.lists(plain, min_size=1, max_size=9)))
def test_garbage_never_decodes_into_a_message_by_accident_or_crashes(junk: Any) -> None:
    try:
        decode_message(junk)
    except RemoteProtocolError as exc:
        assert exc.code == "malformed"


@pytest.mark.parametrize("bad", [
    [3, 1, "a", "b", 0, 0, 0, [[1, 5, 0, None, None]]],  # entries not following prev
    [4, -1, "a", "b", True, 1, 0, 0],                    # negative term
    [5, 1, "a", 7, 0, 0],                                # dst not a string
    [7, 1, "a", "b", 1, 1, "not-bytes"],
    [7, 1, "a", "b", 1, 1, b"s", {"voters": [], "learners": []}],  # no voter
    [3, 1, "a", "b", 0, 0, 0, [[1, 1, 2, None, {"voters": ["a"]}]]],  # config lacks learners
    [3, 1, "a", "b", 0, 0, 0, [[1, 1, 2, None, {"voters": ["a", "a"], "learners": []}]]],
    [3, 1, "a", "b", 0, 0, 0, [[1, 1, 2, None, {"voters": ["a"], "learners": ["a"]}]]],
    [11, 1, "a", "b", 0],  # TimeoutNow has no body
    [99, 1, "a", "b"],
    [],
])
def test_malformed_messages_are_rejected(bad: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_message(bad)


@given(messages, st.data())
def test_a_number_past_the_wire_bound_is_refused_with_its_reason(msg: Any,
                                                                 data: st.DataObject) -> None:
    """Terms, indexes and counters past 2^53 - 1 never decode: a forged term near 2^64
    cannot be adopted, persisted and overflowed by the next election."""
    wire = encode_message(msg)
    numeric = [k for k, v in enumerate(wire) if k > 0 and type(v) is int]
    k = data.draw(st.sampled_from(numeric))
    wire[k] = data.draw(st.integers(MAX_WIRE_INT + 1, 2**64 - 1))
    with pytest.raises(RemoteProtocolError) as info:
        decode_message(wire)
    assert info.value.details["reason"] == RefusalReason.NUMBER_OUT_OF_RANGE


@given(messages)
def test_a_split_message_says_what_the_whole_said(msg: Any) -> None:
    halves = split_message(msg)
    if halves is None:
        return
    first, second = halves
    assert (first.term, first.src, first.dst) == (second.term, second.src, second.dst) == (
        msg.term, msg.src, msg.dst)
    if isinstance(msg, AppendRequest):
        assert first.entries + second.entries == msg.entries
        assert (first.prev_index, first.prev_term) == (msg.prev_index, msg.prev_term)
        last = first.entries[-1]
        assert (second.prev_index, second.prev_term) == (last.index, last.term)
        assert first.commit == second.commit == msg.commit
        for part in halves:  # each is a valid append on its own
            assert decode_message(encode_message(part)) == part
    elif isinstance(msg, ForwardProposals):
        assert first.items + second.items == msg.items
    else:
        assert first.request_ids + second.request_ids == msg.request_ids


def test_messages_of_a_peer_from_before_membership_changes_still_decode() -> None:
    """A VoteRequest without ``transfer`` and a snapshot without membership (older peers)
    decode; the new fields are only sent when set."""
    assert decode_message([1, 3, "a", "b", 9, 2, False]) == VoteRequest(3, "a", "b", 9, 2)
    assert decode_message([7, 3, "a", "b", 9, 2, b"s"]) == InstallSnapshot(
        3, "a", "b", Snapshot(9, 2, b"s"))
    assert len(encode_message(VoteRequest(3, "a", "b", 9, 2))) == 7
    assert len(encode_message(InstallSnapshot(3, "a", "b", Snapshot(9, 2, b"s")))) == 7
    moved = VoteRequest(3, "a", "b", 9, 2, transfer=True)
    assert decode_message(encode_message(moved)).transfer
