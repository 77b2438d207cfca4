"""What arrives on a member's subjects: every bad input is a structured error, never an
exception of some library, and peer payloads are msgpack only."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft.messages import ForwardProposals, Heartbeat
from broker_agents.core.raft.wire import encode_message
from broker_agents.raft.commands import CommandCheck
from broker_agents.raft.inbound import HOPS, decode_peer_payload, parse_request, relay_count


def test_a_well_formed_request_parses() -> None:
    body = {"command": {"op": "put"}, "request_id": "r1"}
    assert parse_request(json.dumps(body).encode(), True, "command") == ({"op": "put"}, "r1")
    assert parse_request(msgpack.packb(body), False, "command") == ({"op": "put"}, "r1")


@pytest.mark.parametrize("data, as_json, code", [
    (b"[" * 1000 + b"]" * 1000, True, ErrorCode.MALFORMED),
    (b'{"command": ' + b"[" * 5000 + b"]" * 5000 + b"}", True, ErrorCode.MALFORMED),
    (b"\xc1", False, ErrorCode.MALFORMED),
    (b"{nope", True, ErrorCode.MALFORMED),
    (b'{"query": 1}', True, ErrorCode.BAD_REQUEST),
    (b'["command"]', True, ErrorCode.BAD_REQUEST),
    (b'{"command": 1, "request_id": 5}', True, ErrorCode.BAD_REQUEST),
])
def test_bad_requests_are_structured_errors(data: bytes, as_json: bool,
                                            code: ErrorCode) -> None:
    with pytest.raises(BrokerError) as info:
        parse_request(data, as_json, "command")
    assert info.value.code == code


@given(st.binary(max_size=64), st.booleans())
def test_no_payload_raises_anything_but_a_broker_error(data: bytes, as_json: bool) -> None:
    with contextlib.suppress(BrokerError):
        parse_request(data, as_json, "command")


@pytest.mark.parametrize("raw, hops", [(None, 0), ("0", 0), ("2", 2), ("9999", 9999)])
def test_relay_count_reads_a_small_number(raw: str | None, hops: int) -> None:
    assert relay_count(None if raw is None else {HOPS: raw}) == hops


@pytest.mark.parametrize("raw", ["abc", "-1", "", " 1", "1.5", "٣", "99999"])
def test_any_other_relay_count_is_malformed(raw: str) -> None:
    with pytest.raises(BrokerError) as info:
        relay_count({HOPS: raw})
    assert info.value.code == ErrorCode.MALFORMED and info.value.details["header"] == HOPS


def peer(*messages: Any) -> bytes:
    return msgpack.packb([encode_message(m) for m in messages], use_bin_type=True)


def test_peers_speak_msgpack_only() -> None:
    hb = Heartbeat(1, "a", "b", 0)
    assert decode_peer_payload(peer(hb), CommandCheck()) == ([hb], [])
    as_json = json.dumps([encode_message(hb)]).encode()
    with pytest.raises(BrokerError) as info:
        decode_peer_payload(as_json, CommandCheck())
    assert info.value.details["reason"] == "malformed"
    with pytest.raises(BrokerError):  # one bad item: the whole payload is refused
        decode_peer_payload(msgpack.packb([encode_message(hb), [5, 1]]), CommandCheck())


def test_forwarded_commands_the_log_could_not_store_are_dropped() -> None:
    fwd = ForwardProposals(1, "b", "a", (({"op": "put"}, "ok"), ("x" * 500, "big")))
    (got,), dropped = decode_peer_payload(peer(fwd), CommandCheck(100))
    assert got == ForwardProposals(1, "b", "a", (({"op": "put"}, "ok"),))
    assert dropped == ["b"]
