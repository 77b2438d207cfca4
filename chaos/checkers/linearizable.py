"""Linearizability of a read/write/CAS register history (Wing-Gong-Lowe search).

Per key (registers are independent, so the history is split by key), we search for a
total order consistent with real time in which every read sees the latest write. The
search memoises (set of linearized ops, register state) pairs, as Lowe's refinement and
Porcupine do, which keeps typical histories of thousands of ops fast.

Outcomes: ``fail`` ops certainly did not happen and are dropped. ``unknown`` ops may have
happened at any point after their invoke, or never: their return is placed at +infinity,
so they are never forced, and the search succeeds once every definite op is placed.
Unknown reads constrain nothing and are dropped. A step budget turns a pathological
search into an explicit "unknown (search budget exceeded)" verdict instead of a hang.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.checkers.result import CheckResult
from chaos.history import Operation

DEFAULT_BUDGET = 2_000_000


def freeze(value: Any) -> Hashable:
    """A hashable, comparable form of a JSON-ish value (lists and dicts included)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value  # type: ignore[no-any-return]


def cas_args(args: Any) -> tuple[Hashable, Hashable]:
    """CAS arguments as (expected, new): a pair, or a dict with those keys."""
    if isinstance(args, dict):
        return freeze(args["expected"]), freeze(args["new"])
    expected, new = args
    return freeze(expected), freeze(new)


def step(state: Hashable, op: Operation) -> tuple[bool, Hashable]:
    """The register model: may ``op`` happen in ``state``, and what state follows."""
    if op.f == "write":
        return True, freeze(op.args)
    if op.f == "read":
        return freeze(op.result) == state, state
    if op.f == "cas":
        expected, new = cas_args(op.args)
        return (True, new) if state == expected else (False, state)
    raise ValueError(f"op {op.op_id}: unknown register operation {op.f!r}")


@dataclass
class _Node:
    op: int
    call: bool
    prev: _Node | None = None
    next: _Node | None = None
    match: _Node | None = None


def _build(ops: Sequence[Operation]) -> _Node:
    events = []
    for i, op in enumerate(ops):
        events.append((op.invoke_time, 0, i))
        events.append((op.complete_time, 1, i))
    events.sort()  # calls sort before returns at equal times: ties count as concurrent
    head = _Node(-1, False)
    calls: dict[int, _Node] = {}
    tail = head
    for _, kind, i in events:
        node = _Node(i, kind == 0, prev=tail)
        tail.next = node
        tail = node
        if kind == 0:
            calls[i] = node
        else:
            calls[i].match = node
    return head


def _lift(node: _Node) -> None:
    for n in (node, node.match):
        assert n is not None and n.prev is not None
        n.prev.next = n.next
        if n.next is not None:
            n.next.prev = n.prev


def _unlift(node: _Node) -> None:
    for n in (node.match, node):
        assert n is not None and n.prev is not None
        n.prev.next = n
        if n.next is not None:
            n.next.prev = n


@dataclass
class KeyVerdict:
    verdict: str  # "ok" | "violation" | "unknown"
    steps: int
    message: str = ""


def check_key(ops: Sequence[Operation], initial: Any = None,
              budget: int = DEFAULT_BUDGET) -> KeyVerdict:
    """Search one key's history; ``ops`` must all be definite or unknown (no fails)."""
    head = _build(ops)
    state: Hashable = freeze(initial)
    linearized = 0
    stack: list[tuple[_Node, Hashable]] = []
    seen: set[tuple[int, Hashable]] = set()
    entry = head.next
    steps = 0
    deepest: tuple[int, int, Hashable, list[int]] = (-1, -1, None, [])
    while entry is not None:
        steps += 1
        if steps > budget:
            return KeyVerdict("unknown", steps, "unknown (search budget exceeded)")
        op = ops[entry.op]
        if entry.call:
            ok, new_state = step(state, op)
            if ok:
                marked = linearized | (1 << entry.op)
                if (marked, new_state) not in seen:
                    seen.add((marked, new_state))
                    stack.append((entry, state))
                    state, linearized = new_state, marked
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
            continue
        if math.isinf(op.complete_time):
            return KeyVerdict("ok", steps)  # only unknown ops remain: they need not happen
        if len(stack) > deepest[0]:
            deepest = (len(stack), entry.op, state, [ops[n.op].op_id for n, _ in stack])
        if not stack:
            break
        node, state = stack.pop()
        linearized &= ~(1 << node.op)
        _unlift(node)
        entry = node.next
    if entry is None:
        return KeyVerdict("ok", steps)
    depth, blocked, at_state, order = deepest
    stuck = ops[blocked]
    shown = order[-5:]
    return KeyVerdict("violation", steps, (
        f"{stuck.describe()} cannot be linearized: the longest consistent order placed "
        f"{depth} ops (ending with op ids {shown}) leaving state {at_state!r}, and no "
        f"pending op can be ordered before op {stuck.op_id} returns"))


def check_register(ops: Sequence[Operation], initial: Any = None,
                   budget: int = DEFAULT_BUDGET,
                   fs: tuple[str, ...] = ("read", "write", "cas")) -> CheckResult:
    """Check a whole history, split by key. Verdict "unknown" if any key ran out of budget."""
    by_key: dict[str | None, list[Operation]] = defaultdict(list)
    dropped = 0
    for op in ops:
        if op.f not in fs:
            continue
        if op.status == "fail" or (op.status == "unknown" and op.f == "read"):
            dropped += 1
            continue
        by_key[op.key].append(op)
    violations: list[str] = []
    unknown: list[str] = []
    steps = 0
    for key, key_ops in sorted(by_key.items(), key=lambda kv: str(kv[0])):
        verdict = check_key(key_ops, initial, budget)
        steps += verdict.steps
        if verdict.verdict == "violation":
            violations.append(f"key {key!r}: not linearizable: {verdict.message}")
        elif verdict.verdict == "unknown":
            unknown.append(f"key {key!r}: {verdict.message}")
    result = CheckResult.of("linearizable-register", violations, keys=len(by_key),
                            ops=sum(len(v) for v in by_key.values()), dropped=dropped,
                            steps=steps, undecided=unknown)
    if not violations and unknown:
        result.verdict = "unknown"
    return result
