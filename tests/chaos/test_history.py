"""History recording: ids, outcomes, counts, JSONL round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from chaos.history import History


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_outcomes_join_with_invokes_and_unfinished_ops_are_unknown() -> None:
    hist = History(clock=Clock())
    w = hist.invoke("p1", "write", 3, key="k")
    r = hist.invoke("p2", "read", key="k")
    c = hist.invoke("p3", "cas", [3, 4], key="k")
    lost = hist.invoke("p4", "write", 9, key="k")
    hist.ok(w)
    hist.ok(r, 3)
    hist.fail(c, "mismatch")
    _ = lost  # never completed: the client died
    ops = {o.op_id: o for o in hist.operations()}
    assert ops[w].status == "ok" and ops[w].invoke_time == 1.0 and ops[w].complete_time == 5.0
    assert ops[r].result == 3
    assert ops[c].status == "fail" and ops[c].error == "mismatch"
    assert ops[lost].status == "unknown" and math.isinf(ops[lost].complete_time)
    assert hist.counts() == {"invoked": 4, "ok": 2, "failed": 1, "unknown": 1}


def test_explicit_unknown_outcome_keeps_an_infinite_return() -> None:
    hist = History(clock=Clock())
    op_id = hist.invoke("p", "write", 1, key="k")
    hist.unknown(op_id, "timeout")
    (op,) = hist.operations()
    assert op.status == "unknown" and op.error == "timeout" and math.isinf(op.complete_time)


def test_completing_twice_is_refused() -> None:
    hist = History()
    op_id = hist.invoke("p", "read", key="k")
    hist.ok(op_id, None)
    with pytest.raises(ValueError):
        hist.ok(op_id, None)


def test_jsonl_round_trip_preserves_records(tmp_path: Path) -> None:
    hist = History(clock=Clock())
    a = hist.invoke("p", "write", {"v": [1, 2]}, key="k")
    hist.ok(a)
    hist.invoke("q", "read", key="k")
    path = tmp_path / "h.jsonl"
    text = hist.to_jsonl(path)
    assert path.read_text() == text and len(text.splitlines()) == 3
    again = History.from_jsonl(text)
    assert again.records == hist.records
    assert [o.model_dump() for o in again.operations()] == [
        o.model_dump() for o in hist.operations()]
    b = again.invoke("p", "read", key="k")
    assert b == 2, "new ids continue after the loaded ones"
