"""The versioning rule itself: unknown fields survive read -> update -> write in msgpack
and JSON, a too-new ``v`` is refused whole, a record without ``v`` is version 1."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ConfigDict, ValidationError

from broker_agents import codec
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.versioning import (
    LEGACY_VERSION,
    SCHEMA_VERSION,
    OpenModel,
    StrictVersionedModel,
    VersionedModel,
    extras,
    read_version,
    refusal,
)


class Part(OpenModel):
    model_config = ConfigDict(frozen=True)
    a: int = 0


class Rec(VersionedModel):
    model_config = ConfigDict(frozen=True)
    name: str
    count: int = 0
    part: Part = Part()


class Req(StrictVersionedModel):
    name: str


KNOWN = set(Rec.model_fields)
json_leaf = st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=8)
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3)
                          | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
unknown_fields = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda k: k not in KNOWN), json_value, max_size=4)
unknown_nested = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda k: k not in Part.model_fields), json_value,
    max_size=4)


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
@given(top=unknown_fields, nested=unknown_nested, count=st.integers(0, 1000))
def test_unknown_fields_survive_read_update_write(
        as_json: bool, top: dict[str, Any], nested: dict[str, Any], count: int) -> None:
    written_by_newer = {"v": SCHEMA_VERSION, "name": "x", "count": 1,
                        "part": {"a": 2, **nested}, **top}
    wire = codec.encode(written_by_newer, as_json=as_json)
    rec = Rec.model_validate(codec.decode(wire))
    updated = rec.model_copy(update={"count": count})
    back = codec.decode(codec.encode(updated, as_json=as_json))
    assert back == {**written_by_newer, "count": count}
    assert extras(updated) == top


@given(v=st.integers(SCHEMA_VERSION + 1, 2**31), extra=unknown_fields)
def test_a_too_new_version_is_refused_whole(v: int, extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        Rec.model_validate({"v": v, "name": "x", **extra})
    err = refusal(info.value)
    assert err is not None and err.code is ErrorCode.UNSUPPORTED_VERSION
    assert err.details == {"field": "v", "found": v, "readable": SCHEMA_VERSION}
    assert str(v) in err.message and str(SCHEMA_VERSION) in err.message
    with pytest.raises(BrokerError) as raw:
        read_version({"v": v})
    assert raw.value.code is ErrorCode.UNSUPPORTED_VERSION


@pytest.mark.parametrize("bad", [0, -1, True, "1", None, 1.5])
def test_read_version_refuses_what_is_not_a_version(bad: object) -> None:
    with pytest.raises(BrokerError) as info:
        read_version({"v": bad})
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION


def test_a_record_without_v_is_version_1() -> None:
    assert LEGACY_VERSION == 1
    assert read_version({"name": "x"}) == LEGACY_VERSION
    assert Rec.model_validate({"name": "x"}).v == LEGACY_VERSION
    assert Rec(name="x").model_dump()["v"] == SCHEMA_VERSION


def test_an_ordinary_validation_error_is_not_a_version_refusal() -> None:
    with pytest.raises(ValidationError) as info:
        Rec.model_validate({"name": 3})
    assert refusal(info.value) is None


def test_public_requests_refuse_unknown_fields_and_too_new_versions() -> None:
    assert Req.model_validate({"name": "x"}).v == SCHEMA_VERSION
    with pytest.raises(ValidationError) as typo:
        Req.model_validate({"name": "x", "nmae": "y"})
    assert typo.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError) as new:
        Req.model_validate({"name": "x", "v": SCHEMA_VERSION + 1})
    assert refusal(new.value) is not None
