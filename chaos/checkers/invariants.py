"""Consensus and durability invariants: one leader per term, no acknowledged write lost."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from chaos.checkers.linearizable import cas_args, freeze
from chaos.checkers.result import CheckResult
from chaos.history import Operation


def check_one_leader_per_term(observations: Iterable[tuple[str, int, str]]) -> CheckResult:
    """From (member, term, role) observations: no term may have two distinct leaders."""
    leaders: dict[int, set[str]] = defaultdict(set)
    seen = 0
    for member, term, role in observations:
        seen += 1
        if role == "leader":
            leaders[term].add(member)
    violations = [f"term {term}: {len(members)} leaders: {sorted(members)}"
                  for term, members in sorted(leaders.items()) if len(members) > 1]
    return CheckResult.of("one-leader-per-term", violations, observations=seen,
                          terms_with_leader=len(leaders))


def written_value(op: Operation) -> Any:
    return cas_args(op.args)[1] if op.f == "cas" else freeze(op.args)


def check_no_lost_writes(ops: Sequence[Operation], final: dict[str, Any],
                         fs: tuple[str, ...] = ("write", "cas")) -> CheckResult:
    """The final value of each key must come from a write that could have been last.

    A write could be last unless an acknowledged write to the same key started after it
    finished (then it was superseded). If the final value (or its absence) matches none
    of those, the acknowledged writes that nothing superseded were lost.
    """
    by_key: dict[str | None, list[Operation]] = defaultdict(list)
    for op in ops:
        if op.f in fs and op.status != "fail":
            by_key[op.key].append(op)
    violations = []
    for key, writes in sorted(by_key.items(), key=lambda kv: str(kv[0])):
        acked = [w for w in writes if w.status == "ok"]
        if not acked:
            continue
        latest_ok_start = max(w.invoke_time for w in acked)

        def superseded(w: Operation, latest: float = latest_ok_start) -> bool:
            return not math.isinf(w.complete_time) and latest > w.complete_time

        candidates = [w for w in writes if not superseded(w)]
        have = final.get(key) if key is not None else None
        present = key in final
        if present and any(written_value(w) == freeze(have) for w in candidates):
            continue
        lost = [w for w in acked if not superseded(w)]
        ids = ", ".join(str(w.op_id) for w in lost)
        found = f"final value {have!r}" if present else "key missing from final state"
        violations.append(
            f"key {key!r}: acknowledged write(s) op {ids} lost: {found}, expected one of "
            f"{sorted({repr(written_value(w)) for w in candidates})}")
    return CheckResult.of("no-lost-writes", violations, keys=len(by_key))
