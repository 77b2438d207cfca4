"""The codec's promises to hostile input: every decode failure is a ``RemoteProtocolError``
(``malformed`` or ``too_large``), nesting and size are bounded for JSON and msgpack alike,
and the caller's encoding is read from the headers case-insensitively, else sniffed."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode, RemoteProtocolError
from broker_agents.reply import encode_reply


def nested_list(depth: int) -> Any:
    value: Any = None
    for _ in range(depth):
        value = [value]
    return value


def nested_json(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + "null" + close * depth).encode()


def nested_objects(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


def refused(data: bytes, **kwargs: Any) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        codec.decode(data, **kwargs)
    return info.value


# -- nesting ------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [codec.MAX_DEPTH + 1, 1_000, 5_000, 100_000])
def test_deep_json_arrays_are_malformed_not_a_recursion_error(depth: int) -> None:
    err = refused(nested_json(depth))
    assert err.code == ErrorCode.MALFORMED
    assert err.details["max_depth"] == codec.MAX_DEPTH


@pytest.mark.parametrize("depth", [codec.MAX_DEPTH + 1, 3_000])
def test_deep_json_objects_are_malformed(depth: int) -> None:
    assert refused(nested_objects(depth)).code == ErrorCode.MALFORMED


@pytest.mark.parametrize("depth", [codec.MAX_DEPTH + 1, 500, 1_000, 5_000])
def test_deep_msgpack_is_malformed(depth: int) -> None:
    data = b"\x91" * depth + b"\xc0"
    err = refused(data)
    assert err.code == ErrorCode.MALFORMED


def test_deep_msgpack_maps_are_malformed() -> None:
    value: Any = 1
    for _ in range(codec.MAX_DEPTH + 1):
        value = {"a": value}
    assert refused(msgpack.packb(value)).code == ErrorCode.MALFORMED


@pytest.mark.parametrize("as_json", [True, False])
def test_nesting_up_to_the_limit_decodes(as_json: bool) -> None:
    value = nested_list(codec.MAX_DEPTH)
    assert codec.decode(codec.encode(value, as_json=as_json)) == value


def test_the_limit_is_configurable() -> None:
    assert codec.decode(nested_json(200), max_depth=200) == nested_list(200)
    assert refused(nested_json(11), max_depth=10).details["max_depth"] == 10
    assert refused(b"\x91" * 11 + b"\xc0", max_depth=10).code == ErrorCode.MALFORMED


def test_brackets_inside_json_strings_do_not_count() -> None:
    text = "[{" * 5_000 + '"\\"[' * 100
    assert codec.decode(json.dumps({"s": text}).encode()) == {"s": text}


def test_wide_payloads_with_many_containers_decode() -> None:
    wide = [[i, {"k": [i]}] for i in range(5_000)]
    for as_json in (True, False):
        assert codec.decode(codec.encode(wide, as_json=as_json)) == wide


def test_msgpack_map_keys_that_are_arrays_are_malformed() -> None:
    assert refused(b"\x81\x91\x91\x01\x02").code == ErrorCode.MALFORMED


# -- size ---------------------------------------------------------------------------------

@pytest.mark.parametrize("as_json", [True, False])
def test_payloads_over_the_limit_are_too_large(as_json: bool) -> None:
    data = codec.encode("x" * 2_000, as_json=as_json)
    err = refused(data, max_size=1_000)
    assert err.code == ErrorCode.TOO_LARGE
    assert err.details == {"size": len(data), "max": 1_000}
    assert codec.decode(data, as_json=as_json, max_size=len(data)) == "x" * 2_000


def test_msgpack_lengths_beyond_the_payload_are_malformed() -> None:
    assert refused(b"\xdd\xff\xff\xff\xff").code == ErrorCode.MALFORMED


# -- anything at all ----------------------------------------------------------------------

@settings(max_examples=400)
@given(st.binary(max_size=256), st.sampled_from([None, True, False]))
def test_any_bytes_decode_or_raise_remote_protocol_error(data: bytes, as_json: bool | None
                                                         ) -> None:
    try:
        codec.decode(data, as_json=as_json)
    except RemoteProtocolError as err:
        assert err.code in (ErrorCode.MALFORMED, ErrorCode.TOO_LARGE)


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=300), st.sampled_from("[{"), st.booleans())
def test_any_nesting_decodes_within_the_limit_or_is_malformed(depth: int, opener: str,
                                                             as_json: bool) -> None:
    data = nested_objects(depth) if opener == "{" else nested_json(depth)
    if not as_json:
        data = msgpack.packb(json.loads(data)) if depth < 900 else b"\x91" * depth + b"\x01"
    if depth <= codec.MAX_DEPTH:
        codec.decode(data, as_json=as_json)
    else:
        assert refused(data, as_json=as_json).code == ErrorCode.MALFORMED


# -- the caller's encoding ----------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"content-type": "application/json"},
    {"Content-Type": "application/json"},
    {"CONTENT-TYPE": "Application/JSON"},
    {"content-type": "application/json; charset=utf-8"},
    {"Content-type": "text/json"},
])
def test_a_json_content_type_means_json_whatever_the_case(headers: dict[str, str]) -> None:
    assert codec.is_json(b"\xff\x00garbage", headers)
    assert refused(b"\xff\x00garbage", headers=headers).code == ErrorCode.MALFORMED


@pytest.mark.parametrize("headers", [{"content-type": "application/msgpack"},
                                     {"Content-Type": "application/x-msgpack"}])
def test_a_msgpack_content_type_means_msgpack(headers: dict[str, str]) -> None:
    assert not codec.is_json(b'{"a": 1}', headers)


@pytest.mark.parametrize("data,expected", [(b'{"a": 1}', True), (b" [1]", True),
                                           (b"\x81\xa1a\x01", False), (b"", False)])
def test_without_a_content_type_the_payload_is_sniffed(data: bytes, expected: bool) -> None:
    assert codec.is_json(data) is expected
    assert codec.is_json(data, {"x-other": "1"}) is expected


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", "multipart/form-data"])
def test_a_content_type_we_do_not_speak_is_malformed_and_answered_as_sniffed(
        ctype: str) -> None:
    headers = {"content-type": ctype}
    err = refused(b'{"a": 1}', headers=headers)
    assert err.code == ErrorCode.MALFORMED
    assert err.details["content_type"] == ctype
    assert codec.is_json(b'{"a": 1}', headers)
    assert not codec.is_json(b"\x81\xa1a\x01", headers)


def test_an_empty_content_type_counts_as_absent() -> None:
    assert codec.decode(b'{"a": 1}', {"content-type": ""}) == {"a": 1}


# -- encoding -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, "\ud800", {1, 2}.__class__,
                                   nested_list(3_000)])
@pytest.mark.parametrize("as_json", [True, False])
def test_what_cannot_be_encoded_raises_encode_error(value: Any, as_json: bool) -> None:
    if as_json and value in (2**64, -(2**63) - 1, "\ud800"):
        codec.encode(value, as_json=True)  # JSON has no integer bound and escapes surrogates
        return
    with pytest.raises(codec.EncodeError) as info:
        codec.encode(value, as_json=as_json)
    assert isinstance(info.value, ValueError) and info.value.code == ErrorCode.INTERNAL
    assert codec.encode([1]) == b"\x91\x01"  # the shared packer is still usable


# -- the reply path -----------------------------------------------------------------------

@pytest.mark.parametrize("as_json", [True, False])
def test_a_reply_over_the_max_payload_becomes_too_large(as_json: bool) -> None:
    data, refusal = encode_reply({"blob": "x" * 5_000}, as_json, max_payload=1_000)
    assert refusal == ErrorCode.TOO_LARGE
    err = BrokerError.from_payload(codec.decode(data, as_json=as_json))
    assert err is not None and err.code == ErrorCode.TOO_LARGE
    assert err.details["max"] == 1_000 and err.details["size"] > 5_000
    assert data.startswith(b"{") is as_json


@pytest.mark.parametrize("as_json", [True, False])
def test_a_reply_that_cannot_be_encoded_becomes_internal(as_json: bool) -> None:
    data, refusal = encode_reply({"n": nested_list(3_000)}, as_json, max_payload=1_000_000)
    assert refusal == ErrorCode.INTERNAL
    err = BrokerError.from_payload(codec.decode(data, as_json=as_json))
    assert err is not None and err.code == ErrorCode.INTERNAL


def test_a_reply_that_fits_is_sent_as_is() -> None:
    assert encode_reply({"a": 1}, True, max_payload=100) == (b'{"a":1}', None)
