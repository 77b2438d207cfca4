"""Stored auction records: the incremental encoder writes exactly what the codec would, and
the sweeper's lease peek reads stage and heartbeat without validating the record."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker_agents import codec
from broker_agents.auction.messages import build_config, parse_request
from broker_agents.auction.records import AuctionRecord, RecordEncoder, Stage, peek_lease
from broker_agents.core import auction as core
from broker_agents.core.identity import SignedAct


def _record(bidders: int) -> AuctionRecord:
    request = parse_request({"type": "vickrey", "reserve": 1.0,
                             "participants": [f"b{i}" for i in range(bidders)]})
    state, _ = core.start(build_config(request, "a-1"), 0)
    return AuctionRecord(auction_id="a-1", request=request, participants=request.participants
                         or (), state=state, owner="auctioneer", heartbeat_ms=0, started_ms=0)


@settings(max_examples=50, deadline=None)
@given(amounts=st.lists(st.floats(0.0, 100.0), max_size=12),
       stages=st.lists(st.sampled_from(list(Stage)), min_size=1, max_size=4))
def test_encoder_writes_the_codec_bytes_through_every_change(
    amounts: list[float], stages: list[Stage]
) -> None:
    encoder = RecordEncoder()
    record = _record(len(amounts))
    assert encoder.encode(record) == codec.encode(record)
    bids = [core.Bid(auction_id="a-1", msg_id=f"m{i}", bidder=f"b{i}", amount=a)
            for i, a in enumerate(amounts)]
    record = record.model_copy(update={
        "state": core.step(record.state, core.BidsReceived(bids, 1)).state, "heartbeat_ms": 5})
    assert encoder.encode(record) == codec.encode(record)
    record = record.model_copy(update={"state": core.step(record.state, core.Close(2)).state})
    assert encoder.encode(record) == codec.encode(record)
    for n, stage in enumerate(stages):  # post-close writes reuse the dumped state
        record = record.model_copy(update={"stage": stage, "heartbeat_ms": 10 + n,
                                           "acked": ("b0",) if n else ()})
        data = encoder.encode(record)
        assert data == codec.encode(record)
        assert AuctionRecord.model_validate(codec.decode(data)) == record


def test_peek_lease_reads_stage_and_heartbeat_and_refuses_garbage() -> None:
    record = _record(2).model_copy(update={"stage": Stage.ACKED, "heartbeat_ms": 1234})
    assert peek_lease(codec.encode(record)) == (Stage.ACKED, 1234)
    assert peek_lease(b"\xc1garbage") is None
    assert peek_lease(codec.encode({"stage": "nonsense", "heartbeat_ms": 1})) is None
    assert peek_lease(codec.encode([1, 2])) is None


def test_a_record_stored_before_participants_moved_into_the_state_still_loads() -> None:
    record = _record(3)
    old = codec.decode(codec.encode(record))
    state = old["state"]
    del state["participants"], state["answered"]
    old["participants"] = ["b0", "b1", "b2"]
    loaded = AuctionRecord.model_validate(old)
    assert loaded.participants == ("b0", "b1", "b2") == loaded.state.participants
    assert loaded.state.answered == () and loaded == record
    assert "participants" not in codec.decode(codec.encode(loaded))


def test_binary_ack_evidence_survives_the_encoder_and_the_codec() -> None:
    """A winner's signed acknowledgement is msgpack (binary): stored as it was signed."""
    act = SignedAct(subject="_INBOX.n.x.1-0", data=codec.encode({"auction_id": "a-1",
                                                                 "total": 2.5, "b": b"\xff"}),
                    headers={"Ba-Jwt": "j", "Ba-Sig": "s", "Ba-Signed-At": "1"})
    record = _record(1).model_copy(update={"stage": Stage.ACKED, "ack_evidence": {"b0": act}})
    data = RecordEncoder().encode(record)
    assert data == codec.encode(record)
    loaded = AuctionRecord.model_validate(codec.decode(data))
    assert loaded.ack_evidence == {"b0": act} and loaded == record
    json_loaded = AuctionRecord.model_validate(codec.decode(codec.encode(record, as_json=True)))
    assert json_loaded.ack_evidence["b0"].data == act.data
