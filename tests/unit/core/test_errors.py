"""BrokerError: enum codes, the wire form, and codes this version does not know."""

from __future__ import annotations

import json

from broker_agents.core.errors import WIRE_CODE, BrokerError, ErrorCode, LocalProtocolError


def test_a_known_code_round_trips_byte_identical() -> None:
    payload = {"error": {"code": "not_found", "message": "gone", "details": {"id": "a"}}}
    err = BrokerError.from_payload(payload)
    assert err is not None and err.code is ErrorCode.NOT_FOUND
    assert json.dumps(err.to_payload()) == json.dumps(payload)
    assert type(err.to_payload()["error"]["code"]) is str


def test_an_unknown_code_decodes_as_unknown_and_keeps_its_text() -> None:
    err = BrokerError.from_payload({"error": {"code": "from_the_future", "message": "m"}})
    assert err is not None and err.code is ErrorCode.UNKNOWN
    assert err.details[WIRE_CODE] == "from_the_future" and err.message == "m"


def test_codes_compare_and_print_as_their_wire_text() -> None:
    err = LocalProtocolError(ErrorCode.BAD_REQUEST, "no")
    assert err.code == "bad_request" and f"{err.code}" == "bad_request"
    assert repr(err) == "LocalProtocolError('bad_request', 'no', {})"
