"""The register linearizability checker: catches what it names, passes what is valid."""

from __future__ import annotations

import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.checkers import check_register
from chaos.history import Operation
from tests.chaos.checkers.histories import linearizable_history, op


def test_sequential_history_passes() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(1, "read", None, 1, t=(2, 3)),
           op(2, "cas", [1, 2], t=(4, 5)), op(3, "read", None, 2, t=(6, 7))]
    assert check_register(ops).verdict == "ok"


def test_read_concurrent_with_write_may_see_either_value() -> None:
    for seen in (None, 1):
        ops = [op(0, "write", 1, t=(0, 10)), op(1, "read", None, seen, t=(1, 2))]
        assert check_register(ops).ok, seen


def test_stale_read_after_acknowledged_write_is_caught_and_named() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(1, "write", 2, t=(2, 3)),
           op(7, "read", None, 1, t=(4, 5))]
    result = check_register(ops)
    assert result.verdict == "violation"
    assert "op 7" in result.violations[0] and "'k'" in result.violations[0]


def test_read_of_a_value_never_written_is_caught() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(1, "read", None, 42, t=(2, 3))]
    assert check_register(ops).verdict == "violation"


def test_two_concurrent_cas_from_the_same_value_cannot_both_succeed() -> None:
    ops = [op(0, "write", 0, t=(0, 1)), op(1, "cas", [0, 1], t=(2, 4)),
           op(2, "cas", [0, 2], t=(2.5, 4.5))]
    result = check_register(ops)
    assert result.verdict == "violation"
    assert "op 1" in result.violations[0] or "op 2" in result.violations[0]


def test_failed_write_must_not_be_observed() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(1, "write", 9, t=(2, 3), status="fail"),
           op(2, "read", None, 9, t=(4, 5))]
    assert check_register(ops).verdict == "violation"


def test_unknown_write_may_have_happened_late() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(1, "write", 9, t=(2, 3), status="unknown"),
           op(2, "read", None, 1, t=(4, 5)), op(3, "read", None, 9, t=(6, 7))]
    assert check_register(ops).ok


def test_unknown_write_may_never_have_happened() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(1, "write", 9, t=(2, 3), status="unknown"),
           op(2, "read", None, 1, t=(4, 5))]
    assert check_register(ops).ok


def test_unknown_write_cannot_happen_before_its_invoke() -> None:
    ops = [op(0, "write", 1, t=(0, 1)), op(1, "read", None, 9, t=(2, 3)),
           op(2, "write", 9, t=(4, 5), status="unknown")]
    assert check_register(ops).verdict == "violation"


def test_keys_are_checked_independently_and_named() -> None:
    ops = [op(0, "write", 1, t=(0, 1), key="a"), op(1, "read", None, 1, t=(2, 3), key="a"),
           op(2, "write", 1, t=(0, 1), key="b"), op(3, "read", None, 5, t=(2, 3), key="b")]
    result = check_register(ops)
    assert len(result.violations) == 1 and "key 'b'" in result.violations[0]
    assert result.details["keys"] == 2


def test_budget_exceeded_gives_explicit_unknown_not_a_hang() -> None:
    history = linearizable_history(random.Random(3), 300, processes=6)
    result = check_register(history, budget=10)
    assert result.verdict == "unknown"
    assert "search budget exceeded" in result.details["undecided"][0]


def test_cas_accepts_dict_arguments() -> None:
    ops = [op(0, "write", 1, t=(0, 1)),
           op(1, "cas", {"expected": 1, "new": 3}, t=(2, 3)), op(2, "read", None, 3, t=(4, 5))]
    assert check_register(ops).ok


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), procs=st.integers(1, 5))
def test_generated_linearizable_histories_pass(seed: int, n: int, procs: int) -> None:
    history = linearizable_history(random.Random(seed), n, processes=procs, keys=2)
    assert check_register(history).verdict == "ok"


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 60))
def test_a_read_of_a_foreign_value_is_always_caught(seed: int, n: int) -> None:
    history = linearizable_history(random.Random(seed), n, processes=3, unknown_rate=0.0)
    last = max(history, key=lambda o: o.complete_time)
    bad = Operation(**{**last.model_dump(), "op_id": 10_000, "f": "read", "args": None,
                       "result": "never-written", "status": "ok",
                       "invoke_time": last.complete_time + 1,
                       "complete_time": last.complete_time + 2})
    result = check_register([*history, bad])
    assert result.verdict == "violation" and "op 10000" in result.violations[0]


def test_a_few_thousand_ops_check_quickly() -> None:
    history = linearizable_history(random.Random(11), 3000, processes=5, keys=3)
    started = time.monotonic()
    result = check_register(history)
    assert result.verdict == "ok"
    assert time.monotonic() - started < 10, "sized for histories of a few thousand ops"
