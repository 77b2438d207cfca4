"""Raft messages <-> compact plain lists (msgpack-friendly), validating what comes in.

Lists rather than maps keep an AppendRequest with hundreds of entries small and fast to
encode. ``decode_message`` raises ``RemoteProtocolError`` on anything malformed, so a
garbage packet can never crash a member. Terms and indexes are bounded by
``MAX_WIRE_INT``: a forged term near 2^64 would be adopted, persisted, and overflow the
first election after it. The error's ``details["reason"]`` is a ``RefusalReason`` value.

Fields added later ride at the end and are only sent when set (``VoteRequest.transfer``,
a snapshot's membership), so a message without them -- an older peer's -- still decodes.
"""

from __future__ import annotations

from typing import Any

from broker_agents.core.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
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
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    Snapshot,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)

MAX_WIRE_INT = 2**53 - 1
"""The largest term, index or counter a peer may send (exact in every JSON reader too)."""

_ARITY: dict[int, tuple[int, ...]] = {
    1: (7, 8), 2: (6,), 3: (8,), 4: (8,), 5: (6,), 6: (5,), 7: (7, 8), 8: (5,), 9: (5,),
    10: (6,), 11: (4,),
}


def encode_entry(e: Entry) -> list[Any]:
    return [e.term, e.index, int(e.kind), e.request_id, e.command]


def encode_message(m: Message) -> list[Any]:
    head: list[Any]
    if isinstance(m, AppendRequest):
        return [3, m.term, m.src, m.dst, m.prev_index, m.prev_term, m.commit,
                [[e.term, e.index, int(e.kind), e.request_id, e.command] for e in m.entries]]
    if isinstance(m, AppendResponse):
        return [4, m.term, m.src, m.dst, m.success, m.index, m.hint_index, m.hint_term]
    if isinstance(m, Heartbeat):
        return [5, m.term, m.src, m.dst, m.commit, m.ctx]
    if isinstance(m, HeartbeatResponse):
        return [6, m.term, m.src, m.dst, m.ctx]
    if isinstance(m, VoteRequest):
        vote = [1, m.term, m.src, m.dst, m.last_index, m.last_term, m.pre_vote]
        return [*vote, True] if m.transfer else vote
    if isinstance(m, VoteResponse):
        return [2, m.term, m.src, m.dst, m.granted, m.pre_vote]
    if isinstance(m, InstallSnapshot):
        s = m.snapshot
        snap = [7, m.term, m.src, m.dst, s.index, s.term, s.data]
        return snap if s.membership is None else [*snap, s.membership.to_command()]
    if isinstance(m, ForwardProposals):
        head = [8, m.term, m.src, m.dst]
        return [*head, [[cmd, rid] for cmd, rid in m.items]]
    if isinstance(m, ReadIndexRequest):
        return [9, m.term, m.src, m.dst, list(m.request_ids)]
    if isinstance(m, TimeoutNow):
        return [11, m.term, m.src, m.dst]
    return [10, m.term, m.src, m.dst, list(m.request_ids), m.index]


def _bad(why: str, reason: RefusalReason = RefusalReason.MALFORMED) -> RemoteProtocolError:
    return RemoteProtocolError(ErrorCode.MALFORMED, f"bad raft message: {why}",
                               {"reason": reason.value})


def _int(v: Any) -> int:
    if type(v) is not int or v < 0 or v > MAX_WIRE_INT:
        if type(v) is int and v > MAX_WIRE_INT:
            raise _bad(f"{v} is past {MAX_WIRE_INT}", RefusalReason.NUMBER_OUT_OF_RANGE)
        raise _bad(f"expected a non-negative int, got {type(v).__name__}")
    return v


def _str(v: Any) -> str:
    if type(v) is not str:
        raise _bad(f"expected a string, got {type(v).__name__}")
    return v


def _strs(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise _bad("expected a list of strings")
    return tuple(_str(x) for x in v)


def _membership(v: Any) -> Membership:
    try:
        return Membership.from_command(v)
    except LocalProtocolError as exc:
        raise _bad(str(exc)) from exc


def decode_entry(v: Any) -> Entry:
    if not isinstance(v, list) or len(v) != 5:
        raise _bad("entry must be [term, index, kind, request_id, command]")
    term, index, kind, rid, command = v
    if kind not in (0, 1, 2):
        raise _bad("unknown entry kind")
    if rid is not None:
        _str(rid)
    if kind == 2:
        _membership(command)
    return Entry(_int(term), _int(index), command, rid, EntryKind(kind))


def decode_message(v: Any) -> Message:
    if not isinstance(v, list) or not v or type(v[0]) is not int or v[0] not in _ARITY \
            or len(v) not in _ARITY[v[0]]:
        raise _bad("unknown type or wrong arity")
    kind, term, src, dst = v[0], _int(v[1]), _str(v[2]), _str(v[3])
    if kind == 3:
        if not isinstance(v[7], list):
            raise _bad("entries must be a list")
        entries = tuple(decode_entry(e) for e in v[7])
        prev = _int(v[4])
        for k, e in enumerate(entries):
            if e.index != prev + 1 + k:
                raise _bad("entries are not contiguous")
        return AppendRequest(term, src, dst, prev, _int(v[5]), entries, _int(v[6]))
    if kind == 4:
        return AppendResponse(term, src, dst, bool(v[4]), _int(v[5]), _int(v[6]), _int(v[7]))
    if kind == 5:
        return Heartbeat(term, src, dst, _int(v[4]), _int(v[5]))
    if kind == 6:
        return HeartbeatResponse(term, src, dst, _int(v[4]))
    if kind == 1:
        transfer = len(v) == 8 and bool(v[7])
        return VoteRequest(term, src, dst, _int(v[4]), _int(v[5]), bool(v[6]), transfer)
    if kind == 2:
        return VoteResponse(term, src, dst, bool(v[4]), bool(v[5]))
    if kind == 7:
        if not isinstance(v[6], bytes):
            raise _bad("snapshot data must be bytes")
        members = _membership(v[7]) if len(v) == 8 else None
        return InstallSnapshot(term, src, dst, Snapshot(_int(v[4]), _int(v[5]), v[6], members))
    if kind == 8:
        if not isinstance(v[4], list):
            raise _bad("items must be a list")
        items: list[tuple[Any, str]] = []
        for item in v[4]:
            if not isinstance(item, list) or len(item) != 2:
                raise _bad("item must be [command, request_id]")
            items.append((item[0], _str(item[1])))
        return ForwardProposals(term, src, dst, tuple(items))
    if kind == 9:
        return ReadIndexRequest(term, src, dst, _strs(v[4]))
    if kind == 11:
        return TimeoutNow(term, src, dst)
    return ReadIndexResponse(term, src, dst, _strs(v[4]), _int(v[5]))


def split_message(m: Message) -> tuple[Message, Message] | None:
    """Two messages that together say what ``m`` says, for a transport that cannot carry
    it whole (a payload limit); None when it cannot be split.

    An append becomes two consecutive appends, the second naming the last entry of the
    first as its predecessor: a follower that gets both holds what the one would have
    given it; one that gets only the second refuses it as it refuses any append after a
    gap, and the leader probes as after any lost message.
    """
    if isinstance(m, AppendRequest) and len(m.entries) > 1:
        head, tail = m.entries[: len(m.entries) // 2], m.entries[len(m.entries) // 2 :]
        last = head[-1]
        return (AppendRequest(m.term, m.src, m.dst, m.prev_index, m.prev_term, head, m.commit),
                AppendRequest(m.term, m.src, m.dst, last.index, last.term, tail, m.commit))
    if isinstance(m, ForwardProposals) and len(m.items) > 1:
        half = len(m.items) // 2
        return (ForwardProposals(m.term, m.src, m.dst, m.items[:half]),
                ForwardProposals(m.term, m.src, m.dst, m.items[half:]))
    if isinstance(m, ReadIndexRequest) and len(m.request_ids) > 1:
        half = len(m.request_ids) // 2
        return (ReadIndexRequest(m.term, m.src, m.dst, m.request_ids[:half]),
                ReadIndexRequest(m.term, m.src, m.dst, m.request_ids[half:]))
    if isinstance(m, ReadIndexResponse) and len(m.request_ids) > 1:
        half = len(m.request_ids) // 2
        return (ReadIndexResponse(m.term, m.src, m.dst, m.request_ids[:half], m.index),
                ReadIndexResponse(m.term, m.src, m.dst, m.request_ids[half:], m.index))
    return None
