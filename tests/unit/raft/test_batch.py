"""Proposal batches: the codec (client framing, member parsing, reply splitting), the pure
cut of a loop turn's proposals into requests, and the coalescer against a fake connection."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.errors import TimeoutError as NatsTimeout

from broker_agents.codec import decode, encode
from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.raft.batch import MAX_BATCH_ITEMS, PendingBatch, split_reply
from broker_agents.raft.coalesce import _BY_CONNECTION, Coalescer, batch_payload, coalescer_for, cut
from broker_agents.raft.commands import CommandCheck
from broker_agents.raft.inbound import parse_proposals

CHECK = CommandCheck(1024)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.text(max_size=20))
commands = st.recursive(scalars, lambda c: st.lists(c, max_size=4)
                        | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=10)
bodies = st.lists(st.tuples(commands, st.text(min_size=1, max_size=40)), min_size=1,
                  max_size=20, unique_by=lambda t: t[1])


def _bodies(items: list[tuple[Any, str]]) -> list[dict[str, Any]]:
    return [{"command": c, "request_id": r} for c, r in items]


@given(bodies)
def test_a_batch_framed_from_encoded_items_is_the_codec_s_encoding(
        items: list[tuple[Any, str]]) -> None:
    framed = batch_payload([encode(b) for b in _bodies(items)])
    assert framed == encode({"batch": _bodies(items)})


@given(bodies, st.booleans())
def test_a_batch_parses_back_to_its_proposals_in_order(items: list[tuple[Any, str]],
                                                       as_json: bool) -> None:
    body = {"batch": _bodies(items)}
    data = json.dumps(body).encode() if as_json else encode(body)
    got, hops, batched = parse_proposals(data, None, as_json, CommandCheck(1 << 20))
    assert batched and hops == 0 and got == items


def test_a_single_proposal_is_not_a_batch() -> None:
    data = encode({"command": {"op": "put"}, "request_id": "r"})
    assert parse_proposals(data, None, False, CHECK) == ([({"op": "put"}, "r")], 0, False)


@pytest.mark.parametrize("batch, reason", [
    ([], "bad_batch"),
    ({"command": 1}, "bad_batch"),
    ("x", "bad_batch"),
    ([{"command": 1, "request_id": "a"}, 5], "bad_item"),
    ([{"request_id": "a"}], "bad_item"),
    ([{"command": 1}], "bad_item"),  # a batch item must name its request id
    ([{"command": 1, "request_id": 7}], "bad_item"),
    ([{"command": 1, "request_id": "a"}, {"command": 2, "request_id": "a"}], "duplicate_id"),
    ([{"command": i, "request_id": str(i)} for i in range(MAX_BATCH_ITEMS + 1)], "too_many"),
])
def test_hostile_batches_are_refused_whole_with_a_reason(batch: Any, reason: str) -> None:
    with pytest.raises(BrokerError) as info:
        parse_proposals(encode({"batch": batch}), None, False, CommandCheck(1 << 20))
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert info.value.details["reason"] == reason


def test_an_oversize_command_in_a_batch_is_refused_as_too_large() -> None:
    batch = [{"command": "x", "request_id": "a"},
             {"command": "y" * 2000, "request_id": "b"}]
    with pytest.raises(BrokerError) as info:
        parse_proposals(encode({"batch": batch}), None, False, CHECK)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_an_overlong_request_id_in_a_batch_is_refused() -> None:
    batch = [{"command": 1, "request_id": "r" * 300}]
    with pytest.raises(BrokerError) as info:
        parse_proposals(encode({"batch": batch}), None, False, CHECK)
    assert info.value.details["reason"] == "request_id_too_long"


@given(st.dictionaries(st.sampled_from(["batch", "command", "request_id", "x"]),
                       st.one_of(commands, st.lists(st.dictionaries(
                           st.sampled_from(["command", "request_id"]), scalars), max_size=5)),
                       max_size=3), st.booleans())
def test_no_batch_shaped_payload_raises_anything_but_a_broker_error(body: Any,
                                                                     as_json: bool) -> None:
    data = json.dumps(body).encode() if as_json else encode(body)
    with contextlib.suppress(BrokerError):
        parse_proposals(data, None, as_json, CHECK)


@given(st.binary(max_size=64), st.booleans())
def test_no_bytes_raise_anything_but_a_broker_error(data: bytes, as_json: bool) -> None:
    with contextlib.suppress(BrokerError):
        parse_proposals(data, None, as_json, CHECK)


def test_a_pending_batch_completes_once_every_item_is_answered() -> None:
    batch = PendingBatch("inbox", False, None, 2)
    assert batch.fill(1, {"result": 2, "index": 8}) is False
    assert batch.fill(1, {"result": 9, "index": 9}) is False  # answered already
    assert batch.fill(0, {"result": 1, "index": 7}) is True
    assert batch.fill(0, {"result": 1, "index": 7}) is False  # done: nothing more goes out
    assert batch.reply("a") == {"results": [{"result": 1, "index": 7},
                                            {"result": 2, "index": 8}], "leader": "a"}


def test_a_batch_reply_splits_into_what_each_proposal_would_have_heard() -> None:
    err = BrokerError(ErrorCode.NOT_LEADER, "no", {"leader": "b"}).to_payload()
    split = split_reply({"results": [{"result": 1, "index": 3}, err], "leader": "a"}, 2)
    assert split == [{"result": 1, "index": 3, "leader": "a"}, err]
    whole = BrokerError(ErrorCode.UNAVAILABLE, "stopped").to_payload()
    assert split_reply(whole, 3) == [whole] * 3
    for bad in ({"results": [1]}, {"results": "x"}, [1, 2], {"results": [1, 2]}):
        got = split_reply(bad, 2)
        assert len(got) == 2
        assert all(BrokerError.from_payload(g) is not None for g in got)


@given(st.lists(st.integers(1, 500), max_size=60), st.integers(1, 8), st.integers(1, 2000))
def test_cut_keeps_order_and_both_bounds(sizes: list[int], max_items: int,
                                         max_bytes: int) -> None:
    ends = cut(sizes, max_items, max_bytes)
    assert ends == sorted(set(ends)) and (ends[-1] == len(sizes) if sizes else ends == [])
    start = 0
    for end in ends:
        chunk = sizes[start:end]
        assert 1 <= len(chunk) <= max_items
        assert len(chunk) == 1 or sum(chunk) <= max_bytes  # only a lone item may pass
        start = end


class FakeNats:
    """Answers each request as a member would: a batch with one reply per item."""

    max_payload = 1 << 20

    def __init__(self, fail: Exception | None = None) -> None:
        self.sent: list[bytes] = []
        self.fail = fail

    async def request(self, subject: str, data: bytes, timeout: float) -> Any:
        self.sent.append(data)
        if self.fail is not None:
            raise self.fail
        body = decode(data)
        if "batch" in body:
            out: Any = {"results": [{"result": b["command"], "index": k}
                                    for k, b in enumerate(body["batch"])], "leader": "a"}
        else:
            out = {"result": body["command"], "index": 0, "leader": "a"}
        return type("Msg", (), {"data": msgpack.packb(out), "headers": None})()


async def test_one_loop_turn_is_one_request_and_a_lone_proposal_is_plain() -> None:
    nc = FakeNats()
    co = Coalescer(nc, max_items=3)
    payloads = [encode({"command": i, "request_id": f"r{i}"}) for i in range(5)]
    got = await asyncio.gather(*(co.request("s", p, 1.0) for p in payloads))
    assert [g["result"] for g in got] == list(range(5))
    assert all(g["leader"] == "a" for g in got)
    assert len(nc.sent) == 2  # 3 + 2: MAX items per request
    alone = await co.request("s", payloads[0], 1.0)
    assert nc.sent[-1] == payloads[0] and alone["result"] == 0  # byte for byte as before


async def test_a_failed_batch_request_fails_each_proposal_in_it() -> None:
    nc = FakeNats(NatsTimeout())
    co = Coalescer(nc)
    results = await asyncio.gather(*(co.request("s", encode({"command": i, "request_id": str(i)}),
                                                1.0) for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, NatsTimeout) for r in results)


def test_a_connection_s_coalescer_is_shared_and_does_not_keep_it_alive() -> None:
    nc = FakeNats()
    assert coalescer_for(nc) is coalescer_for(nc)
    assert nc in _BY_CONNECTION
    del nc
    gc.collect()
    assert not any(isinstance(k, FakeNats) for k in _BY_CONNECTION)
