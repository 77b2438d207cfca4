"""Peer payloads stay within the server's max payload, whatever the Ready holds."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.core.raft.messages import (
    AppendRequest,
    Entry,
    Heartbeat,
    InstallSnapshot,
    Message,
    Snapshot,
)
from broker_agents.core.raft.wire import decode_message
from broker_agents.raft.outgoing import peer_payloads


def append(dst: str, sizes: list[int], prev: int = 7) -> AppendRequest:
    entries = tuple(Entry(3, prev + 1 + k, {"v": "x" * size}, f"r{k}")
                    for k, size in enumerate(sizes))
    return AppendRequest(3, "a", dst, prev, 2, entries, prev)


def received(payloads: list[tuple[str, bytes]]) -> dict[str, list[Message]]:
    got: dict[str, list[Message]] = {}
    for dst, data in payloads:
        got.setdefault(dst, []).extend(decode_message(m) for m in msgpack.unpackb(data))
    return got


def test_a_batch_within_the_limit_is_one_payload_per_destination() -> None:
    msgs: list[Message] = [append("b", [10, 10]), Heartbeat(3, "a", "b", 1),
                           append("c", [10])]
    payloads, unsendable = peer_payloads(msgs, 1 << 20)
    assert [dst for dst, _ in payloads] == ["b", "c"] and not unsendable
    assert received(payloads) == {"b": msgs[:2], "c": msgs[2:]}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=40), st.integers(3200, 20_000))
def test_an_oversized_append_arrives_as_consecutive_appends_within_the_limit(
        sizes: list[int], limit: int) -> None:
    whole = append("b", sizes)
    payloads, unsendable = peer_payloads([whole, Heartbeat(3, "a", "b", 4)], limit)
    assert not unsendable
    assert all(len(data) <= limit for _, data in payloads)
    got = received(payloads)["b"]
    parts = [m for m in got if isinstance(m, AppendRequest)]
    assert sum((p.entries for p in parts), ()) == whole.entries
    prev = (whole.prev_index, whole.prev_term)
    for part in parts:  # each names the last entry of the one before as its predecessor
        assert (part.prev_index, part.prev_term) == prev
        prev = (part.entries[-1].index, part.entries[-1].term)
    assert isinstance(got[-1], Heartbeat)


def test_a_message_no_split_can_bring_under_the_limit_is_reported() -> None:
    snap = InstallSnapshot(3, "a", "c", Snapshot(9, 3, b"s" * 5000))
    payloads, unsendable = peer_payloads([snap, append("c", [5000]), append("b", [1])], 4096)
    assert len(unsendable) == 2 and unsendable[0] is snap
    assert received(payloads) == {"b": [append("b", [1])]}
