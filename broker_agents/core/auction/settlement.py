"""After the close: escrow, award, acknowledgement, settlement, as a transition table.

::

    open --closed--> closed --reserved--> reserved --acknowledged--> acked --settled--> settled
                     closed --nothing_sold--> unsold
                     closed --reserve_refused | failed--> failed
                                              reserved --ack_missing | failed--> failed
                                                             acked --unverifiable--> failed

The settlement state is a value (``Settlement``) the driver builds from the stored auction
record. ``step(settlement, Event(what))`` looks the pair up in ``TRANSITIONS`` (anything
else is a ``LocalProtocolError``: the driver broke the protocol), and returns the next
state with the effects the driver carries out, in order:

1. the transition's own effects: ``RecordStage`` (write the stage, and the payers
   escrowed / acknowledged / settled, to the record), then, into ``failed``,
   ``ReleaseHold`` for every payer. The record comes first because it is the fence: only
   the lease holder's CAS succeeds, so a deposed driver never releases the holds of an
   auction its successor is still settling;
2. the *work* of the stage it lands in, always last: ``ReserveHold`` per payer (the driver
   then reports ``reserved``, or ``reserve_refused`` at the first refusal), ``SendAward``
   per winner not yet acknowledged (``acknowledged``, or ``ack_missing``), ``Pay`` per payer
   not yet settled (``settled``).

``Happened.RESUME`` asks for the work of the stage the record is in: after the close, and
when an auctioneer takes an auction over. A few transitions need no IO and fire by
themselves after every step (h11's state-triggered transitions): nothing sold -> unsold;
nothing to hold (no budgets) -> reserved; every winner acknowledged -> acked; nothing left
to pay (no budgets, or all paid) -> settled. Consecutive stage records collapse into the
last one, so these cost no extra write.

Who may be paid (issue 13): the ``acked`` stage is a claim written to a bucket, and a
sweeper that takes an auction over acts on what it finds. So before any ``Pay`` the driver
checks every payer (``core.auction.payment``) and reports ``unverifiable`` unless all
pass: the auction fails, every hold is released, nobody is debited.

Exactly once: every ledger operation is keyed by the auction id (a hold taken twice,
released twice, a debit or credit applied twice is a no-op), so a successor that finds the
record in any stage simply runs the remaining work. An award is settled at most once, and
once the acknowledgement is stored it is settled exactly once. Escrow is not recorded as
a stage of its own (one write less per auction): a successor that finds ``closed`` reserves
again, and ``failed`` releases every payer's hold whatever was taken. Which holds may exist
in each stored stage, and how none is ever orphaned, is ``HOLDS``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from broker_agents.core.auction.types import Outcome
from broker_agents.core.errors import ErrorCode, LocalProtocolError
from broker_agents.core.machine import Transition


class Stage(StrEnum):
    """open -> closed -> reserved -> acked -> settled; or unsold / failed."""

    OPEN = "open"
    CLOSED = "closed"
    RESERVED = "reserved"
    ACKED = "acked"
    SETTLED = "settled"
    UNSOLD = "unsold"
    FAILED = "failed"


TERMINAL = frozenset({Stage.SETTLED, Stage.UNSOLD, Stage.FAILED})


class Happened(StrEnum):
    """What the driver reports (or what fires by itself, see the module docstring)."""

    CLOSED = "closed"                    # the auction core closed (or aborted) the auction
    RESUME = "resume"                    # a driver takes up the stage it finds
    NOTHING_SOLD = "nothing_sold"        # the outcome has no winner
    RESERVED = "reserved"                # every payer's payment is held in escrow
    RESERVE_REFUSED = "reserve_refused"  # the ledger refused a hold
    ACKNOWLEDGED = "acknowledged"        # every winner acknowledged its award
    ACK_MISSING = "ack_missing"          # a winner declined, stayed silent or sent garbage
    SETTLED = "settled"                  # every payer debited, the seller credited
    FAILED = "failed"                    # the driver gave up (an error before acknowledgement)
    UNVERIFIABLE = "unverifiable"        # a payer's hold or signed acknowledgement is missing


TRANSITIONS: Mapping[tuple[Stage, Happened], Stage] = {
    (Stage.OPEN, Happened.CLOSED): Stage.CLOSED,
    (Stage.CLOSED, Happened.RESUME): Stage.CLOSED,
    (Stage.CLOSED, Happened.NOTHING_SOLD): Stage.UNSOLD,
    (Stage.CLOSED, Happened.RESERVED): Stage.RESERVED,
    (Stage.CLOSED, Happened.RESERVE_REFUSED): Stage.FAILED,
    (Stage.CLOSED, Happened.FAILED): Stage.FAILED,
    (Stage.RESERVED, Happened.RESUME): Stage.RESERVED,
    (Stage.RESERVED, Happened.ACKNOWLEDGED): Stage.ACKED,
    (Stage.RESERVED, Happened.ACK_MISSING): Stage.FAILED,
    (Stage.RESERVED, Happened.FAILED): Stage.FAILED,
    (Stage.ACKED, Happened.RESUME): Stage.ACKED,
    (Stage.ACKED, Happened.SETTLED): Stage.SETTLED,
    (Stage.ACKED, Happened.UNVERIFIABLE): Stage.FAILED,
}
"""Every legal (stage, event) pair and the stage it leads to; terminal stages take none."""


class Holds(StrEnum):
    """Which escrow holds of this auction may exist on the payers' accounts."""

    NONE = "none"
    ANY = "any"        # any subset of the payers, each for what it owes
    ALL = "all"        # every payer's
    ALL_OR_PAID = "all_or_paid"  # per payer: its hold, or its debit (never both, never neither)
    RELEASING = "releasing"      # any subset, being released; never taken again


HOLDS: Mapping[Stage, Holds] = {
    Stage.OPEN: Holds.NONE,
    Stage.CLOSED: Holds.ANY,
    Stage.RESERVED: Holds.ALL,
    Stage.ACKED: Holds.ALL_OR_PAID,
    Stage.SETTLED: Holds.NONE,
    Stage.UNSOLD: Holds.NONE,
    Stage.FAILED: Holds.RELEASING,
}
"""The escrow invariant per stage (without budgets no hold is ever taken).

- ``open``: none; holds are taken only once ``closed`` is stored.
- ``closed``: any subset of the payers, for what each owes: the driver is reserving (a
  successor that finds ``closed`` reserves again; ``reserve`` is idempotent).
- ``reserved``: every payer's (never stored: the driver's own state before the award).
- ``acked``: per payer its hold or its debit; ``debit`` consumes the hold in the same CAS.
- ``settled``: none; the debit's tombstone refuses a late reserve.
- ``unsold``: none; nobody owes anything.
- ``failed``: whatever was taken, until it is released (from ``acked`` only when the
  payment could not be verified, before anyone was debited). Nothing releases a hold before its
  auction is stored terminal: the driver that wrote ``failed`` releases every payer's hold
  next, and the auctioneers' reconcile (``core.auction.audit``, run at every sweep,
  takeover and abort) releases a hold whose auction is terminal (or, after a grace period,
  unknown), exactly once: the release is a CAS on the account.

No hold is orphaned by a takeover (issue 19: a deposed driver learns that it lost the
lease only at its next write, so it may reserve after its successor failed the auction).
Every release and debit leaves a tombstone on the account (``core.budget``), and
``reserve`` refuses an auction that has one; the account's CAS orders the late reserve
against the release, and whichever lands second sees the first. A hold that still slips
through (a tombstone out of the account's window, a driver dead between its stage write
and its releases) is left to the reconcile.
"""


@dataclass(frozen=True, slots=True)
class Settlement:
    """The post-close part of an auction record, as the table sees it.

    ``owed``: (payer, total) per winner, sorted by payer, always from the stored outcome
    (``payments``). ``budgets``: money moves (escrow, debit, credit); without budgets only
    the awards are sent. ``reserved``/``acked``/``settled``: payers recorded as escrowed,
    acknowledged and paid; ``failure`` why the auction failed.
    """

    stage: Stage
    owed: tuple[tuple[str, float], ...]
    budgets: bool
    seller: str
    reserved: tuple[str, ...] = ()
    acked: tuple[str, ...] = ()
    settled: tuple[str, ...] = ()
    failure: str | None = None

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL

    @property
    def payers(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.owed)


@dataclass(frozen=True, slots=True)
class Event:
    """``what`` happened; ``why`` says why for the failures (it becomes the record's
    ``failure``)."""

    what: Happened
    why: str = ""


# ---- effects: what the driver carries out, in order ------------------------------------


@dataclass(frozen=True, slots=True)
class RecordStage:
    """Write the stage and these fields to the record (CAS); ``finished``: stamp the time."""

    stage: Stage
    reserved: tuple[str, ...]
    acked: tuple[str, ...]
    settled: tuple[str, ...]
    failure: str | None
    finished: bool


@dataclass(frozen=True, slots=True)
class ReleaseHold:
    """Release the payer's hold for this auction and fence it (``core.budget.release``
    leaves a tombstone even when there is no hold yet, so a late reserve is refused)."""

    payer: str


@dataclass(frozen=True, slots=True)
class ReserveHold:
    """Work: hold ``amount`` of the payer's funds for this auction. Report ``reserved``
    once every hold is taken, ``reserve_refused`` at the first refusal."""

    payer: str
    amount: float


@dataclass(frozen=True, slots=True)
class SendAward:
    """Work: tell the winner what it won and pays (``total``). Report ``acknowledged``
    when every winner acknowledged in time, else ``ack_missing`` naming who did not."""

    winner: str
    total: float


@dataclass(frozen=True, slots=True)
class Pay:
    """Work: debit the payer (consuming its hold) and credit the seller. Report
    ``settled`` once every payer is paid."""

    payer: str
    amount: float
    seller: str


SettlementEffect = RecordStage | ReleaseHold | ReserveHold | SendAward | Pay
WORK = (ReserveHold, SendAward, Pay)
"""The effects that end a transition's list and whose outcome the driver reports."""


def payments(outcome: Outcome | None) -> dict[str, float]:
    """Total owed per winner, summed over its awards."""
    owed: dict[str, float] = {}
    if outcome is not None:
        for award in outcome.awards:
            owed[award.bidder] = owed.get(award.bidder, 0.0) + award.price
    return owed


def next_stage(stage: Stage, what: Happened) -> Stage:
    """The table's answer, or ``LocalProtocolError`` for a pair it does not hold."""
    try:
        return TRANSITIONS[(stage, what)]
    except KeyError:
        raise LocalProtocolError(
            ErrorCode.INTERNAL, f"an auction in stage {stage} cannot take {what}",
            {"stage": str(stage), "event": str(what)}) from None


def allows(stage: Stage, what: Happened) -> bool:
    return (stage, what) in TRANSITIONS


def step(state: Settlement, event: Event) -> Transition[Settlement, SettlementEffect]:
    """Apply ``event``, then the transitions that fire by themselves; effects in order,
    the new stage's work last."""
    state, effects = _apply(state, event)
    while (automatic := _automatic(state)) is not None:
        state, more = _apply(state, automatic)
        effects += more
    return Transition(state, _collapse_records(effects) + _work(state))


def _apply(state: Settlement, event: Event) -> tuple[Settlement, list[SettlementEffect]]:
    stage = next_stage(state.stage, event.what)
    if event.what is Happened.RESUME:
        return state, []
    new = replace(state, stage=stage)
    if stage is Stage.FAILED:
        new = replace(new, failure=event.why or str(event.what))
    elif stage is Stage.ACKED:
        new = replace(new, reserved=state.payers, acked=state.payers)
    elif stage is Stage.SETTLED and state.budgets:
        new = replace(new, settled=state.payers)
    effects: list[SettlementEffect] = []
    if stage is not Stage.RESERVED:  # escrow is not recorded: one write less (see above)
        effects.append(_record(new))
    if stage is Stage.FAILED and state.budgets:  # after the record: it fences the release
        effects += [ReleaseHold(p) for p in state.payers]
    return new, effects


def _record(state: Settlement) -> RecordStage:
    return RecordStage(stage=state.stage, reserved=state.reserved, acked=state.acked,
                       settled=state.settled, failure=state.failure,
                       finished=state.stage in TERMINAL)


def _automatic(state: Settlement) -> Event | None:
    """The transition that needs no IO from here, if any."""
    if state.stage is Stage.CLOSED and not state.owed:
        return Event(Happened.NOTHING_SOLD)
    if state.stage is Stage.CLOSED and not state.budgets:
        return Event(Happened.RESERVED)
    if state.stage is Stage.RESERVED and not _unacknowledged(state):
        return Event(Happened.ACKNOWLEDGED)
    if state.stage is Stage.ACKED and not _unpaid(state):
        return Event(Happened.SETTLED)
    return None


def _unacknowledged(state: Settlement) -> list[tuple[str, float]]:
    return [(p, total) for p, total in state.owed if p not in state.acked]


def _unpaid(state: Settlement) -> list[tuple[str, float]]:
    if not state.budgets:
        return []
    return [(p, amount) for p, amount in state.owed if p not in state.settled]


def _work(state: Settlement) -> list[SettlementEffect]:
    if state.stage is Stage.CLOSED:
        return [ReserveHold(p, amount) for p, amount in state.owed]
    if state.stage is Stage.RESERVED:
        return [SendAward(p, total) for p, total in _unacknowledged(state)]
    if state.stage is Stage.ACKED:
        return [Pay(p, amount, state.seller) for p, amount in _unpaid(state)]
    return []


def _collapse_records(effects: Sequence[SettlementEffect]) -> list[SettlementEffect]:
    """Drop a stage record that the very next effect (a later record) supersedes."""
    out: list[SettlementEffect] = []
    for eff in effects:
        if isinstance(eff, RecordStage) and out and isinstance(out[-1], RecordStage):
            out[-1] = eff
        else:
            out.append(eff)
    return out


__all__ = [
    "HOLDS", "TERMINAL", "TRANSITIONS", "WORK", "Event", "Happened", "Holds", "Pay",
    "RecordStage", "ReleaseHold", "ReserveHold", "SendAward", "Settlement",
    "SettlementEffect", "Stage", "allows", "next_stage", "payments", "step",
]
