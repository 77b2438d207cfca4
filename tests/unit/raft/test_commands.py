"""The proposal validator: nothing enters the log that storage could not write and read
back, and the msgpack fast path (no encoding) is only taken where that is certain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents.codec import decode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.raft import AppendOp, Entry
from broker_agents.raft.commands import MAX_REQUEST_ID_CHARS, CommandCheck
from broker_agents.raft.storage import FileStorage

scalars = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False, width=32),  # float32 fits both
    st.integers(-(2**63), 2**64 - 1), st.text(max_size=20), st.binary(max_size=20),
)
storable = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=6) | st.integers(-5, 5), inner, max_size=4),
    max_leaves=20,
)
# What JSON can carry that msgpack cannot: integers past 64 bits, lone surrogates.
hostile_scalars = st.one_of(
    scalars,
    st.integers(2**64, 2**80), st.integers(-(2**80), -(2**63) - 1),
    st.sampled_from(["\ud800", "a\udfffb", "\udc80"]),
)
json_like = st.recursive(
    hostile_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=6) | st.sampled_from(["\ud801"]), inner, max_size=4),
    max_leaves=20,
)


def stores_and_reads_back(tmp: Path, command: Any) -> None:
    storage = FileStorage(tmp, fsync=False)
    storage.save([AppendOp((Entry(1, 1, command, "rid"),))])
    storage.close()
    assert FileStorage.inspect(tmp).entries[0].command == command


@settings(max_examples=200, deadline=None)
@given(json_like)
def test_a_decoded_json_command_is_refused_exactly_when_it_cannot_be_stored(
        command: Any) -> None:
    check = CommandCheck(1 << 20)
    try:
        msgpack.packb(command, use_bin_type=True)
        storable_ = True
    except (OverflowError, UnicodeEncodeError, TypeError, ValueError):
        storable_ = False
    try:
        check.decoded(command, 10, from_json=True)
    except BrokerError as exc:
        assert not storable_
        assert exc.code == ErrorCode.VALIDATION
        assert exc.details["reason"] in ("integer_out_of_range", "invalid_string")
    else:
        assert storable_


@settings(max_examples=200, deadline=None)
@given(storable, st.booleans())
def test_whatever_msgpack_decodes_storage_encodes_within_twice_the_payload(
        command: Any, single_float: bool) -> None:
    """Why a msgpack proposal needs no encoding: its command re-encodes, at most twice
    the size of the request it came in (float32 -> float64 is the worst growth)."""
    payload = msgpack.packb({"command": command}, use_bin_type=True,
                            use_single_float=single_float)
    decoded = decode(payload, as_json=False, max_depth=None)["command"]
    stored = msgpack.packb(decoded, use_bin_type=True)
    assert len(stored) <= 2 * len(payload)
    CommandCheck(2 * len(payload)).decoded(decoded, len(payload), from_json=False)


def test_deep_msgpack_still_re_encodes() -> None:
    deep: Any = None
    for _ in range(1020):
        deep = [deep]
    payload = msgpack.packb(deep)
    decoded = msgpack.unpackb(payload)  # the decoder's own bound is 1024 levels
    msgpack.packb(decoded, use_bin_type=True)


def test_a_large_msgpack_command_is_measured_and_refused_past_the_bound() -> None:
    check = CommandCheck(1000)
    check.decoded("x" * 400, 450, from_json=False)  # half the bound: not even encoded
    check.decoded("x" * 900, 950, from_json=False)  # measured: 903 bytes, within
    with pytest.raises(BrokerError) as info:
        check.decoded("x" * 1200, 1210, from_json=False)
    assert info.value.code == ErrorCode.TOO_LARGE
    assert info.value.details == {"size": 1203, "limit": 1000}


def test_an_in_process_command_is_proposed_as_storage_reads_it_back(tmp_path: Path) -> None:
    check = CommandCheck()
    assert check.native({"t": (1, 2), "b": b"x"}) == {"t": [1, 2], "b": b"x"}
    for bad, reason in [({(1, 2): 1}, "unsupported_type"), ({1, 2}, "unsupported_type"),
                        (2**70, "integer_out_of_range"), ("\ud800", "invalid_string"),
                        (object(), "unsupported_type")]:
        with pytest.raises(BrokerError) as info:
            check.native(bad)
        assert info.value.code == ErrorCode.VALIDATION
        assert info.value.details["reason"] == reason
    stores_and_reads_back(tmp_path, check.native({"t": (1, 2)}))


def test_request_ids_are_bounded_and_storable() -> None:
    check = CommandCheck()
    check.request_id("r" * MAX_REQUEST_ID_CHARS)
    check.request_id("é-ok")
    for bad in ("r" * (MAX_REQUEST_ID_CHARS + 1), "\ud800"):
        with pytest.raises(BrokerError) as info:
            check.request_id(bad)
        assert info.value.code == ErrorCode.VALIDATION


def test_forwarded_commands_are_checked_like_proposals() -> None:
    check = CommandCheck(100)
    assert check.forwarded({"op": "put"}, "rid")
    assert not check.forwarded("x" * 200, "rid")
    assert not check.forwarded(2**70, "rid")
    assert not check.forwarded("ok", "r" * 1000)
