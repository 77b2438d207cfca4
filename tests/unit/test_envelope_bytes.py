"""The sender's fast envelope encoder gives what the model-based path gave: the old path
(``model_dump`` in a dict, then ``codec.encode``) is written out here as the oracle, and
both outputs are compared as bytes and decoded, for msgpack and JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from broker_agents import codec
from broker_agents.codec import EncodeError
from broker_agents.messages import envelope, envelope_bytes, open_envelope


class Inner(BaseModel):
    name: str
    tags: list[str] = []


class Order(BaseModel):
    message_type: ClassVar[str] = "order"
    seq: int
    price: float
    note: str | None = None
    when: dt.datetime | None = None
    items: list[Inner] = []
    extra: dict[str, int] = {}
    alias_field: int = Field(0, alias="aliasField")


class Plain(BaseModel):  # no message_type: the class name is the wire name
    blob: bytes = b""


def oracle(msg: BaseModel | dict[str, Any], type_name: str | None, msg_id: str,
           as_json: bool) -> bytes:
    """The path every sender took before the fast encoder (kept here as the reference)."""
    if isinstance(msg, dict):
        assert type_name is not None
        env = {"type": type_name, "data": msg, "id": msg_id}
    else:
        name = type_name or getattr(type(msg), "message_type", type(msg).__name__)
        env = {"type": name, "data": msg.model_dump(), "id": msg_id}
    return codec.encode(env, as_json=as_json)


texts = st.text(max_size=20)
ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
floats = st.floats(allow_nan=False)
orders = st.builds(
    Order, seq=ints, price=floats, note=st.none() | texts,
    when=st.none() | st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    items=st.lists(st.builds(Inner, name=texts, tags=st.lists(texts, max_size=3)), max_size=3),
    extra=st.dictionaries(texts, st.integers(-1000, 1000), max_size=3),
    aliasField=st.integers(-5, 5))
json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
                           lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(texts, kids, max_size=3), max_leaves=10)
ids = st.text(min_size=1, max_size=30)


@given(orders, st.none() | st.text(min_size=1, max_size=10), ids, st.booleans())
def test_model_messages_encode_as_the_model_path_did(msg: Order, type_name: str | None,
                                                     msg_id: str, as_json: bool) -> None:
    fast = envelope_bytes(msg, type_name, msg_id, as_json=as_json)
    old = oracle(msg, type_name, msg_id, as_json)
    assert fast == old
    assert codec.decode(fast, as_json=as_json) == codec.decode(old, as_json=as_json)
    assert open_envelope(codec.decode(fast, as_json=as_json))[0] == (type_name or "order")


@given(st.dictionaries(texts, json_values, max_size=4), st.text(min_size=1, max_size=10),
       ids, st.booleans())
def test_dict_messages_encode_as_the_model_path_did(msg: dict[str, Any], type_name: str,
                                                    msg_id: str, as_json: bool) -> None:
    fast = envelope_bytes(msg, type_name, msg_id, as_json=as_json)
    assert fast == oracle(msg, type_name, msg_id, as_json)


@given(st.binary(max_size=20))
def test_bytes_fields_and_class_names(blob: bytes) -> None:
    msg = Plain(blob=blob)
    fast = envelope_bytes(msg, msg_id="m1")
    assert fast == oracle(msg, None, "m1", False)
    assert codec.decode(fast) == {"type": "Plain", "data": {"blob": blob}, "id": "m1"}


def test_fresh_ids_are_unique_and_match_envelope() -> None:
    decoded = [codec.decode(envelope_bytes(Plain())) for _ in range(1000)]
    assert len({d["id"] for d in decoded}) == 1000
    assert set(decoded[0]) == set(envelope(Plain())) == {"type", "data", "id"}


def test_refusals_are_the_old_ones() -> None:
    with pytest.raises(ValueError):
        envelope_bytes({"a": 1})  # a dict needs its type name
    with pytest.raises(TypeError):
        envelope_bytes([1, 2])  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        envelope_bytes({"n": 2**70}, "big")  # the wire cannot carry it


envelope_parts = st.one_of(st.none(), st.integers(), st.text(max_size=300), st.binary(max_size=5),
                           st.lists(st.integers(), max_size=2))


@given(st.one_of(st.dictionaries(st.sampled_from(["type", "data", "id", "x"]), envelope_parts,
                                 max_size=4), envelope_parts))
def test_open_envelope_fast_path_agrees_with_the_full_checks(payload: Any) -> None:
    """The receiver's shortcut accepts exactly what the full checks accept, alike."""
    from broker_agents.core.errors import RemoteProtocolError
    from broker_agents.messages import _open_checked

    def outcome(fn: Any) -> Any:
        try:
            return fn(payload)
        except RemoteProtocolError as exc:
            return ("refused", exc.code, str(exc))

    assert outcome(open_envelope) == outcome(_open_checked)
