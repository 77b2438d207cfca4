"""The batch-answer frame codec (``broker_agents.answerframe``): what goes in comes out,
and every malformed frame is refused whole with a structured ``malformed`` error."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_agents import answerframe
from broker_agents.core.errors import BrokerError, ErrorCode

_headers = st.none() | st.dictionaries(st.text(min_size=1, max_size=20),
                                       st.text(max_size=40), max_size=4)


@st.composite
def frames(draw: st.DrawFn) -> tuple[int, list[answerframe.Entry]]:
    participants = draw(st.integers(1, 200))
    indexes = draw(st.lists(st.integers(0, participants - 1), min_size=1,
                            max_size=min(participants, 30), unique=True))
    entries = [(i, draw(st.binary(max_size=200)), draw(_headers)) for i in indexes]
    return participants, entries


@given(frames())
def test_a_frame_roundtrips(frame: tuple[int, list[answerframe.Entry]]) -> None:
    participants, entries = frame
    body = answerframe.encode(entries)
    assert answerframe.decode(body, participants) == entries
    assert len(body) <= sum(answerframe.entry_size(d, h) for _, d, h in entries) + 8


@given(st.binary(max_size=300), st.integers(1, 50))
def test_any_bytes_decode_to_entries_or_a_malformed_error(body: bytes, n: int) -> None:
    try:
        entries = answerframe.decode(body, n)
    except BrokerError as exc:
        assert exc.code is ErrorCode.MALFORMED
        return
    assert entries and len({i for i, _, _ in entries}) == len(entries)
    assert all(0 <= i < n and type(d) is bytes for i, d, _ in entries)


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("body", [
    b"",
    b"\xc1",                                              # never used in msgpack
    _pack([]),                                            # no entries
    _pack({"0": b"x"}),                                   # not an array
    _pack([[0, b"x", None]]) + b"\x00",                   # trailing bytes
    _pack([[0, b"x"]]),                                   # two fields
    _pack([[0, b"x", None, 1]]),                          # four fields
    _pack([[3, b"x", None]]),                             # index out of range
    _pack([[-1, b"x", None]]),
    _pack([[True, b"x", None]]),                          # a bool is no index
    _pack([["0", b"x", None]]),
    _pack([[0, b"x", None], [0, b"y", None]]),            # an index named twice
    _pack([[0, b"x", None], [1, b"y", None], [2, b"z", None], [0, b"w", None]]),
    _pack([[0, "text", None]]),                           # data not bytes
    _pack([[0, b"x", {"a": 1}]]),                         # header value not a string
    _pack([[0, b"x", {1: "a"}]]),                         # header key not a string
    _pack([[0, b"x", ["a"]]]),
    _pack([[0, b"x", {f"h{i}": "v" for i in range(answerframe.MAX_HEADERS + 1)}]]),
    _pack([[0, msgpack.ExtType(1, b"x"), None]]),
])
def test_malformed_frames_are_refused(body: bytes) -> None:
    with pytest.raises(BrokerError) as caught:
        answerframe.decode(body, 3)
    assert caught.value.code is ErrorCode.MALFORMED


def test_more_entries_than_participants_are_refused() -> None:
    body = answerframe.encode([(i, b"x", None) for i in range(3)])
    assert len(answerframe.decode(body, 3)) == 3
    with pytest.raises(BrokerError):
        answerframe.decode(body, 2)
