"""Reputation: a per-agent score in [0, 1] from outcome reports, pure and KV-storable.

Score = decayed weighted mean of the recent history plus a neutral prior::

    score = (P * 0.5 + sum(w_i * d_i * v_i)) / (P + sum(w_i * d_i)),  d_i = 0.5 ** (age_i / H)

with prior weight ``P``, half-life ``H`` ticks and at most ``history`` entries kept. Every
value is in [0, 1] and every weight positive, so the score is too. As entries age their
weight fades and the score drifts back to neutral 0.5; ``decay`` (run periodically by a
driver) recomputes it for the current tick.

A report's value is the mean of its ``quality`` and ``satisfaction`` with weight 1.
Violations enter as value 0.0 with heavier weights (``PENALTY_WEIGHTS``): an abandoned task
counts like 3 worst-possible reports, fraud like 10.

Anti-gaming: a report must name a settled auction the caller looked up (its two parties),
come from one party about the other (no self-reports), and each task id is accepted once
per reporter and subject (the record keeps the newest ``seen_limit`` keys); a violation
once per task and subject. The reporter is the authenticated signer (the driver binds it).
Out-of-range values are refused, not clamped. ``needs_decay`` says which stored scores
``decay`` would move noticeably, so a periodic driver writes only those.
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import ConfigDict, Field

from broker_agents.core.errors import BrokerError, ErrorCode
from broker_agents.core.versioning import OpenModel, VersionedModel

NEUTRAL = 0.5


class Violation(StrEnum):
    ABANDONED = "abandoned_task"
    FRAUD = "fraud"


PENALTY_WEIGHTS: dict[Violation, float] = {Violation.ABANDONED: 3.0, Violation.FRAUD: 10.0}


class _Frozen(OpenModel):
    """Frozen, and a newer node's fields kept through read-modify-write (versioning)."""

    model_config = ConfigDict(frozen=True)


class ReputationPolicy(_Frozen):
    half_life: float = Field(default=1000.0, gt=0)
    prior_weight: float = Field(default=1.0, gt=0)
    history: int = Field(default=50, ge=1)
    seen_limit: int = Field(default=1000, ge=1)


DEFAULT_POLICY = ReputationPolicy()


class Entry(_Frozen):
    value: float
    weight: float
    tick: int
    task_id: str
    kind: str = "report"


class Reputation(_Frozen, VersionedModel):
    """One agent's record in the reputation bucket."""

    agent: str = Field(min_length=1)
    score: float = NEUTRAL
    entries: tuple[Entry, ...] = ()
    tasks: tuple[str, ...] = ()
    updated_at: int = 0
    version: int = 0


class SettledAuction(_Frozen):
    """What the caller found in the auctions bucket: a settled auction and its parties."""

    auction_id: str
    task_id: str
    parties: tuple[str, str]


class Report(_Frozen):
    reporter: str
    subject: str
    auction_id: str
    task_id: str
    quality: float
    satisfaction: float


def score_at(record: Reputation, now: int, policy: ReputationPolicy = DEFAULT_POLICY) -> float:
    """The decayed weighted mean at tick ``now`` (entries from the future count as fresh)."""
    num = policy.prior_weight * NEUTRAL
    den = policy.prior_weight
    for entry in record.entries:
        fade = 0.5 ** (max(0, now - entry.tick) / policy.half_life)
        num += entry.weight * fade * entry.value
        den += entry.weight * fade
    return min(1.0, max(0.0, num / den))


def decay(record: Reputation, now: int, policy: ReputationPolicy = DEFAULT_POLICY) -> Reputation:
    """Periodic step: recompute the score for ``now`` so idle agents drift to neutral."""
    score = score_at(record, now, policy)
    if score == record.score and now <= record.updated_at:
        return record
    return record.model_copy(update={"score": score, "updated_at": max(now, record.updated_at),
                                     "version": record.version + 1})


def _unit(value: float, field: str) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BrokerError(ErrorCode.VALIDATION, f"{field} must be between 0 and 1",
                          {"field": field, "value": repr(value)})
    return value


def _check_parties(
    record: Reputation, reporter: str, subject: str, settled: SettledAuction,
    auction_id: str, task_id: str,
) -> None:
    if subject != record.agent:
        raise BrokerError(ErrorCode.VALIDATION, f"report is about {subject}, not {record.agent}",
                          {"field": "subject"})
    if reporter == subject:
        raise BrokerError(ErrorCode.REJECTED, "self-reports are not accepted",
                          {"reporter": reporter})
    if auction_id != settled.auction_id or task_id != settled.task_id:
        raise BrokerError(ErrorCode.REJECTED,
                          f"task {task_id} of auction {auction_id} is not the settled one",
                          {"auction_id": auction_id, "task_id": task_id})
    if set(settled.parties) != {reporter, subject}:
        raise BrokerError(ErrorCode.REJECTED,
                          f"{reporter} is not the counterparty of {subject} in auction "
                          f"{settled.auction_id}", {"parties": list(settled.parties)})


def _add(record: Reputation, entry: Entry, key: str, now: int,
         policy: ReputationPolicy) -> Reputation:
    if key in record.tasks:
        raise BrokerError(ErrorCode.DUPLICATE,
                          f"a report for task {entry.task_id} on {record.agent} was already "
                          "recorded", {"task_id": entry.task_id})
    grown = record.model_copy(update={
        "entries": (*record.entries, entry)[-policy.history:],
        "tasks": (*record.tasks, key)[-policy.seen_limit:],
    })
    return grown.model_copy(update={
        "score": score_at(grown, now, policy), "updated_at": max(now, record.updated_at),
        "version": record.version + 1,
    })


def record_report(
    record: Reputation, report: Report, settled: SettledAuction, now: int,
    policy: ReputationPolicy = DEFAULT_POLICY,
) -> Reputation:
    """Add an outcome report about ``record.agent``; raises on any anti-gaming rule."""
    quality = _unit(report.quality, "quality")
    satisfaction = _unit(report.satisfaction, "satisfaction")
    _check_parties(record, report.reporter, report.subject, settled, report.auction_id,
                   report.task_id)
    entry = Entry(value=(quality + satisfaction) / 2, weight=1.0, tick=now,
                  task_id=report.task_id)
    return _add(record, entry, report_key(report.task_id, report.reporter), now, policy)


def report_key(task_id: str, reporter: str) -> str:
    """What a record remembers of an accepted report: once per task and reporter (a
    seller of a multi-winner auction hears from each winner)."""
    return f"{task_id}@{reporter}"


def record_violation(
    record: Reputation, reporter: str, violation: Violation, settled: SettledAuction,
    now: int, policy: ReputationPolicy = DEFAULT_POLICY,
) -> Reputation:
    """Penalise ``record.agent`` (value 0, weight from ``PENALTY_WEIGHTS``); once per task."""
    _check_parties(record, reporter, record.agent, settled, settled.auction_id,
                   settled.task_id)
    entry = Entry(value=0.0, weight=PENALTY_WEIGHTS[violation], tick=now,
                  task_id=settled.task_id, kind=str(violation))
    return _add(record, entry, f"{settled.task_id}#violation", now, policy)


def needs_decay(record: Reputation, now: int, policy: ReputationPolicy = DEFAULT_POLICY,
                tolerance: float = 0.001) -> bool:
    """Whether the stored score is more than ``tolerance`` off its value at ``now``."""
    return bool(record.entries) and abs(score_at(record, now, policy) - record.score) > tolerance


def is_eligible(score: float | None, minimum: float | None) -> bool:
    """Whether an agent may take part in an auction gated at ``minimum`` (unknown: neutral)."""
    if minimum is None:
        return True
    return (NEUTRAL if score is None else score) >= minimum


def answer_weight(score: float | None, minimum: float | None = None) -> float:
    """How much an agent's answer counts: its score, or 0 below the gate."""
    if not is_eligible(score, minimum):
        return 0.0
    return NEUTRAL if score is None else score
