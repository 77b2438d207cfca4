"""Checkers for cluster-wide variables: what every member of the group applied, read from
each member separately after the final heal, against what clients and admins were told.

A member's history is ``{"<space>/<variable>": [Entry, ...]}``: the group's per-variable
history (``{"op": "history"}``), each entry (state-machine version, value, actor). The
state machine keeps the last ``limit`` entries of a variable, so a full history may have
lost its oldest ones: an acknowledged set older than what every member retains is
counted as ``truncated``, never as lost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from chaos.checkers.result import CheckResult
from chaos.history import Operation


class Entry(NamedTuple):
    version: int
    value: Any
    actor: str | None = None


MemberHistories = Mapping[str, Mapping[str, Sequence[Entry]]]  # member -> key -> entries


@dataclass(frozen=True)
class FreezeWindow:
    """An acknowledged freeze of ``key`` (the state-machine version it applied at) until
    its acknowledged unfreeze (``None``: never unfrozen, the window stays open)."""

    key: str
    frozen_at: int
    unfrozen_at: int | None = None

    def holds(self, version: int) -> bool:
        end = math.inf if self.unfrozen_at is None else self.unfrozen_at
        return self.frozen_at < version < end


def _first_difference(a: Sequence[Entry], b: Sequence[Entry]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"entry {i}: {tuple(x)} vs {tuple(y)}"
    shorter = "first" if len(a) < len(b) else "second"
    return f"the {shorter} is a strict prefix ({len(a)} vs {len(b)} entries)"


def check_one_history(histories: MemberHistories) -> CheckResult:
    """Every member holds the same history of every variable (read after convergence: a
    strict prefix is a member that never caught up, a difference is divergence)."""
    members = sorted(histories)
    violations = []
    keys = sorted({k for h in histories.values() for k in h})
    if not members:
        return CheckResult.of("one-history", ["no member's history could be read"])
    base = members[0]
    for key in keys:
        want = list(histories[base].get(key, ()))
        for other in members[1:]:
            got = list(histories[other].get(key, ()))
            if got != want:
                violations.append(f"{key}: {other} diverges from {base}: "
                                  f"{_first_difference(want, got)}")
    return CheckResult.of("one-history", violations, members=members, variables=len(keys),
                          entries=sum(len(v) for v in histories[base].values()))


def _retained_from(histories: MemberHistories, key: str, limit: int) -> int:
    """The oldest version every member still retains of ``key`` (0: nothing dropped)."""
    floor = 0
    for h in histories.values():
        entries = h.get(key, ())
        if len(entries) >= limit:
            floor = max(floor, entries[0].version)
    return floor


def check_sets(ops: Iterable[Operation], histories: MemberHistories, *,
               limit: int, trusted: Sequence[str] = (),
               defaults: Mapping[str, Any] | None = None) -> CheckResult:
    """On every member: an acknowledged set appears exactly once, at the version it was
    acknowledged with; a set that definitely failed never appears; one whose outcome is
    unknown at most once; and no value appears that nobody set (``trusted``: actor name
    prefixes whose values are not the clients', e.g. the engine's; ``defaults``: each
    key's value as the space was defined). ``set`` operations: key ``space/variable``,
    args the value, result the acknowledged version."""
    sets = [o for o in ops if o.f == "set"]
    invoked: dict[str, set[Any]] = {k: {_token(v)} for k, v in (defaults or {}).items()}
    for o in sets:
        if o.status != "fail":
            invoked.setdefault(o.key or "", set()).add(_token(o.args))
    violations: list[str] = []
    truncated = 0
    for member, history in sorted(histories.items()):
        for o in sets:
            key = o.key or ""
            entries = history.get(key, ())
            hits = [e for e in entries if _token(e.value) == _token(o.args)]
            if o.status == "ok":
                if not hits and o.result < _retained_from(histories, key, limit):
                    truncated += 1
                elif len(hits) != 1 or hits[0].version != o.result:
                    violations.append(f"{member}: acknowledged set op {o.op_id} {key}="
                                      f"{o.args!r} at version {o.result} appears as "
                                      f"{[tuple(h) for h in hits]}")
            elif (o.status == "fail" and hits) or len(hits) > 1:
                violations.append(f"{member}: {o.status} set op {o.op_id} {key}={o.args!r} "
                                  f"appears {len(hits)} times")
        for key, entries in sorted(history.items()):
            for e in entries:
                if _token(e.value) in invoked.get(key, ()):
                    continue
                if e.actor is not None and e.actor.startswith(tuple(trusted)):
                    continue
                violations.append(f"{member}: {key}={e.value!r} at version {e.version} "
                                  f"(actor {e.actor!r}) was never set by anyone")
    return CheckResult.of("sets-exactly-once", violations,
                          acknowledged=sum(o.status == "ok" for o in sets),
                          failed=sum(o.status == "fail" for o in sets),
                          unknown=sum(o.status == "unknown" for o in sets),
                          truncated=truncated // max(len(histories), 1))


def check_frozen(windows: Iterable[FreezeWindow], histories: MemberHistories) -> CheckResult:
    """Between an acknowledged freeze and its unfreeze, no member applied a change of the
    frozen variable (versions order every command the group applied)."""
    windows = list(windows)
    violations = []
    for member, history in sorted(histories.items()):
        for w in windows:
            for e in history.get(w.key, ()):
                if w.holds(e.version):
                    violations.append(
                        f"{member}: {w.key} changed to {e.value!r} at version {e.version} "
                        f"(actor {e.actor!r}) while frozen from version {w.frozen_at} to "
                        f"{w.unfrozen_at}")
    return CheckResult.of("frozen-never-changes", violations, windows=len(windows),
                          closed=sum(w.unfrozen_at is not None for w in windows))


def _token(value: Any) -> tuple[bool, Any]:
    """Values compared as JSON does, but a bool is never the number 1 or 0."""
    return isinstance(value, bool), value
