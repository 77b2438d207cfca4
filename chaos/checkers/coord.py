"""Checks of coordination results: votes equal what their counted answers imply, PBFT
never decides two values.

A vote's result shows its work: one answer per participant asked. ``check_votes``
recomputes the decision from the answers the result says were counted, with its own
(deliberately independent) reading of the rules, and holds every counted answer against
the preference of the voter it names: a forged, stale or doubled answer, an answer from
someone not asked, or a decision the answers do not imply is a violation.

``check_pbft`` takes every decision it could observe: the replies replicas sent (a node
connection sees them on the wire, whether or not the client was still listening) and
the results clients got. In one PBFT instance (a group) every replica must decide the
same value at the same sequence, and that value must be one a client proposed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chaos.checkers.result import CheckResult
from chaos.history import Operation

ABSTAIN = None
"""A voter whose preference is ``None`` abstains."""


def implied(rule: str, participants: int, choices: list[str], quorum: float = 2 / 3
            ) -> tuple[str | None, str | None]:
    """(decision, why none) the counted ``choices`` imply under ``rule``; ties decide
    nothing. Majority: the leader holds more than half the votes cast; quorum: also at
    least ceil(quorum * participants) cast; unanimous: every participant voted alike."""
    if not choices:
        return None, "no votes"
    counts: dict[str, int] = defaultdict(int)
    for c in choices:
        counts[c] += 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    leader, top = ranked[0]
    if rule == "unanimous":
        if len(choices) < participants or len(counts) > 1:
            return None, "not unanimous"
        return leader, None
    if rule == "quorum" and len(choices) < math.ceil(quorum * participants - 1e-9):
        return None, "quorum not reached"
    if len(ranked) > 1 and ranked[1][1] == top:
        return None, "tie"
    if top * 2 <= len(choices):
        return None, "no majority"
    return leader, None


@dataclass(frozen=True)
class Silence:
    """``voters`` could not answer from ``start`` to ``end``: their node was killed (down
    until its restart) or paused (SIGSTOP: a stopped process sends nothing)."""

    voters: frozenset[str]
    start: float
    end: float
    why: str = "down"


def _silenced(op: Operation, silences: Iterable[Silence]) -> dict[str, str]:
    """Voters that were silent for the whole of ``op``: none of them can have answered."""
    return {v: s.why for s in silences
            if s.start <= op.invoke_time and op.complete_time <= s.end for v in s.voters}


def _vote_violations(op: Operation, prefs: Mapping[str, str | None],
                     silent: Mapping[str, str]) -> list[str]:
    args, res = op.args or {}, op.result or {}
    asked = list(args.get("participants", []))
    answers = res.get("answers", [])
    named = [a.get("participant") for a in answers]
    out = []
    if sorted(named) != sorted(asked):
        out.append(f"answers name {named}, asked {asked}")
    choices = []
    for a in answers:
        who, status = a.get("participant"), a.get("status")
        if status in ("choice", "abstain") and who in silent:
            out.append(f"{who} answered {a.get('choice')!r} while its node was "
                       f"{silent[who]} for the whole vote")
        if status == "choice":
            if who not in prefs or prefs[who] is ABSTAIN or a.get("choice") != prefs[who]:
                out.append(f"{who} counted as {a.get('choice')!r}, prefers "
                           f"{prefs.get(who)!r}")
            choices.append(a.get("choice"))
        elif status == "abstain" and prefs.get(who, ABSTAIN) is not ABSTAIN:
            out.append(f"{who} counted as abstaining, prefers {prefs.get(who)!r}")
    decision, why = implied(args.get("rule", "majority"), len(asked), choices,
                            args.get("quorum", 2 / 3))
    if res.get("decision") != decision:
        out.append(f"decided {res.get('decision')!r}, counted answers {sorted(choices)} imply "
                   f"{decision!r} ({why or 'decided'})")
    if bool(res.get("rule_met")) != (decision is not None):
        out.append(f"rule_met={res.get('rule_met')} but the answers imply {decision!r}")
    if res.get("votes_cast") != len(choices):
        out.append(f"votes_cast={res.get('votes_cast')}, counted {len(choices)}")
    return [f"{op.describe()}: {v}" for v in out]


def check_votes(ops: Iterable[Operation], prefs: Mapping[str, str | None],
                silences: Iterable[Silence] = ()) -> CheckResult:
    """Every acknowledged ``vote`` decided exactly what its counted answers imply, every
    counted answer is its voter's preference (``prefs``: voter -> option|None), and no
    voter answered a vote that ran entirely while it was silenced (a stale answer)."""
    silences = list(silences)
    violations: list[str] = []
    decided = undecided = partial = during_silence = 0
    for op in ops:
        if op.f != "vote" or op.status != "ok":
            continue
        silent = _silenced(op, silences)
        during_silence += bool(silent)
        violations += _vote_violations(op, prefs, silent)
        res = op.result or {}
        decided += res.get("decision") is not None
        undecided += res.get("decision") is None
        partial += bool(res.get("timed_out") or res.get("errored"))
    return CheckResult.of("vote-decisions-implied", violations, decided=decided,
                          undecided=undecided, with_unreachable=partial,
                          during_silence=during_silence)


@dataclass(frozen=True)
class Decision:
    """One observed decision in a PBFT instance: a replica's reply, or a client result."""

    group: str
    seen_by: str
    seq: int
    operation: str


def check_pbft(decisions: Iterable[Decision], ops: Iterable[Operation]) -> CheckResult:
    """No PBFT instance decided two values (two operations, or one operation at two
    sequences), no decided value was never proposed, and every acknowledged client
    result agrees with what the replicas of its instance replied."""
    ops = [o for o in ops if o.f == "pbft"]
    proposed = {o.args for o in ops}
    by_group: dict[str, list[Decision]] = defaultdict(list)
    by_op: dict[str, set[str]] = defaultdict(set)
    for d in decisions:
        by_group[d.group].append(d)
        by_op[d.operation].add(d.group)
    violations = []
    for group, seen in sorted(by_group.items()):
        values = {(d.seq, d.operation) for d in seen}
        if len(values) > 1:
            shown = sorted(f"{d.seen_by}: seq {d.seq} {d.operation!r}" for d in seen)
            violations.append(f"group {group} decided {len(values)} values: {shown}")
        for seq, operation in values:
            if operation not in proposed:
                violations.append(f"group {group} decided {operation!r} at seq {seq}, "
                                  "which no client proposed")
    for op in ops:
        if op.status != "ok":
            continue
        res: dict[str, Any] = op.result or {}
        if res.get("operation") != op.args:
            violations.append(f"{op.describe()}: result decided {res.get('operation')!r}")
        for view in res.get("replicas", []):
            if view.get("decided") and (view.get("operation"), view.get("seq")) != (
                    op.args, res.get("seq")):
                violations.append(f"{op.describe()}: replica {view.get('replica')} decided "
                                  f"seq {view.get('seq')} {view.get('operation')!r}")
        for group in by_op.get(op.args, ()):
            for d in by_group[group]:
                if d.seq != res.get("seq"):
                    violations.append(f"{op.describe()}: {d.seen_by} replied seq {d.seq} "
                                      f"in group {group}")
    ok = [o for o in ops if o.status == "ok"]
    return CheckResult.of("pbft-one-value", violations, instances=len(by_group),
                          replies=sum(len(v) for v in by_group.values()),
                          decided=len(ok), proposed=len(proposed))
