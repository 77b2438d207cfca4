"""The variables checkers catch the bugs they name, on hand-made histories."""

from __future__ import annotations

from chaos.checkers.variables import (
    Entry,
    FreezeWindow,
    check_frozen,
    check_one_history,
    check_sets,
)
from tests.chaos.checkers.histories import op

KEY = "ops/a"
ENGINE = ("var-engine-",)
DEFAULTS = {KEY: 0}


def members(entries: list[Entry], n: int = 3) -> dict[str, dict[str, list[Entry]]]:
    return {f"node-{i}": {KEY: list(entries)} for i in range(1, n + 1)}


def sets() -> list:
    return [op(1, "set", 10, 2, t=(0, 1), key=KEY),
            op(2, "set", 11, None, t=(1, 2), key=KEY, status="unknown"),
            op(3, "set", 12, 4, t=(2, 3), key=KEY),
            op(4, "set", 13, None, t=(3, 4), key=KEY, status="fail")]


GOOD = [Entry(1, 0, None), Entry(2, 10, "c0"), Entry(3, 11, "c1"), Entry(4, 12, "c0"),
        Entry(5, 0.5, "var-engine-2")]


def test_identical_histories_are_one_history() -> None:
    result = check_one_history(members(GOOD))
    assert result.ok and result.details["entries"] == 5


def test_a_member_whose_history_diverges_is_caught() -> None:
    histories = members(GOOD)
    histories["node-3"][KEY] = [*GOOD[:2], Entry(3, 99, "c1"), *GOOD[3:]]
    result = check_one_history(histories)
    assert not result.ok and "node-3 diverges" in result.violations[0]
    assert "entry 2" in result.violations[0]


def test_a_member_that_never_caught_up_is_caught() -> None:
    histories = members(GOOD)
    histories["node-2"][KEY] = GOOD[:3]
    result = check_one_history(histories)
    assert not result.ok and "strict prefix" in result.violations[0]


def test_sets_accept_acknowledged_once_unknown_maybe_and_the_engines_values() -> None:
    result = check_sets(sets(), members(GOOD), limit=100, trusted=ENGINE, defaults=DEFAULTS)
    assert result.ok, result.violations
    assert result.details["acknowledged"] == 2


def test_a_lost_acknowledged_set_is_caught() -> None:
    lost = [e for e in GOOD if e.value != 12]
    result = check_sets(sets(), members(lost), limit=100, trusted=ENGINE, defaults=DEFAULTS)
    assert not result.ok and "acknowledged set op 3" in result.violations[0]


def test_an_acknowledged_set_applied_twice_or_elsewhere_is_caught() -> None:
    twice = [*GOOD, Entry(6, 10, "c0")]
    result = check_sets(sets(), members(twice), limit=100, trusted=ENGINE, defaults=DEFAULTS)
    assert not result.ok and "acknowledged set op 1" in result.violations[0]


def test_a_failed_set_that_applied_and_a_value_nobody_set_are_caught() -> None:
    bad = [*GOOD, Entry(6, 13, "c0"), Entry(7, 77, "c1")]
    result = check_sets(sets(), members(bad, n=1), limit=100, trusted=ENGINE, defaults=DEFAULTS)
    assert not result.ok
    assert any("fail set op 4" in v for v in result.violations)
    assert any("77 at version 7" in v and "never set" in v for v in result.violations)


def test_a_set_older_than_every_retained_entry_is_truncated_not_lost() -> None:
    kept = GOOD[2:]  # a history of limit 3: the oldest entries dropped
    result = check_sets(sets(), members(kept), limit=3, trusted=ENGINE, defaults=DEFAULTS)
    assert result.ok and result.details["truncated"] == 1


def test_a_change_while_frozen_is_caught_and_changes_outside_the_window_are_not() -> None:
    windows = [FreezeWindow(KEY, 2, 3), FreezeWindow(KEY, 4, None)]
    assert check_frozen(windows, members(GOOD[:4])).ok
    result = check_frozen(windows, members(GOOD))
    assert not result.ok and len(result.violations) == 3  # once per member
    assert "while frozen from version 4 to None" in result.violations[0]
